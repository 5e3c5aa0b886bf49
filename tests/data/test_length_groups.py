"""Batches computed in length groups: training keeps the batch's loss and gradients, evaluation
every score."""

import itertools
import logging
import os

import numpy as np
import pytest
from recbole.data.dataloader import TrainDataLoader
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from recbole_fame import get_model
from recbole_fame.data import prepare_data
from recbole_fame.data import length_groups, preparation
from recbole_fame.data.length_groups import group_bounds, grouped_loss
from recbole_fame.trainer import get_trainer

from helpers import make_config, make_data


def _cost(lengths, bounds, group_cost):
    return sum((end - start) * lengths[end - 1] + group_cost for start, end in zip(bounds[:-1], bounds[1:]))


def test_group_bounds_is_the_cheapest_split():
    rng = np.random.default_rng(0)
    for trial in range(30):
        lengths = np.sort(rng.integers(1, 12, size=int(rng.integers(1, 25))))
        max_groups, group_cost = int(rng.integers(1, 5)), float(rng.choice([0, 3, 20]))
        bounds = group_bounds(lengths, max_groups, group_cost)
        assert bounds[0] == 0 and bounds[-1] == len(lengths) and bounds == sorted(set(bounds))
        assert len(bounds) - 1 <= max_groups
        # No group boundary splits equal lengths, and no split is cheaper (exhaustive search).
        assert all(lengths[b - 1] != lengths[b] for b in bounds[1:-1])
        cheapest = min(
            _cost(lengths, [0, *cuts, len(lengths)], group_cost)
            for k in range(max_groups)
            for cuts in itertools.combinations(range(1, len(lengths)), k)
        )
        assert _cost(lengths, bounds, group_cost) == cheapest


def test_group_bounds_examples():
    short_and_long = np.array([2] * 100 + [50] * 100)
    assert group_bounds(short_and_long, 4) == [0, 100, 200]
    assert group_bounds(short_and_long, 1) == [0, 200]
    assert group_bounds(np.full(256, 7), 4) == [0, 256]
    # Splitting off 3 long histories saves fewer positions than a group costs.
    assert group_bounds(np.array([3] * 60 + [9] * 3), 4, group_cost=512) == [0, 63]


@pytest.mark.parametrize("model_name", ["FAME", "SASRec", "GRU4Rec", "CORE"])
def test_grouped_loss_and_gradients_equal_the_whole_batch(tiny_config, model_name):
    config = make_config(model_name, {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_groups": 3})
    _, train_data, _, _ = make_data(config)
    model = get_model(model_name)(config, train_data._dataset).eval()  # eval: no dropout draws
    loss_func = grouped_loss(model.calculate_loss, config, group_cost=8)  # tiny batches: split them
    split_somewhere = False
    for batch in itertools.islice(train_data, 3):
        lengths = np.sort(batch[model.ITEM_SEQ_LEN].numpy())
        split_somewhere |= len(group_bounds(lengths, 3, 8)) > 2
        model.zero_grad()
        whole = model.calculate_loss(batch)
        whole.backward()
        expected = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        grouped = loss_func(batch)
        grouped.backward()
        torch.testing.assert_close(grouped, whole, rtol=0, atol=1e-5)
        for name, p in model.named_parameters():
            if name in expected:
                torch.testing.assert_close(p.grad, expected[name], rtol=0, atol=1e-5, msg=name)
    assert split_somewhere, "the tiny batches should be split into groups"


def test_grouped_loss_trims_each_group(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_groups": 4})
    _, train_data, _, _ = make_data(config)
    batch = next(iter(train_data))
    seen = []

    def recording(part):
        seen.append((len(part), part["item_id_list"].size(1), int(part["item_length"].max())))
        return part["item_length"].float().mean()

    loss = grouped_loss(recording, config, group_cost=0)(batch)
    assert len(seen) > 1
    assert sum(size for size, _, _ in seen) == len(batch)
    assert all(width == longest for _, width, longest in seen)
    assert [longest for _, _, longest in seen] == sorted(longest for _, _, longest in seen)
    torch.testing.assert_close(loss, batch["item_length"].float().mean())


def test_grouped_loss_weights_every_part_of_a_tuple(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_groups": 4})
    batch = next(iter(make_data(config)[1]))
    loss = grouped_loss(lambda part: (part["item_length"].float().mean(), torch.tensor(1.0)), config, group_cost=0)(batch)
    torch.testing.assert_close(loss, (batch["item_length"].float().mean(), torch.tensor(1.0)))


def _trainer(config):
    _, train_data, _, _ = make_data(config)
    return get_trainer(config)(config, get_model(config["model"])(config, train_data._dataset))


@pytest.mark.parametrize("value", [0, -2, 2.5, "four", True])
def test_length_groups_must_be_a_whole_number(tiny_config, value):
    config = make_config("SASRec", {**tiny_config, "length_groups": value})
    with pytest.raises(ValueError, match=r"length_groups must be a whole number >= 1 \(1: off\), got"):
        prepare_data(config)


def test_a_bad_value_is_named_before_anything_trains(tiny_config):
    from recbole_fame import quick_start

    with pytest.raises(ValueError, match=r"length_groups='four' \(config_dict\): must be an integer >= 1"):
        quick_start.run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "length_groups": "four"})
    assert not os.path.exists(tiny_config["checkpoint_dir"])


def test_length_groups_off_and_for_other_models(tiny_config, caplog):
    def loss(interaction):
        return None

    assert _trainer(make_config("SASRec", tiny_config, length_groups=1)).training_loss(loss) is loss
    assert _trainer(make_config("SASRec", tiny_config)).training_loss(loss) is not loss
    with caplog.at_level(logging.INFO):
        assert _trainer(make_config("Caser", tiny_config, length_groups=4)).training_loss(loss) is loss
    assert "length_groups is for FAME, SASRec, GRU4Rec, CORE; Caser trains on whole batches" in caplog.text


def test_configs_saved_before_the_key_existed_are_off(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20})
    config["length_groups"] = None  # what a checkpoint's pickled config from before returns
    _, _, valid_data, test_data = prepare_data(config)
    assert type(valid_data) is type(test_data) is FullSortEvalDataLoader

    def loss(interaction):
        return None

    assert _trainer(config).training_loss(loss) is loss


def test_length_groups_keep_recboles_training_batches(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_groups": 4})
    _, train, valid, test = prepare_data(config)
    assert isinstance(train, TrainDataLoader)  # RecBole's batches (CompactTrainDataLoader draws the same)
    assert type(valid).__name__ == type(test).__name__ == "LengthSortedEvalDataLoader"


def _scores_by_user(model, loader):
    scores = {}
    with torch.no_grad():
        for interaction, _, _, _ in loader:
            for uid, row in zip(interaction[model.USER_ID].tolist(), model.full_sort_predict(interaction)):
                scores[uid] = row
    return scores


@pytest.mark.parametrize("model_name", ["FAME", "SASRec", "GRU4Rec", "CORE"])
def test_length_sorted_evaluation_scores_every_user_the_same(tiny_config, model_name):
    config = make_config(model_name, {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20})
    _, train_data, _, test_data = make_data(config)
    _, _, _, sorted_test = prepare_data(config)
    assert type(sorted_test).__name__ == "LengthSortedEvalDataLoader"
    model = get_model(model_name)(config, train_data._dataset).eval()

    widths = [batch[0][model.ITEM_SEQ].size(1) for batch in sorted_test]
    assert min(widths) < 20, "trimming should shorten some batches"
    lengths = [int(batch[0][model.ITEM_SEQ_LEN].min()) for batch in sorted_test]
    assert lengths == sorted(lengths)
    plain, trimmed = _scores_by_user(model, test_data), _scores_by_user(model, sorted_test)
    assert plain.keys() == trimmed.keys()
    for uid in plain:
        torch.testing.assert_close(trimmed[uid], plain[uid], rtol=0, atol=1e-5)


def test_models_sized_by_max_length_and_ranks_keep_recboles_loaders(tiny_config):
    _, _, valid_data, test_data = prepare_data(make_config("Caser", tiny_config))
    assert type(valid_data) is type(test_data) is FullSortEvalDataLoader
    config = make_config("SASRec", tiny_config)
    _, _, valid_data, _ = make_data(config)
    config["single_spec"] = False  # what a rank's config says (no process group needed here)
    assert preparation._length_sorted(config, valid_data) is valid_data


def test_pipeline_with_length_groups(tiny_config, monkeypatch):
    from recbole_fame import quick_start
    from recbole_fame.trainer import trainer as trainer_module

    calls = []
    original = length_groups.grouped_loss

    def recording(loss_func, config):
        calls.append(config["model"])
        return original(loss_func, config)

    monkeypatch.setattr(trainer_module, "grouped_loss", recording)
    result = quick_start.run(model="FAME", dataset="tiny", config_dict={**tiny_config, "length_groups": 4})
    assert calls == ["SASRec"] * tiny_config["epochs"] + ["FAME"] * tiny_config["epochs"]
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert 0.0 <= result["pretrain_result"]["test_result"]["hit@10"] <= 1.0
