"""Convert a raw benchmark file to RecBole atomic files under dataset_atomic/<name>/.

    python dataset_atomic/convert.py sequences ../shared/datasets/Beauty.txt --name=beauty
    python dataset_atomic/convert.py movielens path/to/ml-20m/ratings.csv --name=ml-20m
    python dataset_atomic/convert.py amazon path/to/reviews.json --name=sports
    python dataset_atomic/convert.py benchmark ../shared/datasets/Scientific --name=Scientific
    python dataset_atomic/convert.py json ../shared/datasets/Office --name=Office

benchmark (RecBole benchmark files split by leave-one-out, with <name>.text) and json (the
<name>.inter.json / <name>.item.json pair) also write <name>.item with the items' text
(recbole_fame/data/text_datasets.py); dataset_atomic/merge.py joins such datasets for
MIRACLE's pre-training.

Then: python run_fame.py --dataset=<name> --config_files=fame.yaml

<name> is a plain name (letters, digits, '-', '_', '.', starting with a letter or digit) and the
output must lie inside --out. Bad input stops with one line, "error: ...", naming the file and
line, and leaves any existing output untouched.
"""

import argparse
import sys

from recbole_fame.data.converters import ConversionError, convert
from recbole_fame.data.text_datasets import convert_text_dataset


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("source", choices=["sequences", "movielens", "amazon", "benchmark", "json"])
    parser.add_argument("input", help="the raw file (benchmark, json: the dataset folder)")
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
        if args.source in ("benchmark", "json"):
            path, count, items = convert_text_dataset(args.source, args.input, args.out, args.name, args.overwrite)
        else:
            path, count = convert(args.source, args.input, args.out, args.name, args.min_core, args.overwrite)
    except (ConversionError, OSError) as exc:  # OSError: a missing input, a folder not writable
        sys.exit(_one_line(exc))
    print(f"wrote {count} interactions to {path}" + (f" and the text of {items} items beside it" if args.source in (
        "benchmark", "json") else ""))


def _one_line(exc):
    """``exc`` as the single ``error: ...`` line the script promises (line breaks in a path escaped)."""
    return "error: " + str(exc).replace("\r", "\\r").replace("\n", "\\n")


if __name__ == "__main__":
    main()
