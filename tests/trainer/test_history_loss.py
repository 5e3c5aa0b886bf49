"""Training with a cross-entropy that leaves out each sample's input items (train_exclude_history)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import make_config, make_data
from recbole_fame import get_model
from recbole_fame.data.length_groups import group_bounds, grouped_loss
from recbole_fame.quick_start import run
from recbole_fame.trainer import get_trainer
from recbole_fame.trainer.history_loss import HistoryMaskedCrossEntropy, history_masked_loss


def reference_loss(logits, item_seq, target):
    """Mean over rows of the cross-entropy over the items outside the row's input and the padding
    item 0 (the target kept)."""
    losses = []
    for row, seq, t in zip(logits, item_seq, target):
        kept = [i for i in range(len(row)) if i == t or i not in {0, *seq.tolist()}]
        losses.append(-F.log_softmax(row[kept], 0)[kept.index(int(t))])
    return torch.stack(losses).mean()


def test_masked_cross_entropy_is_the_cross_entropy_over_the_other_items():
    torch.manual_seed(0)
    logits = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    item_seq = torch.tensor([[1, 2, 0, 0], [3, 3, 5, 1], [6, 2, 4, 1]])  # row 2 is not padded
    target = torch.tensor([4, 5, 7])  # row 1's target is in its input: kept, so its loss is finite
    loss = HistoryMaskedCrossEntropy(item_seq)(logits, target)
    torch.testing.assert_close(loss, reference_loss(logits, item_seq, target), rtol=0, atol=1e-12)
    loss.backward()
    # The items left out get no gradient, padding included; the target and the others do.
    for row, left_out in ((0, [0, 1, 2]), (1, [0, 1, 3]), (2, [0, 1, 2, 4, 6])):
        assert torch.equal(logits.grad[row, left_out], torch.zeros(len(left_out), dtype=torch.float64))
    assert (logits.grad[1, 5] < 0).item() and (logits.grad[1, 4] > 0).item()
    # With only padding in the input, it is the plain cross-entropy over the items but item 0.
    padding_only = HistoryMaskedCrossEntropy(torch.zeros(3, 1, dtype=torch.long))(logits, target)
    assert torch.equal(padding_only, F.cross_entropy(logits[:, 1:], target - 1))


@pytest.mark.parametrize("model_name", ["FAME", "SASRec", "GRU4Rec", "CORE"])
def test_each_model_trains_against_its_full_scores_without_the_input(tiny_config, model_name):
    config = make_config(model_name, {**tiny_config, "train_exclude_history": True})
    _, train_data, _, _ = make_data(config)
    model = get_model(model_name)(config, train_data._dataset).eval()  # eval: no dropout draws
    global_loss = model.loss_fct
    loss_func = history_masked_loss(model.calculate_loss, model, config)
    for batch in itertools.islice(train_data, 2):
        item_seq, target = batch[model.ITEM_SEQ], batch[model.POS_ITEM_ID]
        scores = model.full_sort_predict(batch)
        assert torch.equal(loss_func(batch), HistoryMaskedCrossEntropy(item_seq)(scores, target))
        assert not torch.equal(loss_func(batch), model.calculate_loss(batch))
        assert model.loss_fct is global_loss  # put back after each call


def test_length_groups_mask_each_group_by_its_own_samples(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_groups": 3,
                                    "train_exclude_history": True})
    _, train_data, _, _ = make_data(config)
    model = get_model("SASRec")(config, train_data._dataset).eval()
    masked = history_masked_loss(model.calculate_loss, model, config)
    grouped = grouped_loss(masked, config, group_cost=8)
    split_somewhere = False
    for batch in itertools.islice(train_data, 2):
        split_somewhere |= len(group_bounds(np.sort(batch[model.ITEM_SEQ_LEN].numpy()), 3, 8)) > 2
        # Up to float rounding, as without the mask (test_length_groups.py).
        torch.testing.assert_close(grouped(batch), masked(batch), rtol=0, atol=1e-5)
    assert split_somewhere


def _trainer(config):
    _, train_data, _, _ = make_data(config)
    return get_trainer(config)(config, get_model(config["model"])(config, train_data._dataset))


def test_the_trainer_uses_it_only_when_asked(tiny_config):
    config = make_config("SASRec", tiny_config, length_groups=1)
    assert config["train_exclude_history"] is False
    trainer = _trainer(config)
    assert trainer.training_loss(trainer.model.calculate_loss) == trainer.model.calculate_loss
    config["train_exclude_history"] = True
    trainer = _trainer(config)
    batch = next(iter(make_data(config)[1]))
    masked = history_masked_loss(trainer.model.calculate_loss, trainer.model, config)
    trainer.model.eval()
    assert torch.equal(trainer.training_loss(trainer.model.calculate_loss)(batch), masked(batch))
    assert not torch.equal(masked(batch), trainer.model.calculate_loss(batch))


@pytest.mark.parametrize("model_name, overrides, message", [
    ("SASRec", {"loss_type": "BPR"}, "train_exclude_history needs loss_type: CE, got loss_type: BPR"),
    ("BERT4Rec", {}, "train_exclude_history is for FAME, SASRec, GRU4Rec, CORE .*model BERT4Rec"),
    ("SASRec", {"train_exclude_history": "yes"}, "train_exclude_history must be True or False, got 'yes'"),
])
def test_it_refuses_what_it_does_not_apply_to(tiny_config, model_name, overrides, message):
    config = make_config(model_name, {**tiny_config, "train_exclude_history": True, **overrides})
    with pytest.raises(ValueError, match=message):
        _trainer(config)


def test_a_run_trains_with_it_and_gives_metrics(tiny_config, monkeypatch):
    calls = []
    forward = HistoryMaskedCrossEntropy.forward
    monkeypatch.setattr(HistoryMaskedCrossEntropy, "forward",
                        lambda self, logits, target: calls.append(len(target)) or forward(self, logits, target))
    result = run("FAME", "tiny", config_dict={**tiny_config, "epochs": 2, "train_exclude_history": True})
    assert set(result["test_result"]) >= {"hit@10", "ndcg@10"}
    assert all(0 <= value <= 1 for value in result["test_result"].values())
    # Every training sample of every epoch of both stages went through it.
    _, train_data, _, _ = make_data(make_config("SASRec", tiny_config))
    epochs = result["pretrain_result"]["epochs_run"] + result["epochs_run"]
    assert epochs == 4 and sum(calls) == epochs * len(train_data.dataset)
