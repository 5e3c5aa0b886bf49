"""What the benchmark scripts share: which dataset to use, converting it from a raw file first."""

import os
import shlex
import sys

from recbole_fame.data.converters import convert


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
