"""Whether a dataset fits this machine's memory, checked before it is built.

RecBole's storage of sequential samples takes about ``MAX_ITEM_LIST_LENGTH x 24`` bytes per
interaction (an ``int64`` item and a ``float32`` time per history position, plus the Python index
lists of its loader), so a large dataset can use up a machine's memory a minute into loading, and
the kernel's out-of-memory killer then ends the run without a word. :func:`check_fits` compares an
estimate with the memory the system has available and stops the run first, saying how much it needs
and which setting lowers it. The estimates are fitted on ``benchmarks/scale.py``'s measurements
(``results/scale.md``): they are meant to catch an order of magnitude, not to budget a run.
"""

import os

GIB = 2**30
# Bytes per interaction while the data is prepared: RecBole's padded rows per history position,
# the compact storage in all (its peak while splitting, results/scale.md).
STOCK_BYTES_PER_POSITION = 24
STOCK_BYTES_PER_INTERACTION = 100
COMPACT_BYTES_PER_INTERACTION = 130


class NotEnoughMemory(ValueError):
    """The dataset would not fit the memory available; the message says what lowers the need."""


def available_bytes():
    """The memory the system can give without swapping (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def needed_bytes(interactions, max_length, compact):
    """The estimated peak of preparing ``interactions`` interactions at ``max_length``."""
    if compact:
        return interactions * COMPACT_BYTES_PER_INTERACTION
    return interactions * (max_length * STOCK_BYTES_PER_POSITION + STOCK_BYTES_PER_INTERACTION)


def check_fits(path, interactions, max_length, compact, available=None):
    """Raise :class:`NotEnoughMemory` when preparing the ``interactions`` of ``path`` needs more
    than the memory available (``available`` bytes; by default the system's)."""
    available = available_bytes() if available is None else available
    needed = needed_bytes(interactions, max_length, compact)
    if available is None or needed <= available:
        return
    lower = ("set compact_sequences: True (each user's interactions stored once), or lower MAX_ITEM_LIST_LENGTH"
             if not compact else "use a machine with more memory, or a subset of the data")
    raise NotEnoughMemory(
        f"{os.path.basename(path)}: {interactions:,} interactions at MAX_ITEM_LIST_LENGTH={max_length} need about "
        f"{needed / GIB:.1f} GiB to prepare ({'compact' if compact else 'RecBole'}'s storage), and this machine "
        f"has {available / GIB:.1f} GiB available: {lower}"
    )
