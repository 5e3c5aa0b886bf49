"""RecBole's dataset and dataloader caches are pickles: read only when asked for, and only when this
project wrote them for the same settings."""

import logging
import os
import pickle

import pytest

from recbole_fame.config import Config
from recbole_fame.data import prepare_data
from recbole_fame.data.cache import dataset_cache_file, loaders_cache_file
from recbole_fame.quick_start import run


class Planted:
    """Unpickling it makes a folder: proof that a file was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def plant(path, marker):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(Planted(str(marker)), f)


def test_the_planted_pickle_would_run(tmp_path):
    plant(str(tmp_path / "p.pth"), tmp_path / "ran")
    with open(tmp_path / "p.pth", "rb") as f:
        pickle.load(f)
    assert (tmp_path / "ran").is_dir()


@pytest.mark.parametrize("compact", [False, True])
def test_pickles_where_recbole_looks_are_not_loaded(tiny_config, tmp_path, caplog, compact):
    tiny_config = {**tiny_config, "compact_sequences": compact}  # the compact path builds, never reads
    config = Config(model="SASRec", dataset="tiny", config_dict=tiny_config)
    plant(dataset_cache_file(config), tmp_path / "ran-dataset")
    plant(loaders_cache_file(config), tmp_path / "ran-loaders")
    planted_elsewhere = str(tmp_path / "elsewhere.pth")
    plant(planted_elsewhere, tmp_path / "ran-named")

    prepare_data(config)  # caches off (the default)
    run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    # Asked for, but not written by this project: still not read.
    prepare_data(Config(model="SASRec", dataset="tiny",
                        config_dict={**tiny_config, "save_dataset": True, "save_dataloaders": True}))
    prepare_data(Config(model="SASRec", dataset="tiny",
                        config_dict={**tiny_config, "dataset_save_path": planted_elsewhere,
                                     "dataloaders_save_path": planted_elsewhere}))
    assert not any(name.startswith("ran") for name in os.listdir(tmp_path))
    if compact:
        return
    assert f"Not reading {dataset_cache_file(config)}: caches are off" in caplog.text
    assert f"Not reading {planted_elsewhere}: it has no valid signature of recbole-fame" in caplog.text


def test_caches_this_project_wrote_are_read_and_tampered_ones_are_not(tiny_config, caplog):
    caplog.set_level(logging.INFO)
    # RecBole's own dataset (the compact one is not cached: it builds in seconds).
    settings = {**tiny_config, "save_dataset": True, "save_dataloaders": True, "state": "INFO",
                "compact_sequences": False}
    config = Config(model="SASRec", dataset="tiny", config_dict=settings)
    first = prepare_data(config)
    dataset_file = dataset_cache_file(config)
    assert os.path.isfile(dataset_file) and os.path.isfile(dataset_file + ".sig")
    assert os.path.isfile(loaders_cache_file(config) + ".sig")

    caplog.clear()
    second = prepare_data(Config(model="SASRec", dataset="tiny", config_dict=settings))
    assert "Load filtered dataset from" in caplog.text and "Load split dataloaders from" in caplog.text
    assert second[0].inter_num == first[0].inter_num

    # Other settings: the signature does not match, the file is rebuilt, not read.
    caplog.clear()
    prepare_data(Config(model="SASRec", dataset="tiny", config_dict={**settings, "seed": 7}))
    assert "Load filtered dataset from" not in caplog.text
    assert f"Not reading {dataset_file}: it has no valid signature" in caplog.text

    with open(dataset_file, "ab") as f:  # one byte more than was signed
        f.write(b"\0")
    caplog.clear()
    prepare_data(Config(model="SASRec", dataset="tiny", config_dict=settings))
    assert "Load filtered dataset from" not in caplog.text


def test_the_signing_key_is_the_users_alone(tiny_config, tmp_path):
    prepare_data(Config(model="SASRec", dataset="tiny",
                        config_dict={**tiny_config, "save_dataloaders": True, "compact_sequences": False}))
    key = tmp_path / "cache" / "recbole-fame" / "cache-signing-key"
    assert key.is_file() and oct(key.stat().st_mode & 0o777) == "0o600" and len(key.read_bytes()) == 32


def test_a_file_planted_where_recbole_saves_is_never_signed(tiny_config, tmp_path):
    settings = {**tiny_config, "save_dataset": True, "compact_sequences": False}
    config = Config(model="SASRec", dataset="tiny", config_dict=settings)
    prepare_data(config)  # writes and signs the dataset cache
    default = dataset_cache_file(config)
    moved = str(tmp_path / "mine.pth")
    os.rename(default, moved)
    os.rename(default + ".sig", moved + ".sig")
    plant(default, tmp_path / "ran")
    # The signed copy is read from where it was moved; RecBole saves nothing, so nothing is signed.
    prepare_data(Config(model="SASRec", dataset="tiny", config_dict={**settings, "dataset_save_path": moved}))
    assert not os.path.exists(default + ".sig")
    prepare_data(Config(model="SASRec", dataset="tiny", config_dict=settings))
    assert not (tmp_path / "ran").exists()
