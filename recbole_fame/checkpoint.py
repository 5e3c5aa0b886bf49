"""Reading RecBole checkpoints and checking that one fits a model before anything is copied."""

import os

import torch


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
