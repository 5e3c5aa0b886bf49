import pytest
import torch
from recbole.model.layers import MultiHeadAttention
from recbole.model.abstract_recommender import SequentialRecommender

from recbole_fame.model.layers import MoEMultiHeadAttention

from helpers import build_fame, first_batch


def test_shapes_and_dtypes(tiny_config):
    model, train_data, test_data = build_fame(tiny_config)
    interaction = first_batch(train_data)
    loss = model.calculate_loss(interaction)
    assert loss.dim() == 0 and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    expert_query = model.trm_encoder.layer[-1].multi_head_attention.expert_query
    assert expert_query.weight.grad is not None and expert_query.weight.grad.abs().sum() > 0

    model.eval()
    batch = first_batch(test_data)
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch), model.n_items) and scores.dtype == torch.float32
    gate, head_scores = model.facet_scores(batch)
    assert gate.shape == (len(batch), 2)
    assert head_scores.shape == (len(batch), 2, model.n_items)
    torch.testing.assert_close(gate.sum(-1), torch.ones(len(batch)))
    # FAME uses RecBole's loss the way SASRec does: one parameter set, nothing dense over items.
    assert sum(p.numel() for p in model.parameters()) < 20_000


@pytest.mark.parametrize("overrides", [{}, {"n_heads": 4, "final_residual": "split"}], ids=str)
def test_predict_matches_full_sort(tiny_config, overrides):
    model, _, test_data = build_fame(tiny_config, **overrides)
    model.eval()
    batch = first_batch(test_data)
    item_ids = torch.arange(1, len(batch) + 1) % model.n_items
    batch.update(type(batch)({model.ITEM_ID: item_ids}))
    with torch.no_grad():
        full = model.full_sort_predict(batch)
        single = model.predict(batch)
    torch.testing.assert_close(single, full[torch.arange(len(batch)), item_ids])


def _attention_pair(n_heads, n_experts, hidden_size=16):
    """RecBole's MultiHeadAttention and an MoE attention whose N experts all equal its W_Q."""
    torch.manual_seed(0)
    standard = MultiHeadAttention(n_heads, hidden_size, 0.0, 0.0, 1e-12).double()
    moe = MoEMultiHeadAttention(n_heads, n_experts, hidden_size, 0.0, 0.0, 1e-12, "projection").double()
    torch.nn.init.normal_(moe.router)
    head_size = hidden_size // n_heads
    with torch.no_grad():
        for name in ("key", "value", "dense", "LayerNorm"):
            getattr(moe, name).load_state_dict(getattr(standard, name).state_dict())
        w = standard.query.weight.view(n_heads, 1, head_size, hidden_size).expand(-1, n_experts, -1, -1)
        b = standard.query.bias.view(n_heads, 1, head_size).expand(-1, n_experts, -1)
        moe.expert_query.weight.copy_(w.reshape(-1, hidden_size))
        moe.expert_query.bias.copy_(b.reshape(-1))
    return standard, moe


@pytest.mark.parametrize("n_experts", [1, 4])
def test_moe_attention_with_copies_of_w_q_is_standard_attention(n_experts):
    """N=1 is standard attention; N identical experts too, whatever the router says."""
    n_heads, hidden_size, seq_len = 4, 16, 7
    standard, moe = _attention_pair(n_heads, n_experts, hidden_size)
    item_seq = torch.tensor([[3, 1, 4, 1, 5, 0, 0], [2, 7, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7]])
    lengths = torch.tensor([5, 2, 7])
    mask = SequentialRecommender.get_attention_mask(None, item_seq).double()
    hidden = torch.randn(3, seq_len, hidden_size, dtype=torch.float64)

    expected = standard(hidden, mask)[torch.arange(3), lengths - 1]  # [B, d]
    last_hidden = hidden[torch.arange(3), lengths - 1]
    key_mask = mask[torch.arange(3), :, lengths - 1].unsqueeze(2)
    head_output, expert_weights = moe(hidden, last_hidden, key_mask)
    torch.testing.assert_close(head_output.flatten(1), expected, rtol=0, atol=1e-12)
    assert expert_weights.shape == (3, n_heads, n_experts)
    torch.testing.assert_close(expert_weights.sum(-1), torch.ones(3, n_heads, dtype=torch.float64))


def test_distinct_experts_change_the_output():
    standard, moe = _attention_pair(2, 3)
    with torch.no_grad():
        moe.expert_query.weight.add_(torch.randn_like(moe.expert_query.weight))
    item_seq = torch.tensor([[3, 1, 4, 1, 5]])
    mask = SequentialRecommender.get_attention_mask(None, item_seq).double()
    hidden = torch.randn(1, 5, 16, dtype=torch.float64)
    expected = standard(hidden, mask)[:, -1]
    head_output, _ = moe(hidden, hidden[:, -1], mask[:, :, -1:].clone())
    assert not torch.allclose(head_output.flatten(1), expected)


@pytest.mark.parametrize(
    "overrides",
    [{"final_residual": "projection"}, {"final_residual": "split"}, {"final_residual": "none"}],
    ids=str,
)
def test_gated_facet_scores_equal_full_sort_predict(tiny_config, overrides):
    model, _, test_data = build_fame(tiny_config, n_heads=4, **overrides)
    model = model.double().eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.facet_projection.weight)  # not the identity it starts as
    batch = first_batch(test_data)
    with torch.no_grad():
        gate, head_scores = model.facet_scores(batch)
        full = model.full_sort_predict(batch)
    torch.testing.assert_close((gate[..., None] * head_scores).sum(1), full, rtol=0, atol=1e-10)


def test_the_initial_user_vector_is_the_heads_outputs_over_h(tiny_config):
    # W_f^(h) starts as head h's coordinate selector: with a uniform gate (1/H per head) the user
    # vector is the heads' F^(h) concatenated, times 1/H.
    model, _, test_data = build_fame(tiny_config)
    model = model.double().eval()
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.zero_()
        batch = first_batch(test_data)
        _, head_output, _ = model._facets(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        user_vector = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert model.n_heads == 2
    torch.testing.assert_close(user_vector, 0.5 * head_output.flatten(1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("key, value, kept", [
    ("head_mixing", "probabilities", "scores"),
    ("positions_from", "end", "start"),
    ("scoring", "cosine", "dot"),
    ("facet_projection_init", "scaled_selector", "selector"),
])
def test_removed_options_are_refused_by_name_unless_at_the_value_kept(tiny_config, key, value, kept):
    with pytest.raises(ValueError, match=rf"FAME: {key}='{value}' is an option recbole-fame removed in "
                                         rf"0\.2\.0, .*only {key}='{kept}' is built now"):
        build_fame(tiny_config, **{key: value})
    # The value kept, or none at all (configs saved before the key existed), builds today's FAME.
    for setting in (kept, None):
        model, _, test_data = build_fame(tiny_config, **{key: setting, "scoring_temperature": 0.07})
        reference, _, _ = build_fame(tiny_config)
        reference.load_state_dict(model.state_dict())
        batch = first_batch(test_data)
        with torch.no_grad():
            assert torch.equal(model.eval().full_sort_predict(batch), reference.eval().full_sort_predict(batch))


def test_right_padding_does_not_change_scores(tiny_config):
    model, _, test_data = build_fame(tiny_config, MAX_ITEM_LIST_LENGTH=20)
    model.eval()
    batch = first_batch(test_data)
    item_seq = batch[model.ITEM_SEQ]
    lengths = batch[model.ITEM_SEQ_LEN]
    longest = int(lengths.max())
    assert longest < item_seq.size(1), "the tiny data should leave padding to trim"
    trimmed = batch[model.ITEM_SEQ][:, :longest]
    with torch.no_grad():
        padded_scores = model.full_sort_predict(batch)
        batch.update(type(batch)({model.ITEM_SEQ: trimmed}))
        trimmed_scores = model.full_sort_predict(batch)
    torch.testing.assert_close(trimmed_scores, padded_scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 18, "n_heads": 4}, "hidden_size=18 (config_dict) is not a multiple of n_heads=4 (config_dict)"),
        ({"n_experts": 0}, "n_experts=0 (config_dict): must be an integer >= 1"),
        ({"n_layers": 0}, "n_layers=0 (config_dict): must be an integer >= 1"),
        ({"final_residual": "both"}, "final_residual='both' (config_dict): must be one of 'projection'"),
        ({"expert_init": "zeros"}, "expert_init='zeros' (config_dict): must be one of 'pretrained', 'random'"),
        ({"loss_type": "MSE"}, "loss_type='MSE' (config_dict): must be one of 'CE', 'BPR'"),
        ({"finetune_learning_rate": -1}, "finetune_learning_rate=-1 (config_dict): must be a finite number > 0 or None"),
    ],
)
def test_invalid_config_raises(tiny_config, overrides, message):
    with pytest.raises(ValueError) as excinfo:
        build_fame(tiny_config, **overrides)
    assert message in str(excinfo.value)


def test_single_layer_fame_is_only_the_moe_layer(tiny_config):
    model, train_data, _ = build_fame(tiny_config, n_layers=1)
    assert len(model.trm_encoder.layer) == 1
    assert torch.isfinite(model.calculate_loss(first_batch(train_data)))


def test_bpr_loss(tiny_config):
    model, train_data, _ = build_fame(tiny_config, loss_type="BPR")
    interaction = first_batch(train_data)
    assert model.NEG_ITEM_ID in interaction
    loss = model.calculate_loss(interaction)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
