"""MIRACLE's layers: the mixture-of-experts text adaptor (Eq. 2-4), the sparse interest capsule
network (Eq. 7-14) and the max-over-interests score (Eq. 17). Equation numbers refer to Tang et al.,
SIGIR 2023 (:mod:`recbole_fame.model.miracle`)."""

import torch
from torch import nn


class MoEAdaptor(nn.Module):
    r"""x_i = sum_k g_k Expert_k(t_i), g = softmax(t_i W_1 + b_1), Expert_k(t) = (t - b_2^k) W_2^k
    (Eq. 2-4). b_2^k has t's size d_b (the paper prints d_n, which cannot be subtracted from t)."""

    def __init__(self, text_size, hidden_size, n_experts, dropout_prob, initializer_range):
        super().__init__()
        self.gate = nn.Linear(text_size, n_experts)  # W_1, b_1
        self.expert_weight = nn.Parameter(torch.empty(n_experts, text_size, hidden_size))  # W_2^k
        self.expert_bias = nn.Parameter(torch.zeros(n_experts, text_size))  # b_2^k
        self.dropout = nn.Dropout(dropout_prob)
        nn.init.normal_(self.expert_weight, std=initializer_range)

    def forward(self, text):  # text: t [n, d_b]
        text = self.dropout(text)
        g = torch.softmax(self.gate(text), dim=-1)  # [n, G] (Eq. 3)
        # (t - b_2^k) W_2^k = t W_2^k - b_2^k W_2^k: no [G, n, d_b] copy of t.
        experts = torch.einsum("nb,gbd->ngd", text, self.expert_weight)  # [n, G, d_n]
        experts = experts - torch.einsum("gb,gbd->gd", self.expert_bias, self.expert_weight)
        return torch.einsum("ng,ngd->nd", g, experts)  # x [n, d_n] (Eq. 2)


def squash(z, eps=1e-9):
    """u = |z|^2 / (|z|^2 + 1) * z / |z| (Eq. 13)."""
    norm2 = (z * z).sum(-1, keepdim=True)
    return norm2 / (norm2 + 1) * z / torch.sqrt(norm2 + eps)


class SparseInterestCapsules(nn.Module):
    r"""Interests u_j [B, C, d] of the capsules each sequence activates (Eq. 7-14).

    Each item activates the capsule whose base vector a_j it is most similar to (Eq. 7-8; the
    similarity is multiplied by 1 + eps, eps ~ N(0, noise^2), in training). Its feature q_i
    (Eq. 10), weighted by the position attention o_i (Eq. 9), goes to that capsule (Eq. 11).

    Dynamic routing (Eq. 12-14) starts from b_ij = s_ij; because Eq. 8's mask is -inf on every
    capsule but the activated one, Eq. 12 gives c_ij = 1 on the activated capsule and 0 elsewhere
    whatever b holds, so the updates of Eq. 14 cannot change c: one pass computes exactly what any
    number of routing iterations would (``docs/miracle.md``).

    Eq. 9 as printed has W_4 in R^{d x N} (an N-vector per position); o_i is one weight per
    position, so W_4 here is d x 1 and the softmax runs over the sequence's positions.
    """

    def __init__(self, hidden_size, n_capsules, max_seq_length, noise, layer_norm_eps, initializer_range):
        super().__init__()
        self.n_capsules = n_capsules
        self.noise = noise
        self.base_vectors = nn.Parameter(torch.empty(n_capsules, hidden_size))  # A
        self.interest_position_embedding = nn.Embedding(max_seq_length, hidden_size)  # P~ (Eq. 9)
        self.attention_hidden = nn.Linear(hidden_size, hidden_size)  # W_3, b_3
        self.attention_score = nn.Linear(hidden_size, 1)  # W_4, b_4
        self.feature = nn.Linear(hidden_size, hidden_size)  # W_5, b_5
        self.feature_LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        nn.init.normal_(self.base_vectors, std=initializer_range)

    def similarities(self, h):
        """s [B, N, C] (Eq. 7), with the exploration noise in training."""
        s = torch.einsum("bnd,cd->bnc", h, self.base_vectors)
        if self.training and self.noise > 0:
            s = s * (1 + self.noise * torch.randn_like(s))
        return s

    def forward(self, h, valid, activation=None):
        """``h``: contextualized items H [B, N, d]; ``valid``: [B, N], False at padding;
        ``activation``: [B, N] capsule index per item, to force (the masked view of Eq. 15), else
        each item's argmax. Returns interests u [B, C, d], ``active`` [B, C] (I_u), s [B, N, C]
        and the activation [B, N]."""
        s = self.similarities(h)
        if activation is None:
            activation = s.detach().argmax(-1)  # [B, N] (Eq. 8)
        rows, positions = valid.nonzero(as_tuple=True)  # the T non-padding items
        h_items = h[rows, positions]  # [T, d]: Eq. 9-11 skip the padding
        e = self.attention_score(torch.tanh(self.attention_hidden(
            h_items + self.interest_position_embedding(positions)))).squeeze(-1)  # [T]
        o = torch.softmax(h.new_full(valid.shape, float("-inf")).index_put((rows, positions), e), dim=-1)  # [B, N] (Eq. 9)
        q = self.feature_LayerNorm(torch.tanh(self.feature(h_items)) + h_items)  # [T, d] (Eq. 10)
        # Eq. 12 with b = s: c_i = softmax(s_i + m_i) is 1 on the activated capsule and 0 on the
        # others (m_i is -inf there), so Eq. 11's sum over items adds o_i q_i to that capsule alone.
        capsule = activation[rows, positions]
        z = h.new_zeros(h.size(0), self.n_capsules, h.size(-1)).index_put(
            (rows, capsule), o[rows, positions].unsqueeze(-1) * q, accumulate=True)  # [B, C, d] (Eq. 11)
        items_per_capsule = torch.zeros(h.size(0), self.n_capsules, dtype=torch.long, device=h.device).scatter_add_(
            1, activation, valid.long())
        return squash(z), items_per_capsule > 0, s, activation  # active: I_u [B, C]


def interest_scores(u, active, x):
    """y(u, v) = max over the activated interests j of u_j . x_v (Eq. 17): [B, V] for interests
    u [B, C, d] with ``active`` [B, C] and items x [V, d]. Only the activated (user, interest)
    pairs are scored, [pairs, V]: a batch's users activate a few capsules each, not C."""
    rows, capsules = active.nonzero(as_tuple=True)  # the pairs, grouped by user
    pair_scores = u[rows, capsules] @ x.T  # [pairs, V]
    counts = torch.bincount(rows, minlength=len(u))
    return torch.segment_reduce(pair_scores, "max", lengths=counts, axis=0, unsafe=True)  # [B, V]


def balance_loss(s, activation, valid):
    """C * w . r (Eq. 19-21): w the batch's mean similarity distribution softmax(s_i), r the share
    of its items activating each capsule (both over the non-padding items)."""
    n_capsules = s.size(-1)
    s, activation = s[valid], activation[valid]  # [items, C], [items]
    w = torch.softmax(s, dim=-1).mean(0)  # [C] (Eq. 19)
    r = torch.bincount(activation, minlength=n_capsules).to(s.dtype) / max(len(activation), 1)  # [C] (Eq. 20)
    return n_capsules * torch.dot(w, r)


def orthogonality_loss(base_vectors):
    """Eq. 18 read as a softmax over cosine similarities: mean_j -log(exp(cos(a_j, a_j)) /
    sum_j' exp(cos(a_j, a_j'))). As printed (no exp) the sum of cosines can be <= 0."""
    a = nn.functional.normalize(base_vectors, dim=-1)
    cosine = a @ a.T  # [C, C]
    return nn.functional.cross_entropy(cosine, torch.arange(len(a), device=a.device))
