"""The random state a checkpoint carries, so that a resumed run draws what the uninterrupted one drew.

Training draws from Python's, numpy's and torch's generators (dropout, negative sampling), the
training GPU's, and the train loader's own ``torch.Generator`` (the shuffling of its batches).
"""

import random
from logging import getLogger

import numpy as np
import torch


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
