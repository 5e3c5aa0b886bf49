"""Train and test FAME (default) or any RecBole model through the same pipeline.

    python run_fame.py                                   # FAME on RecBole's bundled ml-100k
    python run_fame.py --dataset=ml-20m --config_files=fame.yaml
    python run_fame.py --model=SASRec --epochs=5         # any RecBole model, any config key
    python run_fame.py --nproc=2                         # 2 processes, DistributedDataParallel
"""

import argparse
import sys

from recbole_fame.checkpoint import CheckpointError
from recbole_fame.quick_start import run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default="FAME", help="FAME or a RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument(
        "--config_files", default=None, help="space-separated yaml files (also looked up in properties/)"
    )
    # Multi-process training, as RecBole's run_recbole.py (NCCL on GPUs, Gloo on CPUs).
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", default="localhost", help="address of the machine of rank 0")
    parser.add_argument("--port", default="5678", help="free port on the machine of rank 0")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    # Every other --key=value is a RecBole config key, read by Config from the command line.
    args, _ = parser.parse_known_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        run(
            model=args.model,
            dataset=args.dataset,
            config_file_list=config_file_list,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except (FileNotFoundError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
