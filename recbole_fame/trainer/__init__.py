"""Training: the pipeline's trainers, the training-loss options, and multi-process training.

:mod:`~recbole_fame.trainer.trainer` (:class:`PipelineTrainer`, :class:`FAMETrainer` and
:func:`get_trainer`), :mod:`~recbole_fame.trainer.history_loss` (``train_exclude_history``),
:mod:`~recbole_fame.trainer.random_state` (what an exact resume restores),
:mod:`~recbole_fame.trainer.distributed` (``--nproc``) and :mod:`~recbole_fame.trainer.memory`
(``keep_freed_memory``).
"""

from recbole_fame.trainer.trainer import FAMETrainer, PipelineTrainer, get_trainer

__all__ = ["FAMETrainer", "PipelineTrainer", "get_trainer"]
