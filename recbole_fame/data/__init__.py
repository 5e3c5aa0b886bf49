"""Data: raw files to RecBole atomic files, and the dataset and loaders the pipeline uses.

:mod:`~recbole_fame.data.preparation` (dataset and loaders), :mod:`~recbole_fame.data.converters`
(raw benchmark files to atomic files), :mod:`~recbole_fame.data.item_file` (the ``.item`` file),
:mod:`~recbole_fame.data.history` (ranking without each user's earlier items) and
:mod:`~recbole_fame.data.length_groups` (batches computed in groups of similar length).
"""

from recbole_fame.data.preparation import check_dataset_files, prepare_data

__all__ = ["check_dataset_files", "prepare_data"]
