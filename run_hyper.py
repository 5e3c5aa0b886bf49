"""Hyper-parameter search with RecBole's HyperTuning over FAME's two stages (or any model).

    python run_hyper.py --dataset=ml-100k --params_file=hyper/fame.hyper     # the paper's H x N grid
    python run_hyper.py --params_file=hyper/fame-experts.hyper --n_heads=2   # N only, H fixed
    python run_hyper.py --model=SASRec --params_file=my.hyper --epochs=50    # any model, any key

The grid is written as grid.md, grid.csv and grid.json (see --output_dir).
"""

import argparse
import sys

from recbole_fame.checkpoint import CheckpointError
from recbole_fame.experiment.hyper import hyper_search


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default="FAME", help="FAME or a RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument(
        "--params_file", default="hyper/fame.hyper", help="search space (also looked up in properties/)"
    )
    parser.add_argument(
        "--config_files", default=None, help="space-separated yaml files (also looked up in properties/)"
    )
    parser.add_argument(
        "--output_dir", default=None, help="where the tables go (default: <checkpoint_dir>/hyper-<model>-<dataset>-<time>)"
    )
    parser.add_argument(
        "--algo", default="exhaustive", choices=["exhaustive", "random", "bayes"],
        help="RecBole's HyperTuning algorithms: the whole grid, or max_evals points of hyperopt's",
    )
    parser.add_argument("--max_evals", type=int, default=100, help="points for random and bayes")
    parser.add_argument(
        "--early_stop", type=int, default=10,
        help="random and bayes stop after this many points in a row without a better validation score (0: never)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="let the tables replace grid.md/.csv/.json in --output_dir that no search wrote",
    )
    return parser


def main():
    # Every other --key=value is a RecBole config key, fixed for the whole search.
    args, _ = build_parser().parse_known_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        found = hyper_search(
            model=args.model,
            dataset=args.dataset,
            params_file=args.params_file,
            config_file_list=config_file_list,
            output_dir=args.output_dir,
            algo=args.algo,
            max_evals=args.max_evals,
            early_stop=args.early_stop,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError, CheckpointError) as exc:
        sys.exit(f"error: {exc}")
    print("best: " + " ".join(f"--{k}={v}" for k, v in found["best"]["params"].items()))
    print(f"grid: {found['files']['md']}")


if __name__ == "__main__":
    main()
