"""Compare FAME, FAME w/o MoE (N=1), SASRec, GRU4Rec and CORE (or MIRACLE) on one dataset, over several seeds.

    python run_compare.py --dataset=beauty
    python run_compare.py --dataset=Scientific --models SASRec FAME MIRACLE \
        MIRACLE:pretrained_path=saved/MIRACLE-pretrain.pth,transductive=False
    python run_compare.py --dataset=ml-100k --seeds 2020 2021 --models FAME SASRec --epochs=20

Writes <out>/table.md, table.csv, results.json and chart.png (default out: results/NAME-all, or
results/NAME-excl with --exclude_history=True).
Finished runs are kept in <out>/runs/: the same command again resumes where it stopped.
Their checkpoints are kept in <out>/checkpoints/ and recorded relative to <out>; FAME is fine-tuned
only from a SASRec checkpoint inside <out>/checkpoints/ (loading a checkpoint runs code).
--report_only writes the tables from the finished runs without training (runs made by several
processes into the same <out>).
Every other --key=value is a config key for all models, as in run_fame.py.
"""

import argparse
import os
import shlex
import signal
import sys

from recbole_fame.checkpoint import CheckpointError
from recbole_fame.experiment.compare import (
    DEFAULT_MODELS,
    DEFAULT_SEEDS,
    RunFailed,
    compare,
    default_out,
    parse_overrides,
)


def build_parser():
    # No abbreviations: --seed=1 or --model=X must not silently become --seeds / --models.
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", "-d", required=True, help="dataset name (ml-100k, beauty, ...)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="FAME, FAME-N1 (FAME with n_experts=1), RecBole sequential models, or variants "
                             "Model:key=value,key=value (for FAME: stage-2 settings)")
    parser.add_argument("--out", help="output folder (default results/NAME-all, or results/NAME-excl "
                                      "with --exclude_history=True)")
    parser.add_argument("--config_files", default=None,
                        help="space-separated yaml files (also looked up in properties/)")
    parser.add_argument("--paper_table", default=None,
                        help="a paper's Table 2 as CSV (default: FAME's or MIRACLE's, whichever has the dataset; "
                             "copies shipped in recbole_fame/experiment/)")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: tables from the runs finished in <out>/runs/")
    parser.add_argument("--overwrite", action="store_true",
                        help="let the tables replace files of their names in --out that no comparison wrote")
    return parser


def main():
    args, rest = build_parser().parse_known_args()
    # The command the runs come from: without --report_only it trains what is missing.
    command = " ".join(["python"] + [shlex.quote(arg) for arg in sys.argv if arg != "--report_only"])
    sys.argv = sys.argv[:1]  # RecBole's Config would read the --key=value arguments a second time
    options = {"paper_table": args.paper_table} if args.paper_table else {}
    # kill (SIGTERM) stops a comparison as Ctrl-C does: the run in progress is stopped with it,
    # rather than training on in a process nobody waits for.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config_file_list = args.config_files.split() if args.config_files else None
    try:
        overrides = parse_overrides(rest)
        out = args.out or default_out(args.dataset, config_file_list, overrides)
        compare(
            dataset=args.dataset,
            models=args.models,
            seeds=args.seeds,
            out=out,
            config_file_list=config_file_list,
            overrides=overrides,
            command=command,
            report_only=args.report_only,
            overwrite=args.overwrite,
            **options,
        )
    except (ValueError, OSError, CheckpointError, RunFailed) as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        runs = os.path.join(out, "runs")
        sys.exit(f"interrupted: the finished runs are kept in {runs}; the same command resumes")


if __name__ == "__main__":
    main()
