"""Minor page faults per training step, SASRec against FAME, on batches of short histories.

    python benchmarks/page_faults.py --dataset=beauty --max_width=8            # short histories
    python benchmarks/page_faults.py --dataset=beauty --max_width=8 --mallopt  # glibc keeps freed memory

A lead for the speed issue, not a timing: on CPU a step that allocates a fresh [batch, n_items]
buffer for the cross-entropy's gradient and gets it from the kernel page by page pays one fault per
4 KiB page (and the kernel's zeroing of it). Fault counts do not depend on what else runs on the
machine, unlike times, though glibc's own threshold heuristics make them vary from run to run.
``--mallopt`` first applies :func:`recbole_fame.trainer.memory.keep_freed_memory` (what the config
key ``keep_freed_memory`` does), so that freed buffers stay in the process's heap. The batches are
``train_batch_size`` random training samples of at most ``--max_width`` items each, trimmed to
their longest (before 0.2.0 they came from the removed ``length_bucketing`` loader, which gave the
same kind of batch).
"""

import argparse
import resource
import sys

import torch
from recbole.utils import init_seed

from recbole_fame import Config
from recbole_fame.data import prepare_data
from recbole_fame.data.length_groups import trim_sequences
from recbole_fame.trainer.memory import keep_freed_memory
from speed import build, train_step


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--max_width", type=int, default=8, help="only histories of at most this many items")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--mallopt", action="store_true")
    return parser


def main():
    args = build_parser().parse_args()
    sys.argv = sys.argv[:1]
    if args.mallopt and not keep_freed_memory():
        sys.exit("--mallopt: glibc's mallopt is not available here")
    settings = {"show_progress": False, "state": "WARNING", "pretrain": False, "length_groups": 1}
    config = Config(model="SASRec", dataset=args.dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train = prepare_data(config)[1]  # RecBole's caches only when asked for and signed
    feat = train._dataset.inter_feat
    short = torch.nonzero(feat[config["ITEM_LIST_LENGTH_FIELD"]] <= args.max_width).flatten()
    short = short[torch.randperm(len(short), generator=torch.Generator().manual_seed(config["seed"]))]
    size = config["train_batch_size"]
    batches = [feat[short[start : start + size]] for start in range(0, len(short) - size + 1, size)]
    batches = batches[: args.steps + 5]
    for batch in batches:
        trim_sequences(batch, config)
    if len(batches) <= 5:
        sys.exit(f"only {len(batches)} training batches of width <= {args.max_width}: raise --max_width")
    for name, extra in (("SASRec", {}), ("FAME", {"n_heads": 4, "n_experts": 8})):
        trainer = build(name, args.dataset, settings, train, **extra)  # fast_layers as configured
        for batch in batches[:5]:  # warm-up
            train_step(trainer, batch)
        before = minor_faults()
        for batch in batches[5:]:
            train_step(trainer, batch)
        per_step = (minor_faults() - before) / len(batches[5:])
        print(f"{name}: {per_step:.0f} minor page faults per step "
              f"({len(batches[5:])} batches of width <= {args.max_width}, mallopt={args.mallopt})")


if __name__ == "__main__":
    main()
