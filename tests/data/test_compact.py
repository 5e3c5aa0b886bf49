"""Compact sequence storage (recbole_fame/data/compact.py) against RecBole's augmented rows: the same
samples in the same order in every split, the same batches, the same metrics and training, with
memory that does not grow with MAX_ITEM_LIST_LENGTH."""

import logging
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset

from recbole_fame.config import Config
from recbole_fame.data import prepare_data
from recbole_fame.data.compact import CompactSequentialDataset, leave_one_out_index
from recbole_fame.data.preparation import uses_compact_sequences
from recbole_fame.quick_start import run

from helpers import write_tiny_dataset


def _config(base, model="SASRec", **overrides):
    return Config(model=model, dataset="tiny", config_dict={**base, **overrides})


def _assert_same_interaction(expected, actual):
    assert sorted(expected.interaction) == sorted(actual.interaction)
    for field in expected.interaction:
        assert expected[field].dtype == actual[field].dtype, field
        assert torch.equal(expected[field], actual[field]), field


@pytest.fixture
def ragged_data(tmp_path):
    """Users of 1, 2 and 3 interactions (the split's edge cases) and timestamps that tie."""
    folder = write_tiny_dataset(str(tmp_path / "ragged"))
    with open(f"{folder}/tiny/tiny.inter", "a") as f:
        f.write("u900\ti1\t5\nu901\ti2\t5\nu901\ti3\t5\nu902\ti1\t7\nu902\ti4\t7\nu902\ti5\t6\n")
    return folder


@pytest.mark.parametrize("max_length", [3, 50])
def test_every_split_holds_recboles_samples_in_recboles_order(tiny_config, ragged_data, max_length):
    config = _config(tiny_config, data_path=ragged_data, MAX_ITEM_LIST_LENGTH=max_length)
    stock, compact = create_dataset(config).build(), CompactSequentialDataset(config).build()
    assert [len(part) for part in compact] == [len(part) for part in stock]
    for stock_part, compact_part in zip(stock, compact):
        everything = torch.arange(len(stock_part))
        _assert_same_interaction(stock_part[everything], compact_part[everything])  # batches, joined
        # The samples read as RecBole's: whole columns, a slice, one row, a mask.
        for field in stock_part.inter_feat.columns:
            assert torch.equal(stock_part.inter_feat[field], compact_part.inter_feat[field]), field
        assert sorted(compact_part.inter_feat.columns) == sorted(stock_part.inter_feat.columns)
        _assert_same_interaction(stock_part.inter_feat[2:9], compact_part.inter_feat[2:9])
        _assert_same_interaction(stock_part.inter_feat[4], compact_part.inter_feat[4])
        mask = stock_part.inter_feat["item_length"] > 1
        _assert_same_interaction(stock_part.inter_feat[mask], compact_part.inter_feat[mask])
    assert (stock[0].inter_matrix(form="csr") != compact[0].inter_matrix(form="csr")).nnz == 0


@pytest.mark.parametrize("filters", [
    {"user_inter_num_interval": "[0,10]", "item_inter_num_interval": None},
    {"user_inter_num_interval": "(7,9];[11,inf)", "item_inter_num_interval": "[8,inf)"},  # rounds of k-core
    {"user_inter_num_interval": "[0,12]", "item_inter_num_interval": "[14,inf)"},
])
def test_loading_filtering_and_ids_are_recboles(tiny_config, tmp_path, filters):
    data = write_tiny_dataset(str(tmp_path / "larger"), n_users=120, n_items=60)
    config = _config(tiny_config, data_path=data, **filters)
    stock, compact = create_dataset(config), CompactSequentialDataset(config)
    for field in ("user_id", "item_id"):
        assert list(compact.field2id_token[field]) == list(stock.field2id_token[field])
        assert compact.field2token_id[field] == stock.field2token_id[field]
    stock_parts, compact_parts = stock.build(), compact.build()
    assert len(create_dataset(_config(tiny_config, data_path=data))) > len(stock)  # the filters removed some
    for stock_part, compact_part in zip(stock_parts, compact_parts):
        everything = torch.arange(len(stock_part))
        _assert_same_interaction(stock_part[everything], compact_part[everything])


def test_storage_does_not_grow_with_the_history_length(tiny_config):
    def stored_values(max_length):
        parts = CompactSequentialDataset(_config(tiny_config, MAX_ITEM_LIST_LENGTH=max_length)).build()
        flat = parts[0].inter_feat.flat_fields  # shared by the parts
        assert all(part.inter_feat.flat_fields is flat for part in parts)
        return sum(t.numel() for part in parts for t in part.inter_feat.interaction.values()) + sum(
            t.numel() for t in flat.values())

    assert stored_values(3) == stored_values(200)
    stock = create_dataset(_config(tiny_config, MAX_ITEM_LIST_LENGTH=200)).build()[0].inter_feat
    assert stock.interaction["item_id_list"].shape[1] == 200  # what the compact storage does not hold


@pytest.mark.parametrize("mode", ["valid_and_test", "valid_only", "test_only"])
def test_leave_one_out_modes(tiny_config, ragged_data, mode):
    config = _config(tiny_config, data_path=ragged_data)
    config["eval_args"]["split"] = {"LS": mode}
    stock, compact = create_dataset(config).build(), CompactSequentialDataset(config).build()
    for stock_part, compact_part in zip(stock, compact):
        assert torch.equal(stock_part.inter_feat["item_id"], compact_part.inter_feat["item_id"])
        assert torch.equal(stock_part.inter_feat["user_id"], compact_part.inter_feat["user_id"])


def test_leave_one_out_index_is_recboles_loop():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 30, size=400)
    for leave_one_num in (1, 2, 3):
        groups = {}
        for row, key in enumerate(keys):
            groups.setdefault(key, []).append(row)
        expected = [[] for _ in range(leave_one_num + 1)]
        for rows in groups.values():  # RecBole's _split_index_by_leave_one_out
            left_out = min(leave_one_num, len(rows) - 1)
            cut = len(rows) - left_out
            expected[0].extend(rows[:cut])
            for i in range(left_out):
                expected[-left_out + i].append(rows[cut + i])
        assert [list(part) for part in leave_one_out_index(keys, leave_one_num)] == expected


@pytest.mark.parametrize("exclude_history", [False, True])
def test_a_trained_model_scores_the_same_on_both_storages(tiny_config, exclude_history):
    unrounded = {**tiny_config, "metric_decimal_place": 17}  # RecBole rounds metrics (the protocol: to 4)
    result = run(model="SASRec", dataset="tiny", config_dict={**unrounded, "epochs": 1, "compact_sequences": False})
    checkpoint = torch.load(result["model_file"], weights_only=False)
    scores = {}
    for compact in (False, True):
        config = _config(unrounded, compact_sequences=compact, exclude_history=exclude_history)
        _, _, valid_data, test_data = prepare_data(config)
        from recbole.model.sequential_recommender import SASRec

        from recbole_fame.trainer import get_trainer

        model = SASRec(config, valid_data._dataset)
        model.load_state_dict(checkpoint["state_dict"])
        trainer = get_trainer(config)(config, model)
        scores[compact] = (trainer.evaluate(valid_data, load_best_model=False),
                           trainer.evaluate(test_data, load_best_model=False))
    assert scores[True] == scores[False]


@pytest.mark.parametrize("model", ["SASRec", "FAME"])
def test_training_on_either_storage_gives_the_same_run(tiny_config, model):
    settings = {**tiny_config, "epochs": 2, "pretrain": False, "metric_decimal_place": 17}  # unrounded
    stock = run(model=model, dataset="tiny", config_dict={**settings, "compact_sequences": False})
    compact = run(model=model, dataset="tiny", config_dict={**settings, "compact_sequences": True})
    for key in ("best_valid_score", "best_valid_result", "test_result", "best_epoch"):
        assert compact[key] == stock[key], key


def test_models_with_a_dataset_of_their_own_keep_recboles_rows(tiny_config, caplog):
    caplog.set_level(logging.INFO)
    assert uses_compact_sequences(_config(tiny_config))
    assert not uses_compact_sequences(_config(tiny_config, compact_sequences=False))
    assert not uses_compact_sequences(_config(tiny_config, model="BPR"))  # not sequential
    config = _config(tiny_config, model="DIEN", load_col={"inter": ["user_id", "item_id", "timestamp", "label"]})
    assert not uses_compact_sequences(config)
    assert "compact_sequences: DIEN keeps RecBole's augmented rows (RecBole's DIENDataset)" in caplog.text


def test_a_dataset_too_large_for_the_memory_stops_before_it_is_built(tiny_config, tiny_data, monkeypatch):
    from recbole_fame.data import memory_estimate
    from recbole_fame.data.memory_estimate import NotEnoughMemory

    with open(os.path.join(tiny_data, "tiny", "tiny.inter")) as f:
        interactions = len(f.readlines()) - 1
    stock_need = interactions * (10 * 24 + 100)
    monkeypatch.setattr(memory_estimate, "available_bytes", lambda: stock_need - 1)
    with pytest.raises(NotEnoughMemory, match=rf"tiny.inter: {interactions} interactions at MAX_ITEM_LIST_LENGTH=10 need about "
                                              r".* GiB to prepare \(RecBole's storage\), and this machine has .* GiB "
                                              r"available: set compact_sequences: True"):
        prepare_data(_config(tiny_config, compact_sequences=False))
    prepare_data(_config(tiny_config))  # the compact storage needs less
    monkeypatch.setattr(memory_estimate, "available_bytes", lambda: 1000)
    with pytest.raises(NotEnoughMemory, match="compact's storage"):
        run(model="SASRec", dataset="tiny", config_dict=tiny_config)
    assert not os.path.exists(tiny_config["checkpoint_dir"])
