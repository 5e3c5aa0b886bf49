"""RecBole's training loader for a compact dataset, without a Python list of every sample index.

RecBole's ``AbstractDataLoader`` hands torch's ``DataLoader`` ``list(range(samples))`` as its
dataset, and torch's ``RandomSampler`` and ``DistributedSampler`` turn each epoch's permutation
into one Python list: at MovieLens-20M's 20 million samples each such list holds 20 million
Python ints (28 bytes each, plus an 8-byte pointer: about 0.7 GiB), as much as the compact samples
themselves. :class:`CompactTrainDataLoader` is RecBole's
``TrainDataLoader`` whose torch loader iterates ``range(samples)`` with samplers that draw the same
permutation from the same generator and yield it in chunks: the same batches in the same order
(``tests/data/test_compact.py`` trains on both and compares the runs).
"""

import math
from logging import getLogger

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.transform import construct_transform
from recbole.utils import ModelType
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

CHUNK = 1 << 16  # indices turned into Python ints at a time


class ChunkedRandomSampler(RandomSampler):
    """torch's ``RandomSampler`` without replacement, with a generator: the same permutations
    drawn the same way (one per full pass, then one for the remainder), yielded in chunks."""

    def __iter__(self):
        n = len(self.data_source)
        for _ in range(self.num_samples // n):
            for chunk in torch.randperm(n, generator=self.generator).split(CHUNK):
                yield from chunk.tolist()
        yield from torch.randperm(n, generator=self.generator)[: self.num_samples % n].tolist()


class ChunkedDistributedSampler(DistributedSampler):
    """torch's ``DistributedSampler``: the same rank's share of the same epoch's permutation
    (padded to a multiple of the ranks, or cut with ``drop_last``), yielded in chunks."""

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=generator)
        else:
            indices = torch.arange(n)
        if not self.drop_last:
            padding = self.total_size - n
            indices = torch.cat([indices, indices.repeat(math.ceil(padding / n))[:padding]]) if padding else indices
        else:
            indices = indices[: self.total_size]
        for chunk in indices[self.rank : self.total_size : self.num_replicas].split(CHUNK):
            yield from chunk.tolist()


class CompactTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` over ``range(samples)`` (module docstring)."""

    def __init__(self, config, dataset, sampler, shuffle=False):
        # TrainDataLoader's and NegSampleDataLoader's part, as they do it.
        self.logger = getLogger()
        self._set_neg_sample_args(config, dataset, config["MODEL_INPUT_TYPE"], config["train_neg_sample_args"])
        self.sample_size = len(dataset)
        # AbstractDataLoader's part, with a range and the chunked samplers in place of its lists.
        self.shuffle = shuffle
        self.config = config
        self._dataset = dataset
        self._sampler = sampler
        self._batch_size = self.step = self.model = None
        self._init_batch_size_and_step()
        self.generator = torch.Generator()
        self.generator.manual_seed(config["seed"])
        self.transform = construct_transform(config)
        self.is_sequential = config["MODEL_TYPE"] == ModelType.SEQUENTIAL
        indices = range(self.sample_size)
        index_sampler = None
        if not config["single_spec"]:
            index_sampler = ChunkedDistributedSampler(indices, shuffle=shuffle, drop_last=False)
            self.step = max(1, self.step // config["world_size"])
        elif shuffle:
            index_sampler = ChunkedRandomSampler(indices, generator=self.generator)
        DataLoader.__init__(
            self, dataset=indices, batch_size=self.step, collate_fn=self.collate_fn,
            num_workers=config["worker"], sampler=index_sampler, generator=self.generator,
        )
