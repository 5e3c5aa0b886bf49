"""Join datasets with item text into one, for MIRACLE's pre-training on several domains.

    python dataset_atomic/merge.py Office ml-100k:movie_title,class --name=pretrain-office-ml-100k

Each DATASET[:FIELDS] is a folder <data_path>/<dataset>/ with <dataset>.inter and <dataset>.item
(ml-100k: RecBole's bundled copy); FIELDS are the item fields whose text is used (default: text).
User and item ids become <dataset>/<id>, so no two datasets share one. Writes
<out>/<name>/<name>.inter and <name>.item (item_id, text). Bad input stops with one line,
"error: ...", naming the file.
"""

import argparse
import os
import sys

from recbole_fame.data.converters import ConversionError
from recbole_fame.data.text_datasets import merge_datasets


def source_folder(dataset, data_path):
    """The folder of ``dataset``: under ``data_path``, or RecBole's bundled ml-100k."""
    folder = os.path.join(data_path, dataset)
    if dataset == "ml-100k" and not os.path.isdir(folder):
        import recbole

        folder = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Dataset folder not found: {folder} (convert it first: dataset_atomic/convert.py)")
    return folder


def parse_source(spec, data_path):
    dataset, _, fields = spec.partition(":")
    fields = [field for field in fields.split(",") if field] or ["text"]
    return dataset, source_folder(dataset, data_path), fields


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("datasets", nargs="+", metavar="DATASET[:FIELDS]")
    parser.add_argument("--name", required=True, help="the merged dataset's name")
    parser.add_argument("--data_path", default="dataset_atomic", help="folder of the datasets (default: dataset_atomic)")
    parser.add_argument("--out", default="dataset_atomic", help="folder of datasets to write to (default: dataset_atomic)")
    parser.add_argument("--overwrite", action="store_true", help="replace <out>/<name>/ files if they exist")
    return parser


def main():
    args = build_parser().parse_args()
    try:
        sources = [parse_source(spec, args.data_path) for spec in args.datasets]
        path, count, items = merge_datasets(sources, args.out, args.name, args.overwrite)
    except (ConversionError, OSError) as exc:
        sys.exit("error: " + str(exc).replace("\n", "\\n"))
    print(f"wrote {count} interactions of {items} items to {path}")


if __name__ == "__main__":
    main()
