"""Resuming an interrupted run ends as the uninterrupted run; same seed, same result."""

import glob
import logging
import os
import sys

import pytest
import torch
from recbole.model.sequential_recommender import GRU4Rec, SASRec
from recbole.trainer import Trainer

from recbole_fame.checkpoint import CheckpointError, load_checkpoint
from recbole_fame.quick_start import resume, run
from recbole_fame.trainer import PipelineTrainer
from recbole_fame.trainer.random_state import capture_rng_state, restore_rng_state

from helpers import load_script, make_config, make_data


class Interrupted(Exception):
    pass


def _interrupt_at(monkeypatch, model, epoch):
    """Fail like Ctrl-C in the training of ``epoch`` (0-based) of ``model``'s stage."""
    original = Trainer._train_epoch

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        if self.config["model"] == model and epoch_idx == epoch:
            raise Interrupted(f"{model} epoch {epoch}")
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", _train_epoch)


def _checkpoint(folder, model):
    (path,) = glob.glob(os.path.join(folder, f"{model}-*.pth"))
    return path


def _assert_same_weights(file_a, file_b):
    state_a = load_checkpoint(file_a)["state_dict"]
    state_b = load_checkpoint(file_b)["state_dict"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def _same_result(resumed, baseline):
    for key in ("best_valid_score", "best_valid_result", "test_result", "best_epoch", "epochs_run"):
        assert resumed[key] == baseline[key], key
    _assert_same_weights(resumed["model_file"], baseline["model_file"])


@pytest.fixture
def fame_run(tiny_config, tmp_path):
    """FAME's two stages, 4 epochs each, and a config writing checkpoints into another folder."""
    config = {**tiny_config, "epochs": 4}
    baseline = run(model="FAME", dataset="tiny", config_dict=config)
    folder = str(tmp_path / "interrupted")
    return baseline, {**config, "checkpoint_dir": folder}, folder


@pytest.mark.parametrize("stage, epoch", [("FAME", 2), ("SASRec", 3)])
def test_interrupted_fame_run_resumes_to_the_same_result(fame_run, monkeypatch, stage, epoch):
    baseline, config, folder = fame_run
    with monkeypatch.context() as patch:
        _interrupt_at(patch, stage, epoch)
        with pytest.raises(Interrupted):
            run(model="FAME", dataset="tiny", config_dict=config)
    checkpoint_file = _checkpoint(folder, stage)
    checkpoint = load_checkpoint(checkpoint_file)
    assert checkpoint["epoch"] < epoch and checkpoint["best_valid_result"] is not None
    # The SASRec stage's checkpoint carries the FAME stage that follows it.
    assert (checkpoint["next_stage"] is not None) == (stage == "SASRec")

    resumed = resume(checkpoint_file)

    assert resumed["model_file"] == _checkpoint(folder, "FAME")
    _same_result(resumed, baseline)
    if stage == "SASRec":
        _same_result(resumed["pretrain_result"], baseline["pretrain_result"])
        assert resumed["pretrain_result"]["model_file"] == checkpoint_file
    else:
        assert resumed["pretrain_result"] is None


def test_resume_without_random_state_is_not_exact(fame_run, monkeypatch, caplog):
    """The control: weights and optimizer alone do not replay the run."""
    baseline, config, folder = fame_run
    with monkeypatch.context() as patch:
        _interrupt_at(patch, "FAME", 2)
        with pytest.raises(Interrupted):
            run(model="FAME", dataset="tiny", config_dict=config)
    checkpoint_file = _checkpoint(folder, "FAME")
    checkpoint = load_checkpoint(checkpoint_file)
    del checkpoint["rng_state"]
    torch.save(checkpoint, checkpoint_file)

    with caplog.at_level(logging.WARNING):
        resumed = resume(checkpoint_file)
    assert "holds no random state" in caplog.text
    weights = load_checkpoint(resumed["model_file"])["state_dict"]
    expected = load_checkpoint(baseline["model_file"])["state_dict"]
    assert not torch.equal(weights["gate.weight"], expected["gate.weight"])


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_recbole_models_resume_after_their_best_epoch(tiny_config, tmp_path, monkeypatch, model):
    """Interrupted in the epoch after the best one: the resumed run never improves again, so its
    best validation result is the one the checkpoint stored."""
    config = {**tiny_config, "epochs": 30, "stopping_step": 1, "hidden_dropout_prob": 0.3}
    baseline = run(model=model, dataset="tiny", config_dict=config)
    best_epoch = load_checkpoint(baseline["model_file"])["epoch"]
    assert best_epoch < 29  # stopped early, after one epoch without gain
    folder = str(tmp_path / "interrupted")
    with monkeypatch.context() as patch:
        _interrupt_at(patch, model, best_epoch + 1)
        with pytest.raises(Interrupted):
            run(model=model, dataset="tiny", config_dict={**config, "checkpoint_dir": folder})
    _same_result(resume(_checkpoint(folder, model)), baseline)


def test_resume_rejects_what_it_cannot_go_on_from(tiny_config, tmp_path):
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=f"Checkpoint file not found: {missing}"):
        resume(missing)
    result = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    checkpoint = load_checkpoint(result["model_file"])
    del checkpoint["optimizer"]
    weights_only = str(tmp_path / "weights_only.pth")
    torch.save(checkpoint, weights_only)
    with pytest.raises(CheckpointError, match=f"Cannot resume from {weights_only}: it lacks the training state \\['optimizer'\\]"):
        resume(weights_only)


def test_same_seed_same_result_other_seed_other_weights(tiny_config, tmp_path):
    config = {**tiny_config, "reproducibility": True, "seed": 7}
    first = run(model="FAME", dataset="tiny", config_dict={**config, "checkpoint_dir": str(tmp_path / "a")})
    second = run(model="FAME", dataset="tiny", config_dict={**config, "checkpoint_dir": str(tmp_path / "b")})
    _same_result(second, first)
    _same_result(second["pretrain_result"], first["pretrain_result"])

    other = run(
        model="FAME", dataset="tiny", config_dict={**config, "seed": 8, "checkpoint_dir": str(tmp_path / "c")}
    )
    weights = load_checkpoint(other["model_file"])["state_dict"]
    expected = load_checkpoint(first["model_file"])["state_dict"]
    assert not torch.equal(weights["item_embedding.weight"], expected["item_embedding.weight"])


def test_stock_trainer_resume_checkpoint_reads_torch_2_6_checkpoints(tiny_config):
    """compat.py: RecBole's own Trainer.resume_checkpoint, which torch.load's default refused."""
    result = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 2})
    saved = load_checkpoint(result["model_file"])
    config = saved["config"]
    _, train_data, _, _ = make_data(config)
    model = SASRec(config, train_data._dataset)
    trainer = Trainer(config, model)
    trainer.resume_checkpoint(result["model_file"])
    assert trainer.start_epoch == saved["epoch"] + 1 and trainer.saved_model_file == result["model_file"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key

    gru_config = make_config("GRU4Rec", tiny_config)
    gru_trainer = Trainer(gru_config, GRU4Rec(gru_config, train_data._dataset))
    with pytest.raises(CheckpointError, match=f"Cannot resume GRU4Rec from {result['model_file']}: it is a checkpoint of 'SASRec'"):
        gru_trainer.resume_checkpoint(result["model_file"])


def test_resume_keeps_the_random_state_on_the_cpu_whatever_the_device(tiny_config):
    """torch.set_rng_state needs a CPU ByteTensor: loading the checkpoint onto the trainer's CUDA
    device made resuming on a GPU fail. The meta device stands in for a device other than the CPU."""
    result = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    saved = load_checkpoint(result["model_file"])
    config = saved["config"]
    _, train_data, _, _ = make_data(config)
    model = SASRec(config, train_data._dataset)
    trainer = PipelineTrainer(config, model)
    trainer.device = torch.device("meta")

    trainer.resume_checkpoint(result["model_file"])

    state = trainer._pending_rng_state
    assert state["torch"].device.type == "cpu"
    restore_rng_state(state)
    assert torch.equal(torch.get_rng_state(), saved["rng_state"]["torch"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key]), key


def test_only_the_training_devices_cuda_state_is_captured_and_restored(monkeypatch):
    """No GPU here: torch.cuda is replaced by recorders. A CPU run reads no CUDA state at all."""
    calls = []
    fake_state = torch.zeros(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: calls.append("all") or [fake_state] * 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": calls.append(("get", device)) or fake_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": calls.append(("set", device)))

    assert "cuda" not in capture_rng_state(device=torch.device("cpu"))
    assert calls == []

    device = torch.device("cuda", 1)
    state = capture_rng_state(device=device)
    assert state["cuda"] is fake_state and calls == [("get", device)]
    restore_rng_state(state, device=device)
    assert calls == [("get", device), ("set", device)]


def test_run_fame_resume_refuses_the_options_it_would_ignore(monkeypatch, capsys):
    run_fame = load_script("run_fame.py")
    resumed = []
    monkeypatch.setattr(run_fame, "resume", resumed.append)
    monkeypatch.setattr(sys, "argv", [
        "run_fame.py", "--resume=x.pth", "--model=SASRec", "--dataset=ml-100k", "--nproc=2",
        "--world_size=2", "--ip=10.0.0.1", "--port=5678", "--group_offset=1", "--epochs=3"])
    with pytest.raises(SystemExit) as excinfo:
        run_fame.main()
    assert excinfo.value.code == 2 and resumed == []
    assert ("--resume takes every setting from the checkpoint and resumes in one process; drop "
            "--model=SASRec --nproc=2 --world_size=2 --ip=10.0.0.1 --group_offset=1 --epochs=3") in capsys.readouterr().err

    # Options at their defaults change nothing, and are accepted.
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--resume=x.pth", "--model=FAME", "--nproc=1"])
    run_fame.main()
    assert resumed == ["x.pth"]


def test_a_checkpoint_trained_with_a_removed_option_does_not_resume(tiny_config, tmp_path):
    result = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    checkpoint = load_checkpoint(result["model_file"])
    checkpoint["config"]["length_bucketing"] = True
    old = str(tmp_path / "bucketed.pth")
    torch.save(checkpoint, old)
    with pytest.raises(CheckpointError, match=rf"checkpoint {old}: length_bucketing=True is an option "
                                              r"recbole-fame removed in 0\.2\.0"):
        resume(old)


def test_ctrl_c_says_how_to_resume(tiny_config, monkeypatch, capsys):
    import runpy
    import sys

    import recbole_fame.quick_start
    from recbole_fame.trainer import trainer as trainer_module

    from helpers import REPO

    real_run = recbole_fame.quick_start.run
    saved = {}

    def interrupted_after_a_checkpoint(**kwargs):
        saved["file"] = real_run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})["model_file"]
        raise KeyboardInterrupt

    def interrupted_at_once(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--model=SASRec"])
    monkeypatch.setattr(trainer_module, "_LAST_SAVED", None)  # as in a new process
    monkeypatch.setattr(recbole_fame.quick_start, "_RUN", {"started": None, "checkpoint_dir": None})
    for fake_run, expected in ((interrupted_at_once, "interrupted before the first checkpoint was written"),
                               (interrupted_after_a_checkpoint, None)):
        monkeypatch.setattr(recbole_fame.quick_start, "run", fake_run)
        with pytest.raises(SystemExit) as excinfo:
            runpy.run_path(os.path.join(REPO, "run_fame.py"), run_name="__main__")
        assert excinfo.value.code == 130
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err == (expected or f"interrupted: python run_fame.py --resume={saved['file']} goes on from its last saved epoch")
        assert trainer_module.last_saved_checkpoint() == saved.get("file")


def test_the_checkpoint_of_a_multi_process_run_is_found_for_the_hint(tmp_path, monkeypatch):
    """The ranks of a --nproc run write the checkpoints, not the process that prints the hint."""
    import time

    import recbole_fame.quick_start as quick_start
    from recbole_fame.trainer import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_LAST_SAVED", None)
    older, newer = tmp_path / "FAME-old.pth", tmp_path / "SASRec-new.pth"
    older.write_bytes(b"x")
    os.utime(older, (1, 1))  # before the run started
    monkeypatch.setattr(quick_start, "_RUN", {"started": time.time() - 5, "checkpoint_dir": str(tmp_path)})
    assert quick_start.latest_checkpoint() is None
    newer.write_bytes(b"x")
    assert quick_start.latest_checkpoint() == str(newer)
