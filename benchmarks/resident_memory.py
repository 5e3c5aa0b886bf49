"""Resident memory of a training process over epochs, and how much of it glibc merely keeps.

    python benchmarks/resident_memory.py --dataset=ml-100k --epochs=3 --length_groups=4
    python benchmarks/resident_memory.py --dataset=ml-100k --epochs=3 --length_groups=1
    python benchmarks/resident_memory.py --dataset=ml-100k --epochs=3 --length_groups=4 --trim_each_epoch
    python benchmarks/resident_memory.py --dataset=ml-100k --epochs=3 --length_groups=4 --keep_freed_memory

One configuration per process (glibc's allocator state is process-wide): SASRec trained for
``--epochs`` epochs by this project's trainer (``length_groups`` as given), with the resident set
size read from ``/proc/self/statm`` and the process's peak (``ru_maxrss``) after each epoch and
after a validation, and finally the resident size after glibc's
``malloc_trim(0)``, which hands free heap pages back to the kernel: what it removes was memory
glibc kept, not memory a tensor held. ``--trim_each_epoch`` calls it after every epoch;
``--keep_freed_memory`` applies the config key of that name (glibc's thresholds fixed) first;
without it the process keeps glibc's own thresholds (the key's default in
``properties/overall.yaml`` is on, but this script measures the allocator both ways).
Each epoch's wall time is printed too, since the allocator's behaviour shows in it.
Linux with glibc only.
"""

import argparse
import ctypes
import resource
import sys
import time

from recbole.utils import init_seed

from data_args import add_data_args, data_settings, prepare_raw_data
from recbole_fame import Config
from recbole_fame.data import prepare_data
from recbole_fame.trainer.memory import keep_freed_memory
from speed import build


def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.add_argument("--length_groups", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--trim_each_epoch", action="store_true")
    parser.add_argument("--keep_freed_memory", action="store_true")
    return parser


def main():
    args = build_parser().parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("resident_memory.py reads /proc and calls glibc: Linux only")
    command = prepare_raw_data(args)
    malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    if args.keep_freed_memory and not keep_freed_memory():
        sys.exit("glibc refused keep_freed_memory's thresholds")
    settings = {**data_settings(args), "show_progress": False, "state": "WARNING",
                "pretrain": False, "length_groups": args.length_groups}
    config = Config(model="SASRec", dataset=args.dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = prepare_data(config)[1:]
    trainer = build("SASRec", args.dataset, settings, train)
    print(command)
    print(f"before training: {resident_mib():.0f} MiB resident")
    for epoch in range(args.epochs):
        start = time.perf_counter()
        trainer._train_epoch(train, epoch)
        seconds = time.perf_counter() - start
        print(f"epoch {epoch}: {resident_mib():.0f} MiB resident, peak so far {peak_mib():.0f} MiB, "
              f"{seconds:.1f} s")
        if args.trim_each_epoch:
            malloc_trim(0)
            print(f"epoch {epoch}: after malloc_trim {resident_mib():.0f} MiB")
    trainer.evaluate(valid, load_best_model=False)
    print(f"after validation: {resident_mib():.0f} MiB resident, peak {peak_mib():.0f} MiB")
    malloc_trim(0)
    print(f"after malloc_trim(0): {resident_mib():.0f} MiB resident")


if __name__ == "__main__":
    main()
