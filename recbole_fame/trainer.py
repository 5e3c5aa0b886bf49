"""Checkpoints an interrupted training can resume from and end exactly as if never stopped.

RecBole's trainer saves the model, the optimizer, the epoch and the early-stopping counters when
validation improves, and ``resume_checkpoint`` reads them back. That is not enough to replay the
rest of the run: the random state also drives training (dropout draws from torch's generator,
negative sampling from numpy's, the shuffling of the training batches from the train loader's own
``torch.Generator``), and the best validation result is not stored, so a resumed ``fit`` that never
improves again returns ``None`` for it. :func:`resumable` adds to every checkpoint:

- ``rng_state``: Python's, numpy's and torch's generators (and the CUDA device's, when training on
  one) and the train loader's, captured at save time, i.e. between two epochs, and restored when
  the resumed ``fit`` starts, so the epochs after the checkpoint draw the same numbers as in the
  uninterrupted run;
- ``best_valid_result``: the validation result of the epoch saved;
- ``next_stage``: the config of the stage that follows (FAME's, in the SASRec stage of FAME's
  two-stage run), so resuming that stage also runs the next one.

The file is written to a temporary name and renamed, so an interruption while saving leaves the
previous checkpoint intact. A checkpoint holds the best epoch so far, not the last one: resuming
retrains the epochs after it (fewer than ``stopping_step`` + 1 in a run stopped early), which is what
makes the result identical to the uninterrupted run's.
"""

import random
from logging import getLogger

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_fame.compat import wait_for_checkpoint
from recbole_fame.files import replacing


def capture_rng_state(train_data=None, device=None):
    """Every random generator training draws from; ``train_data``'s shuffling generator too.

    On a CUDA ``device`` (the config's) its generator is included; only that one: training draws
    from no other GPU, and asking every visible GPU for its state would initialise CUDA on all.
    """
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if _is_cuda(device):
        state["cuda"] = torch.cuda.get_rng_state(device)
    if train_data is not None and getattr(train_data, "generator", None) is not None:
        state["train_data"] = train_data.generator.get_state()
    return state


def restore_rng_state(state, train_data=None, device=None):
    """Put back what :func:`capture_rng_state` captured; the CUDA state into ``device``'s generator."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, torch.Tensor) and _is_cuda(device) and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda, device)
    elif cuda is not None:
        getLogger().warning(
            f"The checkpoint's CUDA random state cannot be restored for device {device}; dropout "
            "will not replay the interrupted run exactly"
        )
    if train_data is not None and "train_data" in state:
        train_data.generator.set_state(state["train_data"])


def _is_cuda(device):
    return device is not None and torch.device(device).type == "cuda"


class ResumableTrainerMixin:
    """Put before a RecBole ``Trainer`` subclass: checkpoints hold what an exact resume needs."""

    next_stage = None  # the config of the stage after this one, if any
    _pending_rng_state = None
    _last_valid_result = None

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._train_data = train_data
        if self._pending_rng_state is not None:
            # Restored here, not in resume_checkpoint: the train loader only arrives now, and
            # nothing between this point and the first epoch draws random numbers.
            restore_rng_state(self._pending_rng_state, train_data, self.device)
            self._pending_rng_state = None
        return super().fit(
            train_data,
            valid_data,
            verbose=verbose,
            saved=saved,
            show_progress=show_progress,
            callback_fn=callback_fn,
        )

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        # fit() saves the checkpoint before it records this as the best result.
        self._last_valid_result = valid_result
        return valid_score, valid_result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # Mirrors RecBole 1.2.1's Trainer._save_checkpoint, which builds and writes its state in one
        # go, so it cannot be extended through super(). Added: the entries of the second half, the
        # write through a temporary file, and the wait of every rank that compat.py adds to the
        # method replaced here.
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.config["single_spec"] or self.config["local_rank"] == 0:  # rank 0 writes
            state = {
                # What RecBole's trainer writes ...
                "config": self.config,
                "epoch": epoch,
                "cur_step": self.cur_step,
                "best_valid_score": self.best_valid_score,
                "state_dict": self.model.state_dict(),
                "other_parameter": self.model.other_parameter(),
                "optimizer": self.optimizer.state_dict(),
                # ... and what replaying the rest of the run needs.
                "best_valid_result": self._last_valid_result,
                "rng_state": capture_rng_state(getattr(self, "_train_data", None), self.device),
                "next_stage": self.next_stage,
            }
            with replacing(saved_model_file) as tmp:
                torch.save(state, tmp, pickle_protocol=4)
            if verbose:
                self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")
        wait_for_checkpoint(self.config)

    def resume_checkpoint(self, resume_file):
        checkpoint = super().resume_checkpoint(resume_file)  # compat.py: torch >= 2.6 safe
        self.best_valid_result = checkpoint.get("best_valid_result")
        self._pending_rng_state = checkpoint.get("rng_state")
        if self._pending_rng_state is None:
            self.logger.warning(
                f"{resume_file} holds no random state (it was not written by recbole_fame's trainer): "
                "training goes on from its weights, but will not replay the uninterrupted run exactly"
            )
        return checkpoint


def resumable(trainer_class):
    """``trainer_class`` (what RecBole's ``get_trainer`` returns) with :class:`ResumableTrainerMixin`.

    Trainers with their own checkpoint format (RecBole's decision-tree trainers) are returned
    unchanged.
    """
    if not issubclass(trainer_class, Trainer) or trainer_class._save_checkpoint is not Trainer._save_checkpoint:
        return trainer_class
    return type(f"Resumable{trainer_class.__name__}", (ResumableTrainerMixin, trainer_class), {})
