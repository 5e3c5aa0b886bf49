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

Loading is made lean too: RecBole reads the interaction file with pandas' Python engine into
columns of Python strings (tens of bytes per token, for every one of tens of millions of rows),
counts the k-core filter with ``Counter`` in Python loops, and remaps the ids from the strings.
Here the token columns are read by pandas' C reader as categoricals (a small integer code per row
and each distinct token once), the k-core filter counts with ``bincount``, and the remap factorizes
the codes, giving every token the id RecBole gives it (its order of first appearance).
"""

import numpy as np
import pandas as pd
import torch
from pandas.api.types import union_categoricals
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

# The column of a sample that says where its history starts in the flat arrays.
HISTORY_START = "_history_start"


class CompactInteraction(Interaction):
    """The samples of a :class:`CompactSequentialDataset`: RecBole's ``Interaction`` of the
    samples' own columns (user, target, its time, history length, ``HISTORY_START``), whose list
    fields are gathered from the flat arrays when they are read. Indexing it (a batch, a slice)
    gives a plain ``Interaction`` with the list fields; reading a list field by name gives the
    whole column, as RecBole's augmented rows hold it.

    Integer columns are stored as 32-bit when their values fit (``wide`` holds the type RecBole
    gives them, and everything read is in that type): half the memory of RecBole's 64-bit ids."""

    def __init__(self, columns, flat_fields, list_suffix, length_field, max_length, wide):
        super().__init__(columns)
        self.flat_fields = flat_fields  # field -> the field's values of every interaction, sorted
        self.list_suffix = list_suffix
        self.length_field = length_field
        self.max_length = max_length
        self.wide = wide  # field -> the dtype it is read as, for the fields stored narrower
        self.list_fields = {field + list_suffix: field for field in flat_fields}

    def _read(self, field, values):
        return values.to(self.wide[field]) if field in self.wide else values

    def _histories(self, start, length):
        """Each flat field's histories of the samples starting at ``start`` with ``length``."""
        offsets = torch.arange(self.max_length, device=start.device)
        inside = offsets.unsqueeze(0) < length.unsqueeze(1)  # [B, L]
        position = torch.where(inside, start.unsqueeze(1).long() + offsets, torch.zeros_like(offsets))
        lists = {}
        for list_field, field in self.list_fields.items():
            values = self._read(field, self.flat_fields[field][position])
            padding = ~inside.view(*inside.shape, *[1] * (values.dim() - 2))
            lists[list_field] = values.masked_fill(padding, 0)
        return lists

    def __getitem__(self, index):
        if isinstance(index, str):
            if index in self.list_fields:
                return self._histories(self.interaction[HISTORY_START], self.interaction[self.length_field])[index]
            return self._read(index, self.interaction[index])
        if isinstance(index, (int, np.integer)):  # one sample: scalars, as RecBole's Interaction gives
            return Interaction({field: column[0] for field, column in self[[int(index)]].interaction.items()})
        rows = {field: column[_as_index(index)] for field, column in self.interaction.items()}
        start = rows.pop(HISTORY_START)
        length = rows[self.length_field]
        rows = {field: self._read(field, column) for field, column in rows.items()}
        rows.update(self._histories(start, length))
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
                                  self.flat_fields, self.list_suffix, self.length_field, self.max_length, self.wide)


def _narrow(columns):
    """``columns`` with each 64-bit integer column that fits stored as 32-bit, and the type
    each such column is read as."""
    wide = {}
    for field, column in columns.items():
        if column.dtype == torch.int64 and column.dim() == 1 and (
                not len(column) or (column.min() >= -2**31 and column.max() < 2**31)):
            columns[field], wide[field] = column.to(torch.int32), torch.int64
    return columns, wide


class CompactSequentialDataset(SequentialDataset):
    """RecBole's ``SequentialDataset`` with its augmented samples kept as indices (module docstring)."""

    def _load_feat(self, filepath, source):
        """RecBole's reading of the interaction file with its token columns as categoricals
        (module docstring); other files, and interaction files with sequence columns, as RecBole
        reads them."""
        if source != FeatureSource.INTERACTION:
            return super()._load_feat(filepath, source)
        load_col, unload_col = self._get_load_and_unload_col(source)
        separator, encoding = self.config["field_separator"], self.config["encoding"]
        with open(filepath, encoding=encoding) as f:
            header = f.readline().rstrip("\r\n").split(separator)
        columns = [column.split(":") for column in header]
        loaded = [(field, kind) for field, kind in columns if (load_col is None or field in load_col)
                  and (unload_col is None or field not in unload_col)]
        if load_col == set() or not loaded or any(kind.endswith("seq") for _, kind in loaded):
            return super()._load_feat(filepath, source)
        for field, kind in loaded:  # the properties RecBole's _load_feat sets
            self.field2source[field] = source
            self.field2type[field] = FeatureType(kind)
            self.field2seqlen[field] = 1
            if kind == "float":
                self.field2bucketnum[field] = 2
        usecols = [f"{field}:{kind}" for field, kind in loaded]
        dtype = {column: np.float64 if column.endswith(":float") else "category" for column in usecols}
        frame = pd.read_csv(filepath, sep=separator, usecols=usecols, dtype=dtype, encoding=encoding,
                            engine="c" if len(separator) == 1 else "python")
        frame = frame[usecols]  # RecBole keeps the file's column order
        frame.columns = [field for field, _ in loaded]
        return frame

    def _filter_by_inter_num(self):
        """RecBole's k-core filter (``user_inter_num_interval``, ``item_inter_num_interval``),
        counted with ``bincount`` over codes instead of ``Counter``; with user or item features
        loaded, RecBole's own."""
        if self.uid_field is None or self.iid_field is None or self.user_feat is not None or self.item_feat is not None:
            return super()._filter_by_inter_num()
        intervals = [self._parse_intervals_str(self.config[key])
                     for key in ("user_inter_num_interval", "item_inter_num_interval")]
        if intervals == [None, None]:
            return None
        codes = [pd.factorize(self.inter_feat[field])[0] for field in (self.uid_field, self.iid_field)]
        kept = np.ones(len(self.inter_feat), dtype=bool)
        while True:
            banned_rows = np.zeros(len(kept), dtype=bool)
            for code, interval in zip(codes, intervals):
                if not interval:
                    continue
                counts = np.bincount(code[kept], minlength=code.max() + 1 if len(code) else 0)
                banned = (counts > 0) & ~self._within_intervals(counts, interval)
                banned_rows |= banned[code]
            banned_rows &= kept
            if not banned_rows.any():
                break
            kept &= ~banned_rows
        self.inter_feat = self.inter_feat[kept]
        return None

    def _remap(self, remap_list):
        """RecBole's remap (ids in order of first appearance over the fields of ``remap_list``),
        by factorizing categorical codes instead of strings; other columns as RecBole remaps them."""
        categorical = [isinstance(feat[field].dtype, pd.CategoricalDtype) for feat, field, _ in remap_list]
        if not remap_list or not all(categorical) or any(ftype != FeatureType.TOKEN for _, _, ftype in remap_list):
            for (feat, field, _), is_categorical in zip(remap_list, categorical):
                if is_categorical:
                    feat[field] = feat[field].astype(object)
            return super()._remap(remap_list)
        # One category space for all the fields: codes then follow the tokens' identity.
        union = union_categoricals([feat[field].array for feat, field, _ in remap_list], ignore_order=True)
        ids, tokens = pd.factorize(union)  # order of first appearance, as RecBole's factorize of the tokens
        mapping = np.array(["[PAD]"] + list(np.asarray(tokens, dtype=object)))
        token_id = {token: i for i, token in enumerate(mapping)}
        for (feat, field, _), new_ids in zip(remap_list, np.split(ids + 1, np.cumsum([len(feat) for feat, _, _ in remap_list])[:-1])):
            if field not in self.field2id_token:
                self.field2id_token[field] = mapping
                self.field2token_id[field] = token_id
            feat[field] = new_ids

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
        columns, wide = _narrow(columns)
        flat_fields, flat_wide = _narrow(flat_fields)
        self.inter_feat = CompactInteraction(columns, flat_fields, self.config["LIST_SUFFIX"],
                                             self.item_list_length_field, self.max_item_list_len, {**flat_wide, **wide})

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
        starts = feat.interaction[HISTORY_START][first].long()
        merged = {}
        for field in feat.interaction:
            if field in (HISTORY_START, self.item_list_length_field):
                continue
            column = feat[field]
            extra = feat._read(field, feat.flat_fields[field][starts]) if field in feat.flat_fields else column[first]
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
