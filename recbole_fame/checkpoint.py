"""Reading RecBole checkpoints: the file, its config made fit for this process, and whether its
weights fit a model, checked before anything is copied."""

import os
from logging import getLogger

import torch

from recbole_fame.removed import check_removed_options


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model being built."""


def load_checkpoint(path, device="cpu"):
    """Read a checkpoint written by RecBole's trainer: a dict with ``state_dict`` and ``config``.

    RecBole pickles its ``Config`` object into every checkpoint, which torch >= 2.6 refuses to
    load under its default ``weights_only=True``. Full unpickling can run code, so callers
    only pass files this run wrote or the user named explicitly.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a RecBole checkpoint: it has no 'state_dict' entry"
        )
    return checkpoint


def checkpoint_model_name(checkpoint):
    config = checkpoint.get("config")
    try:
        return config["model"]
    except (KeyError, TypeError):
        return None


def checkpoint_config(checkpoint, path, resuming=False):
    """The RecBole ``Config`` a trainer pickled into ``checkpoint`` (read from ``path``). A config
    that sets an option removed since (:mod:`recbole_fame.removed`) to a value no longer built is
    refused, naming the file and the key: one that changed the model always, one that changed
    only the training when ``resuming`` it."""
    if checkpoint_model_name(checkpoint) is None:
        raise CheckpointError(
            f"{path} holds no RecBole config with a model name: it was not written by a RecBole trainer"
        )
    config = checkpoint["config"]
    try:
        check_removed_options(config, f"checkpoint {path}",
                              ("model", "training") if resuming else ("model",))
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    return config


def for_this_process(config):
    """Make a checkpoint's config fit this process, in place: on the CPU when it was written on a
    GPU machine and this one has none, and in one process when a ``--nproc`` run wrote it.
    Returns whether a ``--nproc`` run wrote it."""
    use_available_device(config)
    return single_process(config)


def use_available_device(config):
    """Run a config saved on a GPU machine on the CPU when this machine has no GPU."""
    device = config["device"]
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        getLogger().warning(f"{config['model']} was set up for {device}; no GPU here, using the CPU")
        config["device"] = torch.device("cpu")


# What a rank of a ``--nproc`` run adds to its config (compat._join_process_group, distributed.py).
_DISTRIBUTED_KEYS = ("world_size", "nproc", "offset", "ip", "port")


def single_process(config):
    """Make the config of a ``--nproc`` run's checkpoint a one-process config, in place.

    A rank's config says ``single_spec: False`` and carries its ``local_rank`` and the process
    group's address, so RecBole's loaders and trainer would ask for a process group that a process
    reloading or resuming the checkpoint has not joined. Returns whether the config was a rank's.
    """
    was_distributed = config["single_spec"] is False
    config["single_spec"] = True
    config["local_rank"] = 0
    for key in _DISTRIBUTED_KEYS:
        config.final_config_dict.pop(key, None)
    return was_distributed


def load_model_state(model, checkpoint, path):
    """Load ``checkpoint``'s weights (and RecBole's ``other_parameter``) into ``model``.

    A state dict that does not fit (another model, dataset or size) raises
    :class:`CheckpointError` naming ``path`` instead of torch's bare ``RuntimeError``.
    """
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit this {type(model).__name__}: {exc}"
        ) from exc
    model.load_other_parameter(checkpoint.get("other_parameter"))


def copy_matching_tensors(path, source_state, target_module, expected_extra, expected_missing):
    """Copy every tensor of ``source_state`` into ``target_module`` under the same name.

    ``expected_extra(key)`` says which source keys may be left behind and
    ``expected_missing(key)`` which target keys may stay uncopied (they get initialised by the
    caller). Anything else, or a shape difference, raises :class:`CheckpointError` naming
    ``path`` and the key: nothing is skipped silently. Returns the names copied.
    """
    target_state = target_module.state_dict()
    unexpected = [k for k in source_state if k not in target_state and not expected_extra(k)]
    if unexpected:
        raise CheckpointError(
            f"{path} does not fit: it has tensors the model has no place for: {unexpected[:5]}"
        )
    missing = [k for k in target_state if k not in source_state and not expected_missing(k)]
    if missing:
        raise CheckpointError(f"{path} does not fit: it lacks the tensors {missing[:5]}")
    shared = [k for k in source_state if k in target_state]
    for key in shared:
        if source_state[key].shape != target_state[key].shape:
            raise CheckpointError(
                f"{path} does not fit: '{key}' has shape {tuple(source_state[key].shape)} "
                f"in the checkpoint but {tuple(target_state[key].shape)} in the model"
            )
    with torch.no_grad():
        for key in shared:
            target_state[key].copy_(source_state[key])
    return shared
