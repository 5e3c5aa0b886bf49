"""Length-bucketed, trimmed batches change no score and no per-sample loss."""

import pytest
import torch
from recbole.utils import get_model as recbole_get_model

from recbole_fame import get_model
from recbole_fame.bucketing import LengthBucketBatchSampler, bucket_dataloaders

from helpers import make_config, make_data


def test_batch_sampler_covers_every_sample_once():
    lengths = torch.randint(1, 50, (1000,)).numpy()
    sampler = LengthBucketBatchSampler(lengths, 64, True, torch.Generator().manual_seed(0), 4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    # Within a batch lengths are close: sorted inside pools of 4 batches.
    spread = sum(lengths[b].max() - lengths[b].min() for b in batches) / len(batches)
    assert spread < 25
    again = list(LengthBucketBatchSampler(lengths, 64, True, torch.Generator().manual_seed(0), 4))
    assert again == batches

    ordered = list(LengthBucketBatchSampler(lengths, 64, False, None, 4))
    odd = LengthBucketBatchSampler(lengths[:999], 50, True, torch.Generator().manual_seed(1), 3)
    assert len(list(odd)) == len(odd) == 20
    assert len(ordered) == 16 and [lengths[b].max() for b in ordered] == sorted(lengths[b].max() for b in ordered)


def _scores_by_user(model, loader):
    scores = {}
    with torch.no_grad():
        for interaction, _, _, _ in loader:
            for uid, row in zip(interaction[model.USER_ID].tolist(), model.full_sort_predict(interaction)):
                scores[uid] = row
    return scores


@pytest.mark.parametrize("model_name", ["FAME", "SASRec", "GRU4Rec", "CORE"])
def test_bucketed_evaluation_scores_every_user_the_same(tiny_config, model_name):
    config = make_config(model_name, {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_bucketing": True})
    _, train_data, valid_data, test_data = make_data(config)
    bucketed = bucket_dataloaders(config, train_data, valid_data, test_data)
    assert type(bucketed[2]).__name__ == "LengthBucketEvalDataLoader"
    model = get_model(model_name)(config, train_data._dataset).eval()

    widths = [batch[0][model.ITEM_SEQ].size(1) for batch in bucketed[2]]
    assert min(widths) < 20, "trimming should shorten some batches"
    plain, trimmed = _scores_by_user(model, test_data), _scores_by_user(model, bucketed[2])
    assert plain.keys() == trimmed.keys()
    for uid in plain:
        torch.testing.assert_close(trimmed[uid], plain[uid], rtol=0, atol=1e-5)


def test_bucketed_training_batches_keep_the_per_sample_loss(tiny_config):
    config = make_config("SASRec", {**tiny_config, "MAX_ITEM_LIST_LENGTH": 20, "length_bucketing": True,
                                    "train_batch_size": 16, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0})
    _, train_data, valid_data, test_data = make_data(config)
    bucketed_train, _, _ = bucket_dataloaders(config, train_data, valid_data, test_data)
    model = recbole_get_model("SASRec")(config, train_data._dataset).eval()
    seen = 0
    for batch in bucketed_train:
        assert batch[model.ITEM_SEQ].size(1) == int(batch[model.ITEM_SEQ_LEN].max())
        padded = batch[model.ITEM_SEQ].new_zeros(len(batch), 20)
        padded[:, : batch[model.ITEM_SEQ].size(1)] = batch[model.ITEM_SEQ]
        with torch.no_grad():
            trimmed_loss = model.calculate_loss(batch)
            batch.interaction[model.ITEM_SEQ] = padded
            padded_loss = model.calculate_loss(batch)
        torch.testing.assert_close(trimmed_loss, padded_loss, rtol=0, atol=1e-5)
        seen += len(batch)
    assert seen == len(train_data._dataset)


def test_bucketing_is_off_by_default(tiny_config):
    config = make_config("SASRec", tiny_config)
    loaders = make_data(config)[1:]
    assert bucket_dataloaders(config, *loaders)[0] is loaders[0]  # length_groups: RecBole's batches
    config = make_config("SASRec", tiny_config, length_groups=1)
    assert bucket_dataloaders(config, *loaders) == loaders


def test_pipeline_with_bucketing(tiny_config, monkeypatch):
    from recbole_fame import quick_start

    used = []

    def recording(*args):
        loaders = bucket_dataloaders(*args)
        used.extend(type(loader).__name__ for loader in loaders)
        return loaders

    monkeypatch.setattr(quick_start, "bucket_dataloaders", recording)
    result = quick_start.run(model="FAME", dataset="tiny", config_dict={**tiny_config, "length_bucketing": True})
    assert used == ["LengthBucketTrainDataLoader"] + ["LengthBucketEvalDataLoader"] * 2
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert 0.0 <= result["pretrain_result"]["test_result"]["hit@10"] <= 1.0


def test_models_sized_by_max_length_keep_stock_batches(tiny_config):
    config = make_config("Caser", {**tiny_config, "length_bucketing": True})
    loaders = make_data(config)[1:]
    assert bucket_dataloaders(config, *loaders) == loaders
