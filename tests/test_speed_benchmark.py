"""benchmarks/speed.py, run on the tiny dataset: the epoch part with the GPU default's pipeline
(``compact_whole``) against stock, as the prepared GPU check runs it."""

import os
import sys

from helpers import load_script

speed = load_script(os.path.join("benchmarks", "speed.py"))


def test_the_gpu_default_pipeline_is_timed_against_stock(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "speed.md"
    monkeypatch.setattr(sys, "argv", ["speed.py", "--dataset=tiny", f"--data_path={tiny_data}", "--reps=2",
                                      "--eval_reps=1", "--n_heads=2", "--n_experts=2", "--skip_steps",
                                      "--pipelines", "compact_whole", f"--out={out}"])
    speed.main()
    report = out.read_text(encoding="utf-8")
    assert "device cpu," in report and "### Training step" not in report
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [(row[0], row[1]) for row in rows] == [
        ("| SASRec", "stock"), ("| SASRec", "compact_sequences"),
        ("| FAME H=2 N=2", "stock"), ("| FAME H=2 N=2", "compact_sequences")]
    for row in rows:
        epoch_ratio, eval_ratio = float(row[3]), float(row[6])
        assert epoch_ratio > 0 and eval_ratio > 0
        if row[1] == "stock":
            assert (epoch_ratio, eval_ratio) == (1.0, 1.0)


def test_settle_waits_only_for_a_gpu():
    speed.settle("cpu")  # nothing to wait for, and no CUDA call made on a machine without one
    assert speed.device_name("cpu") == "cpu"
