"""The plugin's models (FAME, MIRACLE), found by name beside RecBole's, and built as the pipeline trains them.

One model per module, as in RecBole: :mod:`~recbole_fame.model.fame` (with its layers in
:mod:`~recbole_fame.model.layers`), :mod:`~recbole_fame.model.miracle` (with
:mod:`~recbole_fame.model.capsules`); :mod:`~recbole_fame.model.fast_layers` holds the faster
layers swapped into every model the pipeline builds (``fast_layers``).
"""

import importlib

from recbole.utils import get_model as recbole_get_model

from recbole_fame.model.fame import FAME
from recbole_fame.model.fast_layers import use_fast_layers
from recbole_fame.model.miracle import MIRACLE

# Model name -> module inside recbole_fame.model, one model per module.
PLUGIN_MODELS = {"FAME": "recbole_fame.model.fame", "MIRACLE": "recbole_fame.model.miracle"}


def get_model(model_name):
    """The plugin's model class for ``model_name``, else RecBole's built-in of that name."""
    if model_name in PLUGIN_MODELS:
        return getattr(importlib.import_module(PLUGIN_MODELS[model_name]), model_name)
    return recbole_get_model(model_name)


def build_model(config, dataset, load_pretrained=True):
    """``config``'s model for ``dataset`` on ``config``'s device, with the ``fast_layers`` it was
    trained with, so that a reloaded model is the trained one.

    ``load_pretrained=False`` builds it without reading ``pretrained_path``, for weights that
    come from a checkpoint anyway: a finished FAME does not need, or re-read, the SASRec it
    started from.
    """
    pretrained_path = config["pretrained_path"]
    if not load_pretrained and pretrained_path:
        config["pretrained_path"] = None
    try:
        model = get_model(config["model"])(config, dataset).to(config["device"])
    finally:
        if not load_pretrained and pretrained_path:
            config["pretrained_path"] = pretrained_path
    if config["fast_layers"]:
        use_fast_layers(model)
    return model


__all__ = ["FAME", "MIRACLE", "PLUGIN_MODELS", "build_model", "get_model"]
