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


def checkpoint_config(checkpoint, path):
    """The RecBole ``Config`` a trainer pickled into ``checkpoint`` (read from ``path``)."""
    if checkpoint_model_name(checkpoint) is None:
        raise CheckpointError(
            f"{path} holds no RecBole config with a model name: it was not written by a RecBole trainer"
        )
    return checkpoint["config"]


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
