"""Batches computed in groups of similar history length (config key ``length_groups``).

RecBole pads every history of a batch to ``MAX_ITEM_LIST_LENGTH``; on Beauty the median training
history holds 4 items of 50. With ``length_groups`` > 1 the training batches stay RecBole's own
(same samples, same order, same optimizer steps), but each is sorted by history length and cut
into at most ``length_groups`` contiguous groups, each trimmed to its own longest history
(:func:`grouped_loss`). The batch's loss is the size-weighted sum of the groups' mean losses, i.e.
the mean over the batch, so loss and gradients are the whole batch's up to float rounding; only
dropout draws its masks group by group. Evaluation batches are sorted by length and trimmed too
(:class:`LengthSortedEvalDataLoader`), which changes no score.

Models read position ``item_length - 1`` of left-aligned histories and mask padding, so trimming
changes no sample's score or loss for the models of ``TRIMMABLE_MODELS`` (tested). Where to cut a
batch is chosen by a small dynamic programme over its distinct lengths (:func:`group_bounds`).
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.interaction import Interaction

# Models checked to score every user the same on trimmed batches (tests/data/test_length_groups.py).
# Others, such as Caser or HGN, size layers by MAX_ITEM_LIST_LENGTH and keep RecBole's batches.
TRIMMABLE_MODELS = ("FAME", "SASRec", "GRU4Rec", "CORE")

# One more group's fixed cost, in history positions (the per-pass cost of its kernels and of its
# share of the [batch, n_items] cross-entropy): with it, a handful of long histories is not split
# off into a group of its own unless that saves this many padded positions.
_GROUP_COST = 512


def length_groups_setting(config):
    """The config's ``length_groups``, checked; 1 (off) for configs saved before the key existed."""
    groups = config["length_groups"]
    if groups is None:
        return 1
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"length_groups must be a whole number >= 1 (1: off), got {groups!r}")
    return groups


def uses_length_groups(config):
    """Whether ``config``'s model trains and evaluates in length groups."""
    return length_groups_setting(config) > 1 and config["model"] in TRIMMABLE_MODELS


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


def group_bounds(lengths, max_groups, group_cost=_GROUP_COST):
    """Cut points of ``lengths`` sorted ascending into at most ``max_groups`` contiguous groups.

    Returns ``[0, b_1, ..., len(lengths)]``: group g holds sorted positions ``b_g`` to ``b_{g+1}``.
    Minimises ``sum(size_g * longest_g) + group_cost * groups``; ties go to fewer groups.
    """
    values, counts = np.unique(np.asarray(lengths), return_counts=True)
    taken = np.concatenate([[0], np.cumsum(counts)])  # samples in the first j distinct values
    longest = np.concatenate([[0], values]).astype(np.float64)
    # cost[i, j]: one group of the distinct values i .. j-1 (so of samples taken[i] .. taken[j]).
    cost = (taken[None, :] - taken[:, None]) * longest[None, :] + group_cost
    cost[np.tril_indices(len(taken))] = np.inf
    best = [cost[0]]  # best[t][j]: the first j values in exactly t + 1 groups
    parents = [None]
    for _ in range(1, min(max_groups, len(values))):
        total = best[-1][:, None] + cost
        parents.append(total.argmin(0))
        best.append(total.min(0))
    groups = int(np.argmin([b[-1] for b in best]))  # the first minimum: the fewest groups
    bounds, j = [len(values)], len(values)
    for t in range(groups, 0, -1):
        j = int(parents[t][j])
        bounds.append(j)
    bounds.append(0)
    return [int(taken[j]) for j in reversed(bounds)]


def grouped_loss(loss_func, config, group_cost=_GROUP_COST):
    """``loss_func`` (a model's ``calculate_loss``) on a batch computed in length groups.

    With a tuple of losses, each part is weighted the same way. Works for mean-reduced losses,
    which RecBole's sequential models return.
    """
    length_field = config["ITEM_LIST_LENGTH_FIELD"]
    max_groups = length_groups_setting(config)

    def loss(interaction):
        lengths = interaction[length_field]
        order = torch.argsort(lengths, stable=True)
        bounds = group_bounds(lengths[order].cpu().numpy(), max_groups, group_cost)
        if len(bounds) == 2:  # one group: the batch itself, trimmed
            groups = [interaction]
        else:  # reordered once; each group is a slice of it
            ordered = {field: value[order] for field, value in interaction.interaction.items()}
            groups = [Interaction({field: value[start:end] for field, value in ordered.items()})
                      for start, end in zip(bounds[:-1], bounds[1:])]
        total = None
        for group in groups:
            trim_sequences(group, config)
            losses = loss_func(group)
            parts = losses if isinstance(losses, tuple) else (losses,)
            weighted = [part * (len(group) / len(interaction)) for part in parts]
            total = weighted if total is None else [a + b for a, b in zip(total, weighted)]
        return tuple(total) if isinstance(losses, tuple) else total[0]

    return loss


class LengthSortedEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-sort evaluation loader over its samples sorted by history length, each batch
    trimmed to its longest history: the same scores for every sample, less padding computed."""

    _length_batches = None

    @property
    def _index_sampler(self):  # what torch's DataLoader iterates over and counts
        if self._length_batches is None:
            lengths = self._dataset.inter_feat[self.config["ITEM_LIST_LENGTH_FIELD"]].numpy()
            order = np.argsort(lengths, kind="stable")
            self._length_batches = [order[start : start + self.step].tolist()
                                    for start in range(0, len(order), self.step)]
        return self._length_batches

    def collate_fn(self, index):
        batch = super().collate_fn(index)
        trim_sequences(batch[0], self.config)
        return batch
