"""The pipeline's trainers: RecBole's ``Trainer`` with exact resumption and the training-loss options.

:class:`PipelineTrainer` trains every model whose RecBole trainer is the plain ``Trainer`` (SASRec,
GRU4Rec, CORE, ...). Compared with RecBole's it

- writes checkpoints an interrupted run resumes from and ends exactly as if never stopped: besides
  RecBole's entries, the random state (:mod:`recbole_fame.trainer.random_state`) captured between
  two epochs, the best validation result (RecBole stores only its score, so a resumed ``fit`` that
  never improves again returned ``None`` for it) and ``next_stage``, the config of the stage that
  follows (FAME's, in the SASRec stage of FAME's two-stage run), so resuming that stage runs the
  next one too. The file is written to a temporary name and renamed: an interruption while saving
  leaves the previous checkpoint intact. A checkpoint holds the best epoch so far, not the last:
  resuming retrains the epochs after it, which is what makes the result identical;
- computes each training batch in length groups (``length_groups``,
  :mod:`recbole_fame.data.length_groups`) and with the cross-entropy without each sample's input
  items (``train_exclude_history``, :mod:`recbole_fame.trainer.history_loss`), when asked;
- names its checkpoint file so that no other run's is overwritten: RecBole names it
  ``<model>-<local time to the second>.pth``, so two runs that start in the same second (a
  hyper-parameter search on small data) shared one file, and under DDP each rank named it by its
  own clock while only rank 0 writes it. A name already taken gets a suffix, and every rank uses
  rank 0's;
- records each training epoch's seconds and index (``epoch_seconds``, ``epochs_trained``);
- with ``keep_freed_memory`` on a CPU, returns the freed memory the heap keeps to the kernel every
  ``RELEASE_EVERY_STEPS`` training steps (:func:`~recbole_fame.trainer.memory.release_freed_memory`),
  so that it cannot accumulate over an epoch of many steps.

:class:`FAMETrainer` adds FAME's stage-2 learning rate. RecBole's ``get_trainer`` finds it by the
model's name (:mod:`recbole_fame.compat` registers it), and so does :func:`get_trainer`.
"""

import os
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import set_color

from recbole_fame.data.length_groups import TRIMMABLE_MODELS, grouped_loss, length_groups_setting
from recbole_fame.files import remove_stale_temporaries_in, replacing
from recbole_fame.trainer.distributed import rank0_value, wait_for_checkpoint
from recbole_fame.trainer.history_loss import history_masked_loss, uses_history_masked_loss
from recbole_fame.trainer.memory import RELEASE_EVERY_STEPS, release_freed_memory
from recbole_fame.trainer.random_state import capture_rng_state, restore_rng_state


class PipelineTrainer(Trainer):
    """RecBole's ``Trainer`` with exact resumption, the training-loss options and epoch timing."""

    next_stage = None  # the config of the stage after this one, if any

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = rank0_value(_unclaimed(self.saved_model_file), config)
        _CLAIMED_FILES.add(self.saved_model_file)
        self._masked_loss = uses_history_masked_loss(config)
        self._length_groups = length_groups_setting(config) > 1 and config["model"] in TRIMMABLE_MODELS
        if getattr(model, "length_groups", 1) > 1:  # MIRACLE groups inside its encoder
            self.logger.info(f"length_groups: {config['model']} encodes each batch as {model.length_groups} "
                             "groups of similar length, its losses over the whole batch")
        elif length_groups_setting(config) > 1 and not self._length_groups:  # info: the key is on by default
            self.logger.info(
                f"length_groups is for {', '.join(TRIMMABLE_MODELS)}; {config['model']} trains on whole batches"
            )
        self._pending_rng_state = None
        self._last_valid_result = None
        remove_stale_temporaries_in(config["checkpoint_dir"], ".pth")
        self._train_data = None
        self._release_freed = bool(config["keep_freed_memory"]) and self.device.type == "cpu"
        self.steps_trained = 0
        self.epoch_seconds = []  # training only, one entry per epoch run by this trainer
        self.epochs_trained = []  # their 0-based indices

    def training_loss(self, loss_func):
        """``loss_func`` (the model's ``calculate_loss``) as this config trains it: with the
        history-masked cross-entropy inside, so that each length group masks its own samples."""
        if self._masked_loss:
            loss_func = history_masked_loss(loss_func, self.model, self.config)
        if self._length_groups:
            loss_func = grouped_loss(loss_func, self.config)
        return loss_func

    def _releasing(self, loss_func):
        """``loss_func`` that first releases the heap's freed memory every ``RELEASE_EVERY_STEPS``
        calls: it runs once per training step, after the previous step's buffers were freed."""

        def loss(interaction):
            self.steps_trained += 1
            if self.steps_trained % RELEASE_EVERY_STEPS == 0:
                release_freed_memory()
            return loss_func(interaction)

        return loss

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._train_data = train_data
        if self._pending_rng_state is not None:
            # Restored here, not in resume_checkpoint: the train loader only arrives now, and
            # nothing between this point and the first epoch draws random numbers.
            restore_rng_state(self._pending_rng_state, train_data, self.device)
            self._pending_rng_state = None
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                           show_progress=show_progress, callback_fn=callback_fn)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss_func = self.training_loss(loss_func or self.model.calculate_loss)
        if self._release_freed:
            loss_func = self._releasing(loss_func)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        self.epochs_trained.append(epoch_idx)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        # fit() saves the checkpoint before it records this as the best result.
        self._last_valid_result = valid_result
        return valid_score, valid_result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # RecBole 1.2.1's Trainer._save_checkpoint builds and writes its state in one go, so it
        # cannot be extended through super(): its entries are written here, then the ones an exact
        # resume needs, through a temporary file, and every rank waits as compat.py makes
        # RecBole's own method wait.
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        if self.config["single_spec"] or self.config["local_rank"] == 0:  # rank 0 writes
            state = {
                "config": self.config,
                "epoch": epoch,
                "cur_step": self.cur_step,
                "best_valid_score": self.best_valid_score,
                "state_dict": self.model.state_dict(),
                "other_parameter": self.model.other_parameter(),
                "optimizer": self.optimizer.state_dict(),
                "best_valid_result": self._last_valid_result,
                "rng_state": capture_rng_state(self._train_data, self.device),
                "next_stage": self.next_stage,
            }
            with replacing(saved_model_file) as tmp:
                torch.save(state, tmp, pickle_protocol=4)
            global _LAST_SAVED
            _LAST_SAVED = saved_model_file
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


_CLAIMED_FILES = set()  # checkpoint names given to this process's trainers
_LAST_SAVED = None  # the checkpoint this process wrote last


def last_saved_checkpoint():
    """The checkpoint file this process's trainers wrote last (None before the first): what an
    interrupted run resumes from."""
    return _LAST_SAVED


def _unclaimed(path):
    """``path``, or ``<stem>-<n><ext>`` for the first n >= 2 that no file and no trainer has."""
    stem, ext = os.path.splitext(path)
    candidate, n = path, 1
    while candidate in _CLAIMED_FILES or os.path.exists(candidate):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate


class FAMETrainer(PipelineTrainer):
    """FAME's trainer: fine-tuned from a SASRec checkpoint (``pretrained_path``: stage 2 of the
    paper's section 4.4.2), FAME trains at ``finetune_learning_rate``; from scratch, at
    ``learning_rate``. ``finetune_learning_rate: ~`` (and checkpoints saved before the key
    existed) fine-tune at ``learning_rate`` too."""

    def _build_optimizer(self, **kwargs):
        rate = finetune_learning_rate(self.config)
        if rate is not None and "learning_rate" not in kwargs:
            self.learning_rate = rate
        return super()._build_optimizer(**kwargs)


def finetune_learning_rate(config):
    """The learning rate of FAME fine-tuned from ``pretrained_path``, or None when FAME trains at
    ``learning_rate`` (from scratch, or ``finetune_learning_rate`` unset). FAME checks the value
    when it is built (``FAME.config_checks``)."""
    rate = config["finetune_learning_rate"]
    if not config["pretrained_path"] or rate is None:
        return None
    return rate


# The plugin's own trainers by model name, as RecBole's get_trainer looks them up.
PLUGIN_TRAINERS = {"FAME": FAMETrainer}


def get_trainer(config):
    """The trainer class the pipeline trains ``config``'s model with: the plugin's own for its
    models, :class:`PipelineTrainer` where RecBole would use its plain ``Trainer``, and RecBole's
    model-specific trainer (KGAT's, S3Rec's, ...) unchanged otherwise: those resume as RecBole
    does and train on whole batches with the model's own loss."""
    if config["model"] in PLUGIN_TRAINERS:
        return PLUGIN_TRAINERS[config["model"]]
    trainer_class = recbole_get_trainer(config["MODEL_TYPE"], config["model"])
    return PipelineTrainer if trainer_class is Trainer else trainer_class
