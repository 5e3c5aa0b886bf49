"""Convert a raw benchmark file to RecBole atomic files under dataset_atomic/<name>/.

    python dataset_atomic/convert.py sequences ../shared/datasets/Beauty.txt --name=beauty
    python dataset_atomic/convert.py movielens path/to/ml-20m/ratings.csv --name=ml-20m
    python dataset_atomic/convert.py amazon path/to/reviews.json --name=sports

Then: python run_fame.py --dataset=<name> --config_files=fame.yaml

<name> is a plain name (letters, digits, '-', '_', '.', starting with a letter or digit) and the
output must lie inside --out. Bad input stops with one line, "error: ...", naming the file and
line, and leaves any existing output untouched.
"""

import argparse
import sys

from recbole_fame.data.converters import ConversionError, convert


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("source", choices=["sequences", "movielens", "amazon"])
    parser.add_argument("input", help="the raw file")
    parser.add_argument(
        "--name", required=True,
        help="dataset name (letters, digits, '-', '_', '.'): writes <out>/<name>/<name>.inter",
    )
    parser.add_argument("--out", default="dataset_atomic", help="folder of datasets (default: dataset_atomic)")
    parser.add_argument("--min_core", type=int, default=5, help="k-core for movielens and amazon (default 5)")
    parser.add_argument("--overwrite", action="store_true", help="replace <out>/<name>/<name>.inter if it exists")
    return parser


def main():
    args = build_parser().parse_args()
    try:
        path, count = convert(args.source, args.input, args.out, args.name, args.min_core, args.overwrite)
    except (ConversionError, OSError) as exc:  # OSError: a missing input, a folder not writable
        sys.exit(_one_line(exc))
    print(f"wrote {count} interactions to {path}")


def _one_line(exc):
    """``exc`` as the single ``error: ...`` line the script promises (line breaks in a path escaped)."""
    return "error: " + str(exc).replace("\r", "\\r").replace("\n", "\\n")


if __name__ == "__main__":
    main()
