"""recbole-fame: FAME (WSDM 2025) as a RecBole plugin.

``from recbole_fame import FAME`` gives the model class; importing the package applies the
RecBole compatibility fixes of :mod:`recbole_fame.compat` once. ``load_data_and_model`` and
``recommend`` use a trained model (:mod:`recbole_fame.inference`).
"""

from recbole_fame import compat

compat.apply()

from recbole_fame.config import Config, get_model  # noqa: E402
from recbole_fame.inference import load_data_and_model, recommend  # noqa: E402
from recbole_fame.model import FAME  # noqa: E402

__version__ = "0.1.0"
__all__ = ["FAME", "Config", "get_model", "load_data_and_model", "recommend"]
