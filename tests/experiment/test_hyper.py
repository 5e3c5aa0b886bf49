"""Hyper-parameter search with RecBole's HyperTuning over FAME's two stages, on the tiny dataset."""

import csv
import importlib.util
import json
import os
import sys

import pytest

from recbole_fame import Config, quick_start
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.experiment.hyper import hyper_search, read_params_file, stage_two_keys
from helpers import REPO

METRICS = [f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)]


@pytest.fixture
def trainings(monkeypatch):
    """The model of every training the pipeline runs, in order."""
    trained = []
    original = quick_start.train_and_test

    def counting(config, *args, **kwargs):
        trained.append(config["model"])
        return original(config, *args, **kwargs)

    monkeypatch.setattr(quick_start, "train_and_test", counting)
    return trained


def write_params(tmp_path, text):
    path = tmp_path / "grid.hyper"
    path.write_text(text)
    return str(path)


def test_two_by_two_grid_trains_sasrec_once_per_n_heads(tiny_config, tmp_path, trainings):
    params = write_params(tmp_path, "# H x N\nn_heads choice [1,2]\nn_experts choice [2, 3]\n")
    found = hyper_search(
        "FAME", "tiny", params, config_dict={**tiny_config, "epochs": 1}, output_dir=str(tmp_path / "out")
    )

    rows = found["rows"]
    points = sorted((r["params"]["n_heads"], r["params"]["n_experts"]) for r in rows)
    assert points == [(1, 2), (1, 3), (2, 2), (2, 3)]
    # Stage 1 ran once per n_heads (a backbone key); n_experts reused it.
    assert sorted(trainings) == ["FAME"] * 4 + ["SASRec"] * 2
    assert sorted(r["stage_one"] for r in rows) == ["reused", "reused", "trained", "trained"]
    for heads in (1, 2):
        files = {r["stage_one_file"] for r in rows if r["params"]["n_heads"] == heads}
        (stage_one_file,) = files
        assert load_checkpoint(stage_one_file)["config"]["n_heads"] == heads
    fame_files = [r["model_file"] for r in rows]
    assert len(set(fame_files)) == 4 and all(os.path.isfile(f) for f in fame_files)
    for row in rows:
        assert load_checkpoint(row["model_file"])["config"]["pretrained_path"] == row["stage_one_file"]
        assert sorted(row["test_result"]) == sorted(METRICS)
        assert all(0.0 <= v <= 1.0 for v in [*row["test_result"].values(), row["best_valid_score"]])
    best = max(rows, key=lambda r: (r["best_valid_score"], -r["trial"]))
    assert found["best"] is best

    # The tables a person opens: 4 rows each, the best one marked.
    with open(found["files"]["md"]) as f:
        md = f.read()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| n_heads | n_experts | stage 1 | SASRec valid ndcg@10 | valid ndcg@10 | test hit@5")
    assert len(table) == 5
    (bold,) = [line for line in table if "**" in line]
    assert bold.startswith(f"| **{best['params']['n_heads']}** | **{best['params']['n_experts']}** |")
    assert f"- best: --n_heads={best['params']['n_heads']} --n_experts={best['params']['n_experts']}" in md
    assert "- stage 1 (SASRec): trained 2 times, reused 2 times" in md
    with open(found["files"]["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [(r["n_heads"], r["n_experts"]) for r in table] == [("1", "2"), ("1", "3"), ("2", "2"), ("2", "3")]
    for r in table:
        assert all(0.0 <= float(r[f"test {m}"]) <= 1.0 for m in METRICS)
    assert [r["best"] for r in table].count("True") == 1
    with open(found["files"]["json"]) as f:
        assert json.load(f)["best"]["params"] == best["params"]


def test_points_that_change_stage_one_retrain_it(tiny_config, tmp_path, trainings):
    """learning_rate is no backbone key, but run() trains SASRec with it: one SASRec per value."""
    params = write_params(tmp_path, "learning_rate choice [0.01,0.001]\nn_experts choice [2]\n")
    found = hyper_search("FAME", "tiny", params, config_dict={**tiny_config, "epochs": 1})
    assert sorted(trainings) == ["FAME", "FAME", "SASRec", "SASRec"]
    assert [r["stage_one"] for r in found["rows"]] == ["trained", "trained"]
    # Default output folder: under checkpoint_dir.
    assert os.path.dirname(os.path.dirname(found["files"]["md"])) == tiny_config["checkpoint_dir"]


def test_grid_of_a_one_stage_model_has_no_stage_one_columns(tiny_config, tmp_path, trainings):
    params = write_params(tmp_path, "learning_rate choice [0.01]\n")
    found = hyper_search("SASRec", "tiny", params, config_dict={**tiny_config, "epochs": 1})
    assert trainings == ["SASRec"] and found["rows"][0]["stage_one"] == "none"
    with open(found["files"]["md"]) as f:
        md = f.read()
    assert "# Hyper-parameter search: SASRec on tiny" in md and "stage 1" not in md
    assert "| learning_rate | valid ndcg@10 | test hit@5 |" in md


def test_shipped_params_files_hold_the_papers_grids(tiny_config):
    config = Config(model="FAME", dataset="tiny", config_dict=tiny_config)
    grids = {}
    for name in ("fame", "fame-heads", "fame-experts"):
        space, names = read_params_file(os.path.join(REPO, "properties", "hyper", f"{name}.hyper"), config)
        assert list(space) == ["choice"]
        grids[name] = {n: space["choice"][n] for n in names}
    heads, experts = [1, 2, 4, 8, 16], [2, 4, 8, 16, 32]
    assert grids == {
        "fame": {"n_heads": heads, "n_experts": experts},
        "fame-heads": {"n_heads": heads, "n_experts": [1]},
        "fame-experts": {"n_experts": experts},
    }
    assert stage_two_keys() == {
        "n_experts", "final_residual", "expert_init", "pretrain", "pretrained_path", "finetune_learning_rate",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("n_heads [1,2]\n", ":1: expected 'name type values', got 'n_heads [1,2]'"),
        ("n_heads pick [1,2]\n", ":1: unknown type 'pick' for 'n_heads'; use one of"),
        ("\nn_expert choice [1,2]\n", ":2: 'n_expert' is not a config key of FAME"),
        ("n_heads choice [1,2\n", ":1: cannot read the values of 'n_heads': [1,2"),
        ("n_heads choice []\n", ":1: 'choice' needs a non-empty list, like [1,2,4], got []"),
        ("learning_rate uniform 0.1\n", ":1: 'uniform' needs 2 numbers separated by commas, got 0.1"),
        ("n_heads choice [1]\nn_heads choice [2]\n", ":2: 'n_heads' is already searched on line 1"),
        ("# nothing\n", " names no hyper-parameter to search"),
    ],
)
def test_bad_params_files_are_named_with_the_line(tiny_config, tmp_path, text, message):
    path = write_params(tmp_path, text)
    config = Config(model="FAME", dataset="tiny", config_dict=tiny_config)
    with pytest.raises(ValueError) as excinfo:
        read_params_file(path, config)
    assert str(excinfo.value).startswith(path) and message in str(excinfo.value)


@pytest.fixture
def constant_scores(monkeypatch):
    """quick_start.run replaced by a result with the same validation score at every point."""
    points = []

    def run(model, dataset, config_file_list, point):
        points.append(point)
        return {"model": model, "best_valid_score": 0.5, "valid_score_bigger": True,
                "best_valid_result": {"ndcg@10": 0.5}, "test_result": {"ndcg@10": 0.4},
                "model_file": f"{model}-{len(points)}.pth", "pretrain_result": None}

    monkeypatch.setattr(quick_start, "run", run)
    return points


def test_random_search_stopped_early_says_so(tiny_config, tmp_path, constant_scores):
    params = write_params(tmp_path, "learning_rate uniform 0.0001,0.01\n")
    out = tmp_path / "out"
    found = hyper_search("SASRec", "tiny", params, config_dict=tiny_config, output_dir=str(out),
                         algo="random", max_evals=6, early_stop=2)
    # hyperopt's no_progress_loss counts the first point as one without progress.
    assert len(found["rows"]) == len(constant_scores) == 2 and found["stopped_early"]
    assert ("search: random, points run: 2 (max_evals 6, early_stop 2; stopped early, without a better "
            "validation score)") in (out / "grid.md").read_text()
    assert json.loads((out / "grid.json").read_text())["stopped_early"] is True

    found = hyper_search("SASRec", "tiny", params, config_dict=tiny_config, output_dir=str(out),
                         algo="random", max_evals=6, early_stop=0)
    assert len(found["rows"]) == 6 and not found["stopped_early"]
    assert "points run: 6 (max_evals 6, early_stop off)\n" in (out / "grid.md").read_text()
    with pytest.raises(ValueError, match="early_stop must be an integer >= 0 \\(0: never\\), got -1"):
        hyper_search("SASRec", "tiny", params, config_dict=tiny_config, algo="random", early_stop=-1)


def _run_hyper_main(monkeypatch, *args):
    spec = importlib.util.spec_from_file_location("run_hyper", os.path.join(REPO, "run_hyper.py"))
    run_hyper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_hyper)
    monkeypatch.setattr(sys, "argv", ["run_hyper.py", *args])
    run_hyper.main()


def test_run_hyper_cli(tiny_config, tmp_path, monkeypatch, capsys, trainings):
    params = write_params(tmp_path, "n_experts choice [2,3]\n")
    settings = [f"--{k}={tiny_config[k]}" for k in ("data_path", "checkpoint_dir", "hidden_size", "inner_size")]
    out = tmp_path / "out"
    _run_hyper_main(
        monkeypatch, "--dataset=tiny", f"--params_file={params}", f"--output_dir={out}", "--epochs=1",
        "--MAX_ITEM_LIST_LENGTH=10", "--show_progress=False", "--state=WARNING", *settings,
    )
    assert trainings == ["SASRec", "FAME", "FAME"]
    assert sorted(os.listdir(out)) == ["grid.csv", "grid.json", "grid.md"]
    printed = capsys.readouterr().out
    assert f"grid: {out / 'grid.md'}" in printed
    best = json.loads((out / "grid.json").read_text())["best"]
    assert f"best: --n_experts={best['params']['n_experts']}\n" in printed

    # A grid key also given on the command line would make every point the same.
    with pytest.raises(SystemExit) as excinfo:
        _run_hyper_main(
            monkeypatch, "--dataset=tiny", f"--params_file={params}", "--n_experts=4", *settings
        )
    assert "'n_experts' is also set on the command line (--n_experts=...)" in str(excinfo.value)
