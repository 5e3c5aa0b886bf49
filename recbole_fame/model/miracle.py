"""
MIRACLE
################################################

Reference:
    Zuoli Tang, Lin Wang, Lixin Zou, Xiaolu Zhang, Jun Zhou, Chenliang Li. "Towards Multi-Interest
    Pre-training with Sparse Capsule Network." in SIGIR 2023.

Equation numbers refer to that paper. Its authors' code (WHUIR/Miracle) differs from the paper in
places; this follows the paper (``docs/miracle.md`` lists the differences and the readings taken
where the paper is ambiguous).
"""

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder
from recbole.model.sequential_recommender.sasrec import SASRec
from torch import nn

from recbole_fame.checkpoint import CheckpointError, checkpoint_model_name, copy_matching_tensors, load_checkpoint
from recbole_fame.config_checks import (
    COMMON_CHECKS,
    boolean,
    check_heads_divide_hidden_size,
    check_keys,
    integer,
    number,
    one_of,
    optional,
    text,
)
from recbole_fame.data.length_groups import group_bounds, length_groups_setting
from recbole_fame.model.capsules import (
    MoEAdaptor,
    SparseInterestCapsules,
    balance_loss,
    interest_scores,
    orthogonality_loss,
)
from recbole_fame.text.item_vectors import dataset_text_vectors

TRAIN_STAGES = ("pretrain", "finetune")
# What a pre-trained checkpoint must share with the model it initialises.
PRETRAINED_KEYS = (
    "text_encoder",
    "hidden_size",
    "n_layers",
    "n_heads",
    "inner_size",
    "hidden_act",
    "n_adaptor_experts",
    "n_capsules",
    "MAX_ITEM_LIST_LENGTH",
    "text_standardize",
)


def standardized(text):
    """Each dimension of the items' text vectors (rows 1.., not the padding row 0) to mean 0 and
    variance 1 over the dataset's items. The packaged encoder's vectors have unit length (the
    paper's BERT [CLS] outputs are not normalised): standardised, t_i has a norm of about
    sqrt(d_b), and the scores u_j . x_v (|u_j| < 1 after the squash) are not held near 0 from the
    start (``docs/miracle.md``, text scale)."""
    items = text[1:]
    out = torch.zeros_like(text)
    out[1:] = (items - items.mean(0)) / items.std(0).clamp_min(1e-6)
    return out


class MIRACLE(SequentialRecommender):
    r"""Multi-interest pre-training with a sparse capsule network over text-based items.

    Item i is its text: t_i from the frozen sentence encoder ``text_encoder`` (Eq. 1; the paper's
    BERT-base [CLS] is not available here), mapped by a mixture-of-experts adaptor to x_i (Eq. 2-4).
    ``transductive`` adds an ID embedding e_i (section 3.4.4); inductive (False) is text only.
    A bidirectional Transformer contextualises the sequence (Eq. 5-6); each item activates its
    closest interest capsule, and each activated capsule aggregates its items into an interest
    u_j (Eq. 7-14, :class:`~recbole_fame.model.capsules.SparseInterestCapsules`). An item's score
    is its best match over the user's activated interests (Eq. 17).

    ``train_stage``:

    - ``'pretrain'``: text only; next-item cross-entropy against the batch's other targets (Eq.
      16) plus the capsule regularisers and the interest-level contrastive loss between each
      sequence and a view with ``mask_ratio`` of its items replaced by [MASK] (Eq. 15, 22).
    - ``'finetune'`` (default): cross-entropy over all items (Eq. 23) plus the regularisers (Eq. 24).
      From ``pretrained_path`` (a MIRACLE checkpoint of the same sizes and text encoder; its item
      ID embedding, if any, is not taken) with the Transformer frozen (``freeze_encoder``, section
      3.4.4), or from scratch. ``epochs: 0`` evaluates the pre-trained model as it is (zero-shot).

    Losses are means over the batch (the paper writes Eq. 15-16 as sums and Eq. 23 as a mean);
    sums only rescale the weights theta.
    """

    config_checks = {
        "train_stage": one_of(*TRAIN_STAGES),
        "transductive": boolean,
        "n_adaptor_experts": integer(1),
        "n_capsules": integer(1),
        "capsule_noise": number(minimum=0),
        "mask_ratio": number(minimum=0, below=1),
        "balance_weight": number(minimum=0),
        "orthogonality_weight": number(minimum=0),
        "interest_contrast_weight": number(minimum=0),
        "freeze_encoder": optional(boolean),
        "pretrained_path": optional(text),
        "loss_type": one_of("CE"),
        "text_encoder": text,
        "text_standardize": boolean,
    }

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_keys(config, {key: COMMON_CHECKS[key] for key in ("n_heads", "hidden_size")})
        check_keys(config, self.config_checks)
        check_heads_divide_hidden_size(config)

        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.train_stage = config["train_stage"]
        self.transductive = config["transductive"] and self.train_stage == "finetune"
        if self.transductive and config["epochs"] == 0 and config["pretrained_path"]:
            raise ValueError(
                "epochs=0 evaluates the pre-trained MIRACLE as it is (zero-shot), but transductive=True adds "
                "item ID embeddings that nothing trained: set transductive=False"
            )
        self.mask_ratio = config["mask_ratio"]
        self.balance_weight = config["balance_weight"]
        self.orthogonality_weight = config["orthogonality_weight"]
        self.interest_contrast_weight = config["interest_contrast_weight"]
        # The pipeline's length_groups (one process, by device: docs/speed.md), applied inside the
        # encoder: MIRACLE's batch-level losses (Eq. 16, 19-21) need the whole batch at once.
        self.length_groups = length_groups_setting(config)

        # t_i of every item by internal id (Eq. 1), [n_items, d_b]: recomputed from the text cache
        # when the model is built, so checkpoints do not carry it (nor another dataset's).
        text = dataset_text_vectors(config, dataset, "MIRACLE")
        if config["text_standardize"]:
            text = standardized(text)
        self.register_buffer("item_text", text, persistent=False)
        self.adaptor = MoEAdaptor(
            self.item_text.size(1), self.hidden_size, config["n_adaptor_experts"],
            config["hidden_dropout_prob"], self.initializer_range,
        )
        if self.transductive:
            self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)  # e_i
        self.mask_embedding = nn.Parameter(torch.zeros(self.hidden_size))  # [MASK] of Eq. 15's view
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)  # P (Eq. 5)
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=self.hidden_size,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.capsules = SparseInterestCapsules(
            self.hidden_size, config["n_capsules"], self.max_seq_length, config["capsule_noise"],
            config["layer_norm_eps"], self.initializer_range,
        )
        self.loss_fct = nn.CrossEntropyLoss()

        self.apply(self._init_weights)
        nn.init.normal_(self.mask_embedding, std=self.initializer_range)
        if config["pretrained_path"]:
            self._load_pretrained(config["pretrained_path"], config)
        # Resolved here, into the config the trainer stores in its checkpoints, so that a resumed
        # run (built without re-reading pretrained_path) freezes what the original run froze.
        if config["freeze_encoder"] is None:
            config["freeze_encoder"] = bool(config["pretrained_path"]) and self.train_stage == "finetune"
        if config["freeze_encoder"]:
            self.trm_encoder.requires_grad_(False)

    def _init_weights(self, module):
        SASRec._init_weights(self, module)

    def _load_pretrained(self, path, config):
        checkpoint = load_checkpoint(path, self.device)
        source_model = checkpoint_model_name(checkpoint)
        if source_model != "MIRACLE":
            raise CheckpointError(f"pretrained_path {path} is a checkpoint of {source_model!r}, not of 'MIRACLE'")
        source_config = checkpoint["config"]
        for key in PRETRAINED_KEYS:
            if source_config[key] != config[key]:
                raise CheckpointError(
                    f"pretrained_path {path} does not fit: it was trained with {key}={source_config[key]!r}, "
                    f"this MIRACLE has {key}={config[key]!r}"
                )
        is_id_embedding = lambda key: key.startswith("item_embedding.")  # noqa: E731: per dataset
        state = {key: value for key, value in checkpoint["state_dict"].items() if not is_id_embedding(key)}
        copy_matching_tensors(path, state, self, expected_extra=is_id_embedding, expected_missing=is_id_embedding)

    # ------------------------------------------------------------------ the model's equations

    def item_representations(self):
        """x_i (+ e_i when transductive) of every item, [n_items, d] (Eq. 2)."""
        x = self.adaptor(self.item_text)
        return x + self.item_embedding.weight if self.transductive else x

    def encode(self, item_seq, x, masked=None):
        """H [B, N, d] (Eq. 5-6): the items' representations ``x`` [n_items, d] along the
        sequence, [MASK] where ``masked`` [B, N] is True, plus P, through the bidirectional
        Transformer. With ``length_groups`` > 1 the batch is encoded as that many groups of
        similar length, each trimmed to its longest (every row is computed as alone: the padding
        it loses is masked out of its attention anyway); H is zero at padding."""
        if self.length_groups <= 1:
            return self._encode(item_seq, x, masked)
        lengths = (item_seq > 0).sum(1)
        order = torch.argsort(lengths, stable=True)
        bounds = group_bounds(lengths[order].cpu().numpy(), self.length_groups)  # the pipeline's cuts
        h = x.new_zeros(item_seq.shape + (self.hidden_size,))
        for start, end in zip(bounds, bounds[1:]):
            rows = order[start:end]
            longest = int(lengths[rows].max())
            h[rows, :longest] = self._encode(
                item_seq[rows, :longest], x, None if masked is None else masked[rows, :longest])
        return h

    def _encode(self, item_seq, x, masked):
        input_emb = x[item_seq]  # [B, N, d]
        if masked is not None:
            input_emb = torch.where(masked.unsqueeze(-1), self.mask_embedding, input_emb)
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        input_emb = self.dropout(self.LayerNorm(input_emb + self.position_embedding(positions)))
        attention_mask = self.get_attention_mask(item_seq, bidirectional=True)
        h = self.trm_encoder(input_emb, attention_mask, output_all_encoded_layers=False)[-1]
        return h * (item_seq > 0).unsqueeze(-1)  # [B, N, d], zero at padding

    def interests(self, item_seq, x, masked=None, activation=None):
        """u [B, C, d], active [B, C], s [B, N, C], activation [B, N] (Eq. 7-14)."""
        valid = item_seq > 0
        return self.capsules(self.encode(item_seq, x, masked), valid, activation)

    def forward(self, item_seq, item_seq_len, x=None):
        """The interests u [B, C, d] and which are activated, [B, C] (I_u); ``x``: the items'
        representations when the caller has them already."""
        x = self.item_representations() if x is None else x
        u, active, _, _ = self.interests(item_seq, x)
        return u, active

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        pos_items = interaction[self.POS_ITEM_ID]
        x = self.item_representations()  # [n_items, d]
        u, active, s, activation = self.interests(item_seq, x)
        if self.train_stage == "pretrain":
            logits = interest_scores(u, active, x[pos_items])  # [B, B] (Eq. 16)
            target = torch.arange(len(pos_items), device=item_seq.device)
        else:
            logits = interest_scores(u, active, x)  # [B, n_items] (Eq. 23)
            target = pos_items
        loss = self.loss_fct(logits, target)
        if self.balance_weight:
            loss = loss + self.balance_weight * balance_loss(s, activation, item_seq > 0)  # Eq. 21
        if self.orthogonality_weight:
            loss = loss + self.orthogonality_weight * orthogonality_loss(self.capsules.base_vectors)  # Eq. 18
        if self.train_stage == "pretrain" and self.interest_contrast_weight:
            loss = loss + self.interest_contrast_weight * self._interest_contrast(item_seq, x, u, activation)
        return loss

    def _interest_contrast(self, item_seq, x, u, activation):
        """Eq. 15: the interest each masked item activated in the sequence, against the same
        capsule's interest in the view where it is masked (its activation forced to the
        original's); the batch's other masked items are the negatives."""
        masked = (torch.rand(item_seq.shape, device=item_seq.device) < self.mask_ratio) & (item_seq > 0)
        if not masked.any():
            return u.new_zeros(())
        u_view, _, _, _ = self.interests(item_seq, x, masked=masked, activation=activation)
        rows, positions = masked.nonzero(as_tuple=True)  # the B_m masked items
        capsule = activation[rows, positions]
        anchor, positive = u[rows, capsule], u_view[rows, capsule]  # u~_i, u~'_i [B_m, d]
        logits = anchor @ positive.T  # [B_m, B_m]
        return self.loss_fct(logits, torch.arange(len(rows), device=item_seq.device))

    def predict(self, interaction):
        x = self.item_representations()  # [n_items, d], once for the sequences and the candidates
        u, active = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], x)
        scores = torch.einsum("bcd,bd->bc", u, x[interaction[self.ITEM_ID]])
        return scores.masked_fill(~active, float("-inf")).amax(1)  # [B] (Eq. 17)

    def full_sort_predict(self, interaction):
        x = self.item_representations()  # [n_items, d], once for the sequences and the ranking
        u, active = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], x)
        return interest_scores(u, active, x)  # [B, n_items] (Eq. 17)

    def interest_analysis(self, interaction):
        """What the explanation and the activation statistics show, in eval mode: interests
        [B, C, d], active [B, C], each item's capsule [B, N] (padding: -1) and the score of every
        item under every interest [B, C, n_items]."""
        item_seq = interaction[self.ITEM_SEQ]
        x = self.item_representations()
        u, active, _, activation = self.interests(item_seq, x)
        scores = torch.einsum("bcd,vd->bcv", u, x)
        return u, active, activation.masked_fill(item_seq == 0, -1), scores
