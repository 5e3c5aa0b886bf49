"""Where the plugin's models and yaml files are, and a RecBole ``Config`` that finds them.

Layout as in RecBole-GNN: ``properties/model/<Model>.yaml`` holds a model's defaults,
``properties/overall.yaml`` the evaluation protocol that ``run_fame.py`` applies to every model, and
``properties/dataset/<dataset>.yaml`` the settings the paper gives for one dataset.
``properties/`` sits at the top of the repository and ships inside the wheel as
``recbole_fame/properties``.
"""

import os

from recbole.config import Config as RecBoleConfig
from recbole.utils import InputType

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


class Config(RecBoleConfig):
    """RecBole's ``Config`` that also knows the plugin's models by name (``model='FAME'``), resolves
    ``config_file_list`` names against ``properties/`` (``fame.yaml``), and applies the protocol of
    ``properties/overall.yaml`` under the user's files, to FAME and RecBole's built-ins alike.

    Precedence, lowest first: RecBole's defaults, the model's defaults, the protocol, the
    dataset's settings, the ``config_file_list`` files, ``config_dict``, the command line.

    A config with a ``local_rank`` (a rank of ``--nproc`` training) joins the process group with
    Gloo on machines without a GPU (:func:`~recbole_fame.trainer.distributed.join_process_group`).
    """

    def _load_config_files(self, file_list):
        if file_list:
            file_list = [resolve_config_file(f) for f in file_list]
        return super()._load_config_files(file_list)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if isinstance(model, str) and model in PLUGIN_MODELS:
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        self._update_internal_config_dict(PROTOCOL_FILE)
        dataset_file = dataset_settings_file(dataset)
        if dataset_file is not None:
            self._update_internal_config_dict(dataset_file)

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:
            return super()._init_device()  # one process: RecBole's own device choice
        join_process_group(self.final_config_dict)

    def _set_default_parameters(self):
        # The protocol turns sampled negatives off (CE); a pairwise run needs one per positive.
        pairwise = self.final_config_dict.get("loss_type") == "BPR" or (
            getattr(self.model_class, "input_type", None) == InputType.PAIRWISE
        )
        if pairwise and self.final_config_dict.get("train_neg_sample_args") is None:
            self.final_config_dict["train_neg_sample_args"] = {
                "distribution": "uniform",
                "sample_num": 1,
            }
        super()._set_default_parameters()
