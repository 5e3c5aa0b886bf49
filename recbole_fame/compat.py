"""RecBole 1.2.1 fixes that no subclass can make, all in one place, applied once by ``import recbole_fame``.

Each patch names the RecBole behaviour it changes. What a subclass can do is done by one: the
plugin's ``Config`` (:mod:`recbole_fame.config`) finds plugin models and joins multi-process
training on CPUs; the pipeline's trainers (:mod:`recbole_fame.trainer.trainer`) write exact-resume
checkpoints under names of their own.

1. Plugin model defaults: RecBole's ``Config`` reads model defaults only from its own package,
   so ``recbole.config.Config(model=FAME, ...)`` would miss ``properties/model/FAME.yaml``.
   After RecBole's internal files, the plugin model's yaml is loaded too (RecBole's own models
   are untouched).
2. Plugin trainers: RecBole's ``get_trainer`` looks for ``<model>Trainer`` inside
   ``recbole.trainer`` only, so ``get_trainer(ModelType.SEQUENTIAL, "FAME")`` gave RecBole's
   plain ``Trainer``; :class:`~recbole_fame.trainer.trainer.FAMETrainer` is added there.
3. Checkpoints on torch >= 2.6: RecBole pickles its ``Config`` into every checkpoint and reloads
   it with ``torch.load``'s new default ``weights_only=True``, which refuses it (torch's
   weights-only unpickler cannot even parse the protocol-4 pickle RecBole writes), so
   ``trainer.evaluate(load_best_model=True)`` and ``trainer.resume_checkpoint(file)`` fail on
   RecBole's own files, for every RecBole trainer. Both now go through
   :func:`recbole_fame.checkpoint.load_checkpoint`, which unpickles only the file the trainer wrote
   or the caller named. ``resume_checkpoint`` also raises
   :class:`~recbole_fame.checkpoint.CheckpointError` naming the file when it is of another model
   or lacks the training state (RecBole only warned, then failed inside ``load_state_dict``),
   and returns the checkpoint so subclasses can read their own entries without a second load.
4. Autograd anomaly detection: importing ``recbole.model.sequential_recommender`` runs
   ``sine.py``, whose module level calls ``torch.autograd.set_detect_anomaly(True)`` for the whole
   process. Every model then records a stack trace per operation and scans every gradient for
   NaN; ``benchmarks/speed.py`` times RecBole as shipped (with it) against this project. It is
   switched back off once, after that import.
5. Distributed training on CPUs: RecBole's ``AbstractTrainer`` wraps the model in
   ``DistributedDataParallel(device_ids=[local_rank])``, which DDP refuses for a model on the
   CPU; without CUDA parameters, ``device_ids`` is left out. Every rank also waits after each
   checkpoint RecBole's ``_save_checkpoint`` writes (only rank 0 writes it), so that none reads a
   file still being written.
6. Folders made by several processes at once: RecBole's ``ensure_dir`` checks, then creates, so
   two ranks making ``log/`` or ``checkpoint_dir`` together failed with ``FileExistsError``.
7. NumPy's removed aliases (``np.float``, ``np.bool``, ...): RecBole's evaluator and dataset code
   still use them, and only building a ``Config`` puts them back (``Config.compatibility_settings``).
   A process that evaluates a model reloaded with its pickled config, building none, failed in
   RecBole's NDCG with ``AttributeError: module 'numpy' has no attribute 'float'``. RecBole's own
   function runs once, at import (it uses nothing of the instance, in the pinned RecBole 1.2.1).
"""

import functools
import importlib
import os

import torch
from recbole.config import Config
from recbole.trainer import Trainer

from recbole_fame.checkpoint import (
    CheckpointError,
    checkpoint_model_name,
    load_checkpoint,
    load_model_state,
)
from recbole_fame.config import model_defaults_file
from recbole_fame.trainer.distributed import wait_for_checkpoint
from recbole_fame.trainer.trainer import PLUGIN_TRAINERS

_applied = False


def apply():
    global _applied
    if _applied:
        return
    _load_plugin_model_defaults()
    _find_plugin_trainers()
    _load_checkpoints_as_trusted_files()
    _undo_global_anomaly_detection()
    _distributed_data_parallel_on_cpu()
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


def _find_plugin_trainers():
    trainers = importlib.import_module("recbole.trainer")
    for model_name, trainer_class in PLUGIN_TRAINERS.items():
        setattr(trainers, f"{model_name}Trainer", trainer_class)


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


def _distributed_data_parallel_on_cpu():
    import recbole.trainer.trainer as trainer_module

    ddp_class = trainer_module.DistributedDataParallel

    def DistributedDataParallel(module, device_ids=None, **kwargs):
        if not any(p.is_cuda for p in module.parameters()):
            device_ids = None
        return ddp_class(module, device_ids=device_ids, **kwargs)

    trainer_module.DistributedDataParallel = DistributedDataParallel

    original_save = Trainer._save_checkpoint

    @functools.wraps(original_save)
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        original_save(self, epoch, verbose=verbose, **kwargs)
        wait_for_checkpoint(self.config)

    Trainer._save_checkpoint = _save_checkpoint


def _ensure_dir_safe_for_concurrent_processes():
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
