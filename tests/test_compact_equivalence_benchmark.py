"""benchmarks/compact_equivalence.py: the Beauty-sized equivalence check of the compact storage,
run on the tiny dataset, and its comparison catching a difference."""

import os
import sys

import pytest
import torch
from recbole.data.interaction import Interaction

from helpers import load_script

equivalence = load_script(os.path.join("benchmarks", "compact_equivalence.py"))


def test_the_report_finds_both_storages_equal(tiny_data, tmp_path, monkeypatch):
    out = str(tmp_path / "equivalence.md")
    monkeypatch.setattr(sys, "argv", ["compact_equivalence.py", "--dataset=tiny", f"--data_path={tiny_data}",
                                      "--models", "SASRec", "--epochs=1", "--batch=7", f"--out={out}"])
    equivalence.main()
    report = open(out, encoding="utf-8").read()
    for split in ("train", "valid", "test"):
        assert any(line.startswith(f"| {split} |") and line.endswith("| equal |") for line in report.splitlines())
    assert "| SASRec | compact |" in report and "**differs**" not in report
    assert report.count(": equal (all ") == 4  # 2 rankings x valid, test
    assert "**Everything equal.**" in report


def test_a_differing_value_or_dtype_is_named():
    history = torch.tensor([[1, 2, 0], [3, 0, 0]])
    expected = Interaction({"item_id_list": history, "item_length": torch.tensor([2, 1])})
    assert equivalence.differing_fields(expected, Interaction(dict(expected.interaction))) == []
    changed = Interaction({"item_id_list": torch.tensor([[1, 2, 0], [3, 4, 0]]), "item_length": torch.tensor([2, 1])})
    assert equivalence.differing_fields(expected, changed) == ["item_id_list"]
    narrower = Interaction({"item_id_list": history, "item_length": torch.tensor([2, 1], dtype=torch.int32)})
    assert equivalence.differing_fields(expected, narrower) == ["item_length"]
    assert equivalence.differing_fields(expected, Interaction({"item_id_list": history})) == ["item_length"]


def test_a_metric_that_differs_fails_the_check(tiny_data, tmp_path, monkeypatch):
    out = str(tmp_path / "equivalence.md")
    real = equivalence.evaluate_fixed_model

    def one_metric_off(*args):
        results = real(*args)
        valid, test = results[(True, True)]
        results[(True, True)] = (valid, {**test, "ndcg@10": test["ndcg@10"] + 1e-12})
        return results

    monkeypatch.setattr(equivalence, "evaluate_fixed_model", one_metric_off)
    monkeypatch.setattr(sys, "argv", ["compact_equivalence.py", "--dataset=tiny", f"--data_path={tiny_data}",
                                      "--models", "SASRec", "--epochs=1", f"--out={out}"])
    with pytest.raises(SystemExit) as stopped:
        equivalence.main()
    assert stopped.value.code == 1
    report = open(out, encoding="utf-8").read()
    assert report.count("**differs**") == 1 and "| SASRec | True | test |" in report
    assert "**Something differs: see the tables.**" in report


def test_same_weights_compares_every_tensor(tmp_path):
    state = {"a": torch.zeros(3), "b": torch.ones(2)}
    paths = [str(tmp_path / f"{i}.pth") for i in range(3)]
    torch.save({"state_dict": state}, paths[0])
    torch.save({"state_dict": {k: v.clone() for k, v in state.items()}}, paths[1])
    torch.save({"state_dict": {"a": torch.zeros(3), "b": torch.tensor([1.0, 1.0 + 1e-7])}}, paths[2])
    assert equivalence.same_weights(paths[:2])
    assert not equivalence.same_weights([paths[0], paths[2]])
