"""Faster layers for RecBole's sequential models and FAME (config key ``fast_layers``).

On CPU, with hidden size 64, much of a SASRec training step is element-wise work rather than
matrix products (``benchmarks/speed.py`` measures what removing it gains):

- RecBole's ``FeedForward.gelu`` is written as five tensor operations (``x * 0.5 * (1 + erf(x /
  sqrt 2))``), and autograd adds five more for its backward. PyTorch's ``F.gelu`` computes the same
  exact (erf) GELU in one fused kernel each way.
- ``nn.Dropout`` on CPU draws one double-precision uniform per element from a single-threaded
  Mersenne twister (``bernoulli_``). :class:`FastDropout` draws 16
  random bits per element, four elements per 64-bit draw, from the same torch generator (so
  ``init_seed`` still makes runs repeatable) and keeps an element when its bits clear the threshold,
  so the keep probability is 1 - p rounded to 1/65536. The comparison writes the mask as floats, which
  are scaled by 1 / (1 - p) once and multiplied in forward and backward: for float32 and float64
  inputs the same bits as ``input * keep * scale`` (``keep`` is 0 or 1; in half precision the
  scale is rounded to the input's dtype first), without the bool-to-float conversion that
  multiplying by a bool mask costs each way (about 4% of a FAME step on ml-100k). Backward keeps the
  mask in the input's dtype, 4 bytes per float32 element.


And on any device: SASRec computes its last Transformer layer at all T positions but reads only
the predicted one (``item_seq_len - 1``). Only its keys and values need every position, so the
query, attention output, residual, LayerNorm and feed-forward of that layer are computed at the
predicted position alone, as FAME's final layer already does. This makes the FAME-SASRec
comparison about the models, not about which one skips unused work.

:func:`use_fast_layers` swaps these into a built model in place; parameters, state_dict and eval
mode outputs are unchanged (dropout is the identity in eval mode; ``F.gelu`` matches RecBole's
formula to float rounding). On CUDA the standard GELU and dropout are already fused and stay.
"""

import types

import torch
import torch.nn.functional as F
from recbole.model.layers import FeedForward
from recbole.model.sequential_recommender import SASRec
from torch import nn

_BITS = 16


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training mask comes from 16 random bits per element."""

    def forward(self, input):
        if not self.training or self.p == 0.0 or input.device.type != "cpu":
            return super().forward(input)
        if self.p == 1.0:
            return input * 0.0
        n = input.numel()
        # All 64 bits random (plain random_() leaves the sign bit 0), read as 4 x 16 bits.
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=input.device).random_(-(2**63), None)
        bits = words.view(torch.int16)[:n].view(input.shape)  # uniform over [-2^15, 2^15)
        # keep_scale: 1 / (1 - p) where kept, 0 elsewhere.
        keep_scale = torch.ge(bits, round(self.p * 2**_BITS) - 2 ** (_BITS - 1),
                              out=torch.empty(input.shape, dtype=input.dtype, device=input.device))
        keep_scale.mul_(1.0 / (1.0 - self.p))
        # Autograd saves only keep_scale for this product's backward (it needs no input).
        return input.mul_(keep_scale) if self.inplace else input * keep_scale


def use_fast_layers(model):
    """Swap fused GELU and :class:`FastDropout` (on CPU) into ``model``'s RecBole layers, and the
    predicted-position-only last layer into a stock ``SASRec``; in place."""
    if type(model) is SASRec:
        model.forward = types.MethodType(_sasrec_forward, model)
    if next(model.parameters()).device.type != "cpu":
        return model
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = FastDropout
        elif isinstance(module, FeedForward) and _is_recbole_gelu(module.intermediate_act_fn):
            module.intermediate_act_fn = F.gelu
    return model


def _is_recbole_gelu(fn):
    return getattr(fn, "__func__", None) is FeedForward.gelu


def _sasrec_forward(self, item_seq, item_seq_len):
    """``SASRec.forward`` with its last layer computed at the predicted position only."""
    position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
    input_emb = self.item_embedding(item_seq) + self.position_embedding(position_ids).unsqueeze(0)
    hidden_states = self.dropout(self.LayerNorm(input_emb))
    attention_mask = self.get_attention_mask(item_seq)  # [B, 1, T, T]
    *first_layers, last_layer = self.trm_encoder.layer
    for layer in first_layers:
        hidden_states = layer(hidden_states, attention_mask)
    batch = torch.arange(item_seq.size(0), device=item_seq.device)
    last_index = item_seq_len - 1
    last_hidden = hidden_states[batch, last_index].unsqueeze(1)  # [B, 1, d]
    key_mask = attention_mask[batch, :, last_index].unsqueeze(2)  # [B, 1, 1, T]
    attention_output = _attend_from(last_layer.multi_head_attention, last_hidden, hidden_states, key_mask)
    return last_layer.feed_forward(attention_output).squeeze(1)  # [B, d]


def _attend_from(attention, query_states, hidden_states, key_mask):
    """RecBole's ``MultiHeadAttention.forward`` for the queries ``query_states`` [B, Q, d] only,
    over the keys and values of ``hidden_states`` [B, T, d]."""
    query = attention.transpose_for_scores(attention.query(query_states)).permute(0, 2, 1, 3)
    key = attention.transpose_for_scores(attention.key(hidden_states)).permute(0, 2, 3, 1)
    value = attention.transpose_for_scores(attention.value(hidden_states)).permute(0, 2, 1, 3)
    scores = torch.matmul(query, key) / attention.sqrt_attention_head_size + key_mask  # [B, h, Q, T]
    probs = attention.attn_dropout(attention.softmax(scores))
    context = torch.matmul(probs, value).permute(0, 2, 1, 3).flatten(2)  # [B, Q, d]
    return attention.LayerNorm(attention.out_dropout(attention.dense(context)) + query_states)
