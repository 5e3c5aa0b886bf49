"""Cross-entropy training without the items of each sample's input (key ``train_exclude_history``).

Under ``exclude_history`` (:mod:`recbole_fame.data.history`) the evaluation never ranks an item the user
had before, but RecBole's cross-entropy still trains every target against all items, those of the
sample's own input included. Where no user has an item twice (ml-100k, S3-Rec's Amazon files),
part of every gradient then goes to pushing down items the evaluation leaves out anyway. With
``train_exclude_history: True`` each training sample's softmax leaves out the items of its input
sequence (the ``MAX_ITEM_LIST_LENGTH`` most recent ones) and the padding item, the target
excepted when the user had it before, so such a sample's loss stays finite.

It applies to the models whose loss is ``loss_fct(logits [B, n_items], pos_items)`` with
``loss_type: CE``: FAME, SASRec, GRU4Rec and CORE. The FAME paper trains with the global
cross-entropy (Eq. 18); the key is off by default (``properties/overall.yaml``).
"""

import torch
import torch.nn.functional as F
from torch import nn

# Models whose calculate_loss is ``self.loss_fct(logits over all items, pos_items)`` under CE.
HISTORY_LOSS_MODELS = ("FAME", "SASRec", "GRU4Rec", "CORE")


class HistoryMaskedCrossEntropy(nn.Module):
    """``nn.CrossEntropyLoss()`` over each row's items but those of its ``item_seq`` ([B, T], 0 =
    padding) and the padding item 0, the row's target always kept.

    Item 0 is left out of every row, as RecBole's full-sort evaluation leaves it out, not only of
    the rows whose input is padded: a row's loss then does not depend on how far its batch (or
    its length group) is padded.
    """

    def __init__(self, item_seq):
        super().__init__()
        self.item_seq = item_seq

    def forward(self, logits, target):
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, self.item_seq, True)  # [B, n_items]
        seen[:, 0] = True
        seen[torch.arange(len(target), device=target.device), target] = False
        return F.cross_entropy(logits.masked_fill(seen, float("-inf")), target)


def history_masked_loss(loss_func, model, config):
    """``loss_func`` (``model.calculate_loss``) with ``model.loss_fct`` swapped, for each call, for
    a :class:`HistoryMaskedCrossEntropy` of that call's input sequences."""
    item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]

    def loss(interaction):
        global_loss = model.loss_fct
        model.loss_fct = HistoryMaskedCrossEntropy(interaction[item_seq_field])
        try:
            return loss_func(interaction)
        finally:
            model.loss_fct = global_loss

    return loss


def uses_history_masked_loss(config):
    """Whether ``train_exclude_history`` is on; ValueError naming the key for a bad value, or for a
    model or loss it does not apply to."""
    setting = config["train_exclude_history"]
    if setting in (None, False):
        return False
    if setting is not True:
        raise ValueError(f"train_exclude_history must be True or False, got {setting!r}")
    if config["model"] not in HISTORY_LOSS_MODELS:
        raise ValueError(
            f"train_exclude_history is for {', '.join(HISTORY_LOSS_MODELS)} (a cross-entropy over "
            f"all items); model {config['model']} does not train that way"
        )
    if config["loss_type"] != "CE":
        raise ValueError(f"train_exclude_history needs loss_type: CE, got loss_type: {config['loss_type']}")
    return True
