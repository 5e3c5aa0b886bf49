"""Freed memory kept in the training process (config key ``keep_freed_memory``, CPU with glibc)."""

import ctypes
import sys
from logging import getLogger

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 2**30


def keep_freed_memory():
    """Config key ``keep_freed_memory`` (CPU, Linux with glibc): freed buffers stay in the heap.

    By default glibc serves large buffers with fresh mappings and returns freed memory to the
    kernel, so a step that allocates a [batch, n_items] buffer (the cross-entropy's logits and
    their gradient) gets it back page by page, one minor fault and one kernel zeroing per 4 KiB
    (``benchmarks/page_faults.py`` counts them). This sets M_MMAP_THRESHOLD to 32 MiB and
    M_TRIM_THRESHOLD to 1 GiB for the whole process and for the rest of its life (a later model
    with the key off does not undo it); buffers over 32 MiB, such as full-sort evaluation scores
    at eval_batch_size 2048 on a large item set, are still mapped afresh. Returns whether it was
    applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        getLogger().info("keep_freed_memory: no glibc mallopt here, left as it is")
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
    if not applied:
        getLogger().warning("keep_freed_memory: glibc's mallopt refused the thresholds, left as it is")
    return applied


# Training steps between two returns of the kept memory to the kernel (release_freed_memory).
RELEASE_EVERY_STEPS = 1000


def release_freed_memory():
    """glibc's ``malloc_trim(0)``: the freed memory the heap holds goes back to the kernel.

    With ``keep_freed_memory`` the heap keeps what a step frees, so the next step's buffers need no
    fresh pages. But the memory it keeps grows over thousands of steps while the live allocations
    stay the same (``benchmarks/scale.py --rss_every``: 0.33 GiB live, 2.6 GiB resident after
    3,000 steps at 1/8 of MovieLens-20M, the key on; with it off not measured), most likely as
    steps of different shapes (length groups, the last batch) fragment it. The pipeline's trainer calls this every ``RELEASE_EVERY_STEPS`` steps
    when the key is on. Returns whether glibc was there to call."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True
