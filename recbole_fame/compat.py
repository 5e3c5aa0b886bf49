"""RecBole 1.2.1 fixes, all in one place, applied once by ``import recbole_fame``.

1. Plugin model defaults: RecBole's ``Config`` reads model defaults only from its own package,
   so ``recbole.config.Config(model=FAME, ...)`` would miss ``properties/model/FAME.yaml``.
   After RecBole's internal files, the plugin model's yaml is loaded too (RecBole's own models
   are untouched).
2. Checkpoints on torch >= 2.6: RecBole pickles its ``Config`` into every checkpoint and reloads
   it with ``torch.load``'s new default ``weights_only=True``, which refuses it (torch's
   weights-only unpickler cannot even parse the protocol-4 pickle RecBole writes), so
   ``trainer.evaluate(load_best_model=True)`` and ``trainer.resume_checkpoint(file)`` fail on
   RecBole's own files. Both now go through :func:`recbole_fame.checkpoint.load_checkpoint`, which
   unpickles only the file the trainer wrote or the caller named. ``resume_checkpoint`` also
   raises :class:`~recbole_fame.checkpoint.CheckpointError` naming the file when it is of another
   model or lacks the training state (RecBole only warned, then failed inside ``load_state_dict``),
   and returns the checkpoint so subclasses can read their own entries without a second load.
3. Autograd anomaly detection: importing ``recbole.model.sequential_recommender`` runs
   ``sine.py``, whose module level calls ``torch.autograd.set_detect_anomaly(True)`` for the whole
   process. Every model then records a stack trace per operation and scans every gradient for
   NaN; ``benchmarks/speed.py`` times RecBole as shipped (with it) against this project. It is
   switched back off once, after that import.
4. Multi-process training on CPUs: a ``local_rank`` in the config makes RecBole's ``Config`` join a
   process group with NCCL on CUDA device ``local_rank``, and its trainer wraps the model in
   ``DistributedDataParallel(device_ids=[local_rank])``: both fail on a machine without GPUs.
   Now the group uses Gloo and the CPU when there is no CUDA device to use (RecBole's own rule:
   ``gpu_id`` empty or no CUDA), and NCCL as before otherwise. The group is joined once per
   process, so a second ``Config`` (FAME's stage 1 builds a SASRec one) does not fail on it.
5. One checkpoint file per training run: RecBole names it ``<model>-<local time to the
   second>.pth``, so two runs that start in the same second (a hyper-parameter search on small
   data) wrote to one file, and under DDP each rank named it by its own clock while only rank 0
   writes it. A name already taken gets a suffix, every rank uses rank 0's name, and ranks wait
   after each save so that none reads a file being written.
6. Folders made by several processes at once: RecBole's ``ensure_dir`` checks, then creates, so
   two ranks making ``log/`` or ``checkpoint_dir`` together failed with ``FileExistsError``.
7. NumPy's removed aliases (``np.float``, ``np.bool``, ...): RecBole's evaluator and dataset code
   still use them, and only building a ``Config`` puts them back (``Config.compatibility_settings``).
   A process that evaluates a model reloaded with its pickled config, building none, failed in
   RecBole's NDCG with ``AttributeError: module 'numpy' has no attribute 'float'``. RecBole's own
   function runs once, at import (it uses nothing of the instance, in the pinned RecBole 1.2.1).
"""

import functools
import os

import torch
import torch.distributed as dist

from recbole.config import Config
from recbole.trainer import Trainer

from recbole_fame.checkpoint import (
    CheckpointError,
    checkpoint_model_name,
    load_checkpoint,
    load_model_state,
)
from recbole_fame.config import model_defaults_file

_applied = False


def apply():
    global _applied
    if _applied:
        return
    _load_plugin_model_defaults()
    _load_checkpoints_as_trusted_files()
    _undo_global_anomaly_detection()
    _distributed_device_with_gloo_on_cpu()
    _one_checkpoint_file_per_run()
    _ensure_dir_safe_for_concurrent_processes()
    Config.compatibility_settings(None)  # uses nothing of the instance
    _applied = True


def _load_plugin_model_defaults():
    original = Config._load_internal_config_dict

    @functools.wraps(original)
    def _load_internal_config_dict(self, model, model_class, dataset):
        original(self, model, model_class, dataset)
        defaults = model_defaults_file(model)
        if defaults is not None:
            self._update_internal_config_dict(defaults)

    Config._load_internal_config_dict = _load_internal_config_dict


def _load_checkpoints_as_trusted_files():
    original_evaluate = Trainer.evaluate

    @functools.wraps(original_evaluate)
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_checkpoint(checkpoint_file, self.device)
            load_model_state(self.model, checkpoint, checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return original_evaluate(
            self, eval_data, load_best_model=False, show_progress=show_progress
        )

    Trainer.evaluate = evaluate

    def resume_checkpoint(self, resume_file):
        """RecBole's ``resume_checkpoint`` on torch >= 2.6; returns the checkpoint read."""
        resume_file = str(resume_file)
        # On the CPU: load_state_dict copies the weights (and the optimizer state) to the model's
        # device anyway, and the random states a checkpoint may hold must stay CPU ByteTensors.
        checkpoint = load_checkpoint(resume_file, "cpu")
        model_name = checkpoint_model_name(checkpoint)
        if model_name is None or model_name.lower() != self.config["model"].lower():
            raise CheckpointError(
                f"Cannot resume {self.config['model']} from {resume_file}: it is a checkpoint of {model_name!r}"
            )
        missing = [
            key
            for key in ("epoch", "cur_step", "best_valid_score", "optimizer")
            if key not in checkpoint
        ]
        if missing:
            raise CheckpointError(
                f"Cannot resume from {resume_file}: it lacks the training state {missing} "
                "a RecBole trainer writes during fit()"
            )
        self.saved_model_file = resume_file  # training goes on writing the same file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        load_model_state(self.model, checkpoint, resume_file)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint {resume_file} loaded. Resume training from epoch {self.start_epoch}")
        return checkpoint

    Trainer.resume_checkpoint = resume_checkpoint



def _undo_global_anomaly_detection():
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's side effect now)

    torch.autograd.set_detect_anomaly(False)


def _distributed_device_with_gloo_on_cpu():
    original = Config._init_device

    @functools.wraps(original)
    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return original(self)  # one process: RecBole's own device choice
        _join_process_group(self.final_config_dict)

    Config._init_device = _init_device

    # RecBole's trainer passes device_ids=[local_rank], which DDP only accepts for a CUDA module.
    import recbole.trainer.trainer as trainer_module

    ddp_class = trainer_module.DistributedDataParallel

    def DistributedDataParallel(module, device_ids=None, **kwargs):
        if not any(p.is_cuda for p in module.parameters()):
            device_ids = None
        return ddp_class(module, device_ids=device_ids, **kwargs)

    trainer_module.DistributedDataParallel = DistributedDataParallel


def _join_process_group(config):
    """The distributed half of RecBole's ``Config._init_device``, with Gloo on CPU machines."""
    missing = [k for k in ("world_size", "ip", "port", "offset", "nproc") if k not in config]
    if missing:
        raise ValueError(
            f"local_rank={config['local_rank']} asks for multi-process training, which also needs "
            f"the config keys {missing}: start it with run_fame.py --nproc=N or "
            "recbole_fame.quick_start.run(..., nproc=N)"
        )
    gpu_id = config["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
    config["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    local_rank = config["local_rank"]
    use_cuda = len(gpu_id) > 0 and torch.cuda.is_available()
    if use_cuda and len(gpu_id.split(",")) < config["nproc"]:
        raise ValueError(
            f"nproc={config['nproc']} processes need one GPU each, but gpu_id='{gpu_id}' names "
            f"{len(gpu_id.split(','))}; set gpu_id to as many devices, or gpu_id='' for CPU processes"
        )
    rank = local_rank + config["offset"]
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method=f"tcp://{config['ip']}:{config['port']}",
            rank=rank,
            world_size=config["world_size"],
        )
    elif (dist.get_rank(), dist.get_world_size()) != (rank, config["world_size"]):
        raise ValueError(
            f"this process already trains as rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but the config asks for rank {rank} of {config['world_size']}"
        )
    if use_cuda:
        config["device"] = torch.device("cuda", local_rank)
        torch.cuda.set_device(local_rank)
    else:
        config["device"] = torch.device("cpu")
    config["single_spec"] = False
    if local_rank != 0:  # as in RecBole: one process logs and shows progress
        config["state"] = "error"
        config["show_progress"] = False
        config["verbose"] = False


def _one_checkpoint_file_per_run():
    original_init = Trainer.__init__
    original_save = Trainer._save_checkpoint
    claimed = set()

    @functools.wraps(original_init)
    def __init__(self, config, model):
        original_init(self, config, model)
        stem, ext = os.path.splitext(self.saved_model_file)
        candidate, n = self.saved_model_file, 1
        while candidate in claimed or os.path.exists(candidate):
            n += 1
            candidate = f"{stem}-{n}{ext}"
        if not config["single_spec"]:
            shared = [candidate]
            dist.broadcast_object_list(shared, src=0)
            candidate = shared[0]
        claimed.add(candidate)
        self.saved_model_file = candidate

    @functools.wraps(original_save)
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        original_save(self, epoch, verbose=verbose, **kwargs)
        wait_for_checkpoint(self.config)

    Trainer.__init__ = __init__
    Trainer._save_checkpoint = _save_checkpoint


def wait_for_checkpoint(config):
    """Under DDP, every rank waits here after each checkpoint save (rank 0 writes it).

    Every rank reloads the best checkpoint after training, and FAME's stage 2 is built from stage
    1's: none may read a file still being written. Trainers that replace ``_save_checkpoint``
    (:mod:`recbole_fame.trainer`) call this themselves.
    """
    if not config["single_spec"]:
        dist.barrier()


def _ensure_dir_safe_for_concurrent_processes():
    import importlib

    import recbole.utils.utils

    original = recbole.utils.utils.ensure_dir

    def ensure_dir(dir_path):
        os.makedirs(dir_path, exist_ok=True)

    # Each module that imported the function by name holds its own reference.
    for name in (
        "recbole.utils.utils",
        "recbole.utils",
        "recbole.utils.logger",
        "recbole.trainer.trainer",
        "recbole.data.utils",
        "recbole.data.dataset.dataset",
    ):
        module = importlib.import_module(name)
        if getattr(module, "ensure_dir", None) is original:
            module.ensure_dir = ensure_dir
