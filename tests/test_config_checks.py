"""Settings checked before anything runs: one line naming the key, its value, where it was set and
what is allowed; unknown keys warned about with the closest known key; model names; config files."""

import os
import subprocess
import sys

import pytest

from recbole_fame.config import PROPERTIES_DIR, Config
from recbole_fame.config_checks import SCRIPT_OPTIONS, ConfigError, check_values, unknown_key_warnings
from recbole_fame.quick_start import run

from helpers import REPO, load_script


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": -1}, "hidden_size=-1 (config_dict): must be an integer >= 1"),
        ({"MAX_ITEM_LIST_LENGTH": 0}, "MAX_ITEM_LIST_LENGTH=0 (config_dict): must be an integer >= 1"),
        ({"loss_type": "XYZ"}, "loss_type='XYZ' (config_dict): must be one of 'CE', 'BPR'"),
        ({"n_heads": "abc"}, "n_heads='abc' (config_dict): must be an integer >= 1"),
        ({"epochs": "abc"}, "epochs='abc' (config_dict): must be an integer >= 0"),
        ({"epochs": -1}, "epochs=-1 (config_dict): must be an integer >= 0"),
        ({"learning_rate": 0}, "learning_rate=0 (config_dict): must be a finite number > 0"),
        ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob=1.0 (config_dict): must be a finite number >= 0 and < 1"),
        ({"learner": "adamx"}, "learner='adamx' (config_dict): must be one of 'adam', 'adamw', 'sgd'"),
        ({"train_batch_size": 2.5}, "train_batch_size=2.5 (config_dict): must be an integer >= 1"),
        ({"exclude_history": "yes"}, "exclude_history='yes' (config_dict): must be True or False"),
        ({"hidden_size": 10, "n_heads": 4}, "hidden_size=10 (config_dict) is not a multiple of n_heads=4 (config_dict)"),
        ({"valid_metric": "NDCG@50"}, "valid_metric='NDCG@50' (config_dict) is not evaluated: metrics are"),
        # FAME's own keys, with the common ones (model.config_checks)
        ({"n_experts": 0}, "n_experts=0 (config_dict): must be an integer >= 1"),
        ({"final_residual": "both"}, "final_residual='both' (config_dict): must be one of 'projection'"),
        ({"pretrain": "no"}, "pretrain='no' (config_dict): must be True or False"),
        ({"finetune_learning_rate": -1}, "finetune_learning_rate=-1 (config_dict): must be a finite number > 0 or None"),
    ],
)
def test_bad_values_are_named(tiny_config, overrides, message):
    config = Config(model="FAME", dataset="tiny", config_dict={**tiny_config, **overrides})
    with pytest.raises(ConfigError) as excinfo:
        check_values(config)
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_recboles_own_checks_are_config_errors(tiny_config):
    with pytest.raises(ConfigError, match=r"There is no metric named 'NDCGG' \(metrics=\['Hit', 'NDCGG'\]"):
        Config(model="FAME", dataset="tiny", config_dict={**tiny_config, "metrics": ["Hit", "NDCGG"]})
    with pytest.raises(ConfigError, match="topk"):
        Config(model="FAME", dataset="tiny", config_dict={**tiny_config, "topk": "ten"})


def test_the_defaults_of_the_compared_models_pass(tiny_config):
    for model in ("FAME", "SASRec", "GRU4Rec", "CORE", "BERT4Rec", "BPR"):
        check_values(Config(model=model, dataset="tiny", config_dict=tiny_config))


def test_valid_recbole_settings_pass(tiny_config):
    for model, settings in [
        ("GRU4Rec", {"n_heads": 3}),  # GRU4Rec has no heads: hidden_size 16 need not divide
        ("SASRec", {"learner": "adamw", "eval_step": 0, "stopping_step": 0, "topk": 10, "metrics": "NDCG",
                    "valid_metric": "ndcg@10"}),
        ("LightGCN", {"n_layers": 0}),
    ]:
        check_values(Config(model=model, dataset="tiny", config_dict={**tiny_config, **settings}))
    with pytest.raises(ConfigError, match=r"hidden_size=16 \(config_dict\) is not a multiple of n_heads=3"):
        check_values(Config(model="SASRec", dataset="tiny", config_dict={**tiny_config, "n_heads": 3}))
    with pytest.raises(ConfigError, match=r"n_layers=0 \(config_dict\): must be an integer >= 1"):
        check_values(Config(model="FAME", dataset="tiny", config_dict={**tiny_config, "n_layers": 0}))


def test_fame_keys_are_refused_before_stage_one_trains(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="n_experts=0"):
        run(model="FAME", dataset="tiny", config_dict={**tiny_config, "n_experts": 0})
    assert not os.path.exists(tiny_config["checkpoint_dir"])  # no stage-1 SASRec was saved


def test_the_source_of_a_value_is_named(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--n_heads=abc"])
    with pytest.raises(ConfigError, match=r"n_heads='abc' \(command line\)"):
        check_values(Config(model="FAME", dataset="tiny", config_dict=tiny_config))
    monkeypatch.setattr(sys, "argv", ["pytest"])
    settings, other = tmp_path / "mine.yaml", tmp_path / "other.yaml"
    settings.write_text("attn_dropout_prob: 2\n")
    other.write_text("n_experts: 2\n")
    with pytest.raises(ConfigError, match=rf"attn_dropout_prob=2 \(config file {settings}\)"):
        check_values(Config(model="FAME", dataset="tiny", config_file_list=[str(settings), str(other)],
                            config_dict=tiny_config))


def test_unknown_keys_are_warned_with_the_closest_known_key(tiny_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--n_expertz=4", "--nproc=1"])
    config = Config(model="FAME", dataset="tiny", config_dict={**tiny_config, "lerning_rate": 0.1, "zzz_qqq": 1})
    warnings = unknown_key_warnings(config, [PROPERTIES_DIR])
    assert warnings == [
        "config key 'lerning_rate' (config_dict) is not read by RecBole or recbole-fame and is ignored; "
        "did you mean 'learning_rate'?",
        "config key 'zzz_qqq' (config_dict) is not read by RecBole or recbole-fame and is ignored",
        "config key 'n_expertz' (command line) is not read by RecBole or recbole-fame and is ignored; "
        "did you mean 'n_experts'?",
    ]


def test_unknown_keys_are_logged_by_the_run(tiny_config, caplog):
    run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1, "n_expertz": 4})
    assert "config key 'n_expertz' (config_dict) is not read" in caplog.text


def test_every_script_option_counts_as_known():
    """RecBole's Config reads the scripts' own --key=value options as config keys too."""
    for script in ("run_fame.py", "run_compare.py", "run_hyper.py"):
        parser = load_script(script).build_parser()
        options = {o[2:] for action in parser._actions for o in action.option_strings if o.startswith("--")}
        assert options - {"help"} <= SCRIPT_OPTIONS, script


@pytest.mark.parametrize(
    "model, message",
    [
        ("NoSuchModel", "model 'NoSuchModel' is neither recbole-fame's (FAME, MIRACLE) nor a RecBole model"),
        ("sasrec", "model 'sasrec' is neither recbole-fame's (FAME, MIRACLE) nor a RecBole model: did you mean SASRec?"),
        ("GRU4Recc", "did you mean GRU4Rec"),
    ],
)
def test_unknown_model_names_are_named(tiny_config, model, message):
    with pytest.raises(ConfigError) as excinfo:
        Config(model=model, dataset="tiny", config_dict=tiny_config)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a: [1,\nb: 2\n", "line 3, column 1: not valid yaml"),
        (b"epochs: 3\n\tn_heads: 2\n", "not valid yaml"),
        (b"- 1\n- 2\n", "expected 'key: value' lines, got a list"),
        (b"epochs: \xe9\n", "is not UTF-8 text (byte 8)"),
    ],
)
def test_config_file_errors_name_the_file(tiny_config, tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as excinfo:
        Config(model="FAME", dataset="tiny", config_file_list=[str(path)], config_dict=tiny_config)
    assert f"config file {path}" in str(excinfo.value) and message in str(excinfo.value)


def test_an_empty_config_file_sets_nothing(tiny_config, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    config = Config(model="FAME", dataset="tiny", config_file_list=[str(path)], config_dict=tiny_config)
    assert config["n_experts"] == 3


def test_a_key_given_twice_on_the_command_line(tiny_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--epochs=3", "--epochs=5"])
    with pytest.raises(ConfigError, match="--epochs is given twice, as --epochs=3 and --epochs=5: give it once"):
        Config(model="FAME", dataset="tiny", config_dict=tiny_config)
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--epochs=3", "--epochs=3"])
    assert Config(model="FAME", dataset="tiny", config_dict=tiny_config)["epochs"] == 3


def test_a_data_path_given_for_ml_100k_is_used(tmp_path):
    """RecBole reads its bundled ml-100k whatever data_path says."""
    assert Config(model="FAME", dataset="ml-100k")["data_path"].endswith(os.path.join("dataset_example", "ml-100k"))
    config = Config(model="FAME", dataset="ml-100k", config_dict={"data_path": str(tmp_path)})
    assert config["data_path"] == os.path.join(str(tmp_path), "ml-100k")
    with pytest.raises(FileNotFoundError, match=f"no interaction file at {tmp_path / 'ml-100k' / 'ml-100k.inter'}"):
        run(model="FAME", dataset="ml-100k", config_dict={"data_path": str(tmp_path)})


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchModel"], "error: model 'NoSuchModel' is neither recbole-fame's"),
        (["--n_heads=abc"], "error: n_heads='abc' (command line): must be an integer >= 1"),
        (["--epochs=-1"], "error: epochs=-1 (command line): must be an integer >= 0"),
        (["--epochs=1", "--epochs=2"], "error: --epochs is given twice"),
    ],
)
def test_run_fame_ends_with_one_line_and_no_traceback(tmp_path, args, message):
    done = subprocess.run([sys.executable, os.path.join(REPO, "run_fame.py"), *args],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(message)
    assert not (tmp_path / "saved").exists()


def test_speed_keys_left_unset_follow_the_device(tiny_config, caplog):
    import logging

    import torch

    from recbole_fame.config import resolve_device_defaults

    settings = {"device": torch.device("cuda:0"), "fast_layers": None, "length_groups": None}
    assert resolve_device_defaults(settings) == {"fast_layers": False, "length_groups": 1}
    assert settings["fast_layers"] is False and settings["length_groups"] == 1
    forced = {"device": torch.device("cuda"), "fast_layers": True, "length_groups": 4}
    assert resolve_device_defaults(forced) == {} and forced["length_groups"] == 4  # a user's value stays
    on_cpu = Config(model="SASRec", dataset="tiny", config_dict=tiny_config)
    assert (on_cpu["fast_layers"], on_cpu["length_groups"]) == (True, 4)
    assert on_cpu.device_choices == {"fast_layers": True, "length_groups": 4}
    assert Config(model="SASRec", dataset="tiny", config_dict={**tiny_config, "length_groups": 1})["length_groups"] == 1
    caplog.set_level(logging.INFO)
    run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1, "state": "INFO"})
    assert "fast_layers=True, length_groups=4: the defaults for cpu (set a key to force it)" in caplog.text
