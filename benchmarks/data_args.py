"""What the benchmark scripts share: which dataset to use, converting it from a raw file first."""

import os
import shlex
import sys

from recbole_fame.data.converters import convert
from recbole_fame.files import check_replaceable


def add_data_args(parser):
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--raw", help="a 'user item item ...' file to convert first (Beauty.txt)")
    parser.add_argument("--data_path", default="dataset_atomic")


def prepare_raw_data(args):
    """Returns the command as typed (for the result files), clears the command line that RecBole's
    Config would read as ``--key=value``, and converts ``--raw`` when its atomic file is missing."""
    command = " ".join(["python"] + [shlex.quote(arg) for arg in sys.argv])
    sys.argv = sys.argv[:1]
    if args.raw and not os.path.isfile(os.path.join(args.data_path, args.dataset, f"{args.dataset}.inter")):
        convert("sequences", args.raw, args.data_path, args.dataset)
    return command


def add_overwrite_arg(parser):
    parser.add_argument("--overwrite", action="store_true",
                        help="let --out replace a file that is not an earlier report of this benchmark")


def check_report_out(out, benchmark_file, overwrite=False):
    """Before anything runs: the report ``out`` of the benchmark ``benchmark_file`` (its
    ``__file__``) may replace only an earlier report of the same benchmark (each names the command
    that made it), unless ``overwrite``."""
    script = "benchmarks/" + os.path.basename(benchmark_file)
    check_replaceable(out, script, overwrite, legacy=f"python {script}")
