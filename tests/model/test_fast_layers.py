"""fast_layers: the same functions as RecBole's layers, computed with cheaper CPU kernels."""

import math

import pytest
import torch
from recbole.model.layers import FeedForward
from torch import nn

from recbole_fame import get_model
from recbole_fame.model.fast_layers import FastDropout, use_fast_layers

from helpers import first_batch, make_config, make_data


def test_fused_gelu_matches_recbole_gelu():
    layer = FeedForward(16, 32, 0.0, "gelu", 1e-12)
    x = torch.linspace(-8, 8, 4001).reshape(-1, 1).repeat(1, 32)
    recbole = layer.intermediate_act_fn(x)
    use_fast_layers(layer)
    assert layer.intermediate_act_fn is torch.nn.functional.gelu
    assert torch.allclose(layer.intermediate_act_fn(x), recbole, atol=1e-6, rtol=0)


def test_other_activations_are_left_alone():
    layer = FeedForward(16, 32, 0.0, "relu", 1e-12)
    relu = layer.intermediate_act_fn
    use_fast_layers(layer)
    assert layer.intermediate_act_fn is relu


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_fast_dropout_keeps_1_minus_p_and_rescales(p):
    torch.manual_seed(0)
    dropout = FastDropout(p)
    x = torch.ones(400, 1000, requires_grad=True)
    out = dropout(x)
    kept = out != 0
    assert torch.all(out[kept] == 1.0 / (1.0 - p))
    # 400k Bernoulli draws: 6 standard deviations around 1 - p
    assert abs(kept.float().mean().item() - (1 - p)) < 6 * math.sqrt(p * (1 - p) / x.numel())
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d out / d x is the same mask times the scale


def test_fast_dropout_follows_the_torch_seed_and_is_identity_in_eval():
    dropout = FastDropout(0.5)
    x = torch.randn(7, 13, 5)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(dropout(x), first)
    dropout.eval()
    assert torch.equal(dropout(x), x)


def test_fast_dropout_edge_probabilities():
    x = torch.randn(3, 4)
    assert torch.equal(FastDropout(0.0)(x), x)
    assert torch.equal(FastDropout(1.0)(x), torch.zeros_like(x))


@pytest.mark.parametrize("model_name", ["FAME", "SASRec", "GRU4Rec", "CORE"])
def test_fast_layers_change_no_eval_score_and_no_parameter(tiny_config, model_name):
    config = make_config(model_name, tiny_config, pretrain=False)
    _, train_data, _, test_data = make_data(config)
    torch.manual_seed(0)
    model = get_model(model_name)(config, train_data._dataset).eval()
    batch = first_batch(test_data)
    before = model.full_sort_predict(batch)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    use_fast_layers(model)
    assert any(isinstance(m, FastDropout) for m in model.modules())
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert torch.allclose(model.full_sort_predict(batch), before, atol=1e-5, rtol=0)


def test_sasrec_last_layer_at_the_predicted_position_gives_the_same_scores_and_loss(tiny_config):
    config = make_config("SASRec", tiny_config, n_layers=3)
    _, train_data, _, test_data = make_data(config)
    torch.manual_seed(0)
    model = get_model("SASRec")(config, train_data._dataset).eval()
    stock = get_model("SASRec")(config, train_data._dataset).eval()
    stock.load_state_dict(model.state_dict())
    use_fast_layers(model)
    assert model.forward.__func__ is not type(model).forward
    for data in (train_data, test_data):
        batch = first_batch(data)
        assert torch.allclose(model.full_sort_predict(batch), stock.full_sort_predict(batch), atol=1e-5, rtol=0)
    batch = first_batch(train_data)
    loss, stock_loss = model.calculate_loss(batch), stock.calculate_loss(batch)
    assert torch.allclose(loss, stock_loss, atol=1e-6, rtol=0)
    loss.backward()
    stock_loss.backward()
    for (name, p), q in zip(model.named_parameters(), stock.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=0), name


def test_fast_dropout_output_and_gradient_are_input_times_mask_times_scale():
    torch.manual_seed(5)
    dropout = FastDropout(0.3)
    x = torch.randn(6, 50, 64, requires_grad=True)
    grad = torch.randn(6, 50, 64)
    out = dropout(x)
    out.backward(grad)
    kept = out != 0
    scale = 1.0 / (1.0 - 0.3)
    assert torch.equal(out[kept], x.detach()[kept] * scale)
    assert torch.equal(x.grad, torch.where(kept, grad * scale, torch.zeros(())))


@pytest.mark.parametrize("inplace", [False, True])
def test_fast_dropout_keeps_its_random_stream_and_its_bits(inplace):
    """The mask is the documented draw (four 16-bit fields per int64 word of torch's generator),
    and output and gradient have the bits of ``x * keep * scale`` and ``grad * keep * scale``, the
    form every committed result was trained with: training runs repeat to the bit."""
    p, shape = 0.3, (5, 50, 33)  # 1 / 0.7 is not a power of two; 8250 elements, not a multiple of 4
    x = torch.randn(shape, dtype=torch.float64).float()
    grad = torch.randn(shape)
    torch.manual_seed(11)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    keep = words.view(torch.int16)[:n].view(shape) >= round(p * 2**16) - 2**15
    scale = 1.0 / (1.0 - p)
    torch.manual_seed(11)
    leaf = x.clone().requires_grad_()
    out = FastDropout(p, inplace=inplace)(leaf * 1.0 if inplace else leaf)
    out.backward(grad)
    assert torch.equal(out.detach(), torch.mul(x, keep).mul_(scale))
    assert torch.equal(leaf.grad, torch.mul(grad, keep).mul_(scale))
