"""The dataset and loaders the pipeline trains and tests with: RecBole's, checked and configured.

:func:`prepare_data` is RecBole's ``create_dataset`` + ``data_preparation`` after a check that the
atomic files are there and well formed, reading RecBole's caches only when asked for and signed
(:mod:`recbole_fame.data.cache`), with the evaluation loaders the config asks for: sorted by history length
and trimmed (``length_groups``, :mod:`recbole_fame.data.length_groups`) and leaving each user's
earlier items out of the ranking (``exclude_history``, :mod:`recbole_fame.data.history`).
"""

import os
from logging import getLogger

import recbole.data.dataset
from recbole.data import create_dataset, create_samplers, data_preparation, get_dataloader
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType

from recbole_fame.data.cache import recbole_caches
from recbole_fame.data.compact import CompactSequentialDataset
from recbole_fame.data.compact_loader import CompactTrainDataLoader
from recbole_fame.data.history import history_excluding_dataloaders
from recbole_fame.data.inter_file import check_interaction_file
from recbole_fame.data.memory_estimate import check_fits
from recbole_fame.data.length_groups import LengthSortedEvalDataLoader, uses_length_groups


def check_dataset_files(config):
    """Raise FileNotFoundError naming the folder searched when a dataset's interaction file is
    absent, :class:`~recbole_fame.data.inter_file.DataFileError` naming the file, line and
    field when one of its rows is malformed or incomplete, and
    :class:`~recbole_fame.data.memory_estimate.NotEnoughMemory` when a sequential dataset would
    not fit the memory available.

    RecBole itself would try to download the dataset (this project's machines have no network)
    or fail with a bare "File ... not exist", and would fill missing values in.
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
            + (" (without data_path, ml-100k is RecBole's bundled copy)" if token == "ml-100k" else "")
        )
    interactions = sum(check_interaction_file(os.path.join(folder, name), config) for name in names)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        check_fits(os.path.join(folder, names[0]), interactions, config["MAX_ITEM_LIST_LENGTH"],
                   compact=uses_compact_sequences(config, quiet=True))


def prepare_data(config):
    """``(dataset, train_data, valid_data, test_data)`` for ``config``."""
    check_dataset_files(config)
    if uses_compact_sequences(config):
        dataset, train_data, valid_data, test_data = _compact_data(config)
    else:
        with recbole_caches(config):  # no pickle is read unless asked for and written by this project
            dataset = create_dataset(config)
            getLogger().info(dataset)
            train_data, valid_data, test_data = data_preparation(config, dataset)
    valid_data, test_data = (_length_sorted(config, data) for data in (valid_data, test_data))
    return (dataset, *history_excluding_dataloaders(config, train_data, valid_data, test_data))


def _compact_data(config):
    """RecBole's ``create_dataset`` + ``data_preparation`` for a compact dataset: its split, its
    samplers and evaluation loaders, and the training loader that keeps no list of the samples.
    RecBole's caches are not used: the compact dataset is built faster than it is unpickled."""
    if any(config[key] for key in ("save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path")):
        getLogger().info("compact_sequences: RecBole's dataset and dataloader caches are not used (the data is built instead)")
    dataset = CompactSequentialDataset(config)
    getLogger().info(dataset)
    parts = dataset.build()
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, parts)
    train_data = CompactTrainDataLoader(config, parts[0], train_sampler, shuffle=config["shuffle"])
    valid_data = get_dataloader(config, "valid")(config, parts[1], valid_sampler, shuffle=False)
    test_data = get_dataloader(config, "test")(config, parts[2], test_sampler, shuffle=False)
    return dataset, train_data, valid_data, test_data


def uses_compact_sequences(config, quiet=False):
    """Whether ``config``'s samples are stored compactly (:mod:`recbole_fame.data.compact`): with
    ``compact_sequences`` on, for every model RecBole gives its plain ``SequentialDataset``
    (FAME, SASRec, GRU4Rec, CORE, ...), not for models with a dataset class of their own or
    for pre-augmented benchmark files (logged)."""
    if not config["compact_sequences"] or config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return False
    own_class = hasattr(recbole.data.dataset, config["model"] + "Dataset")
    if own_class or config["benchmark_filename"]:
        if quiet:
            return False
        reason = f"RecBole's {config['model']}Dataset" if own_class else "benchmark_filename"
        getLogger().info(f"compact_sequences: {config['model']} keeps RecBole's augmented rows ({reason})")
        return False
    return True


def _length_sorted(config, data):
    """``data`` sorted by length and trimmed, for a model trained in length groups in one process
    with full-sort evaluation (a sampled evaluation must stay sampled); otherwise ``data``."""
    if uses_length_groups(config) and config["single_spec"] and type(data) is FullSortEvalDataLoader:
        return LengthSortedEvalDataLoader(config, data._dataset, data._sampler, shuffle=False)
    return data
