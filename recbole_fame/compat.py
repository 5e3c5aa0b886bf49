"""RecBole 1.2.1 fixes, all in one place, applied once by ``import recbole_fame``.

1. Plugin model defaults: RecBole's ``Config`` reads model defaults only from its own package,
   so ``recbole.config.Config(model=FAME, ...)`` would miss ``properties/model/FAME.yaml``.
   After RecBole's internal files, the plugin model's yaml is loaded too (RecBole's own models
   are untouched).
2. Checkpoints on torch >= 2.6: RecBole pickles its ``Config`` into every checkpoint and reloads
   it with ``torch.load``'s new default ``weights_only=True``, which refuses it (torch's
   weights-only unpickler cannot even parse the protocol-4 pickle RecBole writes), so
   ``trainer.evaluate(load_best_model=True)`` fails on RecBole's own files. It now goes through
   :func:`recbole_fame.checkpoint.load_checkpoint`, which unpickles only the file the trainer
   wrote or the caller named.
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

from recbole_fame.checkpoint import load_checkpoint
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
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return original_evaluate(
            self, eval_data, load_best_model=False, show_progress=show_progress
        )

    Trainer.evaluate = evaluate



def _undo_global_anomaly_detection():
    import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's side effect now)

    torch.autograd.set_detect_anomaly(False)
