"""FAME's Transformer encoder: SASRec's first L-1 layers, then the MoE self-attention layer.

Parameter names follow RecBole's ``TransformerEncoder``: the first L-1 layers are RecBole's own
``TransformerLayer`` at ``layer.{i}``, and the final layer keeps SASRec's ``key``/``value`` (and,
with ``final_residual='projection'``, ``dense``/``LayerNorm``) under
``layer.{L-1}.multi_head_attention``, so a stock SASRec state dict loads into them unchanged.
"""

import math

import torch
from torch import nn
from recbole.model.layers import FeedForward, TransformerLayer

FINAL_RESIDUALS = ("projection", "split", "none")


class MoEMultiHeadAttention(nn.Module):
    """Mixture-of-experts self-attention for the predicted position only (Eq. 12-17).

    Per head h: N expert queries ``q_(n) = x_t W_Q(n)`` (Eq. 12), keys and values from the usual
    ``W_K``, ``W_V`` (Eq. 13), one attention distribution per expert (Eq. 14-15), a router
    ``W_exp`` with a softmax over experts (Eq. 16), and their weighted sum (Eq. 17).
    """

    def __init__(
        self,
        n_heads,
        n_experts,
        hidden_size,
        hidden_dropout_prob,
        attn_dropout_prob,
        layer_norm_eps,
        final_residual,
    ):
        super().__init__()
        self.n_heads = n_heads
        self.n_experts = n_experts
        self.head_size = hidden_size // n_heads
        self.final_residual = final_residual

        self.expert_query = nn.Linear(hidden_size, n_heads * n_experts * self.head_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        # W_exp^(h) in R^{(N d') x N}, one per head; the paper gives it no bias.
        self.router = nn.Parameter(torch.empty(n_heads, n_experts * self.head_size, n_experts))
        self.attn_dropout = nn.Dropout(attn_dropout_prob)
        self.out_dropout = nn.Dropout(hidden_dropout_prob)
        if final_residual == "projection":
            self.dense = nn.Linear(hidden_size, hidden_size)
            self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        elif final_residual == "split":
            # Not named LayerNorm: SASRec's d-dimensional one of that name is not loaded here.
            self.head_LayerNorm = nn.LayerNorm(self.head_size, eps=layer_norm_eps)

    def _split_heads(self, x):
        # [..., d] -> [..., H, d']
        return x.view(*x.shape[:-1], self.n_heads, self.head_size)

    def expert_attention(self, hidden_states, last_hidden, key_mask):
        """Per-expert outputs and router weights at the predicted position.

        hidden_states [B, T, d], last_hidden [B, d], key_mask [B, 1, 1, T] (0 or -10000).
        Returns head_context [B, H, d'] (Eq. 17) and expert_weights [B, H, N] (Eq. 16).
        """
        batch_size = last_hidden.size(0)
        keys = self._split_heads(self.key(hidden_states)).transpose(1, 2)  # [B, H, T, d']
        values = self._split_heads(self.value(hidden_states)).transpose(1, 2)  # [B, H, T, d']
        queries = self.expert_query(last_hidden).view(
            batch_size, self.n_heads, self.n_experts, self.head_size
        )  # [B, H, N, d']
        attention_scores = torch.matmul(queries, keys.transpose(-1, -2))  # [B, H, N, T]
        attention_scores = attention_scores / math.sqrt(self.head_size) + key_mask
        attention_probs = self.attn_dropout(torch.softmax(attention_scores, dim=-1))
        expert_context = torch.matmul(attention_probs, values)  # [B, H, N, d']
        router_logits = torch.einsum(
            "bhk,hkn->bhn",
            expert_context.reshape(batch_size, self.n_heads, -1),
            self.router,
        )
        expert_weights = torch.softmax(router_logits, dim=-1)  # [B, H, N]
        head_context = torch.einsum("bhn,bhne->bhe", expert_weights, expert_context)
        return head_context, expert_weights

    def forward(self, hidden_states, last_hidden, key_mask):
        """Returns the per-head representation fed to FFN' [B, H, d'] and expert_weights [B, H, N]."""
        head_context, expert_weights = self.expert_attention(hidden_states, last_hidden, key_mask)
        if self.final_residual == "projection":
            merged = self.dense(head_context.flatten(1))  # [B, d]
            head_output = self._split_heads(
                self.LayerNorm(self.out_dropout(merged) + last_hidden)
            )
        elif self.final_residual == "split":
            head_output = self.head_LayerNorm(
                self.out_dropout(head_context) + self._split_heads(last_hidden)
            )
        else:
            head_output = head_context
        return head_output, expert_weights


class MoETransformerLayer(nn.Module):
    """FAME's final block: MoE attention, then FFN' shared by all heads on d' dims (Eq. 7)."""

    def __init__(
        self,
        n_heads,
        n_experts,
        hidden_size,
        hidden_dropout_prob,
        attn_dropout_prob,
        hidden_act,
        layer_norm_eps,
        final_residual,
    ):
        super().__init__()
        self.multi_head_attention = MoEMultiHeadAttention(
            n_heads,
            n_experts,
            hidden_size,
            hidden_dropout_prob,
            attn_dropout_prob,
            layer_norm_eps,
            final_residual,
        )
        head_size = hidden_size // n_heads
        # RecBole's FeedForward is LayerNorm(x + Dropout(W2 act(W1 x))): Eq. 7 with d' x d' weights.
        self.facet_feed_forward = FeedForward(
            head_size, head_size, hidden_dropout_prob, hidden_act, layer_norm_eps
        )

    def forward(self, hidden_states, last_hidden, key_mask):
        head_output, expert_weights = self.multi_head_attention(
            hidden_states, last_hidden, key_mask
        )
        return self.facet_feed_forward(head_output), expert_weights  # [B, H, d'], [B, H, N]


class FAMEEncoder(nn.Module):
    """``layer.0 .. layer.{L-2}``: RecBole's ``TransformerLayer``; ``layer.{L-1}``: the MoE layer."""

    def __init__(
        self,
        n_layers,
        n_heads,
        n_experts,
        hidden_size,
        inner_size,
        hidden_dropout_prob,
        attn_dropout_prob,
        hidden_act,
        layer_norm_eps,
        final_residual,
    ):
        super().__init__()
        backbone = [
            TransformerLayer(
                n_heads,
                hidden_size,
                inner_size,
                hidden_dropout_prob,
                attn_dropout_prob,
                hidden_act,
                layer_norm_eps,
            )
            for _ in range(n_layers - 1)
        ]
        final = MoETransformerLayer(
            n_heads,
            n_experts,
            hidden_size,
            hidden_dropout_prob,
            attn_dropout_prob,
            hidden_act,
            layer_norm_eps,
            final_residual,
        )
        self.layer = nn.ModuleList(backbone + [final])

    def forward(self, hidden_states, attention_mask, last_index):
        """hidden_states [B, T, d]; attention_mask [B, 1, T, T] (causal, additive);
        last_index [B], the predicted position. Returns F^(h) [B, H, d'] and expert_weights [B, H, N].
        """
        for layer_module in self.layer[:-1]:
            hidden_states = layer_module(hidden_states, attention_mask)
        batch = torch.arange(hidden_states.size(0), device=hidden_states.device)
        last_hidden = hidden_states[batch, last_index]  # [B, d]
        # The causal row of the last position: it may attend to every position up to itself.
        key_mask = attention_mask[batch, :, last_index].unsqueeze(2)  # [B, 1, 1, T]
        return self.layer[-1](hidden_states, last_hidden, key_mask)
