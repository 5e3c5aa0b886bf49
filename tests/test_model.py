import pytest
import torch
from recbole.model.layers import MultiHeadAttention
from recbole.model.abstract_recommender import SequentialRecommender

from recbole_fame import FAME
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


@pytest.mark.parametrize(
    "overrides", [{}, {"head_mixing": "probabilities"}, {"scoring": "cosine"}], ids=str
)
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


def test_positions_from_end_counts_back_from_the_newest_item(tiny_config):
    """positions_from='end' gives position 0 to the newest item: each history of length n scores as
    under the 'start' model with the first n position rows reversed."""
    end_model, _, test_data = build_fame(tiny_config, positions_from="end")
    start_model, _, _ = build_fame(tiny_config)
    start_model.load_state_dict(end_model.state_dict())
    end_model.eval()
    start_model.eval()
    batch = first_batch(test_data)
    lengths = batch[end_model.ITEM_SEQ_LEN]
    assert len(set(lengths.tolist())) > 1  # rows of several lengths in one batch
    with torch.no_grad():
        end_scores = end_model.full_sort_predict(batch)
        assert not torch.allclose(end_scores, start_model.full_sort_predict(batch))
        table = end_model.position_embedding.weight.clone()
        for row, n in enumerate(lengths.tolist()):
            start_model.position_embedding.weight[:n] = table[:n].flip(0)
            single = type(batch)({end_model.ITEM_SEQ: batch[end_model.ITEM_SEQ][row:row + 1],
                                  end_model.ITEM_SEQ_LEN: lengths[row:row + 1]})
            torch.testing.assert_close(end_scores[row:row + 1], start_model.full_sort_predict(single),
                                       rtol=0, atol=1e-6)


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
    [{"final_residual": "projection"}, {"final_residual": "split"}, {"final_residual": "none"},
     {"scoring": "cosine"}],
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


def test_mixed_probabilities_are_the_gate_weighted_head_softmaxes(tiny_config):
    model, train_data, test_data = build_fame(tiny_config, head_mixing="probabilities", n_heads=4)
    model = model.double().eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.facet_projection.weight)
        batch = first_batch(test_data)
        gate, head_scores = model.facet_scores(batch)
        log_mixture = model.full_sort_predict(batch)
    expected = (gate[..., None] * torch.softmax(head_scores, dim=-1)).sum(1)
    torch.testing.assert_close(log_mixture.exp(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(expected.sum(-1), torch.ones(len(batch), dtype=torch.double))
    # Mixing probabilities is not mixing scores: the two rank items differently here.
    assert not torch.equal(log_mixture.argsort(-1), (gate[..., None] * head_scores).sum(1).argsort(-1))

    model.train()
    interaction = first_batch(train_data)
    torch.manual_seed(0)
    loss = model.calculate_loss(interaction)
    torch.manual_seed(0)  # the same dropout draws
    log_p = model.full_sort_predict(interaction)
    nll = -log_p.gather(1, interaction[model.POS_ITEM_ID].unsqueeze(1)).mean()
    torch.testing.assert_close(loss, nll, rtol=1e-12, atol=0)


def test_one_head_mixing_probabilities_is_the_log_softmax_of_mixing_scores(tiny_config):
    scores_model, _, test_data = build_fame(tiny_config, n_heads=1)
    probs_model, _, _ = build_fame(tiny_config, n_heads=1, head_mixing="probabilities")
    probs_model.load_state_dict(scores_model.state_dict())
    batch = first_batch(test_data)
    with torch.no_grad():
        expected = torch.log_softmax(scores_model.eval().full_sort_predict(batch), dim=-1)
        log_p = probs_model.eval().full_sort_predict(batch)
    torch.testing.assert_close(log_p, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("facet_projection_init, scale", [("selector", 0.5), ("scaled_selector", 1.0)])
def test_facet_projection_init_sets_the_user_vector_scale(tiny_config, facet_projection_init, scale):
    # With a uniform gate (1/H per head), the user vector is the heads' F^(h) concatenated, times
    # 1/H for the plain selector and times 1 for H times it.
    model, _, test_data = build_fame(tiny_config, facet_projection_init=facet_projection_init)
    model = model.double().eval()
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.zero_()
        batch = first_batch(test_data)
        _, head_output, _ = model._facets(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
        user_vector = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    assert model.n_heads == 2
    torch.testing.assert_close(user_vector, scale * head_output.flatten(1), rtol=0, atol=1e-12)


def test_cosine_scoring_is_the_dot_product_of_unit_vectors_over_the_temperature(tiny_config):
    dot_model, train_data, test_data = build_fame(tiny_config)
    cosine_model, _, _ = build_fame(tiny_config, scoring="cosine", scoring_temperature=0.5)
    cosine_model.load_state_dict(dot_model.state_dict())
    dot_model, cosine_model = dot_model.double().eval(), cosine_model.double().eval()
    batch = first_batch(test_data)
    with torch.no_grad():
        user_vector = dot_model.forward(batch[dot_model.ITEM_SEQ], batch[dot_model.ITEM_SEQ_LEN])
        items = dot_model.item_embedding.weight
        expected = (user_vector @ items.T) / (
            0.5 * user_vector.norm(dim=-1, keepdim=True) * items.norm(dim=-1).clamp_min(1e-12)
        )
        scores = cosine_model.full_sort_predict(batch)
        dot_scores = dot_model.full_sort_predict(batch)
    torch.testing.assert_close(scores, expected, rtol=1e-12, atol=1e-12)
    assert scores[:, 1:].abs().max() <= 2.0 + 1e-9  # a cosine is at most 1, over 0.5
    assert not torch.equal(scores.argsort(-1), dot_scores.argsort(-1))  # item norms count in 'dot'

    for loss_type in ("CE", "BPR"):
        model, train_data, _ = build_fame(tiny_config, scoring="cosine", loss_type=loss_type)
        loss = model.calculate_loss(first_batch(train_data))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert model.item_embedding.weight.grad.abs().sum() > 0


def test_configs_without_the_later_keys_build_the_default_model(tiny_config):
    """Checkpoints saved before these keys existed hold None for them: they mean the defaults."""
    later_keys = ("facet_projection_init", "head_mixing", "positions_from", "scoring",
                  "scoring_temperature")
    old_model, _, test_data = build_fame(tiny_config, **dict.fromkeys(later_keys))
    model, _, _ = build_fame(tiny_config)
    model.load_state_dict(old_model.state_dict())
    assert (old_model.facet_projection_init, old_model.head_mixing, old_model.positions_from,
            old_model.scoring) == ("selector", "scores", "start", "dot")
    batch = first_batch(test_data)
    with torch.no_grad():
        assert torch.equal(old_model.eval().full_sort_predict(batch), model.eval().full_sort_predict(batch))


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
        ({"hidden_size": 18, "n_heads": 4}, "'hidden_size' (18) must be divisible by 'n_heads' (4)"),
        ({"n_experts": 0}, "'n_experts' must be an integer >= 1, got 0"),
        ({"n_layers": 0}, "'n_layers' must be an integer >= 1, got 0"),
        ({"final_residual": "both"}, "'final_residual' must be one of"),
        ({"expert_init": "zeros"}, "'expert_init' must be one of"),
        ({"facet_projection_init": "eye"}, "'facet_projection_init' must be one of"),
        ({"head_mixing": "logits"}, "'head_mixing' must be one of"),
        ({"positions_from": "middle"}, "'positions_from' must be one of"),
        ({"head_mixing": "probabilities", "loss_type": "BPR"},
         "head_mixing='probabilities' needs loss_type='CE'"),
        ({"scoring": "euclidean"}, "'scoring' must be one of"),
        ({"scoring": "cosine", "scoring_temperature": 0}, "'scoring_temperature' must be a finite number > 0, got 0"),
        ({"scoring": "cosine", "scoring_temperature": "warm"}, "got 'warm'"),
        ({"scoring": "cosine", "scoring_temperature": float("inf")}, "got inf"),
        ({"scoring": "cosine", "head_mixing": "probabilities"},
         "scoring='cosine' needs head_mixing='scores'"),
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
