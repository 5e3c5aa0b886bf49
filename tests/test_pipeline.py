"""End to end on a tiny atomic dataset written by the tests."""

import json
import os
import subprocess
import sys

import pytest
import torch
from recbole.config import Config as RecBoleConfig
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

from recbole_fame import FAME
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.quick_start import run

from helpers import first_batch, load_script, write_tiny_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = [f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)]


def assert_metrics(result):
    assert sorted(result) == sorted(METRICS)
    for name, value in result.items():
        assert 0.0 <= value <= 1.0, (name, value)
    assert result["hit@20"] >= result["hit@10"] >= result["hit@5"]


def test_two_stage_run_and_checkpoint_reload(tiny_config):
    result = run(model="FAME", dataset="tiny", config_dict=tiny_config)

    pretrain = result["pretrain_result"]
    assert pretrain["model"] == "SASRec" and os.path.isfile(pretrain["model_file"])
    assert_metrics(pretrain["test_result"])
    assert result["model"] == "FAME"
    assert_metrics(result["test_result"])
    assert_metrics(result["best_valid_result"])
    with open(os.path.splitext(result["model_file"])[0] + ".json") as f:
        written = json.load(f)
    assert written["test_result"] == dict(result["test_result"])
    assert written["pretrain_result"]["model"] == "SASRec" and written["seconds"] > 0

    # The saved FAME reloads into a fresh model that scores exactly as the trained one did.
    checkpoint = load_checkpoint(result["model_file"])
    config = checkpoint["config"]
    assert config["pretrained_path"] == pretrain["model_file"]
    dataset = create_dataset(config)
    _, _, test_data = data_preparation(config, dataset)
    trained = FAME(config, test_data._dataset)
    trained.load_state_dict(checkpoint["state_dict"])
    config["pretrained_path"] = None
    reloaded = FAME(config, test_data._dataset)
    reloaded.load_state_dict(checkpoint["state_dict"])
    batch = first_batch(test_data)
    with torch.no_grad():
        expected = trained.eval().full_sort_predict(batch)
        assert torch.equal(reloaded.eval().full_sort_predict(batch), expected)


def test_fame_from_a_named_checkpoint_skips_stage_one(tiny_config):
    sasrec = run(model="SASRec", dataset="tiny", config_dict=tiny_config)
    result = run(
        model="FAME",
        dataset="tiny",
        config_dict={**tiny_config, "pretrained_path": sasrec["model_file"], "epochs": 1},
    )
    assert result["pretrain_result"] is None
    assert_metrics(result["test_result"])


def test_fame_from_scratch(tiny_config):
    result = run(model="FAME", dataset="tiny", config_dict={**tiny_config, "pretrain": False})
    assert result["pretrain_result"] is None
    assert load_checkpoint(result["model_file"])["config"]["pretrained_path"] is None
    assert_metrics(result["test_result"])


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "CORE"])
def test_recbole_models_run_through_the_same_pipeline(tiny_config, model):
    result = run(model=model, dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    assert result["model"] == model
    assert_metrics(result["test_result"])


def test_plain_recbole_api_trains_fame_with_its_defaults(tiny_config):
    """Another RecBole project: no recbole_fame.Config, no yaml copied."""
    config = RecBoleConfig(
        model=FAME,
        dataset="tiny",
        config_dict={k: tiny_config[k] for k in ("data_path", "checkpoint_dir", "show_progress", "state")}
        | {
            "epochs": 1,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        },
    )
    assert config["n_experts"] == 4 and config["final_residual"] == "projection"
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = FAME(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data)
    result = trainer.evaluate(test_data)  # reloads the best checkpoint: torch >= 2.6 safe
    assert 0.0 <= result["ndcg@10"] <= 1.0


def test_missing_dataset_says_where_it_looked(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        run(model="FAME", dataset="ml-20m", config_dict={**tiny_config, "data_path": str(tmp_path)})
    message = str(excinfo.value)
    assert os.path.join(str(tmp_path), "ml-20m", "ml-20m.inter") in message
    assert "--data_path" in message
    assert "python dataset_atomic/convert.py {sequences,movielens,amazon} RAW_FILE --name=ml-20m" in message


def _run_fame(cwd, *args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "run_fame.py"), *args, "--show_progress=False"],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def _logs(folder):
    return "".join(p.read_text() for p in folder.iterdir())


def test_run_fame_cli_as_the_readme_writes_it(tmp_path):
    """`--dataset=ml-20m --config_files=fame.yaml` from a folder with dataset_atomic/ml-20m/."""
    missing = _run_fame(tmp_path, "--dataset=ml-20m", "--config_files=fame.yaml")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    expected_path = tmp_path / "dataset_atomic" / "ml-20m" / "ml-20m.inter"
    assert f"no interaction file at {expected_path}" in missing.stderr

    write_tiny_dataset(str(tmp_path / "dataset_atomic"), name="ml-20m")
    done = _run_fame(tmp_path, "--dataset=ml-20m", "--config_files=fame.yaml", "--epochs=1")
    assert done.returncode == 0, done.stderr[-2000:]
    log_text = _logs(tmp_path / "log" / "FAME")
    assert "n_experts = 32" in log_text and "user_inter_num_interval = [5,inf)" in log_text  # dataset/ml-20m.yaml, fame.yaml
    assert "Stage 2/2: FAME fine-tuned from" in log_text
    assert log_text.count("test result") == 2  # SASRec's (stage 1), then FAME's


def test_run_fame_cli_runs_recbole_models_with_overrides(tiny_data, tmp_path):
    done = _run_fame(
        tmp_path, "--model=SASRec", "--dataset=tiny", f"--data_path={tiny_data}", "--epochs=1",
        "--hidden_size=16",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log_text = _logs(tmp_path / "log" / "SASRec")
    assert "hidden_size = 16" in log_text and "test result" in log_text


def test_unknown_config_file_is_named(tiny_config):
    with pytest.raises(FileNotFoundError, match="Config file 'nope.yaml' not found"):
        run(model="FAME", dataset="tiny", config_file_list=["nope.yaml"], config_dict=tiny_config)


def test_recbole_models_import_leaves_anomaly_detection_off():
    # RecBole's sine.py switches it on for the whole process when its model package is imported.
    code = (
        "import torch, recbole_fame, recbole.utils;"
        "recbole.utils.get_model('SINE');"
        "print(torch.is_anomaly_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_dataset_settings_sit_between_the_protocol_and_the_user():
    from recbole_fame import Config

    sports = Config(model="FAME", dataset="sports")
    assert (sports["n_heads"], sports["n_experts"]) == (2, 16)  # properties/dataset/sports.yaml
    assert sports["topk"] == [5, 10, 20]  # the protocol still applies
    override = Config(model="FAME", dataset="sports", config_dict={"n_experts": 8})
    assert override["n_experts"] == 8
    ml20m = Config(model="SASRec", dataset="ml-20m", config_file_list=["fame.yaml"])
    assert ml20m["n_heads"] == 8 and ml20m["user_inter_num_interval"] == "[5,inf)"
    other = Config(model="FAME", dataset="ml-100k")
    assert (other["n_heads"], other["n_experts"]) == (2, 4)  # properties/model/FAME.yaml


def test_run_reports_epochs_best_epoch_and_parameters(tiny_config):
    from recbole.model.sequential_recommender import GRU4Rec
    from helpers import make_config, make_data

    result = run(model="GRU4Rec", dataset="tiny", config_dict={**tiny_config, "epochs": 3})
    assert result["epochs_run"] == 3
    # The best epoch is the one whose weights the trainer saved.
    assert result["best_epoch"] == load_checkpoint(result["model_file"])["epoch"]
    assert 0 <= result["best_epoch"] <= 2
    # Training epochs are part of the run's wall time; "seconds" is rounded to 0.1 s.
    assert 0 < result["seconds_per_epoch"] * 3 <= result["seconds"] + 0.05
    config = make_config("GRU4Rec", tiny_config)
    model = GRU4Rec(config, make_data(config)[1]._dataset)
    assert result["parameters"] == sum(p.numel() for p in model.parameters())


def test_run_fame_leaves_recboles_topk_to_the_config(tiny_config, monkeypatch):
    """run_fame.py's own options must not take RecBole's config keys (--topk=[5,10] was refused)."""
    from recbole_fame import Config

    run_fame = load_script("run_fame.py")
    topk = []
    monkeypatch.setattr(run_fame, "run", lambda model, dataset, **kwargs: topk.append(
        Config(model=model, dataset="tiny", config_dict=tiny_config)["topk"]))
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--model=SASRec", "--topk=[5,10]"])
    run_fame.main()
    assert topk == [[5, 10]]
