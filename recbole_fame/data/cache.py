"""RecBole's dataset and dataloader caches, read only when asked for and only when this project
wrote them, for this config.

RecBole's ``create_dataset`` and ``data_preparation`` unpickle ``<checkpoint_dir>/<dataset>-<Class>.pth``
and ``<checkpoint_dir>/<dataset>-for-<model>-dataloader.pth`` (or ``dataset_save_path`` /
``dataloaders_save_path``) whenever such a file exists, and unpickling runs whatever code the file
holds: a file planted there ran under a plain ``python run_fame.py``. :func:`recbole_caches` lets
RecBole read a cache only when the config asks for caches (``save_dataset``, ``dataset_save_path``,
``save_dataloaders``, ``dataloaders_save_path``) and the file carries a signature this project
wrote beside it (``<file>.sig``): an HMAC, with a key kept in the user's cache folder, of the
file's bytes and of the settings that built it (RecBole's dataset arguments, the seed, the data
files' sizes and times). Any other file there is left unread, with a warning, and rebuilt.
"""

import contextlib
import hashlib
import hmac
import importlib
import json
import os
import secrets
import shutil
import tempfile
from logging import getLogger

from recbole.utils import ModelType
from recbole.utils.argument_list import dataset_arguments

from recbole_fame.files import write_json

SIGNATURE_SUFFIX = ".sig"


def _key_file():
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "recbole-fame", "cache-signing-key")


def _signing_key():
    """This user's secret key for cache signatures, created (readable by the user only) on first use."""
    path = _key_file()
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
    with open(path, "rb") as f:
        return f.read()


def _data_files(config):
    folder = config["data_path"]
    return sorted(
        os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(f"{config['dataset']}.")
    ) if os.path.isdir(folder) else []


def settings_fingerprint(config, loaders=False):
    """What a cache of ``config``'s dataset (or its loaders) depends on, as a hex digest."""
    keys = dataset_arguments + ["seed", "repeatable", "dataset"] + (["eval_args", "model"] if loaders else [])
    settings = {key: config[key] for key in keys}
    settings["data_files"] = [(os.path.basename(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in _data_files(config)]
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(path, fingerprint):
    message = f"{_file_digest(path)}:{fingerprint}".encode("ascii")
    return hmac.new(_signing_key(), message, hashlib.sha256).hexdigest()


def sign(path, fingerprint):
    """Write ``<path>.sig``: this project wrote ``path`` for the settings ``fingerprint``."""
    write_json(path + SIGNATURE_SUFFIX, {"written_by": "recbole-fame", "settings": fingerprint,
                                          "hmac_sha256": _signature(path, fingerprint)})


def is_signed(path, fingerprint):
    """Whether ``<path>.sig`` says this project wrote ``path`` for ``fingerprint`` (read as JSON,
    never unpickled)."""
    try:
        with open(path + SIGNATURE_SUFFIX, encoding="utf-8") as f:
            stored = json.load(f)
        return stored.get("settings") == fingerprint and hmac.compare_digest(
            str(stored.get("hmac_sha256")), _signature(path, fingerprint)
        )
    except (OSError, ValueError, AttributeError):
        return False


def dataset_cache_file(config):
    """Where RecBole's ``Dataset.save`` writes and ``create_dataset`` looks by default."""
    module = importlib.import_module("recbole.data.dataset")
    if hasattr(module, config["model"] + "Dataset"):  # RecBole's own rule for the dataset class
        name = config["model"] + "Dataset"
    else:
        name = {ModelType.SEQUENTIAL: "SequentialDataset", ModelType.KNOWLEDGE: "KnowledgeBasedDataset"}.get(
            config["MODEL_TYPE"], "Dataset"
        )
    return os.path.join(config["checkpoint_dir"], f"{config['dataset']}-{name}.pth")


def loaders_cache_file(config):
    """Where RecBole's ``save_split_dataloaders`` writes and ``load_split_dataloaders`` looks by default."""
    return os.path.join(config["checkpoint_dir"], f"{config['dataset']}-for-{config['model']}-dataloader.pth")


def _identity(path):
    """What tells a file apart from the one written next (None when there is none)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


# (config key of the path RecBole reads, config key that saves, default file, loaders?)
_CACHES = (
    ("dataset_save_path", "save_dataset", dataset_cache_file, False),
    ("dataloaders_save_path", "save_dataloaders", loaders_cache_file, True),
)


@contextlib.contextmanager
def recbole_caches(config):
    """Around RecBole's ``create_dataset`` and ``data_preparation``: RecBole reads a cache only
    when the config asks for caches and the file is signed by this project for this config, and
    the caches RecBole saves inside the block are signed when it ends."""
    logger = getLogger()
    nowhere = tempfile.mkdtemp(prefix="recbole-fame-no-cache-")  # empty: RecBole finds nothing there
    saved = {key: config[key] for key, _, _, _ in _CACHES}
    # Only a file RecBole writes inside the block is signed after it: one already there (planted,
    # or left by another program) stays as it is, unsigned.
    before = {key: _identity(default_file(config)) for key, _, default_file, _ in _CACHES}
    try:
        for path_key, save_key, default_file, loaders in _CACHES:
            path = config[path_key] or default_file(config)
            asked = bool(config[path_key] or config[save_key])
            if asked and os.path.isfile(path) and is_signed(path, settings_fingerprint(config, loaders)):
                config[path_key] = path
                continue
            if os.path.exists(path):
                reason = "caches are off (save_dataset, save_dataloaders)" if not asked else (
                    "it has no valid signature of recbole-fame for these settings"
                )
                logger.warning(f"Not reading {path}: {reason}. A .pth file runs code when it is loaded.")
            config[path_key] = os.path.join(nowhere, "none.pth")
        yield
        for path_key, save_key, default_file, loaders in _CACHES:
            written = _identity(default_file(config))
            if config[save_key] and written is not None and written != before[path_key]:
                sign(default_file(config), settings_fingerprint(config, loaders))
    finally:
        for key, value in saved.items():
            config[key] = value
        shutil.rmtree(nowhere, ignore_errors=True)
