"""What the benchmark scripts share: which dataset to use, converting it from a raw file first."""

import json
import os
import shlex
import sys

from recbole_fame.data.converters import convert
from recbole_fame.files import check_replaceable


def add_data_args(parser):
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--raw", help="a 'user item item ...' file to convert first (Beauty.txt)")
    parser.add_argument("--data_path", help="folder of datasets (default: the protocol's, dataset_atomic/; "
                                             "ml-100k: RecBole's bundled copy)")


def prepare_raw_data(args):
    """Returns the command as typed (for the result files), clears the command line that RecBole's
    Config would read as ``--key=value``, and converts ``--raw`` when its atomic file is missing."""
    command = " ".join(["python"] + [shlex.quote(arg) for arg in sys.argv])
    sys.argv = sys.argv[:1]
    folder = args.data_path or "dataset_atomic"
    if args.raw and not os.path.isfile(os.path.join(folder, args.dataset, f"{args.dataset}.inter")):
        convert("sequences", args.raw, folder, args.dataset)
    return command


def data_settings(args):
    """The config keys of ``--data_path``: none when it is not given, so that ml-100k is RecBole's
    bundled copy and other datasets are where the protocol says."""
    return {"data_path": args.data_path} if args.data_path else {}


def add_overwrite_arg(parser):
    parser.add_argument("--overwrite", action="store_true",
                        help="let --out replace a file that is not an earlier report of this benchmark")


def check_report_out(out, benchmark_file, overwrite=False, store_is_ours=None):
    """Before anything runs: the report ``out`` of the benchmark ``benchmark_file`` (its
    ``__file__``) may replace only an earlier report of the same benchmark (each names the command
    that made it), unless ``overwrite``. With ``store_is_ours`` (a test of its parsed JSON), the
    benchmark also keeps ``<out>.json``, which must pass it."""
    script = "benchmarks/" + os.path.basename(benchmark_file)
    check_replaceable(out, script, overwrite, legacy=f"python {script}")
    store = os.path.splitext(out)[0] + ".json"
    if store_is_ours is None or overwrite or not os.path.lexists(store):
        return
    try:
        with open(store, encoding="utf-8") as f:
            ours = store_is_ours(json.load(f))
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise FileExistsError(f"{store} exists and was not written by {script}: choose another --out, "
                              "or add --overwrite to replace it")
