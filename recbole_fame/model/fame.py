"""
FAME
################################################

Reference:
    Mingrui Liu, Sixiao Zhang, Cheng Long. "Facet-Aware Multi-Head Mixture-of-Experts Model for
    Sequential Recommendation." in WSDM 2025.

Equation numbers refer to that paper.
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_fame.checkpoint import (
    CheckpointError,
    checkpoint_model_name,
    copy_matching_tensors,
    load_checkpoint,
)
from recbole_fame.config_checks import (
    COMMON_CHECKS,
    SEQUENTIAL_LOSSES,
    boolean,
    check_heads_divide_hidden_size,
    check_keys,
    integer,
    number,
    one_of,
    optional,
    text,
)
from recbole_fame.model.layers import FINAL_RESIDUALS, FAMEEncoder
from recbole_fame.removed import check_removed_options

EXPERT_INITS = ("pretrained", "random")


class FAME(SequentialRecommender):
    r"""FAME: SASRec whose last Transformer layer is replaced by a mixture-of-experts self-attention
    layer (Eq. 12-17) and whose prediction is a gate-weighted sum of one prediction per head (Eq. 7-11).

    Each head h turns its d' = d/H dimensional output into ``F^(h)`` with a feed-forward network
    FFN' shared by all heads (Eq. 7) and scores item v with its sub-embedding
    ``x_v^(h) = x_v W_f^(h)`` (Eq. 8-9); a gate over heads (Eq. 10) weights the H scores (Eq. 11).
    The weighted sum is computed as one d-dimensional vector per user,
    ``u = sum_h gate_h W_f^(h) F^(h)``, against the item table, so scoring costs what SASRec's does.
    Only the predicted (last) position needs the final layer, so its queries are computed there only.

    Choices the paper leaves open (their measurements: ``docs/model.md``):

    - ``final_residual``: what surrounds the MoE attention before FFN'. ``'projection'`` (default)
      keeps SASRec's output projection W_O, dropout, residual and LayerNorm on d dims, then splits
      the result into heads: with N=1 and SASRec's weights the attention sub-layer is exactly
      SASRec's, so fine-tuning starts from the trained model instead of from a broken one.
      ``'split'`` adds each head's slice of the block input as the residual (LayerNorm on d');
      ``'none'`` feeds Eq. 17's output straight into FFN', as the equations read.
    - ``expert_init``: ``'pretrained'`` (default) starts every expert of head h from the pretrained
      SASRec's W_Q^(h) plus N(0, initializer_range) noise (none when N=1), so before fine-tuning
      every expert attends as SASRec did and the noise breaks their symmetry; ``'random'`` draws
      them as any new weight. Without a checkpoint both are random.
    - Attention dropout (``attn_dropout_prob``) applies to every expert's attention distribution.
    - ``W_f^(h)`` starts as the selector of head h's d' coordinates, the sub-space the head already
      used in SASRec; the router, gate and FFN' start as RecBole initialises new layers.
    - FFN' uses ``hidden_act`` like the backbone's feed-forward layers.
    - Positions are numbered from the oldest item, as in RecBole's SASRec (and so in stage 1).

    Options measured and removed in 0.2.0 (``docs/model.md``): mixing the heads' probabilities
    instead of their scores, positions numbered from the newest item, cosine scoring, and a
    scaled facet projection.

    ``pretrained_path``: a checkpoint of RecBole's ``SASRec`` on the same dataset (name and item
    count) with the same hidden size, layers, heads, inner size, activation, LayerNorm eps and
    sequence length. Embeddings, position embeddings, layers 1..L-1
    (and the final layer's W_K, W_V, plus W_O and its LayerNorm under ``'projection'``) are copied
    exactly; SASRec's final W_Q seeds the experts; its final feed-forward network is dropped.
    """

    # FAME's own keys, checked with the common ones before anything trains (run_fame.py checks
    # the whole config before stage 1: recbole_fame.config_checks) and when FAME is built.
    config_checks = {
        "n_layers": integer(1),  # at least the MoE layer
        "n_experts": integer(1),
        "final_residual": one_of(*FINAL_RESIDUALS),
        "expert_init": one_of(*EXPERT_INITS),
        "pretrain": boolean,
        "pretrained_path": optional(text),
        "finetune_learning_rate": optional(number(above=0)),
    }

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.n_experts = config["n_experts"]
        self.hidden_size = config["hidden_size"]
        self.inner_size = config["inner_size"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.hidden_act = config["hidden_act"]
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = config["loss_type"]
        self.final_residual = config["final_residual"]
        self.expert_init = config["expert_init"]
        check_removed_options(config, "FAME", scopes=("model",))
        self._check_config(config)
        self.head_size = self.hidden_size // self.n_heads

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.trm_encoder = FAMEEncoder(
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_experts=self.n_experts,
            hidden_size=self.hidden_size,
            inner_size=self.inner_size,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attn_dropout_prob=self.attn_dropout_prob,
            hidden_act=self.hidden_act,
            layer_norm_eps=self.layer_norm_eps,
            final_residual=self.final_residual,
        )
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        # W_f^(h) of Eq. 9 for all heads: rows h*d'..(h+1)*d' map x_v to x_v^(h).
        self.facet_projection = nn.Linear(self.hidden_size, self.hidden_size, bias=False)
        self.gate = nn.Linear(self.hidden_size, self.n_heads)  # W_g, b_g of Eq. 10

        if self.loss_type == "BPR":
            self.loss_fct = BPRLoss()
        else:
            self.loss_fct = nn.CrossEntropyLoss()

        self.apply(self._init_weights)
        self._init_fame_weights()
        if config["pretrained_path"]:
            self._load_pretrained_sasrec(config["pretrained_path"], config)

    def _check_config(self, config):
        # The same checks run_fame.py makes before stage 1 (recbole_fame.config_checks), for a
        # FAME built directly from a RecBole Config.
        check_keys(config, {key: COMMON_CHECKS[key] for key in ("n_heads", "hidden_size")})
        check_keys(config, {"loss_type": one_of(*SEQUENTIAL_LOSSES), **self.config_checks})
        check_heads_divide_hidden_size(config)

    def _init_weights(self, module):
        SASRec._init_weights(self, module)  # the same initialisation as the backbone's SASRec

    @property
    def _final_attention(self):
        return self.trm_encoder.layer[-1].multi_head_attention

    def _init_fame_weights(self):
        self._final_attention.router.data.normal_(mean=0.0, std=self.initializer_range)
        nn.init.eye_(self.facet_projection.weight)

    def _load_pretrained_sasrec(self, path, config):
        checkpoint = load_checkpoint(path, self.device)
        source_model = checkpoint_model_name(checkpoint)
        if source_model != "SASRec":
            raise CheckpointError(
                f"pretrained_path {path} is a checkpoint of {source_model!r}, not of 'SASRec'"
            )
        source_config = checkpoint["config"]
        for key in (
            "dataset",
            "n_heads",
            "n_layers",
            "hidden_size",
            "inner_size",
            "hidden_act",
            "layer_norm_eps",
            "MAX_ITEM_LIST_LENGTH",
        ):
            if source_config[key] != config[key]:
                raise CheckpointError(
                    f"pretrained_path {path} does not fit: its SASRec has {key}="
                    f"{source_config[key]!r}, this FAME has {key}={config[key]!r}"
                )
        state = checkpoint["state_dict"]
        item_rows = state["item_embedding.weight"].shape[0] if "item_embedding.weight" in state else None
        if item_rows is not None and item_rows != self.n_items:
            raise CheckpointError(
                f"pretrained_path {path} does not fit: it was trained on {item_rows} items, "
                f"this dataset has {self.n_items}"
            )

        final = f"trm_encoder.layer.{self.n_layers - 1}."
        sasrec_only = (final + "multi_head_attention.query.", final + "feed_forward.")
        fame_only = (
            final + "multi_head_attention.expert_query.",
            final + "multi_head_attention.router",
            final + "facet_feed_forward.",
            "facet_projection.",
            "gate.",
        )
        if self.final_residual != "projection":
            sasrec_only += (
                final + "multi_head_attention.dense.",
                final + "multi_head_attention.LayerNorm.",
            )
            if self.final_residual == "split":
                fame_only += (final + "multi_head_attention.head_LayerNorm.",)
        copy_matching_tensors(
            path,
            state,
            self,
            expected_extra=lambda key: key.startswith(sasrec_only),
            expected_missing=lambda key: key.startswith(fame_only),
        )
        if self.expert_init == "pretrained":
            self._experts_from_query(state[final + "multi_head_attention.query.weight"],
                                     state[final + "multi_head_attention.query.bias"])

    @torch.no_grad()
    def _experts_from_query(self, query_weight, query_bias):
        """Every expert of head h starts as SASRec's W_Q^(h), plus noise when N > 1 to break symmetry."""
        expert_query = self._final_attention.expert_query
        shape = (self.n_heads, self.n_experts, self.head_size)
        weight = query_weight.view(self.n_heads, 1, self.head_size, self.hidden_size)
        bias = query_bias.view(self.n_heads, 1, self.head_size)
        expert_query.weight.copy_(weight.expand(*shape, self.hidden_size).reshape_as(expert_query.weight))
        expert_query.bias.copy_(bias.expand(*shape).reshape_as(expert_query.bias))
        if self.n_experts > 1:
            expert_query.weight.add_(torch.randn_like(expert_query.weight) * self.initializer_range)

    def _facets(self, item_seq, item_seq_len):
        """gate [B, H] (Eq. 10), F^(h) [B, H, d'] (Eq. 7) and expert_weights [B, H, N] (Eq. 16)."""
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        input_emb = self.item_embedding(item_seq) + self.position_embedding(position_ids)  # [B, T, d]
        input_emb = self.dropout(self.LayerNorm(input_emb))
        attention_mask = self.get_attention_mask(item_seq)
        head_output, expert_weights = self.trm_encoder(
            input_emb, attention_mask, item_seq_len - 1
        )
        gate = torch.softmax(self.gate(head_output.flatten(1)), dim=-1)
        return gate, head_output, expert_weights

    def forward(self, item_seq, item_seq_len):
        """The user vector u [B, d]: x_v . u is Eq. 11's score of item v."""
        gate, head_output, _ = self._facets(item_seq, item_seq_len)
        return self._user_vector(gate, head_output)

    def _user_vector(self, gate, head_output):
        weighted = (gate.unsqueeze(-1) * head_output).flatten(1)  # [B, H*d']
        # sum_h gate_h W_f^(h) F^(h): facet_projection's weight is W_f stacked by head.
        return torch.matmul(weighted, self.facet_projection.weight)  # [B, d]

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        pos_items = interaction[self.POS_ITEM_ID]
        user_vector = self.forward(item_seq, item_seq_len)
        if self.loss_type == "BPR":
            neg_items = interaction[self.NEG_ITEM_ID]
            pos_score = (user_vector * self.item_embedding(pos_items)).sum(-1)
            neg_score = (user_vector * self.item_embedding(neg_items)).sum(-1)
            return self.loss_fct(pos_score, neg_score)
        logits = torch.matmul(user_vector, self.item_embedding.weight.transpose(0, 1))  # [B, n_items]
        return self.loss_fct(logits, pos_items)  # Eq. 18

    def predict(self, interaction):
        user_vector = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (user_vector * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)  # [B]

    def full_sort_predict(self, interaction):
        user_vector = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.matmul(user_vector, self.item_embedding.weight.transpose(0, 1))  # [B, n_items]

    def facet_scores(self, interaction):
        """Per-head view of the prediction (the paper's case study, Fig. 7).

        Returns gate [B, H] and head_scores [B, H, n_items], with
        ``(gate[..., None] * head_scores).sum(1)`` equal to ``full_sort_predict(interaction)``.
        """
        gate, head_scores, _ = self.facet_analysis(interaction)
        return gate, head_scores

    def facet_analysis(self, interaction):
        """What :meth:`facet_scores` and :meth:`expert_weights` return, from one forward pass:
        gate [B, H], head_scores [B, H, n_items] and expert_weights [B, H, N]."""
        gate, head_output, expert_weights = self._facets(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        )
        sub_embeddings = self.facet_projection(self.item_embedding.weight).view(
            self.n_items, self.n_heads, self.head_size
        )  # x_v^(h), [n_items, H, d'] (Eq. 9)
        head_scores = torch.einsum("bhe,vhe->bhv", head_output, sub_embeddings)  # P^(h)(v), Eq. 8
        return gate, head_scores, expert_weights

    def expert_weights(self, interaction):
        """The router's weights over each head's experts at the predicted position, [B, H, N] (Eq. 16)."""
        _, _, expert_weights = self._facets(
            interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        )
        return expert_weights
