"""S3-Rec's full ranking for sequential models (config key ``exclude_history``).

RecBole's full-sort evaluation leaves a user's earlier items out of the ranking for general
recommenders only: a sequential model ranks every item, the items of its own input included. The
FAME paper follows "standard practice" [41], S3-Rec, whose preprocessed Amazon files are the
paper's (and ``../shared/datasets``): S3-Rec's full ranking sets the score of every item the user
interacted with before the target to 0 before taking the top k (its ``trainers.py``, with the
rating matrices of ``utils.generate_rating_matrix_valid`` / ``_test``: all items but the last two,
or all but the last). In those files no user has an item twice, so the target is never one of them.

With ``exclude_history: True`` the evaluation loaders return, for sequential samples too, RecBole's
own ``history_index`` (rows, items), whose scores RecBole's trainer sets to -inf, as it does for
general models: the user's training items (the first one included) and the sample's input history,
which at test time holds the validation item (the leave-one-out split is required). -inf rather
than S3-Rec's 0 leaves no such item in the top k even when every other score is negative. A
target the user had before (possible in other data) is then ranked below every other item, as in
S3-Rec.
"""

import functools

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import ModelType


class HistoryExclusion:
    """Mixin for a full-sort evaluation loader: its batches carry the items of each user's past."""

    def __init__(self, config, dataset, sampler, earlier_items, shuffle=False):
        self._earlier_items = earlier_items  # csr [users, items]: the user's training items
        self._item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
        super().__init__(config, dataset, sampler, shuffle=shuffle)

    def collate_fn(self, index):
        interaction, _, positive_u, positive_i = super().collate_fn(index)  # None for sequential
        history_index = earlier_items_index(
            interaction[self.uid_field], interaction[self._item_seq_field], self._earlier_items
        )
        return interaction, history_index, positive_u, positive_i


def earlier_items_index(users, item_seq, earlier_items):
    """``(rows, items)`` of every item in ``earlier_items[users]`` (csr) or in ``item_seq``
    ([B, T], 0 = padding), for ``scores[rows, items] = -inf``; an item may appear twice."""
    rows = earlier_items[users.numpy()]
    counts = np.diff(rows.indptr)
    seq_rows, seq_cols = torch.nonzero(item_seq, as_tuple=True)
    history_u = torch.cat([torch.from_numpy(np.repeat(np.arange(len(counts)), counts)), seq_rows])
    history_i = torch.cat([torch.from_numpy(rows.indices.astype(np.int64)), item_seq[seq_rows, seq_cols]])
    return history_u, history_i


@functools.lru_cache(maxsize=None)
def _excluding(loader_class):
    return type(f"HistoryExcluding{loader_class.__name__}", (HistoryExclusion, loader_class), {})


def history_excluding_dataloaders(config, train_data, valid_data, test_data):
    """The loaders, with the evaluation ones leaving each user's earlier items out of the ranking
    when ``exclude_history`` is on for a sequential model with full-sort evaluation; otherwise (and
    for general models, whose RecBole loaders already do it) the loaders unchanged."""
    if not config["exclude_history"] or config["MODEL_TYPE"] != ModelType.SEQUENTIAL:
        return train_data, valid_data, test_data
    for data in (valid_data, test_data):
        if not isinstance(data, FullSortEvalDataLoader):
            raise ValueError(
                "exclude_history is for full-sort evaluation (eval_args mode: full); "
                f"this config evaluates with {type(data).__name__}"
            )
    # Leave-one-out: the training items and the input history are all the items before the
    # target (the validation item, at test time, is the input's last). Other splits would need
    # the validation items older than the input window too.
    split = config["eval_args"]["split"]
    if list(split) != ["LS"]:
        raise ValueError(f"exclude_history needs the leave-one-out split (eval_args split: LS), got {split}")
    earlier_items = train_data._dataset.inter_matrix(form="csr")
    return (train_data, *(
        _excluding(type(data))(config, data._dataset, data._sampler, earlier_items)
        for data in (valid_data, test_data)
    ))
