"""Length-bucketed batches for FAME, SASRec, GRU4Rec and CORE (config key ``length_bucketing``).

RecBole pads every history to ``MAX_ITEM_LIST_LENGTH`` and batches at random, so a Transformer
computes every padded position. Here each batch holds histories of similar length and is trimmed to
its longest one. Histories are left-aligned and models read position ``item_length - 1``, so the
per-sample loss and every score stay the same (padding is masked out); only the grouping of samples
into training batches changes: they are drawn from pools of ``bucket_pool_batches`` random batches,
sorted by length within the pool, and the batches are shuffled again.
"""

import math
from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, TrainDataLoader


# Models checked to score every user the same on trimmed batches (tests/test_bucketing.py). Others,
# such as Caser or HGN, size layers by MAX_ITEM_LIST_LENGTH and keep RecBole's batches.
TRIMMABLE_MODELS = ("FAME", "SASRec", "GRU4Rec", "CORE")


class LengthBucketBatchSampler:
    """Index batches over samples of the given lengths: sorted by length within pools of
    ``pool_batches`` batches (over everything when not shuffling), batch order shuffled."""

    def __init__(self, lengths, batch_size, shuffle, generator, pool_batches):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.pool = batch_size * pool_batches if shuffle else max(len(self.lengths), 1)

    def _pools(self):
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        return [order[start : start + self.pool] for start in range(0, n, self.pool)]

    def __iter__(self):
        batches = []
        for pool in self._pools():
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator)]
        return iter([batch.tolist() for batch in batches])

    def __len__(self):
        # Every pool but the last is a whole number of batches.
        return math.ceil(len(self.lengths) / self.batch_size)


class _LengthBuckets:
    """Replaces the batch order of a RecBole dataloader and trims each batch's sequence fields."""

    @property
    def _index_sampler(self):  # what torch's DataLoader iterates over and counts
        if getattr(self, "_length_batches", None) is None:
            lengths = self._dataset.inter_feat[self.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
            self._length_batches = LengthBucketBatchSampler(
                lengths, self.step, self.shuffle, self.generator, self.config["bucket_pool_batches"]
            )
        return self._length_batches

    def collate_fn(self, index):
        batch = super().collate_fn(index)
        trim_sequences(batch[0] if isinstance(batch, tuple) else batch, self.config)
        return batch


def trim_sequences(interaction, config):
    """Cut every history field (``*_list``, as wide as the item history) of ``interaction`` to its
    longest history, in place; batches already trimmed are cut further."""
    longest = int(interaction[config["ITEM_LIST_LENGTH_FIELD"]].max())
    width = interaction[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].size(1)
    if longest >= width:
        return
    for field, value in interaction.interaction.items():
        if field.endswith(config["LIST_SUFFIX"]) and value.dim() >= 2 and value.size(1) == width:
            interaction.interaction[field] = value[:, :longest]


def length_groups_setting(config):
    """The config's ``length_groups``, checked; 1 (off) for configs saved before the key existed."""
    groups = config["length_groups"]
    if groups is None:
        return 1
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"length_groups must be a whole number >= 1 (1: off), got {groups!r}")
    return groups


class LengthBucketTrainDataLoader(_LengthBuckets, TrainDataLoader):
    pass


class LengthBucketEvalDataLoader(_LengthBuckets, FullSortEvalDataLoader):
    pass


def bucket_dataloaders(config, train_data, valid_data, test_data):
    """The same data, batched by length, when ``length_bucketing`` is on for one of ``TRIMMABLE_MODELS``
    in a single process with full-sort evaluation; otherwise the loaders unchanged.

    With ``length_groups`` > 1 (:mod:`recbole_fame.length_groups`) and bucketing off, the training
    batches stay RecBole's and only the evaluation loaders are bucketed: that changes no score.
    """
    bucket_train = config["length_bucketing"]
    if not (bucket_train or length_groups_setting(config) > 1):
        return train_data, valid_data, test_data
    if not (
        config["model"] in TRIMMABLE_MODELS
        and config["single_spec"]
        and isinstance(valid_data, FullSortEvalDataLoader)
        and isinstance(test_data, FullSortEvalDataLoader)  # a sampled test must stay sampled
    ):
        if bucket_train:
            getLogger().warning(
                f"length_bucketing is for {', '.join(TRIMMABLE_MODELS)} in one process with full-sort "
                f"evaluation; {config['model']} keeps RecBole's batches"
            )
        return train_data, valid_data, test_data
    if bucket_train:
        train_data = LengthBucketTrainDataLoader(
            config, train_data._dataset, train_data._sampler, shuffle=train_data.shuffle
        )
    return (
        train_data,
        LengthBucketEvalDataLoader(config, valid_data._dataset, valid_data._sampler, shuffle=False),
        LengthBucketEvalDataLoader(config, test_data._dataset, test_data._sampler, shuffle=False),
    )
