"""Memory and time of sequential training at MovieLens-20M scale, on synthetic data of its shape.

    python benchmarks/scale.py --generate_only --scales 0.015625
    python benchmarks/scale.py --scales 0.125 0.25 0.5 1 --lengths 50 200
    python benchmarks/scale.py --scales 1 --lengths 50 200 --paths compact --steps 2000
    python benchmarks/scale.py --scales 0.002 --lengths 50 --paths stock --models SASRec --steps 5 --out scale-test.md

Data (issue 45, point 5): ``n_users = round(138,493 * scale)`` users, each with a log-normal
history length (at least 20, mean about 144 as MovieLens-20M's 20,000,263 ratings / 138,493
users), items drawn without repetition within a user from a Zipf-Mandelbrot popularity over
MovieLens-20M's 26,744 items (the whole catalogue at every scale, as a real sample of users would
see it), timestamps increasing within each user, then 5-core filtered. The parameters are the
``GENERATOR`` constants below. Each scale is written once, as a RecBole atomic file
``<cache>/ml20m-synth-<scale>/ml20m-synth-<scale>.inter`` with a ``generator.json`` beside it; a
later run whose parameters and seed match reads it again. Users are generated in fixed chunks from
random streams keyed by (seed, chunk, purpose), so the users of a smaller scale are, before the
5-core filter, the first users of a larger one.

Each cell, one (scale, ``MAX_ITEM_LIST_LENGTH``, path), runs in a fresh child process (this script
with ``--cell``) so that its peak resident memory (``ru_maxrss``) is its own:

- ``prepare_data(config)`` (reading, filtering, remapping, RecBole's augmentation, split, loaders):
  seconds and peak resident memory after it;
- then for each of ``--models``: the model built as ``run_fame.py`` builds it
  (``build_pipeline_model``), the pipeline's trainer, ``--warmup`` steps and then ``--steps``
  timed steps through the trainer's own ``_train_epoch`` (so a step is exactly a training step:
  loader, ``length_groups``, loss, backward, optimizer); steps per second and peak resident memory.

``--paths stock`` is RecBole's storage (``compact_sequences: False``: its ``SequentialDataset``,
every training prefix a padded row); ``--paths compact`` is the compact one
(``compact_sequences: True``, :mod:`recbole_fame.data.compact`); a compact cell that still holds
RecBole's padded rows fails (and is recorded so, with its error). A stock cell whose
estimated memory (:func:`estimate_stock_gib`) is above ``--max_gib`` is skipped; any child whose
resident memory passes ``--max_gib`` is killed by the parent's watchdog (``/proc/<pid>/status``),
and one running longer than ``--cell_timeout`` too. Models use the settings of
``properties/dataset/ml-20m.yaml`` (``n_heads`` 8, ``n_experts`` 32), FAME from scratch
(``pretrain: False``).

``--threads`` sets torch's threads in each cell: on a machine other processes share, torch's
default (one per core) made a step about 20 times slower than one thread (OpenMP threads waiting
for busy cores); the report names the count used.

The report (``--out``, default ``results/scale.md``) starts with the command; every measured
number also goes to ``<out>.json``. ``--generate_only`` writes the datasets of ``--scales`` and
prints their statistics, the time and the process's peak memory. The cache (``--cache``, default
``benchmarks/.cache``) is not committed.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

import glibc_heap
from data_args import add_overwrite_arg, check_report_out
from recbole_fame.files import output_mark, replacing, write_json, write_text

BENCHMARK = "benchmarks/scale.py"

# MovieLens-20M (ratings.csv): what the synthetic data is shaped after.
ML20M_USERS = 138_493
ML20M_ITEMS = 26_744
ML20M_RATINGS = 20_000_263

# The generator's parameters; any change makes every cached file be written again.
GENERATOR = {
    "version": 1,
    "n_items": ML20M_ITEMS,
    # History length: round(lognormal(mu, sigma)) clipped to [min_history, max_history]; mu is
    # solved (lognormal_mu) so that the clipped mean is mean_history (ml-20m: 144.4 per user).
    "mean_history": round(ML20M_RATINGS / ML20M_USERS, 1),
    "sigma": 1.0,
    "min_history": 20,
    "max_history": 9_254,  # about ml-20m's longest history
    # Popularity of the item of rank r (1-based): (r + zipf_offset) ** -zipf_exponent, a flat
    # head (the most popular item 0.25% of the draws) and a thin tail (median item ~19 draws
    # in 20M); item ids are a seeded permutation of the ranks.
    "zipf_exponent": 2.5,
    "zipf_offset": 600,
    # Time: a user's gaps are 1 + exponential(mean gap) seconds, the mean gap log-normal around an
    # hour (log-sd 2) and at most max_span / length; the history starts at a uniform time such
    # that it ends within MovieLens-20M's span (1995-01-09 .. 2015-03-31).
    "time_start": 789_652_009,
    "time_end": 1_427_784_002,
    "gap_median_s": 3_600,
    "gap_log_sd": 2.0,
    "max_span_s": 5 * 365 * 86_400,
    # Ratings 0.5 .. 5.0 (not loaded by the benchmark), in shares (%) roughly MovieLens-20M's.
    "rating_weights": [1.1, 3.3, 1.4, 7.2, 4.4, 21.3, 10.5, 27.8, 7.7, 14.5],
    "chunk_users": 1_024,
    "core": 5,
}
_STREAMS = {"length": 1, "items": 2, "order": 3, "gap_mean": 4, "gap": 5, "start": 6, "rating": 7,
            "permutation": 8}
_MAX_ROUNDS = 24  # top-up rounds of distinct items (each draws twice as many per missing item)
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
_WRITE_ROWS = 1_000_000
CELL_MARK = "SCALE_CELL_RESULT "

# Stock path: peak resident GiB ~ STOCK_BASE_GIB + interactions * (L * STOCK_PER_POSITION +
# STOCK_PER_ROW) / 2**30 + STOCK_STEP_BASE_GIB + L * STOCK_STEP_GIB_PER_POSITION. Fitted on 36k,
# 73k and 238k interactions at L = 50 and 200 (CPU, 2026-12-06): 0.36 GiB after imports; data
# preparation 23.7 bytes per interaction and history position (RecBole's padded item_id_list,
# int64, and timestamp_list, float64, with the copies of augmentation and split) plus 40-105 per
# interaction; SASRec's then FAME's training steps 0.67 GiB more at L = 50 and 1.66 GiB at 200.
STOCK_BASE_GIB = 0.4
STOCK_PER_POSITION = 24
STOCK_PER_ROW = 100
STOCK_STEP_BASE_GIB = 0.35
STOCK_STEP_GIB_PER_POSITION = 0.0066


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0],
                        help="fractions of MovieLens-20M's 138,493 users")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200], help="MAX_ITEM_LIST_LENGTH values")
    parser.add_argument("--paths", nargs="+", choices=["stock", "compact"], default=["stock", "compact"])
    parser.add_argument("--models", nargs="+", choices=["SASRec", "FAME"], default=["SASRec", "FAME"])
    parser.add_argument("--steps", type=int, default=200,
                        help="timed training steps per model (the issue: 2000 at full scale)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    parser.add_argument("--rss_every", type=int, default=0,
                        help="record the resident memory every this many timed steps (0: never)")
    parser.add_argument("--threads", type=int, help="torch threads of each cell (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=2024, help="of the synthetic data")
    parser.add_argument("--cache", default=os.path.join("benchmarks", ".cache"),
                        help="folder of the generated datasets")
    parser.add_argument("--max_gib", type=float, default=18.0,
                        help="skip a stock cell estimated above this; kill any cell whose resident memory passes it")
    parser.add_argument("--cell_timeout", type=float, default=3600.0, help="seconds before a cell is killed")
    parser.add_argument("--generate_only", action="store_true", help="write the datasets of --scales, measure nothing")
    parser.add_argument("--out", default=os.path.join("results", "scale.md"))
    add_overwrite_arg(parser)
    parser.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)  # child mode: one cell
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.rss_every < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--steps and --threads must be at least 1, --warmup and --rss_every at least 0")
    if any(not 0 < scale <= 1 for scale in args.scales):
        parser.error("--scales are fractions in (0, 1]")
    if args.out.endswith(".json"):
        parser.error("--out is the markdown report; its numbers go beside it as <out>.json")
    if args.cell and (len(args.scales), len(args.lengths), len(args.paths)) != (1, 1, 1):
        parser.error("--cell measures one scale, one length and one path")
    return args


# --- Synthetic data -----------------------------------------------------------------------------


def dataset_name(scale):
    """``ml20m-synth-<scale>``, the scale as ``%g`` writes it (``0.125``, ``1``)."""
    return f"ml20m-synth-{scale:g}"


def scale_users(scale):
    return max(1, round(ML20M_USERS * scale))


def _normal_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def clipped_lognormal_mean(mu, sigma, low, high):
    """Mean of ``min(high, max(low, X))`` for ``X ~ LogNormal(mu, sigma)``."""
    a, b = (math.log(low) - mu) / sigma, (math.log(high) - mu) / sigma
    middle = math.exp(mu + sigma**2 / 2) * (_normal_cdf(b - sigma) - _normal_cdf(a - sigma))
    return low * _normal_cdf(a) + middle + high * (1 - _normal_cdf(b))


def lognormal_mu(mean, sigma, low, high):
    """The ``mu`` whose clipped log-normal (:func:`clipped_lognormal_mean`) has mean ``mean``."""
    lo, hi = math.log(low) - 10 * sigma, math.log(high)
    for _ in range(200):  # bisection: the clipped mean grows with mu
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if clipped_lognormal_mean(mid, sigma, low, high) < mean else (lo, mid)
    return (lo + hi) / 2


def generator_params(scale, seed):
    """Everything the file of ``scale`` depends on (stored in ``generator.json``)."""
    params = dict(GENERATOR, scale=scale, n_users=scale_users(scale), seed=seed)
    params["mu"] = round(lognormal_mu(params["mean_history"], params["sigma"], params["min_history"],
                                      params["max_history"]), 6)
    return params


def _rng(params, purpose, chunk=0, round_=0):
    """The random stream of one purpose, chunk of users and top-up round."""
    return np.random.default_rng([params["seed"], _STREAMS[purpose], chunk, round_])


def popularity_cdf(params):
    """Cumulative draw probabilities of the items by popularity rank (0-based)."""
    ranks = np.arange(1, params["n_items"] + 1, dtype=np.float64)
    weights = (ranks + params["zipf_offset"]) ** -params["zipf_exponent"]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def _bits(params):
    """Bits of a chunk's local user and of an item rank, in the int64 keys the chunks sort."""
    return int(params["chunk_users"] - 1).bit_length(), int(params["n_items"] - 1).bit_length()


def _distinct_items(params, chunk, lengths, cdf):
    """Sorted keys ``local user << rank bits | item rank``, at least ``lengths[u]`` distinct items
    for each user (fewer only if ``_MAX_ROUNDS`` top-ups did not find them): draws with
    repetition, the duplicates dropped, and the missing items drawn again, twice as many each round."""
    _, rank_bits = _bits(params)
    keys = np.empty(0, dtype=np.int64)
    for round_ in range(_MAX_ROUNDS):
        missing = lengths - np.bincount(keys >> rank_bits, minlength=len(lengths))
        short = np.flatnonzero(missing > 0)
        if not len(short):
            break
        draws = np.ceil(missing[short] * 1.25 * 2**round_).astype(np.int64) + 4
        ranks = np.searchsorted(cdf, _rng(params, "items", chunk, round_).random(int(draws.sum())), side="right")
        new = (np.repeat(short.astype(np.int64), draws) << rank_bits) | np.minimum(ranks, params["n_items"] - 1)
        keys = np.unique(np.concatenate([keys, new]))
    return keys


def _shuffled_within_users(params, chunk, keys):
    """``(local users, ranks)`` of the sorted ``keys``, in a random order within each user: one
    sort of ``user | random | rank`` keys."""
    user_bits, rank_bits = _bits(params)
    random_bits = 63 - user_bits - rank_bits
    users, ranks = keys >> rank_bits, keys & ((1 << rank_bits) - 1)
    random = _rng(params, "order", chunk).integers(0, 1 << random_bits, len(keys), dtype=np.int64)
    mixed = np.sort((users << (random_bits + rank_bits)) | (random << rank_bits) | ranks)
    return mixed >> (random_bits + rank_bits), mixed & ((1 << rank_bits) - 1)


def _per_user_offsets(gaps, starts, counts):
    """Each row's sum of its user's ``gaps`` after the user's first row (0 at the first row)."""
    total = np.cumsum(gaps)
    return total - np.repeat(total[starts], counts)


def generate_chunk(params, chunk, cdf, item_ids):
    """The interactions of chunk ``chunk`` of users: ``(user, item, timestamp, rating code)``
    arrays in user, then time order; users numbered from 1, ratings coded 1..10 (= 0.5 .. 5.0)."""
    size = params["chunk_users"]
    first = chunk * size
    count = min(size, params["n_users"] - first)
    # Streams are drawn for a whole chunk and cut, so a user's history is the same at every scale.
    lengths = np.rint(_rng(params, "length", chunk).lognormal(params["mu"], params["sigma"], size))
    lengths = np.clip(lengths, params["min_history"], params["max_history"]).astype(np.int64)[:count]
    # A random order of each user's distinct items, then its first lengths[u] of them.
    users, ranks = _shuffled_within_users(params, chunk, _distinct_items(params, chunk, lengths, cdf))
    counts = np.bincount(users, minlength=count)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.arange(len(users)) - starts[users] < lengths[users]
    users, ranks = users[keep], ranks[keep]
    counts = np.bincount(users, minlength=count)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Strictly increasing integer seconds within each user.
    gap_mean = np.exp(_rng(params, "gap_mean", chunk).normal(math.log(params["gap_median_s"]),
                                                            params["gap_log_sd"], size))[:count]
    gap_mean = np.minimum(gap_mean, params["max_span_s"] / np.maximum(counts, 1))
    gaps = 1 + np.floor(_rng(params, "gap", chunk).exponential(1.0, len(users)) * gap_mean[users]).astype(np.int64)
    offsets = _per_user_offsets(gaps, starts, counts)
    span = offsets[starts + counts - 1]
    room = np.maximum(0, params["time_end"] - params["time_start"] - span)
    start = params["time_start"] + np.floor(_rng(params, "start", chunk).random(size)[:count] * room).astype(np.int64)
    timestamps = start[users] + offsets
    assert timestamps.max() < 2**31, "timestamps past 2038: see time_end and max_span_s"
    weights = np.asarray(params["rating_weights"], dtype=np.float64)
    ratings = 1 + _rng(params, "rating", chunk).choice(10, size=len(users), p=weights / weights.sum())
    return ((first + users + 1).astype(np.int32), item_ids[ranks], timestamps.astype(np.int32), ratings.astype(np.int8))


def k_core(users, items, k):
    """The mask of the rows left once every user and item has at least ``k`` rows, repeated until
    nothing changes (what RecBole's ``user_inter_num_interval: "[k,inf)"`` does)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        few_users = np.bincount(users, weights=keep, minlength=users.max() + 1) < k
        few_items = np.bincount(items, weights=keep, minlength=items.max() + 1) < k
        drop = keep & (few_users[users] | few_items[items])
        if not drop.any():
            return keep
        keep &= ~drop


def generate(params):
    """All interactions of ``params`` after the k-core filter, ``(user, item, timestamp, rating
    code)`` arrays (int32, int32, int32, int8) in user, then time order, and the number of
    interactions before the filter."""
    cdf = popularity_cdf(params)
    item_ids = (1 + _rng(params, "permutation").permutation(params["n_items"])).astype(np.int32)
    chunks = [list(generate_chunk(params, chunk, cdf, item_ids))
              for chunk in range(-(-params["n_users"] // params["chunk_users"]))]
    columns = []
    for field in range(4):  # one column at a time, its chunks let go as it is joined
        columns.append(np.concatenate([chunk[field] for chunk in chunks]))
        for chunk in chunks:
            chunk[field] = None
    generated = len(columns[0])
    keep = k_core(columns[0], columns[1], params["core"])
    if not keep.all():
        for field in range(4):
            columns[field] = columns[field][keep]
    return tuple(columns), generated


def _digits(values):
    """ASCII decimal digits of non-negative integers as a ``[n, width]`` uint8 matrix, right
    aligned, the unused leading positions 0 (dropped by :func:`format_rows`)."""
    top = int(values.max()) if len(values) else 0
    values = values.astype(np.int32 if top < 2**31 else np.int64)  # int32 divides faster
    width = len(str(top))
    digits = np.empty((len(values), width), np.uint8)
    rest = values
    for position in range(width - 1, -1, -1):
        quotient = rest // 10
        digits[:, position] = rest - quotient * 10 + 48
        rest = quotient
    digits[:, :-1] *= values[:, None] >= 10 ** np.arange(width - 1, 0, -1, dtype=values.dtype)
    return digits


def format_rows(users, items, timestamps, ratings):
    """The lines ``user<TAB>item<TAB>rating<TAB>timestamp`` of the rows, as bytes, built with numpy
    (pandas' ``to_csv`` takes about ten times as long): ids and seconds as integers, rating code
    ``c`` as ``c / 2`` with one decimal."""
    n = len(users)
    labels = np.frombuffer("".join(f"{code / 2:.1f}" for code in range(1, 11)).encode(), dtype=np.uint8).reshape(10, 3)
    tab, newline = np.full((n, 1), ord("\t"), np.uint8), np.full((n, 1), ord("\n"), np.uint8)
    table = np.concatenate([_digits(users), tab, _digits(items), tab, labels[ratings.astype(np.int64) - 1], tab,
                            _digits(timestamps), newline], axis=1).ravel()
    return table[table != 0].tobytes()


def write_inter(path, users, items, timestamps, ratings):
    """A RecBole atomic ``.inter`` file (``INTER_HEADER``, then :func:`format_rows`), written
    whole or not at all, by chunks of rows."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(INTER_HEADER.encode())
        for start in range(0, len(users), _WRITE_ROWS):
            part = slice(start, start + _WRITE_ROWS)
            f.write(format_rows(users[part], items[part], timestamps[part], ratings[part]))


def data_stats(params, users, items, generated, seconds):
    """What the report says of a generated dataset (``generated``: interactions before the k-core)."""
    lengths = np.bincount(users)[1:]
    lengths = lengths[lengths > 0]
    return {
        "users": int(len(lengths)),
        "items": int(len(np.unique(items))),
        "interactions": int(len(users)),
        "mean_history": round(float(lengths.mean()), 2),
        "median_history": float(np.median(lengths)),
        "max_history": int(lengths.max()),
        "interactions_before_core": int(generated),
        "mean_history_before_core": round(generated / params["n_users"], 2),
        "generation_seconds": round(seconds, 2),
    }


def dataset_files(cache, scale):
    folder = os.path.join(cache, dataset_name(scale))
    return folder, os.path.join(folder, f"{dataset_name(scale)}.inter"), os.path.join(folder, "generator.json")


def ensure_dataset(cache, scale, seed):
    """The statistics of the dataset of ``scale`` in ``cache``, generated first unless its file
    and a ``generator.json`` of the same parameters are there; ``reused`` says which."""
    params = generator_params(scale, seed)
    folder, inter, record = dataset_files(cache, scale)
    with contextlib.suppress(OSError, ValueError):
        with open(record, encoding="utf-8") as f:
            stored = json.load(f)
        if stored.get("params") == params and os.path.isfile(inter):
            return {**stored["stats"], "reused": True}
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    (users, items, timestamps, ratings), generated = generate(params)
    write_inter(inter, users, items, timestamps, ratings)
    stats = data_stats(params, users, items, generated, time.perf_counter() - start)
    write_json(record, {"params": params, "stats": stats})
    return {**stats, "reused": False}


# --- One cell, in a child process ---------------------------------------------------------------


def peak_rss_gib():
    """This process's peak resident memory so far (``ru_maxrss``: KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def estimate_stock_gib(interactions, length):
    """Peak resident GiB of a stock cell (data preparation, then training steps), from ``STOCK_*``."""
    data = interactions * (length * STOCK_PER_POSITION + STOCK_PER_ROW) / 2**30
    return STOCK_BASE_GIB + data + STOCK_STEP_BASE_GIB + length * STOCK_STEP_GIB_PER_POSITION


def cell_config(model, scale, length, path, cache):
    """The ``Config`` of one cell: ml-20m's dataset settings, the issue's keys, the path's key."""
    from recbole_fame.config import Config, dataset_settings_file

    return Config(model=model, dataset=dataset_name(scale), config_file_list=[dataset_settings_file("ml-20m")],
                  config_dict={
                      "data_path": os.path.abspath(cache),
                      "MAX_ITEM_LIST_LENGTH": length,
                      "show_progress": False,
                      "state": "WARNING",
                      "user_inter_num_interval": "[5,inf)",
                      "item_inter_num_interval": "[5,inf)",
                      "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                      "pretrain": False,
                      "compact_sequences": path == "compact",
                  })


def check_compact_key(config):
    """``RuntimeError`` when this tree reads no ``compact_sequences`` key (no compact path yet)."""
    from recbole_fame.config import PROPERTIES_DIR
    from recbole_fame.config_checks import unknown_key_warnings

    if any("'compact_sequences'" in line for line in unknown_key_warnings(config, [PROPERTIES_DIR])):
        raise RuntimeError("compact_sequences is not a config key of this tree (no compact path to measure)")


def holds_padded_rows(train_data, config):
    """Whether the training dataset stores RecBole's padded ``item_id_list`` rows: a
    ``[samples, MAX_ITEM_LIST_LENGTH]`` tensor among the tensors its ``inter_feat`` holds (a
    compact store may still give the column when it is read, without holding it)."""
    field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    stored = getattr(getattr(train_data._dataset, "inter_feat", None), "interaction", None)
    value = stored.get(field) if isinstance(stored, dict) else None
    return value is not None and value.dim() == 2 and value.size(1) == config["MAX_ITEM_LIST_LENGTH"]


class Batches:
    """The first ``steps`` batches of a loader, over as many of its epochs as that takes: what a
    trainer's ``_train_epoch`` iterates over. With ``rss_every``, the process's resident memory
    is appended to ``rss`` as ``[steps done, GiB, GiB of it in use]`` before the first batch,
    every ``rss_every`` batches and after the last (``VmRSS``: the memory now, where
    ``ru_maxrss`` is the peak; in use: glibc's live allocations, :mod:`glibc_heap`, None without
    glibc: the rest of the heap is freed memory the allocator keeps)."""

    def __init__(self, loader, steps, rss_every=0):
        self.loader, self.steps, self.rss_every = loader, steps, rss_every
        self.shuffle = getattr(loader, "shuffle", False)
        self.rss = []

    def _record(self, done):
        if self.rss_every and (done % self.rss_every == 0 or done == self.steps):
            try:
                in_use = round(glibc_heap.in_use_bytes() / 2**30, 3)
            except (OSError, AttributeError):  # not glibc
                in_use = None
            self.rss.append([done, round(rss_gib(os.getpid()), 3), in_use])

    def __len__(self):
        return self.steps

    def __iter__(self):
        produced = 0
        self._record(produced)
        while produced < self.steps:
            for batch in self.loader:
                yield batch
                produced += 1
                self._record(produced)
                if produced == self.steps:
                    return


def train_steps(trainer, train_data, steps, epoch_idx, rss_every=0):
    """``steps`` training steps through ``trainer._train_epoch``; their seconds, and the resident
    memory over them (:class:`Batches`)."""
    batches = Batches(train_data, steps, rss_every)
    start = time.perf_counter()
    trainer._train_epoch(batches, epoch_idx)
    if trainer.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start, batches.rss


def measure_model(model_name, args, train_data):
    """Warm-up, then ``args.steps`` timed steps of ``model_name`` built as the pipeline builds it."""
    from recbole.utils import init_seed

    from recbole_fame.quick_start import build_pipeline_model
    from recbole_fame.trainer import get_trainer

    config = cell_config(model_name, args.scales[0], args.lengths[0], args.paths[0], args.cache)
    init_seed(config["seed"], config["reproducibility"])
    model = build_pipeline_model(config, train_data._dataset)
    trainer = get_trainer(config)(config, model)
    if args.warmup:
        train_steps(trainer, train_data, args.warmup, 0)
    seconds, rss = train_steps(trainer, train_data, args.steps, 1, args.rss_every)
    result = {"steps": args.steps, "seconds": round(seconds, 3), "steps_per_second": round(args.steps / seconds, 3),
              "parameters": sum(p.numel() for p in model.parameters()), "peak_rss_gib": round(peak_rss_gib(), 3)}
    if rss:
        result["rss_over_steps"] = rss
    if trainer.device.type == "cuda":
        import torch

        result["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    del trainer, model
    gc.collect()
    return result


def run_cell(args):
    """Measure one cell in this process; the result dict (``ok`` False with ``error`` and
    ``stage`` when something raised)."""
    import torch

    from recbole.utils import init_seed

    from recbole_fame.data import prepare_data

    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "rss_after_imports_gib": round(peak_rss_gib(), 3), "models": {}}
    stage = "config"
    try:
        config = cell_config(args.models[0], args.scales[0], args.lengths[0], args.paths[0], args.cache)
        result["device"] = str(config["device"])
        if args.paths[0] == "compact":
            check_compact_key(config)
        stage = "prepare"
        init_seed(config["seed"], config["reproducibility"])
        start = time.perf_counter()
        dataset, train_data, _, _ = prepare_data(config)
        result["prepare_seconds"] = round(time.perf_counter() - start, 2)
        result["peak_rss_prepare_gib"] = round(peak_rss_gib(), 3)
        result["train_samples"] = len(train_data._dataset)
        result["padded_rows"] = holds_padded_rows(train_data, config)
        if args.paths[0] == "compact" and result["padded_rows"]:
            raise RuntimeError("compact_sequences: True left RecBole's padded item_id_list rows in the training data")
        del dataset
        for model_name in args.models:
            stage = f"train {model_name}"
            result["models"][model_name] = measure_model(model_name, args, train_data)
    except Exception as exc:  # recorded in the table, not a crash of the whole benchmark
        result.update(ok=False, stage=stage, error=f"{type(exc).__name__}: {exc}")
    result["peak_rss_gib"] = round(peak_rss_gib(), 3)
    return result


# --- The parent: cells in children, watched -----------------------------------------------------


def rss_gib(pid):
    """Resident GiB of process ``pid`` (``VmRSS``), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def cell_command(args, scale, length, path):
    """The command line of the child that measures one cell."""
    threads = ["--threads", str(args.threads)] if args.threads else []
    return [sys.executable, os.path.abspath(__file__), "--cell", "--scales", repr(scale), "--lengths", str(length),
            "--paths", path, "--models", *args.models, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--rss_every", str(args.rss_every),
            *threads, "--seed", str(args.seed), "--cache", os.path.abspath(args.cache)]


def launch_cell(args, scale, length, path):
    """Run one cell in a child process, killed when its resident memory passes ``args.max_gib``
    or it runs past ``args.cell_timeout``; the child's result, or ``ok`` False with a note."""
    with tempfile.TemporaryDirectory(prefix="scale-cell-") as work:
        log = os.path.join(work, "child.log")
        start = time.perf_counter()
        watched_peak, killed = 0.0, None
        with open(log, "w") as out:
            # Its own working folder: RecBole's trainer makes saved/ and log_tensorboard/ there.
            child = subprocess.Popen(cell_command(args, scale, length, path), cwd=work, stdout=out,
                                     stderr=subprocess.STDOUT)
            try:
                while child.poll() is None:
                    resident = rss_gib(child.pid) or 0.0
                    watched_peak = max(watched_peak, resident)
                    if resident > args.max_gib:
                        killed = f"killed at {resident:.1f} GiB (--max_gib {args.max_gib:g})"
                    elif time.perf_counter() - start > args.cell_timeout:
                        killed = f"killed after {args.cell_timeout:g} s (--cell_timeout)"
                    if killed:
                        break
                    time.sleep(0.2)
            finally:  # killed, or this process interrupted: the child does not outlive it
                if child.poll() is None:
                    child.kill()
                    child.wait()
        with open(log, encoding="utf-8", errors="replace") as f:
            output = f.read()
    lines = [line for line in output.splitlines() if line.startswith(CELL_MARK)]
    if lines:
        result = json.loads(lines[-1][len(CELL_MARK):])
    else:
        tail = " | ".join(output.strip().splitlines()[-3:])
        result = {"ok": False, "error": killed or f"child exited with {child.returncode}: {tail}"}
    if killed:
        result.update(ok=False, error=killed)
    result.update(wall_seconds=round(time.perf_counter() - start, 1), watchdog_peak_gib=round(watched_peak, 3))
    return result


def measure(args, data):
    """Every cell of ``args``, in order of scale, length and path; ``data``: scale -> statistics
    of its dataset. A stock cell estimated above ``--max_gib`` is skipped, not started."""
    cells = []
    for scale in args.scales:
        for length in args.lengths:
            for path in args.paths:
                cell = {"scale": scale, "length": length, "path": path}
                label = f"scale {scale:g}, L={length}, {path}"
                if path == "stock":
                    cell["estimate_gib"] = round(estimate_stock_gib(data[scale]["interactions"], length), 2)
                if cell.get("estimate_gib", 0) > args.max_gib:
                    cell.update(ok=False, skipped=True, error=f"skipped: needs about {cell['estimate_gib']:.0f} GiB")
                    print(f"{label}: skipped, needs about {cell['estimate_gib']:.1f} GiB > --max_gib {args.max_gib:g}",
                          flush=True)
                else:
                    print(f"{label}: started", flush=True)
                    cell.update(launch_cell(args, scale, length, path))
                    print(f"{label}: {summary(cell, args.models)}", flush=True)
                cells.append(cell)
    return cells


def summary(cell, models):
    """One line of a finished cell, for the progress log."""
    if not cell.get("ok"):
        return f"failed ({cell.get('error')})"
    speeds = ", ".join(f"{m} {cell['models'][m]['steps_per_second']:.2f} steps/s" for m in models)
    return (f"prepare {cell['prepare_seconds']:.1f} s, peak {cell['peak_rss_prepare_gib']:.2f} GiB; {speeds}; "
            f"peak {cell['peak_rss_gib']:.2f} GiB ({cell['wall_seconds']:.0f} s)")


# --- Report --------------------------------------------------------------------------------------


def _number(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def shown_cache(cache):
    """``cache`` relative to the repository when it lies inside it, else None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    relative = os.path.relpath(os.path.abspath(cache), root)
    return None if relative.startswith(os.pardir) else relative


def without_option(words, option):
    """``words`` (a command line) without ``option`` and its value (``--x v`` or ``--x=v``)."""
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept


def report(command, args, data, cells):
    """The markdown report: command, machine, generator, datasets, then one row per cell."""
    measured = next((cell for cell in cells if "torch" in cell), {})
    params = generator_params(args.scales[0], args.seed)
    lines = [
        f"`{command}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, torch {measured.get('torch', '?')} with {measured.get('threads', '?')} "
        f"threads, device {measured.get('device', '?')}. Each cell runs in a fresh process; peak resident "
        f"memory is its `ru_maxrss` (after imports: {_number(measured.get('rss_after_imports_gib'))} GiB). "
        f"Steps: {args.warmup} untimed, then {args.steps} timed, through the pipeline trainer's `_train_epoch` "
        "(loader, length groups, loss, backward, Adam), batch 256. Models: the settings of "
        "`properties/dataset/ml-20m.yaml` (n_heads 8, n_experts 32)" + (", FAME from scratch." if "FAME" in args.models else "."),
        "",
        f"Data (seed {args.seed}): MovieLens-20M-shaped, {ML20M_USERS:,} users x scale, history lengths "
        f"round(LogNormal(mu={params['mu']}, sigma={params['sigma']})) clipped to [{params['min_history']}, "
        f"{params['max_history']}] (mean {params['mean_history']}), items drawn without repetition per user with "
        f"popularity (rank + {params['zipf_offset']})^-{params['zipf_exponent']} over {params['n_items']:,} items, "
        f"timestamps increasing per user, then {params['core']}-core. "
        + (f"Cached under `{shown_cache(args.cache)}`." if shown_cache(args.cache) else
           "Cached in a folder outside the repository (`--cache`, left out of the command above: where the "
           "data is cached changes no figure)."),
        "",
        "| scale | users | interactions | items | mean history | generated in s |",
        "|---|---|---|---|---|---|",
    ]
    for scale in args.scales:
        d = data[scale]
        made = "cached" if d["reused"] else f"{d['generation_seconds']:.2f}"
        lines.append(f"| {scale:g} | {d['users']:,} | {d['interactions']:,} | {d['items']:,} | "
                     f"{d['mean_history']:.1f} | {made} |")
    model_columns = "".join(f" {m} steps/s |" for m in args.models)
    lines += [
        "",
        f"Stock cells estimated above --max_gib {args.max_gib:g} are skipped (estimate: {STOCK_BASE_GIB} GiB "
        f"+ interactions x (L x {STOCK_PER_POSITION} + {STOCK_PER_ROW}) bytes + {STOCK_STEP_BASE_GIB} GiB "
        f"+ L x {STOCK_STEP_GIB_PER_POSITION} GiB); "
        "any cell passing it is killed.",
        "",
        f"| scale | users | interactions | items | L | path | prepare s | peak RSS after prepare GiB |{model_columns} "
        "peak RSS after training GiB | notes |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(args.models) + "---|---|",
    ]
    for cell in cells:
        d = data[cell["scale"]]
        speeds = "".join(
            f" {_number(cell.get('models', {}).get(m, {}).get('steps_per_second'))} |" for m in args.models)
        note = "" if cell.get("ok") else cell.get("error", "failed")
        if cell.get("ok") is False and cell.get("stage"):
            note = f"failed at {cell['stage']}: {note}"
        lines.append(
            f"| {cell['scale']:g} | {d['users']:,} | {d['interactions']:,} | {d['items']:,} | {cell['length']} | "
            f"{cell['path']} | {_number(cell.get('prepare_seconds'), 1)} | {_number(cell.get('peak_rss_prepare_gib'))} |"
            f"{speeds} {_number(cell.get('peak_rss_gib') if 'prepare_seconds' in cell else None)} | "
            f"{note.replace('|', '/')} |")
    lines += rss_lines(cells)
    lines += ["", output_mark(BENCHMARK)]
    return "\n".join(lines) + "\n"


def rss_lines(cells):
    """The resident memory over the timed steps (``--rss_every``), a line per cell and model."""
    curves = [(cell, model, measured["rss_over_steps"]) for cell in cells
              for model, measured in cell.get("models", {}).items() if measured.get("rss_over_steps")]
    if not curves:
        return []
    lines = ["", "Resident memory (`VmRSS`, GiB) after so many timed steps, and in parentheses what of it "
             "glibc's live allocations hold (the rest of the heap is freed memory the allocator keeps); "
             "the warm-up steps and, for a model measured after another, the first model's training ran "
             "before step 0:", ""]
    for cell, model, rss in curves:
        points = ", ".join(f"{step}: {gib:.2f}" + ("" if in_use is None else f" ({in_use:.2f})")
                           for step, gib, in_use in rss)
        lines.append(f"- scale {cell['scale']:g}, L={cell['length']}, {cell['path']}, {model}: {points}")
    return lines


def json_out(out):
    return os.path.splitext(out)[0] + ".json"


def main(argv=None):
    args = parse_args(argv)
    if args.cell:
        sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from it
        result = run_cell(args)
        print(CELL_MARK + json.dumps(result), flush=True)
        sys.exit(0 if result["ok"] else 1)
    if not args.generate_only:
        check_report_out(args.out, __file__, args.overwrite)
        check_report_out(json_out(args.out), __file__, args.overwrite)
    words = sys.argv if argv is None else [BENCHMARK, *argv]
    if shown_cache(args.cache) is None:  # the report names no folder outside the repository
        words = without_option(words, "--cache")
    command = " ".join(["python"] + [shlex.quote(word) for word in words])  # as data_args.prepare_raw_data
    data = {}
    for scale in args.scales:
        data[scale] = ensure_dataset(args.cache, scale, args.seed)
        print(f"scale {scale:g}: {json.dumps(data[scale])}, process peak {peak_rss_gib():.2f} GiB", flush=True)
    if args.generate_only:
        return
    cells = measure(args, data)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    write_text(args.out, report(command, args, data, cells))
    write_json(json_out(args.out), {
        "command": command, "written_by": output_mark(BENCHMARK), "cpus": os.cpu_count(),
        "generator": {f"{scale:g}": generator_params(scale, args.seed) for scale in args.scales},
        "data": {f"{scale:g}": stats for scale, stats in data.items()}, "cells": cells,
    })
    print(f"report: {args.out}, numbers: {json_out(args.out)}")


if __name__ == "__main__":
    main()
