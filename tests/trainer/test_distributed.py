"""Multi-process training: 2 CPU processes with Gloo on loopback, both FAME stages under DDP."""

import importlib.util
import json
import os
import socket
import sys

import pytest
import recbole.trainer.trainer as trainer_module
import recbole.utils.logger
import torch
from recbole.model.sequential_recommender import SASRec

from recbole_fame import Config, load_data_and_model
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.quick_start import resume, run
from recbole_fame.trainer import PipelineTrainer

from helpers import REPO, load_script, make_config, make_data

METRICS = [f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_in_sync(result):
    """Two ranks took part, and after training they held exactly the same parameters."""
    checksums = result["rank_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1], checksums
    assert sorted(result["test_result"]) == sorted(METRICS)
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())


def test_two_processes_train_both_fame_stages_in_sync_and_save_once(tiny_config, tmp_path, caplog):
    saved = tmp_path / "saved"
    result = run(
        model="FAME",
        dataset="tiny",
        config_dict={**tiny_config, "train_batch_size": 32, "gpu_id": "", "state": "INFO"},
        nproc=2,
        ip="127.0.0.1",
        port=free_port(),
    )
    assert_in_sync(result)
    assert_in_sync(result["pretrain_result"])

    # One SASRec checkpoint (stage 1), one FAME checkpoint and one result, written by rank 0 only.
    files = sorted(p.name for p in saved.iterdir())
    assert [f.split("-")[0] + os.path.splitext(f)[1] for f in files] == [
        "FAME.json", "FAME.pth", "SASRec.pth"
    ], files
    assert result["model_file"] == str(saved / files[1])
    assert result["pretrain_result"]["model_file"] == str(saved / files[2])
    with open(saved / files[0]) as f:
        written = json.load(f)
    assert written["rank_checksums"] == result["rank_checksums"]
    assert written["test_result"] == dict(result["test_result"])

    # Rank 0 logged the run (rank 1 only errors), on the CPU: stage 2 was built from stage 1's file.
    logs = [p.read_text() for p in (tmp_path / "log" / "FAME").iterdir()]
    assert len(logs) == 2 and sorted(map(len, logs))[0] == 0  # one file per rank, as RecBole's
    log_text = max(logs, key=len)
    assert "world_size = 2" in log_text and "device = cpu" in log_text
    assert f"Stage 2/2: FAME fine-tuned from {saved / files[2]}" in log_text
    assert log_text.count("test result") == 2

    # The checkpoints reload and resume in this process, which joined no process group.
    config, model, _, _, _, _ = load_data_and_model(result["model_file"])
    assert config["single_spec"] is True and config["local_rank"] == 0
    assert [key for key in ("world_size", "nproc", "offset", "ip", "port") if key in config] == []
    saved_state = load_checkpoint(result["model_file"])["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved_state[key]), key
    # Stage 1's checkpoint: SASRec goes on, then FAME's stage (stored beside it) runs too.
    resumed = resume(result["pretrain_result"]["model_file"])
    assert "was written by a multi-process run; it resumes in this one process" in caplog.text
    assert resumed["pretrain_result"]["model_file"] == result["pretrain_result"]["model_file"]
    assert "rank_checksums" not in resumed and "rank_checksums" not in resumed["pretrain_result"]
    for stage in (resumed, resumed["pretrain_result"]):
        assert sorted(stage["test_result"]) == sorted(METRICS)
        assert all(0.0 <= v <= 1.0 for v in stage["test_result"].values())


def test_run_fame_passes_the_launcher_options(monkeypatch):
    spec = importlib.util.spec_from_file_location("run_fame", os.path.join(REPO, "run_fame.py"))
    run_fame = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_fame)
    calls = []
    monkeypatch.setattr(run_fame, "run", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(
        sys, "argv",
        ["run_fame.py", "--nproc=2", "--world_size=4", "--ip=127.0.0.1", "--port=29500",
         "--group_offset=2", "--epochs=3"],
    )
    run_fame.main()
    assert calls == [{
        "model": "FAME", "dataset": "ml-100k", "config_file_list": None,
        "nproc": 2, "world_size": 4, "ip": "127.0.0.1", "port": "29500", "group_offset": 2,
    }]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nproc": 0}, "nproc must be at least 1, got 0"),
        ({"nproc": 2, "world_size": 3, "group_offset": 2},
         "ranks 2..3 (group_offset=2, nproc=2) do not fit in world_size=3"),
    ],
)
def test_bad_process_counts_are_named_before_anything_starts(tiny_config, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(model="SASRec", dataset="tiny", config_dict=tiny_config, **kwargs)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nproc=0"], "error: nproc must be at least 1, got 0"),
        (["--nproc=2", "--world_size=3", "--group_offset=2"],
         "error: ranks 2..3 (group_offset=2, nproc=2) do not fit in world_size=3"),
    ],
)
def test_run_fame_names_bad_process_counts_without_a_traceback(monkeypatch, args, message):
    run_fame = load_script("run_fame.py")
    monkeypatch.setattr(sys, "argv", ["run_fame.py", "--dataset=nope", *args])
    with pytest.raises(SystemExit) as excinfo:
        run_fame.main()
    assert excinfo.value.code == message


def test_local_rank_without_the_launcher_keys_is_named(tiny_config):
    with pytest.raises(ValueError, match=r"also needs the config keys \['world_size', 'ip', 'port', 'offset', 'nproc'\]"):
        Config(model="SASRec", dataset="tiny", config_dict={**tiny_config, "local_rank": 0})


def test_more_gpu_processes_than_gpus_is_named(tiny_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    launcher = {"world_size": 2, "ip": "127.0.0.1", "port": free_port(), "offset": 0, "nproc": 2}
    with pytest.raises(ValueError, match="nproc=2 processes need one GPU each, but gpu_id='0' names 1"):
        Config(
            model="SASRec",
            dataset="tiny",
            config_dict={**tiny_config, **launcher, "local_rank": 0, "gpu_id": "0"},
        )


def test_trainers_started_in_the_same_second_get_their_own_checkpoint_files(tiny_config, monkeypatch):
    monkeypatch.setattr(trainer_module, "get_local_time", lambda: "Jan-01-2025_00-00-00")
    config = make_config("SASRec", tiny_config)
    _, train_data, _, _ = make_data(config)
    trainer_class = PipelineTrainer
    os.makedirs(tiny_config["checkpoint_dir"], exist_ok=True)
    taken = os.path.join(tiny_config["checkpoint_dir"], "SASRec-Jan-01-2025_00-00-00.pth")
    open(taken, "w").close()  # a file of an earlier run, not to be overwritten
    names = [trainer_class(config, SASRec(config, train_data._dataset)).saved_model_file for _ in range(2)]
    assert names == [taken[: -len(".pth")] + "-2.pth", taken[: -len(".pth")] + "-3.pth"]


def test_folders_made_by_two_processes_at_once(tmp_path, monkeypatch):
    """RecBole checked, then created: a rank that lost the race got FileExistsError."""
    folder = tmp_path / "log"
    folder.mkdir()
    # The other rank made the folder between this one's check and its makedirs.
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    for ensure_dir in (recbole.utils.logger.ensure_dir, trainer_module.ensure_dir):
        ensure_dir(str(folder))
    assert folder.is_dir()


def test_every_rank_waits_after_each_save_of_the_pipeline_trainer(tiny_config, monkeypatch):
    """Rank 0 writes the checkpoint, and no rank goes on (to reload it) before it is written."""
    config = make_config("SASRec", tiny_config)
    _, train_data, _, _ = make_data(config)
    trainer = PipelineTrainer(config, SASRec(config, train_data._dataset))
    waits = []
    monkeypatch.setattr(torch.distributed, "barrier", lambda *args, **kwargs: waits.append(config["local_rank"]))
    config["single_spec"] = False  # a rank's config, from here on (the barrier needs no group now)
    for rank in (1, 0):
        config["local_rank"] = rank
        trainer._save_checkpoint(0, verbose=False)
        assert os.path.isfile(trainer.saved_model_file) == (rank == 0)
    assert waits == [1, 0]
