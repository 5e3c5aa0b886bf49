"""Reloading a trained model (load_data_and_model) and recommending for raw-id histories."""

import os

import pytest
import torch
from recbole.data.dataset import Dataset
from recbole.utils import get_trainer

import recbole_fame
from recbole_fame import load_data_and_model, recommend
from recbole_fame.checkpoint import CheckpointError, load_checkpoint
from recbole_fame.checkpoint import use_available_device
from recbole_fame.quick_start import run
from recbole_fame.model.fast_layers import FastDropout

from helpers import make_config


@pytest.mark.parametrize("model", ["FAME", "SASRec", "GRU4Rec"])
def test_load_data_and_model_gives_back_the_tested_model(tiny_config, model):
    result = run(model=model, dataset="tiny", config_dict=tiny_config)
    if model == "FAME":
        # A finished FAME reloads without the SASRec file it was built from.
        os.remove(result["pretrain_result"]["model_file"])

    config, loaded, dataset, train_data, valid_data, test_data = load_data_and_model(result["model_file"])

    assert type(loaded).__name__ == model and not loaded.training
    # Built as it was trained: with fast_layers (the protocol's default), as train_and_test builds it.
    assert config["fast_layers"] is True and any(type(m) is FastDropout for m in loaded.modules())
    assert config["model"] == model and config["pretrained_path"] is None
    assert isinstance(dataset, Dataset) and dataset.item_num == loaded.n_items == 31
    saved_state = load_checkpoint(result["model_file"])["state_dict"]
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, saved_state[key]), key
    # Same data split, same weights: RecBole's evaluator gives the run's test result exactly.
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, loaded)
    assert trainer.evaluate(test_data, load_best_model=False) == result["test_result"]
    assert trainer.evaluate(valid_data, load_best_model=False) == result["best_valid_result"]
    assert len(train_data._dataset) > len(test_data._dataset) == 40


def test_a_new_process_reloads_and_evaluates_a_model(tiny_config, tmp_path):
    """Only this process built a Config (which puts NumPy's removed aliases back for RecBole): a
    process that only reloads a checkpoint and evaluates it must work too."""
    import json
    import subprocess
    import sys

    result = run(model="SASRec", dataset="tiny", config_dict=tiny_config)
    script = (
        "import json, sys\n"
        "from recbole.utils import get_trainer\n"
        "from recbole_fame import load_data_and_model\n"
        "config, model, _, _, _, test_data = load_data_and_model(sys.argv[1])\n"
        "trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)\n"
        "print(json.dumps(dict(trainer.evaluate(test_data, load_best_model=False))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, result["model_file"]], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == dict(result["test_result"])


def test_load_data_and_model_without_fast_layers_keeps_recboles_layers(tiny_config):
    result = run(model="GRU4Rec", dataset="tiny", config_dict={**tiny_config, "fast_layers": False, "epochs": 1})
    _, loaded, *_ = load_data_and_model(result["model_file"])
    dropouts = [type(m) for m in loaded.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {torch.nn.Dropout}


def test_a_gpu_checkpoints_config_gets_the_cpu_and_nothing_else(tiny_config, monkeypatch):
    config = make_config("SASRec", tiny_config)
    config["device"] = torch.device("cuda")  # as saved on a GPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = dict(config.final_config_dict)
    use_available_device(config)
    after = config.final_config_dict
    assert [k for k in set(before) | set(after) if before.get(k) != after.get(k)] == ["device"]
    assert config["device"] == torch.device("cpu")


def test_load_data_and_model_names_bad_files(tiny_config, tmp_path):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=f"Checkpoint file not found: {missing}"):
        load_data_and_model(missing)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"Cannot read checkpoint {garbage}"):
        load_data_and_model(str(garbage))

    no_config = str(tmp_path / "no_config.pth")
    torch.save({"state_dict": {}}, no_config)
    with pytest.raises(CheckpointError, match=f"{no_config} holds no RecBole config"):
        load_data_and_model(no_config)

    # A checkpoint whose weights do not fit the model its config describes.
    result = run(model="FAME", dataset="tiny", config_dict={**tiny_config, "pretrain": False, "epochs": 1})
    checkpoint = load_checkpoint(result["model_file"])
    checkpoint["config"]["n_experts"] = 5
    mismatched = str(tmp_path / "mismatched.pth")
    torch.save(checkpoint, mismatched)
    with pytest.raises(CheckpointError, match=f"(?s){mismatched} does not fit this FAME: .*size mismatch for .*router"):
        load_data_and_model(mismatched)


def test_checkpoints_of_the_last_release_load_or_name_the_removed_option(tiny_config, tmp_path):
    """0.1.0 checkpoints hold the options 0.2.0 removed: at their kept value they load as before;
    a model built with another value is refused, naming the file and the key."""
    result = run(model="FAME", dataset="tiny", config_dict={**tiny_config, "pretrain": False, "epochs": 1})
    checkpoint = load_checkpoint(result["model_file"])
    old = str(tmp_path / "old.pth")
    for key, value in (("head_mixing", "scores"), ("positions_from", "start"), ("scoring", "dot"),
                       ("scoring_temperature", 0.07), ("facet_projection_init", "selector"),
                       ("length_bucketing", True), ("bucket_pool_batches", 50)):
        checkpoint["config"][key] = value
    torch.save(checkpoint, old)
    _, model, _, _, _, test_data = load_data_and_model(old)
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][key]), key

    checkpoint["config"]["head_mixing"] = "probabilities"
    torch.save(checkpoint, old)
    with pytest.raises(CheckpointError, match=rf"checkpoint {old}: head_mixing='probabilities' is an option "
                                              r"recbole-fame removed in 0\.2\.0"):
        load_data_and_model(old)


@pytest.fixture
def trained(tiny_config):
    """A FAME trained one epoch, reloaded as a user would."""
    result = run(model="FAME", dataset="tiny", config_dict={**tiny_config, "pretrain": False, "epochs": 1})
    config, model, dataset, _, _, test_data = load_data_and_model(result["model_file"])
    return model, dataset, test_data


def _test_histories(dataset, test_data):
    """The test split's histories as raw ids, and the split's own batch of them."""
    feat = test_data._dataset.inter_feat
    histories = [
        dataset.id2token(dataset.iid_field, row[:length]).tolist()
        for row, length in zip(feat["item_id_list"], feat["item_length"])
    ]
    return histories, feat


@pytest.mark.parametrize("model_name", ["FAME", "GRU4Rec"])
def test_recommend_ranks_as_the_model_scores_the_test_split(tiny_config, model_name):
    result = run(model=model_name, dataset="tiny", config_dict={**tiny_config, "pretrain": False, "epochs": 1})
    _, model, dataset, _, _, test_data = load_data_and_model(result["model_file"])
    histories, feat = _test_histories(dataset, test_data)

    top = recommend(model, dataset, histories, k=5)

    with torch.no_grad():
        scores = model.full_sort_predict(feat)  # RecBole's own padded sequences
    scores[:, 0] = -torch.inf
    expected = [dataset.id2token("item_id", row).tolist() for row in scores.topk(5).indices]
    assert top == expected
    assert all(len(items) == 5 and len(set(items)) == 5 for items in top)


def test_recommend_whole_catalogue_never_the_padding_item(trained):
    model, dataset, _ = trained
    catalogue = sorted(dataset.field2token_id["item_id"])
    catalogue.remove("[PAD]")
    (ranking,) = recommend(model, dataset, [["i3", "i4", "i5"]], k=30)
    assert sorted(ranking) == catalogue


def test_recommend_excludes_seen_items(trained):
    model, dataset, _ = trained
    history = ["i3", "i4", "i5", "i4"]
    all_items = recommend(model, dataset, [history], k=30)[0]
    unseen = recommend(model, dataset, [history], k=27, exclude_seen=True)[0]
    assert unseen == [item for item in all_items if item not in history]
    with pytest.raises(ValueError, match="k=28 but history 0 leaves only 27 unseen items"):
        recommend(model, dataset, [history], k=28, exclude_seen=True)


def test_recommend_keeps_the_most_recent_items_of_a_long_history(trained):
    model, dataset, _ = trained
    long_history = [f"i{i}" for i in range(1, 26)]  # 25 items, MAX_ITEM_LIST_LENGTH is 10
    assert recommend(model, dataset, [long_history], k=10) == recommend(
        model, dataset, [long_history[-10:]], k=10
    )
    assert recommend(model, dataset, [long_history], k=10) != recommend(
        model, dataset, [long_history[:10]], k=10
    )


def test_recommend_is_batch_independent_and_restores_training_mode(trained, monkeypatch):
    model, dataset, _ = trained
    histories = [["i1", "i2"], ["i7"], ["i9", "i8", "i7", "i6"]]
    one_by_one = [recommend(model, dataset, [h], k=4)[0] for h in histories]
    monkeypatch.setattr(recbole_fame.inference, "RECOMMEND_BATCH_SIZE", 2)
    model.train()
    assert recommend(model, dataset, histories, k=4) == one_by_one
    assert model.training


@pytest.mark.parametrize(
    "histories, k, error, message",
    [
        ([["i1", "nope", "i2"], ["zz"]], 3, ValueError, "history 0 has item ids unknown to dataset 'tiny': \\['nope'\\]"),
        ([["i1"], ["[PAD]"]], 3, ValueError, "history 1 has item ids unknown to dataset 'tiny': \\['\\[PAD\\]'\\]"),
        ([["i1"], []], 3, ValueError, "history 1 is empty"),
        ([["i1"]], 31, ValueError, "k=31 is larger than the catalogue: the dataset has 30 items"),
        ([["i1"]], 0, ValueError, "k must be an integer >= 1, got 0"),
        (["i1", "i2"], 3, TypeError, "history 0 is 'i1', not a list of item ids"),
        ("i1", 3, TypeError, "histories must be a list of histories"),
    ],
)
def test_recommend_rejects_bad_input_by_name(trained, histories, k, error, message):
    model, dataset, _ = trained
    with pytest.raises(error, match=message):
        recommend(model, dataset, histories, k=k)
