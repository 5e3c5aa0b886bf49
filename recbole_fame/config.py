"""Where the plugin's models and yaml files are, and a RecBole ``Config`` that finds them.

Layout as in RecBole-GNN: ``properties/model/<Model>.yaml`` holds a model's defaults,
``properties/overall.yaml`` the evaluation protocol that ``run_fame.py`` applies to every model, and
``properties/dataset/<dataset>.yaml`` the settings the paper gives for one dataset.
``properties/`` sits at the top of the repository and ships inside the wheel as
``recbole_fame/properties``.
"""

import os
import sys

import yaml
from recbole.config import Config as RecBoleConfig
from recbole.utils import InputType

from recbole_fame.config_checks import ConfigError, check_model_name
from recbole_fame.model import PLUGIN_MODELS, get_model
from recbole_fame.trainer.distributed import join_process_group

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _find_properties_dir():
    for candidate in (
        os.path.join(_PACKAGE_DIR, "properties"),  # installed wheel
        os.path.join(os.path.dirname(_PACKAGE_DIR), "properties"),  # source checkout
    ):
        if os.path.isfile(os.path.join(candidate, "model", "FAME.yaml")):
            return candidate
    raise FileNotFoundError(
        f"recbole_fame's properties/ folder (with model/FAME.yaml) is missing next to {_PACKAGE_DIR}; "
        "reinstall the package"
    )


PROPERTIES_DIR = _find_properties_dir()
PROTOCOL_FILE = os.path.join(PROPERTIES_DIR, "overall.yaml")

def model_defaults_file(model_name):
    """``properties/model/<model_name>.yaml`` for the plugin's models, None for others."""
    if model_name not in PLUGIN_MODELS:
        return None
    return os.path.join(PROPERTIES_DIR, "model", f"{model_name}.yaml")


def dataset_settings_file(dataset):
    """``properties/dataset/<dataset>.yaml`` when the plugin has settings for ``dataset``."""
    path = os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml")
    return path if os.path.isfile(path) else None


def resolve_config_file(path):
    """A config file as given, or else the one of that name in ``properties/``."""
    if os.path.isfile(path):
        return path
    bundled = os.path.join(PROPERTIES_DIR, path)
    if os.path.isfile(bundled):
        return bundled
    raise FileNotFoundError(
        f"Config file '{path}' not found: looked at {os.path.abspath(path)} and {bundled}"
    )


def read_config_file(path, loader):
    """The settings of one yaml config file, as a dict (``loader``: RecBole's yaml loader, which
    reads ``1e-3`` as a number); :class:`ConfigError` naming the file (and the line) when it is not
    UTF-8, not valid yaml, or not a mapping of keys to values."""
    try:
        with open(path, encoding="utf-8") as f:
            settings = yaml.load(f.read(), Loader=loader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}{where}: not valid yaml ({problem})") from None
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ConfigError(f"config file {path}: expected 'key: value' lines, got a {type(settings).__name__}")
    return settings


# Pipeline keys left at ~ (None) take the value measured to help on the run's device type
# (docs/speed.md): the CPU speedups are off on a GPU, where length_groups made epochs slower.
DEVICE_DEFAULTS = {
    "fast_layers": {"cpu": True, "cuda": False},
    "length_groups": {"cpu": 4, "cuda": 1},
}


def resolve_device_defaults(settings):
    """Set each ``DEVICE_DEFAULTS`` key that ``settings`` (a config dict with ``device``) leaves
    at None to its device type's value; returns ``{key: value}`` of what was chosen, to log."""
    device = settings.get("device")
    kind = getattr(device, "type", str(device or "cpu")).split(":")[0]
    chosen = {}
    for key, by_device in DEVICE_DEFAULTS.items():
        if key in settings and settings[key] is None:
            settings[key] = chosen[key] = by_device.get(kind, by_device["cpu"])
    return chosen


class Config(RecBoleConfig):
    """RecBole's ``Config`` that also knows the plugin's models by name (``model='FAME'``), resolves
    ``config_file_list`` names against ``properties/`` (``fame.yaml``), and applies the protocol of
    ``properties/overall.yaml`` under the user's files, to FAME and RecBole's built-ins alike.

    Precedence, lowest first: RecBole's defaults, RecBole's model defaults, the protocol, the
    plugin model's defaults (``properties/model/<model>.yaml``), the dataset's settings, the ``config_file_list`` files, ``config_dict``, the command line.

    A config with a ``local_rank`` (a rank of ``--nproc`` training) joins the process group with
    Gloo on machines without a GPU (:func:`~recbole_fame.trainer.distributed.join_process_group`).
    """

    def _load_config_files(self, file_list):
        # RecBole's reader gives a yaml syntax error, a non-UTF-8 file or an empty one without the
        # file's name (or as "'NoneType' object is not iterable").
        self.config_files = [resolve_config_file(f) for f in file_list or []]
        self.config_file_settings = [(path, read_config_file(path, self.yaml_loader)) for path in self.config_files]
        settings = {}
        for _, file_settings in self.config_file_settings:
            settings.update(file_settings)
        return settings

    def _load_cmd_line(self):
        # RecBole refuses a key given twice with different values with a bare SyntaxError.
        given = {}
        for arg in sys.argv[1:]:
            key, equals, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if equals and key in given and given[key] != value:
                raise ConfigError(f"--{key} is given twice, as --{key}={given[key]} and --{key}={value}: give it once")
            given.setdefault(key, value)
        return super()._load_cmd_line()

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str):
            # RecBole's get_model answers an unknown name with an ImportError of xgboost or lightgbm.
            check_model_name(model, PLUGIN_MODELS)
            if model in PLUGIN_MODELS:
                model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self._update_internal_config_dict(PROTOCOL_FILE)
        # A plugin model's own paper settings over the protocol's (MIRACLE's batch size; FAME's
        # file repeats the protocol's values).
        model_file = model_defaults_file(model if isinstance(model, str) else getattr(model, "__name__", None))
        if model_file is not None:
            self._update_internal_config_dict(model_file)
        dataset_file = dataset_settings_file(dataset)
        if dataset_file is not None:
            self._update_internal_config_dict(dataset_file)

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            super()._init_device()  # one process: RecBole's own device choice
        else:
            join_process_group(self.final_config_dict)
        self.device_choices = resolve_device_defaults(self.final_config_dict)

    def _set_default_parameters(self):
        # RecBole always reads ml-100k from its bundled copy, whatever data_path says; a data_path
        # the user gives is where the user's files are (check_dataset_files then finds them or says so).
        user_data_path = self.external_config_dict.get("data_path")
        # The protocol turns sampled negatives off (CE); a pairwise run needs one per positive.
        pairwise = self.final_config_dict.get("loss_type") == "BPR" or (
            getattr(self.model_class, "input_type", None) == InputType.PAIRWISE
        )
        if pairwise and self.final_config_dict.get("train_neg_sample_args") is None:
            self.final_config_dict["train_neg_sample_args"] = {
                "distribution": "uniform",
                "sample_num": 1,
            }
        try:
            super()._set_default_parameters()
        except (NotImplementedError, RuntimeError, TypeError) as exc:  # RecBole's checks of metrics and topk
            raise ConfigError(f"{exc} (metrics={self.final_config_dict.get('metrics')!r}, "
                              f"topk={self.final_config_dict.get('topk')!r})") from None
        if self.dataset == "ml-100k" and user_data_path is not None:
            self.final_config_dict["data_path"] = os.path.join(user_data_path, self.dataset)
