"""exclude_history: S3-Rec's full ranking, without the items a user had before the target."""

import os

import pytest
import torch
from recbole.utils import get_trainer

from helpers import make_config
from recbole_fame.data import prepare_data
from recbole_fame.data.length_groups import LengthSortedEvalDataLoader
from recbole_fame.model import get_model


def earlier_items_from_file(data_path, skip_last):
    """user token -> set of item tokens, each user's items in time order without the last ``skip_last``."""
    rows = {}
    with open(os.path.join(data_path, "tiny", "tiny.inter")) as f:
        next(f)
        for line in f:
            user, item, time = line.split("\t")
            rows.setdefault(user, []).append((float(time), item))
    return {user: {item for _, item in sorted(items)[:-skip_last]} for user, items in rows.items()}


def masked_sets(loader, dataset):
    """user token -> set of item tokens the loader leaves out of that user's ranking."""
    masked = {}
    for interaction, (rows, items), _, _ in loader:
        users = interaction[dataset.uid_field]
        for row, item in zip(rows.tolist(), items.tolist()):
            user = dataset.id2token(dataset.uid_field, int(users[row]))
            masked.setdefault(user, set()).add(dataset.id2token(dataset.iid_field, item))
    return masked


@pytest.mark.parametrize("length_groups", [1, 4])
def test_the_ranking_leaves_out_exactly_the_items_before_the_target(tiny_config, tiny_data, length_groups):
    config = make_config("FAME", tiny_config, exclude_history=True, length_groups=length_groups)
    dataset, _, valid_data, test_data = prepare_data(config)
    assert isinstance(valid_data, LengthSortedEvalDataLoader) == (length_groups > 1)
    # Validation: every item but the last two; test: every item but the last (the validation one included).
    assert masked_sets(valid_data, dataset) == earlier_items_from_file(tiny_data, 2)
    assert masked_sets(test_data, dataset) == earlier_items_from_file(tiny_data, 1)


def test_off_keeps_recboles_ranking_of_every_item(tiny_config):
    config = make_config("FAME", tiny_config)
    assert config["exclude_history"] is False
    _, _, valid_data, test_data = prepare_data(config)
    for loader in (valid_data, test_data):
        assert type(loader) is LengthSortedEvalDataLoader
        assert all(history_index is None for _, history_index, _, _ in loader)


def manual_test_metrics(model, test_data, dataset, earlier, k=10):
    """HR@k and NDCG@k of full_sort_predict with the earlier items' scores at -inf, by hand."""
    hits, gains, n = 0.0, 0.0, 0
    with torch.no_grad():
        for interaction, _, _, _ in test_data:
            scores = model.full_sort_predict(interaction).view(len(interaction), -1)
            scores[:, 0] = -torch.inf
            for row in range(len(interaction)):
                user = dataset.id2token(dataset.uid_field, int(interaction[dataset.uid_field][row]))
                for item in earlier[user]:
                    scores[row, dataset.token2id(dataset.iid_field, item)] = -torch.inf
            target = interaction[dataset.iid_field]
            rank = (scores > scores.gather(1, target.unsqueeze(1))).sum(1)
            hit = (rank < k).float()
            hits += hit.sum().item()
            gains += (hit / torch.log2(rank.float() + 2)).sum().item()
            n += len(interaction)
    return hits / n, gains / n


def test_test_metrics_are_those_of_the_ranking_without_earlier_items(tiny_config, tiny_data):
    config = make_config("FAME", tiny_config, exclude_history=True, metric_decimal_place=6)
    dataset, train_data, _, test_data = prepare_data(config)
    model = get_model("FAME")(config, train_data._dataset)
    model.eval()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    result = trainer.evaluate(test_data, load_best_model=False)
    earlier = earlier_items_from_file(tiny_data, 1)
    hit, ndcg = manual_test_metrics(model, test_data, dataset, earlier)
    assert result["hit@10"] == pytest.approx(hit, abs=1e-6)
    assert result["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)
    # The same model and the same hand computation with nothing left out give RecBole's own ranking,
    # which differs here: the tiny users do have items twice, so some targets are earlier items.
    _, _, _, plain_test = prepare_data(make_config("FAME", tiny_config, metric_decimal_place=6))
    plain = trainer.evaluate(plain_test, load_best_model=False)
    nothing = {user: set() for user in earlier}
    assert (plain["hit@10"], plain["ndcg@10"]) == pytest.approx(
        manual_test_metrics(model, plain_test, dataset, nothing), abs=1e-6)
    assert plain["ndcg@10"] != result["ndcg@10"]


@pytest.mark.parametrize("eval_args, message", [
    ({"split": {"LS": "valid_and_test"}, "mode": "uni10"}, r"is for full-sort evaluation .* NegSampleEvalDataLoader"),
    ({"split": {"LS": "valid_and_test"}, "mode": {"valid": "full", "test": "uni10"}},
     r"is for full-sort evaluation .* NegSampleEvalDataLoader"),
    ({"split": {"RS": [0.8, 0.1, 0.1]}, "mode": "full"}, r"needs the leave-one-out split \(eval_args split: LS\)"),
])
def test_it_needs_leave_one_out_and_full_ranking(tiny_config, eval_args, message):
    config = make_config("FAME", tiny_config, exclude_history=True,
                         eval_args={"order": "TO", "group_by": "user", **eval_args})
    with pytest.raises(ValueError, match=message):
        prepare_data(config)


def test_protocol_benchmark_gives_a_runs_test_result_under_its_ranking(tiny_config):
    from helpers import load_script
    from recbole_fame.quick_start import run

    result = run(model="FAME", dataset="tiny",
                 config_dict={**tiny_config, "pretrain": False, "exclude_history": True})
    protocol = load_script(os.path.join("benchmarks", "protocol.py"))
    both = protocol.evaluate_both(result["model_file"])
    assert both["exclude_history"]["test"] == {key: result["test_result"][key] for key in protocol.METRICS}
    assert both["all items"]["test"] != both["exclude_history"]["test"]
