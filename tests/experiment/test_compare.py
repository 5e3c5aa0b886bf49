"""run_compare.py on the tiny dataset: runs, resumption, stage-1 reuse, reports, errors, and which
checkpoints a comparison loads."""

import csv
import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
from recbole.config import Config as RecBoleConfig

from recbole_fame.experiment import compare as compare_module
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.experiment.compare import RunFailed, compare, plan, project_keys
from recbole_fame.experiment.report import write_reports

from helpers import REPO, build_fame

METRICS = ["HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings(tiny_config):
    """tiny_config as comparison overrides (the comparison puts checkpoints under --out)."""
    return {key: value for key, value in tiny_config.items() if key != "checkpoint_dir"}


def _runs(out):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "runs").glob("*.json")}


def _record(out, name):
    return json.loads((out / "runs" / f"{name}.json").read_text())


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_compare_resumes_and_fame_starts_from_the_sasrec_run(settings, tiny_config, tmp_path):
    out = tmp_path / "cmp"
    compare("tiny", models=["SASRec", "FAME"], seeds=[2020], out=str(out), overrides=settings)
    first = _runs(out)
    assert sorted(first) == ["FAME-seed2020.json", "SASRec-seed2020.json"]

    models = ["SASRec", "FAME", "FAME-N1"]
    data = compare("tiny", models=models, seeds=[2020], out=str(out), overrides=settings)
    after = _runs(out)
    assert sorted(after) == ["FAME-N1-seed2020.json", "FAME-seed2020.json", "SASRec-seed2020.json"]
    for name, (mtime, content) in first.items():  # not retrained, not rewritten
        assert after[name] == (mtime, content), name

    # Stage 1 is the SASRec run: one SASRec checkpoint in all, the one both FAME variants loaded
    # (records name checkpoints relative to the output folder).
    sasrec = _record(out, "SASRec-seed2020")
    assert [p.relative_to(out).as_posix() for p in out.glob("checkpoints/*/SASRec-*.pth")] == [sasrec["model_file"]]
    for name in ("FAME-seed2020", "FAME-N1-seed2020"):
        record = _record(out, name)
        assert record["pretrained_path"] == sasrec["model_file"]
        assert record["stage_one_seconds"] == sasrec["seconds"]
        assert record["epochs_run"] == 2
        assert record["best_epoch"] == load_checkpoint(out / record["model_file"])["epoch"]
        assert record["seconds_per_epoch"] > 0 and record["peak_rss_mib"] > 0
    # FAME-N1 is FAME with one expert per head (tiny_config has 3).
    assert _record(out, "FAME-seed2020")["parameters"] == _parameters(build_fame(tiny_config)[0])
    assert _record(out, "FAME-N1-seed2020")["parameters"] == _parameters(
        build_fame(tiny_config, n_experts=1)[0])

    # Markdown: the command, then one row per model with six metrics in [0, 1].
    table = (out / "table.md").read_text()
    assert table.startswith(
        "# FAME and baselines on tiny\n\nCommand: `python run_compare.py --dataset=tiny "
        "--seeds 2020 --models SASRec FAME FAME-N1 --out=cmp")
    rows = [line.strip("| ").split(" | ") for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    assert [row[0] for row in rows] == models
    for row in rows:
        record = _record(out, row[0] + "-seed2020")
        assert row[1] == "1" and all(0.0 <= float(cell) <= 1.0 for cell in row[2:8])
        assert float(row[8]) == record["best_valid_result"]["ndcg@10"]  # valid NDCG@10
        assert row[12] == f"{record['parameters']:,}"
    assert "## The paper's Table 2" not in table  # no paper rows for 'tiny'
    assert "\nPipeline: `fast_layers=True`, `length_groups=4`, `keep_freed_memory=True`, `compact_sequences=True`.\n" in table

    with open(out / "table.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["model"], r["seed"]) for r in csv_rows] == (
        [(m, "2020") for m in models] + [(m, "mean") for m in models] + [(m, "sd") for m in models])
    for r in csv_rows[:6]:
        assert all(0.0 <= float(r[m]) <= 1.0 for m in METRICS)
    for r in csv_rows[6:]:
        assert all(r[m] == "" for m in METRICS)  # one seed: no spread

    assert data == json.loads((out / "results.json").read_text())
    assert [entry["model"] for entry in data["summary"]] == models
    for run in data["runs"]:
        test_result = _record(out, f"{run['model']}-seed2020")["test_result"]
        assert [run[m] for m in METRICS] == list(test_result.values())

    png = (out / "chart.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "chart.png")).shape[2] in (3, 4)

    # Output settings may change on a rerun; other settings are refused, naming the file and the
    # key, and nothing is lost.
    compare("tiny", models=models, seeds=[2020], out=str(out),
            overrides={**settings, "show_progress": True, "state": "ERROR"})
    assert _runs(out) == after
    with pytest.raises(ValueError, match=r"SASRec-seed2020.json was run with other settings "
                                         r"\(settings.epochs: 2 then, 1 now\)"):
        compare("tiny", models=models, seeds=[2020], out=str(out), overrides={**settings, "epochs": 1})
    assert _runs(out) == after

    # Every run records the pipeline defaults it trained with; a run under other defaults (or
    # from before they were recorded) is refused, naming the file and the key.
    path = out / "runs" / "SASRec-seed2020.json"
    record = _record(out, "SASRec-seed2020")
    assert record["settings"]["pipeline"] == {
        "fast_layers": True, "length_groups": 4, "keep_freed_memory": True, "compact_sequences": True}
    original = path.read_bytes()

    def refused_when_stored(record, message):
        path.write_text(json.dumps(record))
        with pytest.raises(ValueError, match=r"SASRec-seed2020.json " + message):
            compare("tiny", models=models, seeds=[2020], out=str(out), overrides=settings)

    def kept_when_stored(record):
        path.write_text(json.dumps(record))
        kept = _runs(out)
        compare("tiny", models=models, seeds=[2020], out=str(out), overrides=settings)
        assert _runs(out) == kept

    record["settings"]["pipeline"]["length_groups"] = 1
    refused_when_stored(record, r"was run with other settings \(pipeline.length_groups: 1 then, 4 now\)")
    # keep_freed_memory changes no number: a run finished under the other value is kept as it is.
    record["settings"]["pipeline"]["length_groups"] = 4
    record["settings"]["pipeline"]["keep_freed_memory"] = not record["settings"]["pipeline"]["keep_freed_memory"]
    kept_when_stored(record)
    del record["settings"]["pipeline"]
    refused_when_stored(record, r"does not record its pipeline "
                                r"\(fast_layers, length_groups, keep_freed_memory, compact_sequences\)")

    # It records the values of the project's yaml keys too: a default edited in properties/ since
    # (here stopping_step) is refused, naming the key, and so is a key added to the files since.
    record = json.loads(original)
    assert record["settings"]["project_settings"]["stopping_step"] == 5
    assert "epochs" not in record["settings"]["project_settings"]  # in config_dict already
    assert "data_path" not in record["settings"]["project_settings"]
    record["settings"]["project_settings"]["stopping_step"] = 10
    refused_when_stored(record, r"was run with other settings \(settings.stopping_step: 10 then, 5 now\)")
    # What counts is the value, not where it came from: the same 10 given on the command line now.
    path.write_text(json.dumps(record))
    kept = _runs(out)
    compare("tiny", models=["SASRec"], seeds=[2020], out=str(out), overrides={**settings, "stopping_step": 10})
    assert _runs(out) == kept
    record["settings"]["project_settings"]["stopping_step"] = 5
    del record["settings"]["project_settings"]["learning_rate"]
    refused_when_stored(record, r"was run with other settings \(settings.learning_rate: None then, 0.001 now\)")
    record["settings"]["project_settings"] = None
    refused_when_stored(record, r"\(settings.config_dict and settings.project_settings must be objects\)")
    del record["settings"]["project_settings"]
    refused_when_stored(record, r"does not record the settings of the project's yaml files \(project_settings\)")
    path.write_bytes(original)
    after = _runs(out)

    # report_only: the tables from the finished runs; nothing trains.
    data = compare("tiny", models=models + ["GRU4Rec"], seeds=[2020, 2021], out=str(out),
                   overrides=settings, report_only=True)
    assert _runs(out) == after
    assert (data["runs_finished"], data["runs_planned"]) == (3, 8)
    assert [entry["model"] for entry in data["summary"]] == models
    assert "(3 of 8 runs finished)" in (out / "table.md").read_text()


def test_records_name_checkpoints_relative_to_out_and_fame_starts_from_there(settings, tmp_path):
    out = tmp_path / "cmp"
    compare("tiny", models=["SASRec", "FAME"], seeds=[2020], out=str(out), overrides=settings)
    sasrec, fame = _record(out, "SASRec-seed2020"), _record(out, "FAME-seed2020")
    assert re.fullmatch(r"checkpoints/SASRec-seed2020/SASRec-[^/]+\.pth", sasrec["model_file"]), sasrec
    assert re.fullmatch(r"checkpoints/FAME-seed2020/FAME-[^/]+\.pth", fame["model_file"]), fame
    assert fame["pretrained_path"] == sasrec["model_file"]
    # FAME was built from the SASRec checkpoint inside <out>/checkpoints/.
    stage_one = os.path.realpath(out / sasrec["model_file"])
    assert load_checkpoint(out / fame["model_file"])["config"]["pretrained_path"] == stage_one

    # The folder moves (to another machine, say): a run added later starts from the SASRec
    # checkpoint where the folder is now; an absolute path would name the old place, now gone.
    moved = tmp_path / "elsewhere" / "cmp"
    moved.parent.mkdir()
    out.rename(moved)
    compare("tiny", models=["SASRec", "FAME-N1"], seeds=[2020], out=str(moved), overrides=settings)
    n1 = _record(moved, "FAME-N1-seed2020")
    assert n1["pretrained_path"] == sasrec["model_file"]
    assert re.fullmatch(r"checkpoints/FAME-N1-seed2020/FAME-[^/]+\.pth", n1["model_file"]), n1
    assert (load_checkpoint(moved / n1["model_file"])["config"]["pretrained_path"]
            == os.path.realpath(moved / sasrec["model_file"]))
    # Nothing the comparison writes for people or later runs names where its folder is or was.
    written = [*moved.glob("runs/*.json"), moved / "results.json", moved / "table.md", moved / "table.csv"]
    assert len(written) == 6
    for path in written:
        text = path.read_text()
        for folder in {str(out), str(moved), os.path.realpath(out), os.path.realpath(moved)}:
            assert folder not in text, (path, folder)
    assert [run["model_file"] for run in json.loads((moved / "results.json").read_text())["runs"]] == [
        sasrec["model_file"], n1["model_file"]]


class _Planted:
    """Unpickling it creates the folder ``marker``: it shows that a file was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _plant_checkpoint(path, marker):
    """A checkpoint at ``path`` whose loading creates ``marker``; checks that it does."""
    torch.save({"state_dict": _Planted(marker), "config": None}, path)
    load_checkpoint(path)
    assert os.path.isdir(marker), "the planted checkpoint would go unnoticed"
    os.rmdir(marker)


def _write_finished_runs(out, overrides, models, seeds, paths):
    """Records of finished runs as compare() keeps them, without training: ``paths`` gives each
    run's ``(model_file, pretrained_path)`` by name."""
    # Converted as compare() converts them, so that the settings match.
    converted = RecBoleConfig._convert_config_dict(None, dict(overrides))
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for job in plan("tiny", models, seeds, overrides=converted):
        record = {**_fake_record(job.label, job.seed, 0.2, 0.1), "settings": job.settings}
        record["model_file"], record["pretrained_path"] = paths[job.name]
        (out / "runs" / f"{job.name}.json").write_text(json.dumps(record, indent=2) + "\n")


def test_a_checkpoint_outside_out_checkpoints_is_never_loaded(settings, tmp_path):
    out = tmp_path / "cmp"
    marker = tmp_path / "unpickled"
    planted = tmp_path / "planted.pth"
    _plant_checkpoint(planted, marker)
    record_file = out / "runs" / "SASRec-seed1.json"
    refused = f"only checkpoints inside {out}{os.sep}checkpoints{os.sep} are loaded"

    def refused_when_recorded(model_file, message):
        _write_finished_runs(out, settings, ["SASRec"], [1], {"SASRec-seed1": (model_file, None)})
        with pytest.raises(ValueError) as error:
            compare("tiny", models=["SASRec", "FAME"], seeds=[1], out=str(out), overrides=settings)
        text = str(error.value)
        assert "\n" not in text
        assert text.startswith(f"{record_file} names ") and repr(model_file) in text, text
        assert refused in text and message in text, text
        assert not marker.exists(), f"{model_file} was loaded"
        assert not (out / "runs" / "FAME-seed1.json").exists()

    # An absolute path, as records written before paths were relative hold them.
    refused_when_recorded(str(planted), f"by the absolute path {str(planted)!r}, as records written before "
                          f"paths were relative to the output folder do; such a path is never loaded")
    refused_when_recorded("../planted.pth", f"which resolves to {str(planted)!r}")
    refused_when_recorded("checkpoints/../../planted.pth", f"which resolves to {str(planted)!r}")
    # Inside <out>, but not among its checkpoints.
    (out / "runs" / "planted.pth").write_bytes(planted.read_bytes())
    refused_when_recorded("runs/planted.pth", "which resolves to")
    # A symlink inside checkpoints/ to a file outside, and checkpoints/ itself a symlink.
    inside = out / "checkpoints" / "SASRec-seed1"
    inside.mkdir(parents=True)
    (inside / "SASRec-planted.pth").symlink_to(planted)
    refused_when_recorded("checkpoints/SASRec-seed1/SASRec-planted.pth", f"which resolves to {str(planted)!r}")
    elsewhere = tmp_path / "elsewhere"
    (out / "checkpoints").rename(elsewhere)
    (elsewhere / "SASRec-seed1" / "SASRec-planted.pth").unlink()
    (elsewhere / "SASRec-seed1" / "SASRec-planted.pth").write_bytes(planted.read_bytes())
    (out / "checkpoints").symlink_to(elsewhere)
    refused_when_recorded("checkpoints/SASRec-seed1/SASRec-planted.pth",
                          f"which resolves to {str(elsewhere / 'SASRec-seed1' / 'SASRec-planted.pth')!r}")

    # run_compare.py says so on one line, without a traceback.
    _write_finished_runs(out, settings, ["SASRec"], [1], {"SASRec-seed1": (str(planted), None)})
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_compare.py"), "--dataset=tiny", "--models", "SASRec", "FAME",
         "--seeds", "1", "--out=cmp", *(f"--{key}={value}" for key, value in settings.items())],
        capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {record_file} names its checkpoint by the absolute path") and refused in line
    assert not marker.exists() and not (out / "runs" / "FAME-seed1.json").exists()


def test_records_naming_absolute_checkpoints_still_make_tables(settings, tmp_path):
    # Records written before paths were relative, from another machine: --report_only loads no
    # checkpoint, not even for a run still to do (FAME-N1 here), so they make tables; the check
    # that FAME came from the SASRec run kept for its seed compares paths as recorded, absolute or
    # relative.
    out = tmp_path / "cmp"
    sasrec = "/work/runs/s15/ml100k-2020/checkpoints/SASRec-seed1/SASRec-Nov-24-2026_22-01-43.pth"
    fame = "/work/runs/s15/ml100k-2020/checkpoints/FAME-seed1/FAME-Nov-24-2026_22-11-02.pth"
    other = sasrec.replace("s15", "s16")

    def report(sasrec_file, fame_file, started_from):
        _write_finished_runs(out, settings, ["SASRec", "FAME"], [1],
                             {"SASRec-seed1": (sasrec_file, None), "FAME-seed1": (fame_file, started_from)})
        return compare("tiny", models=["SASRec", "FAME", "FAME-N1"], seeds=[1], out=str(out),
                       overrides=settings, report_only=True)

    data = report(sasrec, fame, sasrec)
    assert [run["model_file"] for run in data["runs"]] == [sasrec, fame]
    assert "| FAME | 1 |" in (out / "table.md").read_text()
    assert (data["runs_finished"], data["runs_planned"]) == (2, 3)
    with pytest.raises(ValueError, match=rf"FAME-seed1.json was fine-tuned from {other}, but the SASRec run "
                                         rf"of seed 1 is {sasrec}: move FAME-seed1.json away too"):
        report(sasrec, fame, other)
    relative = "checkpoints/SASRec-seed1/SASRec-Nov-24-2026_22-01-43.pth"
    data = report(relative, "checkpoints/FAME-seed1/FAME-Nov-24-2026_22-11-02.pth", relative)
    assert data["runs"][0]["model_file"] == relative
    with pytest.raises(ValueError, match=rf"FAME-seed1.json was fine-tuned from {sasrec}, but the SASRec run "
                                         rf"of seed 1 is {relative}"):
        report(relative, fame, sasrec)


def test_a_failed_run_is_named_and_finished_runs_are_kept(settings, tmp_path):
    out = tmp_path / "cmp"
    # Allowed by every check, but FAME's expert queries then need petabytes: only FAME reads it.
    with pytest.raises(RunFailed, match=r"FAME, seed 7 failed: RuntimeError: .*memory"):
        compare("tiny", models=["SASRec", "FAME"], seeds=[7], out=str(out),
                overrides={**settings, "n_experts": 10**13})
    assert sorted(_runs(out)) == ["SASRec-seed7.json"]
    assert 0.0 <= _record(out, "SASRec-seed7")["test_result"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize(
    "models, message",
    [
        (["SASRec:n_heads=abc"], r"SASRec:n_heads=abc \(--models\): n_heads='abc' \(config_dict\): must be an integer >= 1"),
        (["SASRec", "FAME:final_residual=bogus"], r"FAME:final_residual=bogus \(--models\): final_residual='bogus'"),
        (["FAME:n_experts=0"], r"n_experts=0 \(config_dict\): must be an integer >= 1"),
    ],
)
def test_a_bad_variant_value_is_named_before_anything_runs(settings, tmp_path, models, message):
    out = tmp_path / "cmp"
    with pytest.raises(ValueError, match=message):
        compare("tiny", models=models, seeds=[7], out=str(out), overrides=settings)
    assert not out.exists()


def test_bad_model_dataset_or_key_is_named_before_anything_runs(settings, tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(ValueError, match="Unknown model 'SASRek' in --models"):
        compare("tiny", models=["FAME", "SASRek"], seeds=[1], out=str(out), overrides=settings)
    with pytest.raises(ValueError, match="Model 'CORE' is given twice"):
        compare("tiny", models=["CORE", "CORE"], seeds=[1], out=str(out), overrides=settings)
    with pytest.raises(ValueError, match="'seed' cannot be set for a comparison: use --seeds"):
        compare("tiny", models=["CORE"], seeds=[1], out=str(out), overrides={**settings, "seed": 3})
    with pytest.raises(FileNotFoundError, match=r"Dataset 'nope': no interaction file at .*nope\.inter"):
        compare("nope", models=["FAME"], seeds=[1], out=str(out), overrides=settings)
    # The validation column and the chart show NDCG@10: found missing before training, not after it.
    with pytest.raises(ValueError, match=r"topk=\[5, 20\] lacks \[10\]: the comparison's validation column"):
        compare("tiny", models=["CORE"], seeds=[1], out=str(out), overrides={**settings, "topk": "[5,20]", "valid_metric": "NDCG@20"})
    with pytest.raises(ValueError, match=r"metrics=\['Recall', 'Hit'\] lacks \['NDCG'\]"):
        compare("tiny", models=["CORE"], seeds=[1], out=str(out),
                overrides={**settings, "metrics": "['Recall','Hit']", "valid_metric": "Hit@10"})
    assert not out.exists()


def test_stage_one_is_the_sasrec_baseline_only_when_backbones_match(settings, monkeypatch):
    jobs = plan("tiny", ["GRU4Rec", "FAME", "FAME-N1"], [1, 2], overrides=settings)
    assert [(j.label, j.seed, j.reported, j.stage_one) for j in jobs] == [
        (label, seed, reported, stage_one) for seed in (1, 2) for label, reported, stage_one in (
            ("SASRec", False, None), ("GRU4Rec", True, None), ("FAME", True, "SASRec"),
            ("FAME-N1", True, "SASRec"))]
    assert jobs[3].config_dict["n_experts"] == 1

    # A FAME whose backbone differs from SASRec's gets a SASRec with its backbone, trained once.
    monkeypatch.setitem(compare_module.VARIANTS, "FAME-wide", ("FAME", {"inner_size": 64}))
    jobs = plan("tiny", ["SASRec", "FAME-wide"], [1], overrides=settings)
    assert [(j.label, j.reported, j.stage_one) for j in jobs] == [
        ("SASRec-stage1", False, None), ("SASRec", True, None), ("FAME-wide", True, "SASRec-stage1")]
    assert jobs[0].config_dict["inner_size"] == 64 and jobs[1].config_dict["inner_size"] == 32

    # Model:key=value,... is a variant labelled by its whole name; without backbone keys it is
    # fine-tuned from the seed's SASRec baseline.
    name = "FAME:finetune_learning_rate=0.001,expert_init=random"
    jobs = plan("tiny", ["SASRec", name, "FAME-N1:finetune_learning_rate=0.001"], [1], overrides=settings)
    assert [(j.label, j.model, j.stage_one) for j in jobs] == [
        ("SASRec", "SASRec", None), (name, "FAME", "SASRec"),
        ("FAME-N1:finetune_learning_rate=0.001", "FAME", "SASRec")]
    assert jobs[1].config_dict["finetune_learning_rate"] == "0.001"
    assert jobs[1].config_dict["expert_init"] == "random"
    assert jobs[2].config_dict["n_experts"] == 1 and jobs[2].config_dict["finetune_learning_rate"] == "0.001"
    with pytest.raises(ValueError, match=r"Cannot read 'lr' in --models 'FAME:lr': a variant is written"):
        plan("tiny", ["FAME:lr"], [1], overrides=settings)
    with pytest.raises(ValueError, match=r"'seed' in --models 'FAME:seed=3' cannot be set: use --seeds"):
        plan("tiny", ["FAME:seed=3"], [1], overrides=settings)
    # Protocol and text pre-training keys would change one row's protocol or FAME's stage 1.
    for refused in ("FAME:text_pretrain=True", "SASRec:topk=10", "FAME:valid_metric=hit@10",
                    "SASRec:exclude_history=True"):
        key = refused.split(":")[1].split("=")[0]
        with pytest.raises(ValueError, match=rf"'{key}' in --models '{refused}' cannot be set for one variant"):
            plan("tiny", [refused], [1], overrides=settings)
    # MIRACLE's text keys and pre-trained checkpoint are its own settings; FAME's checkpoint is stage 1's.
    from recbole_fame.experiment.compare import resolve_model

    assert resolve_model("MIRACLE:text_standardize=False,pretrained_path=pre.pth") == (
        "MIRACLE", {"text_standardize": "False", "pretrained_path": "pre.pth"})
    with pytest.raises(ValueError, match=r"'pretrained_path' in --models 'FAME:pretrained_path=s.pth' cannot be set"):
        resolve_model("FAME:pretrained_path=s.pth")
    with pytest.raises(ValueError, match=r"'n_experts' is given twice in --models 'FAME:n_experts=2,n_experts=3'"):
        plan("tiny", ["FAME:n_experts=2,n_experts=3"], [1], overrides=settings)
    # File names: plain labels as they are, a variant's ':' and ',' replaced, plus a hash of the label.
    assert jobs[0].name == "SASRec-seed1"
    assert re.fullmatch(r"FAME_finetune_learning_rate=0\.001_expert_init=random-[0-9a-f]{8}-seed1",
                        jobs[1].name), jobs[1].name

    jobs = plan("tiny", ["FAME"], [1], overrides={**settings, "pretrain": False})
    assert [(j.label, j.stage_one) for j in jobs] == [("FAME", None)]


def _fake_record(model, seed, hit10, ndcg10):
    test = {"hit@5": hit10 / 2, "hit@10": hit10, "hit@20": hit10 * 1.5,
            "ndcg@5": ndcg10 / 2, "ndcg@10": ndcg10, "ndcg@20": ndcg10 * 1.2}
    return {"model": model, "seed": seed, "test_result": test, "best_epoch": seed, "epochs_run": 10,
            "best_valid_result": {**test, "ndcg@10": ndcg10 + 0.001},
            "seconds_per_epoch": 2.0, "parameters": 1000, "peak_rss_mib": 500.0, "peak_cuda_mib": None,
            "seconds": 30.0, "stage_one_seconds": 20.0 if model == "FAME" else None,
            "model_file": f"{model}-{seed}.pth", "device": "cpu"}


def test_committed_runs_record_every_key_of_the_project_files():
    # A key added to properties/ without giving the committed run records the value they ran with
    # makes --report_only refuse them ("None then"), so the README's commands no longer rebuild
    # the tables under results/.
    paths = sorted(glob.glob(os.path.join(REPO, "results", "*", "runs", "*.json")))
    assert paths, "no run records under results/"
    mismatched = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f)["settings"]
        wanted = project_keys(settings["model"], settings["dataset"], settings["config_dict"])
        recorded = set(settings["project_settings"])
        if recorded != wanted:
            mismatched.append(f"{os.path.relpath(path, REPO)}: missing {sorted(wanted - recorded)}, "
                              f"extra {sorted(recorded - wanted)}")
    assert not mismatched, "\n".join(mismatched)


def test_report_mean_sd_and_the_papers_rows(tmp_path):
    # Paper (Beauty): FAME HR@10 0.0978, NDCG@10 0.0593.
    records = [_fake_record("FAME", 1, 0.0978 * 0.9, 0.0593 * 0.8),
               _fake_record("FAME", 3, 0.0978 * 1.0, 0.0593 * 0.9),
               _fake_record("SASRec", 1, 0.07, 0.04)]
    data = write_reports(str(tmp_path), "beauty", "python run_compare.py --dataset=beauty", [1, 3],
                         ["SASRec", "FAME"], records)
    fame = data["summary"][1]
    assert fame["model"] == "FAME" and fame["seeds"] == [1, 3]
    assert fame["mean"]["HR@10"] == round(0.0978 * 0.95, 6)
    assert fame["sd"]["HR@10"] == round(0.0978 * 0.1 / math.sqrt(2), 6)
    assert fame["mean"]["epochs_to_best"] == 3  # best epochs 1 and 3 (0-based) -> 2 and 4 epochs
    assert fame["mean"]["total_seconds"] == 50  # stage 1 included
    table = (tmp_path / "table.md").read_text()
    assert "| FAME | 2 | 0.0465 ± 0.0035 | 0.0929 ± 0.0069 |" in table
    assert "| 0.0514 ± 0.0042 | 2.00 ± 0.00 |" in table  # valid NDCG@10 (test + 0.001), then s/epoch
    assert "## The paper's Table 2 (Beauty)" in table
    assert "| SASRec (paper) | 0.0508 | 0.0761 | 0.1057 | 0.0318 | 0.0400 | 0.0474 |" in table
    assert "| GRU4Rec (paper)" not in table  # only the models compared
    assert ("FAME here: HR@10 0.0929 = 95.0% of the paper's 0.0978; "
            "NDCG@10 0.0504 = 85.0% of the paper's 0.0593.") in table
    assert data["paper"]["table2"]["FAME"]["NDCG@10"] == 0.0593
    assert (tmp_path / "chart.png").read_bytes().startswith(PNG_SIGNATURE)


def test_report_rounds_mean_and_sd_once(tmp_path):
    # ml-100k SASRec test HR@10 of three seeds: sd 0.0104504, which shows as 0.0104 if first
    # rounded to the 6 places of results.json.
    records = [_fake_record("SASRec", seed, hit10, 0.1) for seed, hit10 in
               ((2020, 0.2185), (2021, 0.1994), (2022, 0.2163))]
    data = write_reports(str(tmp_path), "ml-100k", "python run_compare.py", [2020, 2021, 2022],
                         ["SASRec"], records)
    assert "| SASRec | 3 | 0.1057 ± 0.0052 | 0.2114 ± 0.0105 |" in (tmp_path / "table.md").read_text()
    assert data["summary"][0]["sd"]["HR@10"] == 0.01045
    assert "SASRec,sd,0.005225,0.01045," in (tmp_path / "table.csv").read_text()


def test_report_names_the_runs_trained_without_their_input_items(tmp_path):
    masked = {"settings": {"config_dict": {"train_exclude_history": True}}}
    records = [{**_fake_record("SASRec", 1, 0.07, 0.04), **masked}, _fake_record("CORE", 1, 0.06, 0.03)]
    write_reports(str(tmp_path), "ml-100k", "python run_compare.py", [1], ["SASRec", "CORE"], records)
    table = (tmp_path / "table.md").read_text()
    assert ("best epoch by validation NDCG@10; SASRec trained with a cross-entropy without each "
            "sample's input items (`train_exclude_history`)), settings and seed.") in table
    records[1].update(masked)
    write_reports(str(tmp_path), "ml-100k", "python run_compare.py", [1], ["SASRec", "CORE"], records)
    assert "NDCG@10; every model trained with a cross-entropy without" in (tmp_path / "table.md").read_text()
    write_reports(str(tmp_path), "ml-100k", "python run_compare.py", [1], ["SASRec"],
                  [_fake_record("SASRec", 1, 0.07, 0.04)])
    assert "best epoch by validation NDCG@10), settings and seed." in (tmp_path / "table.md").read_text()


def test_report_gives_a_fame_variant_the_papers_fame_row(tmp_path):
    # Beauty's paper row: FAME HR@10 0.0978, NDCG@10 0.0593; FAME-N1 has no row of its own.
    records = [_fake_record("SASRec", 1, 0.07, 0.04),
               _fake_record("FAME:pretrain=False", 1, 0.0978 * 0.8, 0.0593 * 0.75),
               _fake_record("FAME-N1", 1, 0.08, 0.04)]
    data = write_reports(str(tmp_path), "beauty", "python run_compare.py --dataset=beauty", [1],
                         ["SASRec", "FAME:pretrain=False", "FAME-N1"], records)
    table = (tmp_path / "table.md").read_text()
    assert table.count("| FAME (paper) | 0.0710 | 0.0978 |") == 1
    assert ("FAME:pretrain=False here: HR@10 0.0782 = 80.0% of the paper's 0.0978; "
            "NDCG@10 0.0445 = 75.0% of the paper's 0.0593.") in table
    assert "FAME-N1 here" not in table and "FAME here" not in table
    assert sorted(data["paper"]["table2"]) == ["FAME", "SASRec"]


def test_report_says_what_items_are_ranked(tmp_path):
    records = [_fake_record("SASRec", 1, 0.07, 0.04), _fake_record("FAME", 1, 0.08, 0.05)]
    write_reports(str(tmp_path), "beauty", "cmd", [1], ["SASRec", "FAME"], records)
    assert "leave-one-out, ranking against all items, best epoch" in (tmp_path / "table.md").read_text()
    # The command line's value counts over the project files' one.
    for record in records:
        record["settings"] = {"project_settings": {"exclude_history": False},
                              "config_dict": {"exclude_history": True}}
    data = write_reports(str(tmp_path), "beauty", "cmd", [1], ["SASRec", "FAME"], records)
    assert [run["exclude_history"] for run in data["runs"]] == [True, True]
    assert ("leave-one-out, ranking against all items but those each user had before the target "
            "(`exclude_history`), best epoch") in (tmp_path / "table.md").read_text()
    records[0]["settings"]["config_dict"] = {}
    with pytest.raises(ValueError, match="runs with and without exclude_history cannot share one table"):
        write_reports(str(tmp_path), "beauty", "cmd", [1], ["SASRec", "FAME"], records)


def test_run_compare_cli_names_a_bad_model(tmp_path):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "run_compare.py"), "--dataset=tiny", "--models", "FAME",
         "Foo"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: Unknown model 'Foo' in --models" in done.stderr


def test_report_names_runs_whose_pipelines_differ(tmp_path):
    grouped = {"fast_layers": True, "length_groups": 4, "keep_freed_memory": False}
    records = [_fake_record("SASRec", 1, 0.07, 0.04), _fake_record("FAME", 1, 0.08, 0.05),
               _fake_record("FAME", 2, 0.08, 0.05)]
    records[0]["settings"] = records[1]["settings"] = {"pipeline": grouped}
    records[2]["settings"] = {"pipeline": {**grouped, "length_groups": 1}}
    write_reports(str(tmp_path), "beauty", "cmd", [1, 2], ["SASRec", "FAME"], records)
    table = (tmp_path / "table.md").read_text()
    assert ("Pipelines differ between runs: `fast_layers=True`, `length_groups=4`, "
            "`keep_freed_memory=False` (SASRec seed 1, FAME seed 1); `fast_layers=True`, `length_groups=1`, "
            "`keep_freed_memory=False` (FAME seed 2).") in table
    del records[2]["settings"]
    write_reports(str(tmp_path), "beauty", "cmd", [1, 2], ["SASRec", "FAME"], records)
    assert "; not recorded (FAME seed 2)." in (tmp_path / "table.md").read_text()


def test_chart_puts_each_setting_of_a_variant_on_its_own_line(tmp_path, monkeypatch):
    from recbole_fame.experiment import report as compare_report

    saved = []
    monkeypatch.setattr(compare_report, "save_figure", lambda figure, path, **kw: saved.append(figure))
    models = ["SASRec", "FAME:learning_rate=0.0003", "FAME:learning_rate=0.0003,n_experts=8"]
    records = [_fake_record(model, 1, 0.08, 0.04) for model in models]
    write_reports(str(tmp_path), "beauty", "cmd", [1], models, records)
    (figure,) = saved
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert labels == ["SASRec", "FAME\nlearning_rate=0.0003", "FAME\nlearning_rate=0.0003\nn_experts=8"]
    assert figure.axes[0].get_title() == "beauty, test: mean over 1 seed, bars ± 1 sd"


def test_chart_keeps_long_variant_labels_apart_and_the_legend_above_the_bars(tmp_path, monkeypatch):
    from recbole_fame.experiment import report as compare_report

    saved = []
    monkeypatch.setattr(compare_report, "save_figure", lambda figure, path, **kw: saved.append(figure))
    models = ["SASRec", "FAME:learning_rate=0.0003,final_residual=none,expert_init=random",
              "FAME:finetune_learning_rate=0.001,n_experts=16,expert_init=random",
              "FAME:learning_rate=0.0003,final_residual=split"]
    records = [_fake_record(model, 1, 0.08, 0.04) for model in models]
    write_reports(str(tmp_path), "beauty", "cmd", [1], models, records)
    (figure,) = saved
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    boxes = [label.get_window_extent(renderer) for label in axes.get_xticklabels()]
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, (left, right)
    bar_top = max(patch.get_window_extent(renderer).y1 for patch in axes.patches)
    assert axes.get_legend().get_window_extent(renderer).y0 > bar_top


def _processes_in(folder):
    """PIDs of the processes whose working directory is ``folder``."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd") == str(folder):
                pids.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the processes through /proc")
def test_kill_stops_the_run_in_progress_too(tiny_data, tmp_path):
    import signal
    import time

    work = tmp_path / "work"
    work.mkdir()
    parent = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "run_compare.py"), "--dataset=tiny", "--models", "SASRec",
         "--seeds", "1", f"--data_path={tiny_data}", "--epochs=100000", "--stopping_step=100000",
         "--show_progress=False", "--out=out"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        # The run is training once its checkpoint is written after its first epoch.
        while not list((work / "out" / "checkpoints").glob("*/*.pth")) and time.time() < deadline:
            assert parent.poll() is None, parent.communicate()
            time.sleep(0.2)
        assert len(_processes_in(work)) >= 2  # the comparison and its run (and a fork server)
        parent.send_signal(signal.SIGTERM)
        deadline = time.time() + 60
        _, stderr = parent.communicate(timeout=60)
        assert parent.returncode != 0 and "interrupted: the finished runs are kept in" in stderr
        while _processes_in(work) and time.time() < deadline:
            time.sleep(0.2)
        assert _processes_in(work) == []
    finally:
        for pid in _processes_in(work):
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()


def test_tables_show_the_protocols_metrics_and_the_miracle_paper_rows(tmp_path, monkeypatch):
    """Scientific's protocol (Recall and NDCG at 10 and 50): its columns, MIRACLE's Table 2 rows."""
    from recbole_fame.experiment import report as compare_report

    saved = []
    monkeypatch.setattr(compare_report, "save_figure", lambda figure, path, **kw: saved.append(figure))
    records = []
    for model, value in (("SASRec", 0.05), ("MIRACLE", 0.0722)):
        record = _fake_record(model, 1, 0.1, value)
        record["test_result"] = {"recall@10": 2 * value, "recall@50": 0.2, "ndcg@10": value, "ndcg@50": 0.09}
        records.append(record)
    write_reports(str(tmp_path), "Scientific", "cmd", [1], ["SASRec", "MIRACLE"], records)
    table = (tmp_path / "table.md").read_text()
    assert table.startswith("# MIRACLE and baselines on Scientific")
    assert "| model | seeds | Recall@10 | Recall@50 | NDCG@10 | NDCG@50 | valid NDCG@10 |" in table
    assert "| MIRACLE (paper) | 0.1343 | 0.2562 | 0.0722 | 0.0988 |" in table
    assert "MIRACLE here: Recall@10 0.1444 = 107.5% of the paper's 0.1343; NDCG@10 0.0722 = 100.0% of" in table
    assert "Improv" not in table
    (figure,) = saved
    assert figure.axes[0].get_ylabel() == "Recall@10, NDCG@10"
    header = (tmp_path / "table.csv").read_text().splitlines()[0]
    assert header.startswith("model,seed,Recall@10,Recall@50,NDCG@10,NDCG@50,valid NDCG@10,")
