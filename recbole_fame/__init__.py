"""recbole-fame: FAME (WSDM 2025), with MIRACLE (SIGIR 2023) beside it, as a RecBole plugin.

``from recbole_fame import FAME, MIRACLE`` gives the model classes; importing the package applies the
RecBole fixes of :mod:`recbole_fame.compat` once. ``load_data_and_model`` and ``recommend`` use a
trained model (:mod:`recbole_fame.inference`); :mod:`recbole_fame.quick_start` is the pipeline
behind ``run_fame.py``.
"""

from recbole_fame import compat

compat.apply()

from recbole_fame.config import Config  # noqa: E402
from recbole_fame.inference import load_data_and_model, recommend  # noqa: E402
from recbole_fame.model import FAME, MIRACLE, get_model  # noqa: E402
from recbole_fame.trainer import FAMETrainer  # noqa: E402

__version__ = "0.2.0"
__all__ = ["FAME", "MIRACLE", "FAMETrainer", "Config", "get_model", "load_data_and_model", "recommend"]
