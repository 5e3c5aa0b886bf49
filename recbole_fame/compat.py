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
   NaN, which made a SASRec training step on ml-100k 1.4x slower (0.327 s vs 0.229 s per batch of
   256, measured by profiling one step). It is switched back off once, after that import.
"""

import functools

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

_applied = False


def apply():
    global _applied
    if _applied:
        return
    _load_plugin_model_defaults()
    _load_checkpoints_as_trusted_files()
    _undo_global_anomaly_detection()
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
        checkpoint = load_checkpoint(resume_file, self.device)
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
