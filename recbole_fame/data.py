"""Checks on a dataset's atomic files before RecBole reads them."""

import os


def check_dataset_files(config):
    """Raise FileNotFoundError naming the folder searched when a dataset's interaction file is absent.

    RecBole itself would try to download the dataset (this project's machines have no network)
    or fail with a bare "File ... not exist".
    """
    folder = config["data_path"]  # RecBole has already joined data_path and the dataset name
    token = config["dataset"]
    if config["benchmark_filename"]:
        names = [f"{token}.{part}.inter" for part in config["benchmark_filename"]]
    else:
        names = [f"{token}.inter"]
    missing = [os.path.join(folder, name) for name in names if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            f"Dataset '{token}': no interaction file at {os.path.abspath(missing[0])}. "
            f"Put RecBole atomic files ({token}.inter, optionally {token}.item and {token}.user) "
            f"in {os.path.abspath(folder)}, or pass --data_path=DIR where DIR/{token}/ holds them. "
            f"To make them from raw files: python dataset_atomic/convert.py "
            f"{{sequences,movielens,amazon}} RAW_FILE --name={token} "
            f"--out={os.path.dirname(os.path.abspath(folder))}"
        )
