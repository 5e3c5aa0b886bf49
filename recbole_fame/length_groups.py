"""RecBole's training batches, computed in groups of similar history length (key ``length_groups``).

RecBole pads every history of a batch to ``MAX_ITEM_LIST_LENGTH``; on Beauty the median training
history holds 4 items of 50. :mod:`recbole_fame.bucketing` regroups the samples into batches of
similar length, which changes what each optimizer step sees. Here the batches stay RecBole's own
(same samples, same order, same steps): each one is sorted by history length and cut into at most
``length_groups`` contiguous groups, each trimmed to its own longest history, and the loss of the
batch is the size-weighted sum of the groups' mean losses, which is the mean over the batch. The
loss and the gradients are the whole batch's up to float rounding; only dropout draws its masks
group by group. Models read position ``item_length - 1`` of left-aligned histories and mask
padding, so trimming changes no sample's loss (``bucketing.TRIMMABLE_MODELS``, tested).

Where to cut is chosen per batch by a small dynamic programme over its distinct lengths: it
minimises the positions computed (group size x group length, summed) plus ``_GROUP_COST`` positions
per group, the fixed cost of one more forward and backward pass.
"""

from logging import getLogger

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_fame.bucketing import TRIMMABLE_MODELS, length_groups_setting, trim_sequences

# One more group's fixed cost, in history positions (the per-pass cost of its kernels and of its
# share of the [batch, n_items] cross-entropy): with it, a handful of long histories is not split
# off into a group of its own unless that saves this many padded positions.
_GROUP_COST = 512


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


class LengthGroupsMixin:
    """Put before a RecBole ``Trainer`` subclass: its training epochs use :func:`grouped_loss`."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss_func = grouped_loss(loss_func or self.model.calculate_loss, self.config)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)


def length_grouped(trainer_class, config):
    """``trainer_class`` with :class:`LengthGroupsMixin` when ``length_groups`` > 1 for one of
    ``TRIMMABLE_MODELS``; otherwise unchanged (for other models that is logged)."""
    if length_groups_setting(config) == 1:
        return trainer_class
    if config["model"] not in TRIMMABLE_MODELS:  # info: the key is on by default
        getLogger().info(
            f"length_groups is for {', '.join(TRIMMABLE_MODELS)}; {config['model']} trains on whole batches"
        )
        return trainer_class
    return type(f"LengthGrouped{trainer_class.__name__}", (LengthGroupsMixin, trainer_class), {})
