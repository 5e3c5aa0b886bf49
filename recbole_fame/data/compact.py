"""Sequential samples stored as positions in each user's interactions, not as padded rows.

RecBole's ``SequentialDataset.data_augmentation`` turns every interaction after a user's first
into a training sample and stores its history as a padded row of every list field
(``item_id_list``, ``timestamp_list``: [samples, MAX_ITEM_LIST_LENGTH] each), built in a Python loop
over the samples: memory grows with interactions x sequence length (about 1.3 GiB per million
interactions at length 50) and the loop alone takes minutes at MovieLens-20M's size.

:class:`CompactSequentialDataset` keeps every interaction once, sorted by user and time as RecBole
sorts them (a CSR-like layout: each user's interactions are one run of the flat arrays), and a
sample as the row of its target plus where its history starts in the flat arrays. The list fields
of a batch are gathered from the flat arrays when the batch is drawn (``dataset[index]``, what
RecBole's loaders call), left-aligned and zero-padded exactly as RecBole's augmentation lays them
out, so RecBole's loaders, trainer and evaluator use it unchanged. Memory is O(interactions)
whatever ``MAX_ITEM_LIST_LENGTH`` is. The samples, their order in each split and every batch equal
RecBole's (``tests/data/test_compact.py``).
"""

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction

# The column of a sample that says where its history starts in the flat arrays.
HISTORY_START = "_history_start"


class CompactInteraction(Interaction):
    """The samples of a :class:`CompactSequentialDataset`: RecBole's ``Interaction`` of the
    samples' own columns (user, target, its time, history length, ``HISTORY_START``), whose list
    fields are gathered from the flat arrays when they are read. Indexing it (a batch, a slice)
    gives a plain ``Interaction`` with the list fields; reading a list field by name gives the
    whole column, as RecBole's augmented rows hold it."""

    def __init__(self, columns, flat_fields, list_suffix, length_field, max_length):
        super().__init__(columns)
        self.flat_fields = flat_fields  # field -> the field's values of every interaction, sorted
        self.list_suffix = list_suffix
        self.length_field = length_field
        self.max_length = max_length
        self.list_fields = {field + list_suffix: field for field in flat_fields}

    def _histories(self, start, length):
        """Each flat field's histories of the samples starting at ``start`` with ``length``."""
        offsets = torch.arange(self.max_length, device=start.device)
        inside = offsets.unsqueeze(0) < length.unsqueeze(1)  # [B, L]
        position = torch.where(inside, start.unsqueeze(1) + offsets, torch.zeros_like(offsets))
        lists = {}
        for list_field, field in self.list_fields.items():
            values = self.flat_fields[field][position]
            padding = ~inside.view(*inside.shape, *[1] * (values.dim() - 2))
            lists[list_field] = values.masked_fill(padding, 0)
        return lists

    def __getitem__(self, index):
        if isinstance(index, str):
            if index in self.list_fields:
                return self._histories(self.interaction[HISTORY_START], self.interaction[self.length_field])[index]
            return self.interaction[index]
        if isinstance(index, (int, np.integer)):  # one sample: scalars, as RecBole's Interaction gives
            return Interaction({field: column[0] for field, column in self[[int(index)]].interaction.items()})
        rows = {field: column[_as_index(index)] for field, column in self.interaction.items()}
        start = rows.pop(HISTORY_START)
        rows.update(self._histories(start, rows[self.length_field]))
        return Interaction(rows)

    def __contains__(self, item):
        return item in self.list_fields or (item in self.interaction and item != HISTORY_START)

    @property
    def columns(self):
        return [field for field in self.interaction if field != HISTORY_START] + list(self.list_fields)

    def take(self, index):
        """The samples at ``index`` (an int64 array), still compact."""
        index = torch.from_numpy(np.asarray(index, dtype=np.int64))
        return CompactInteraction({field: column[index] for field, column in self.interaction.items()},
                                  self.flat_fields, self.list_suffix, self.length_field, self.max_length)


class CompactSequentialDataset(SequentialDataset):
    """RecBole's ``SequentialDataset`` with its augmented samples kept as indices (module docstring)."""

    def data_augmentation(self):
        """The samples RecBole's augmentation makes (every interaction after a user's first, its
        history the at most ``MAX_ITEM_LIST_LENGTH`` interactions before it), vectorised, each
        history stored as its start in the flat arrays."""
        self._aug_presets()
        self._check_field("uid_field", "time_field")
        self.sort(by=[self.uid_field, self.time_field], ascending=True)  # stable, as RecBole sorts
        users = self.inter_feat[self.uid_field].numpy()
        count = len(users)
        first_of_user = np.r_[True, users[1:] != users[:-1]] if count else np.zeros(0, dtype=bool)
        run_start = np.maximum.accumulate(np.where(first_of_user, np.arange(count), 0))
        position = np.arange(count) - run_start  # the interaction's place in its user's history
        targets = torch.from_numpy(np.flatnonzero(position >= 1))
        length = torch.from_numpy(np.minimum(position[targets.numpy()], self.max_item_list_len).astype(np.int64))
        columns = {field: column[targets] for field, column in self.inter_feat.interaction.items()}
        columns[self.item_list_length_field] = length
        columns[HISTORY_START] = targets - length
        # Every field but the user's, once per interaction: what the list fields are gathered from.
        flat_fields = {field: column for field, column in self.inter_feat.interaction.items() if field != self.uid_field}
        self.inter_feat = CompactInteraction(columns, flat_fields, self.config["LIST_SUFFIX"],
                                             self.item_list_length_field, self.max_item_list_len)

    def leave_one_out(self, group_by, leave_one_mode):
        """RecBole's leave-one-out split, the same parts in the same order, without its Python loop
        over the samples (``Dataset._grouped_index``)."""
        if group_by is None:
            raise ValueError("leave one out strategy require a group field")
        leave_one_num = {"valid_and_test": 2, "valid_only": 1, "test_only": 1}.get(leave_one_mode)
        if leave_one_num is None:
            raise NotImplementedError(f"The leave_one_mode [{leave_one_mode}] has not been implemented.")
        parts = leave_one_out_index(self.inter_feat[group_by].numpy(), leave_one_num)
        if leave_one_mode == "valid_only":
            parts.append(np.zeros(0, dtype=np.int64))
        elif leave_one_mode == "test_only":
            parts = [parts[0], np.zeros(0, dtype=np.int64), parts[1]]
        self._drop_unused_col()
        return [self.copy(self.inter_feat.take(index)) for index in parts]

    def inter_matrix(self, form="coo", value_field=None):
        """The user-item matrix of RecBole's ``SequentialDataset.inter_matrix``: every sample's
        target, plus each user's first item (the history of the samples of length 1)."""
        if not self.uid_field or not self.iid_field:
            raise ValueError("dataset does not exist uid/iid, thus can not converted to sparse matrix.")
        feat = self.inter_feat
        first = feat[self.item_list_length_field] == 1
        starts = feat.interaction[HISTORY_START][first]
        merged = {}
        for field, column in feat.interaction.items():
            if field in (HISTORY_START, self.item_list_length_field):
                continue
            extra = feat.flat_fields[field][starts] if field in feat.flat_fields else column[first]
            merged[field] = torch.cat([column, extra])
        return self._create_sparse_matrix(Interaction(merged), self.uid_field, self.iid_field, form, value_field)


def _as_index(index):
    """An index RecBole's ``Interaction`` takes (int, slice, list, array, tensor) as one torch
    can index a column with, without RecBole's conversion of arrays to Python lists."""
    if isinstance(index, np.ndarray):
        return torch.from_numpy(index.astype(np.int64, copy=False))
    return index


def leave_one_out_index(keys, leave_one_num):
    """RecBole's ``Dataset._split_index_by_leave_one_out`` over ``_grouped_index(keys)``, as
    arrays: the rows grouped by key (groups in order of first appearance, rows in order), the last
    ``leave_one_num`` of each group (at most all but one) in the last parts."""
    count = len(keys)
    if count == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(leave_one_num + 1)]
    _, first_seen, group = np.unique(keys, return_index=True, return_inverse=True)
    group_rank = np.empty_like(first_seen)
    group_rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first_seen))
    order = np.argsort(group_rank[group], kind="stable")  # rows grouped, groups by first appearance
    grouped = group[order]
    sizes = np.bincount(group)[grouped]
    group_start = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    position = np.arange(count) - np.repeat(group_start, np.diff(np.r_[group_start, count]))
    left_out = np.minimum(leave_one_num, sizes - 1)
    # A group of n rows: rows 0..n-left_out-1 train, then one row for each of the last left_out parts.
    part = np.where(position < sizes - left_out, 0, leave_one_num + 1 - sizes + position)
    return [order[part == k] for k in range(leave_one_num + 1)]
