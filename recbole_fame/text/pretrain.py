"""Text-enhanced facet-aware pre-training of item embeddings (the extended FAME).

Before sequential training, a frozen sentence encoder turns each item's text into a vector
(:mod:`recbole_fame.text.encoder`); a mixture-of-experts adaptor shared by all heads (MIRACLE,
SIGIR'23, section 3.2; ``text_adaptor_experts``) and then one linear projection per FAME head map
it to that head's d' = d/H sub-space (:class:`FacetProjector`). Each head is trained with a
supervised contrastive loss on the facets assigned to it (``text_facets``: facet labels from
categorical item fields, such as ml-100k's genres and release decade): items sharing the facet's
label are pulled together, the others pushed apart. Facets take turns, per step or per epoch
(``text_pretrain_alternate``); the turns meet in the shared adaptor (without it, facets on
different heads train disjoint parameters and the order of turns changes nothing). The head
sub-embeddings, concatenated, initialise the item embeddings of FAME (whose W_f^(h) starts as the
selector of head h's coordinates, so x_v^(h) is exactly head h's pre-trained sub-embedding) or of
SASRec, FAME's stage 1, from which FAME then inherits them.

Choices the extended abstract leaves open:

- Several labels per item (genres): positives are weighted by the Jaccard overlap of the two
  items' label sets, ``w_ij = |L_i & L_j| / |L_i | L_j|``, and each anchor's loss is
  ``-sum_j w_ij log p_ij / sum_j w_ij``, p_ij the softmax over the batch of cosine similarities
  divided by ``text_pretrain_temperature``. With one label per item this is the supervised
  contrastive loss of Khosla et al. (2020) (L_out); 'Action Comedy' and 'Comedy' are half
  positives rather than full ones or negatives. Anchors without any positive in the batch are
  left out; items without a label for the facet are not in its batches.
- Alternation, with the same budget in both modes: every facet gets ``text_pretrain_epochs``
  shuffled passes over its labelled items. ``step`` interleaves the facets batch by batch within
  each epoch; ``epoch`` gives each epoch to one facet, in turn.
- Scale: each head's sub-embedding is the projection's unit vector times
  ``initializer_range * sqrt(d')``, the length of a random initial sub-embedding, so that the
  position embeddings added to it keep their usual weight; the direction carries the facet.
- A head with no facet keeps its random initialisation; an item without text keeps its random
  row (both are logged).
- Cold start: RecBole numbers only the items of the interaction file, so an item that has text
  but no interaction has no row in the model. The pre-training covers every item of the item file,
  with or without interactions, and :func:`cold_start_item_embeddings` maps its text-derived
  sub-embeddings into a trained model's item space (a ridge regression fitted on the items that do
  have rows), for scoring against the model's user vectors.
"""

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from logging import getLogger

import numpy as np
import torch
import torch.nn.functional as F
from recbole.utils import set_color
from torch import nn
from tqdm import tqdm

from recbole_fame.text.alignment import knn_label_accuracy, label_matrix
from recbole_fame.data.item_file import read_item_file
from recbole_fame.text.encoder import item_texts, text_vectors

# Models whose item embedding is d = H x d' wide and whose heads FAME's W_f^(h) reads slice by slice.
TEXT_INIT_MODELS = ("FAME", "SASRec")
ALTERNATE_MODES = ("step", "epoch")
FACET_KEYS = ("field", "heads", "bucket")
ALIGNMENT_K = 10


@dataclass
class Facet:
    """A facet: labels from one item field, learned by the projections of ``heads`` (0-based)."""

    name: str
    field: str
    heads: list
    bucket: int = None  # numeric values are grouped in buckets of this width (10: decades)

    def spec(self):
        return {"name": self.name, "field": self.field, "heads": [h + 1 for h in self.heads], "bucket": self.bucket}


@dataclass
class FacetPretraining:
    """What the pre-training gives: per assigned head, a sub-embedding for every item with text."""

    items: list  # raw item ids, sorted
    head_embeddings: dict  # head (0-based) -> [len(items), d'] tensor
    facets: list  # Facet.spec() of each facet
    losses: list = field(default_factory=list)  # per epoch and facet: {"epoch", "facet", "loss", "steps"}
    alignment: list = field(default_factory=list)  # rows of kNN label accuracy (see facet_alignment)
    holdout: list = field(default_factory=list)  # raw ids whose labels the training did not see
    file: str = None

    def rows(self, raw_ids):
        """Positions in ``items`` of ``raw_ids`` (-1 for an item without text)."""
        index = {item: i for i, item in enumerate(self.items)}
        return [index.get(str(item), -1) for item in raw_ids]

    def embeddings(self, raw_ids):
        """[len(raw_ids), n_assigned_heads * d'], the assigned heads' sub-embeddings side by side;
        KeyError naming an item without text."""
        rows = self.rows(raw_ids)
        missing = [item for item, row in zip(raw_ids, rows) if row < 0]
        if missing:
            raise KeyError(f"No text for items {missing[:10]}: not in the item file, or no value in its text_fields")
        rows = torch.tensor(rows, dtype=torch.long)
        return torch.cat([self.head_embeddings[h][rows] for h in sorted(self.head_embeddings)], dim=1)


# ---------------------------------------------------------------- facets and labels


def parse_facets(value, n_heads, table):
    """``text_facets`` as a list of :class:`Facet`, checked against ``n_heads`` and the item file."""
    example = "{genre: {field: class, heads: [1]}, decade: {field: release_year, bucket: 10, heads: [2]}}"
    if not isinstance(value, dict) or not value:
        raise ValueError(f"text_facets must map facet names to their field and heads, e.g. {example}; got {value!r}")
    facets = []
    for name, spec in value.items():
        if not isinstance(spec, dict):
            raise ValueError(f"text_facets '{name}' must be a dict such as {{field: class, heads: [1]}}, got {spec!r}")
        unknown = sorted(set(spec) - set(FACET_KEYS))
        if unknown:
            raise ValueError(f"text_facets '{name}' has unknown keys {unknown}; allowed: {list(FACET_KEYS)}")
        field_name = spec.get("field")
        if field_name not in table.fields:
            raise ValueError(
                f"text_facets '{name}': field {field_name!r} is not in the item file {table.path} "
                f"(its fields: {list(table.fields)})"
            )
        heads = spec.get("heads")
        heads = [heads] if isinstance(heads, int) and not isinstance(heads, bool) else heads
        if (
            not isinstance(heads, (list, tuple))
            or not heads
            or any(isinstance(h, bool) or not isinstance(h, int) or not 1 <= h <= n_heads for h in heads)
        ):
            raise ValueError(
                f"text_facets '{name}': heads must be a list of head numbers from 1 to n_heads={n_heads}, "
                f"got {spec.get('heads')!r}"
            )
        bucket = spec.get("bucket")
        if bucket is not None and (isinstance(bucket, bool) or not isinstance(bucket, int) or bucket < 1):
            raise ValueError(f"text_facets '{name}': bucket must be a positive integer, got {bucket!r}")
        facets.append(Facet(str(name), field_name, sorted({h - 1 for h in heads}), bucket))
    return facets


def facet_labels(table, facet, items):
    """The label set of each of ``items`` for ``facet`` (empty when the item has no value).

    A ``token_seq`` field gives one label per token (genres); ``bucket`` turns a numeric value into
    the start of its bucket (1995 with bucket 10 -> '1990'). A value that is not a number gives no
    label, with a warning naming the items (ml-100k has two: item 267 'unkonwn', item 1412 'V');
    a field with no number at all raises ``ValueError``.
    """
    labels, bad = [], []
    for item in items:
        values = table.tokens(item, facet.field)
        if facet.bucket is not None:
            bucketed = []
            for value in values:
                try:
                    number = int(float(value))
                except (ValueError, OverflowError):
                    bad.append((item, value))
                    continue
                bucketed.append(str(number - number % facet.bucket))
            values = bucketed
        labels.append(frozenset(values))
    if bad:
        shown = ", ".join(f"{item} {value!r}" for item, value in bad[:5]) + (", ..." if len(bad) > 5 else "")
        if not any(labels):
            raise ValueError(
                f"text_facets '{facet.name}' buckets field '{facet.field}' of {table.path}, which holds no "
                f"number (items {shown})"
            )
        getLogger().warning(
            f"text_facets '{facet.name}': {len(bad)} items of {table.path} have a '{facet.field}' that is not "
            f"a number and get no label: {shown}"
        )
    return labels


# ---------------------------------------------------------------- the loss


def jaccard_weights(multi_hot):
    """[n, n] Jaccard overlaps of the label sets in the rows of ``multi_hot`` [n, C] (0 where both are empty)."""
    shared = multi_hot @ multi_hot.T
    sizes = multi_hot.sum(1)
    union = sizes.unsqueeze(0) + sizes.unsqueeze(1) - shared
    return torch.where(union > 0, shared / union.clamp(min=1e-12), torch.zeros_like(shared))


def supervised_contrastive_loss(embeddings, weights, temperature):
    """Mean over anchors of ``-sum_j w_ij log p_ij / sum_j w_ij`` (j != i), p_ij the softmax over
    j != i of cos(z_i, z_j) / temperature; anchors whose positives weigh 0 are left out.

    Returns None when no anchor has a positive.
    """
    n = embeddings.size(0)
    unit = F.normalize(embeddings, dim=-1)
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    logits = (unit @ unit.T / temperature).masked_fill(self_mask, -torch.inf)
    log_prob = logits.log_softmax(dim=1).masked_fill(self_mask, 0.0)
    weights = weights.masked_fill(self_mask, 0.0)
    positive = weights.sum(1)
    anchors = positive > 0
    if not anchors.any():
        return None
    return (-(weights * log_prob).sum(1)[anchors] / positive[anchors]).mean()


# ---------------------------------------------------------------- the projections


class FacetProjector(nn.Module):
    """Text vector -> each assigned head's d' sub-space.

    With ``n_experts`` > 0, a mixture-of-experts adaptor shared by all heads comes first (MIRACLE,
    SIGIR'23, Eq. 2-4: ``x = sum_k g_k (t - b_k) W_k``, ``g = softmax(t W_g + b_g)``, to d dims),
    then one linear map per head to d'. The shared adaptor is what the facets' turns compete for;
    with ``n_experts=0`` each head's projection reads the text vector directly and, heads being
    disjoint, facets on different heads never interact.
    """

    def __init__(self, text_size, hidden_size, head_size, heads, n_experts):
        super().__init__()
        self.n_experts = n_experts
        if n_experts:
            self.gate = nn.Linear(text_size, n_experts)
            self.expert_bias = nn.Parameter(torch.zeros(n_experts, text_size))
            self.expert_weight = nn.Parameter(torch.empty(n_experts, text_size, hidden_size))
            for k in range(n_experts):
                nn.init.xavier_uniform_(self.expert_weight.data[k])
        width = hidden_size if n_experts else text_size
        self.heads = nn.ModuleDict({str(h): nn.Linear(width, head_size) for h in heads})

    def adapt(self, text):
        if not self.n_experts:
            return text
        gate = torch.softmax(self.gate(text), dim=-1)  # [B, G]
        experts = torch.einsum("bgt,gth->bgh", text.unsqueeze(1) - self.expert_bias, self.expert_weight)
        return (gate.unsqueeze(-1) * experts).sum(1)

    def forward(self, text, heads):
        """``{head: [B, d']}`` for ``heads`` (0-based)."""
        adapted = self.adapt(text)
        return {h: self.heads[str(h)](adapted) for h in heads}


# ---------------------------------------------------------------- training


def _batches(indices, batch_size, generator):
    order = indices[torch.randperm(len(indices), generator=generator)]
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size) if len(order[i : i + batch_size]) > 1]


def _schedule(facet_indices, epochs, alternate, batch_size, generator):
    """The steps as (epoch, facet position, batch): every facet gets ``epochs`` passes over its items."""
    n = len(facet_indices)
    if alternate == "step":
        for epoch in range(epochs):
            passes = [_batches(indices, batch_size, generator) for indices in facet_indices]
            for i in range(max(len(p) for p in passes)):
                for f, batches in enumerate(passes):
                    if i < len(batches):
                        yield epoch, f, batches[i]
    else:
        for epoch in range(epochs * n):
            f = epoch % n
            for batch in _batches(facet_indices[f], batch_size, generator):
                yield epoch, f, batch


def train_projections(
    vectors,
    labels,
    facets,
    n_heads,
    head_size,
    epochs=30,
    batch_size=256,
    learning_rate=1e-3,
    temperature=0.1,
    alternate="step",
    seed=2020,
    device="cpu",
    trainable=None,
    show_progress=False,
    n_experts=0,
    hidden_size=None,
):
    """Train a :class:`FacetProjector` on ``vectors`` [n, D].

    ``labels``: per facet, a list of n label sets. ``trainable``: indices of the items whose labels
    the training may use (default: all). ``n_experts``, ``hidden_size``: the shared adaptor
    (none when 0). Returns ``(projector, losses)``, the losses being the mean loss of each facet
    in each epoch. The global random state is left as it was: the pipeline draws the same model
    weights whether the pre-training ran or came from the cache.
    """
    if alternate not in ALTERNATE_MODES:
        raise ValueError(f"text_pretrain_alternate must be one of {ALTERNATE_MODES}, got {alternate!r}")
    for key, value in (("text_pretrain_epochs", epochs), ("text_pretrain_batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if batch_size < 2:
        raise ValueError(f"text_pretrain_batch_size must be at least 2 (a contrastive batch), got {batch_size}")
    if not temperature > 0:
        raise ValueError(f"text_pretrain_temperature must be positive, got {temperature!r}")
    device = torch.device(device)
    vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    allowed = torch.ones(len(vectors), dtype=torch.bool)
    if trainable is not None:
        allowed[:] = False
        allowed[torch.as_tensor(list(trainable), dtype=torch.long)] = True
    multi_hot = [label_matrix(facet_labels_)[0] for facet_labels_ in labels]
    facet_indices = [torch.nonzero((m.sum(1) > 0) & allowed).flatten() for m in multi_hot]
    for facet, indices in zip(facets, facet_indices):
        if len(indices) < 2:
            raise ValueError(f"text_facets '{facet.name}': fewer than 2 items have a label in field '{facet.field}'")
    heads = sorted({h for facet in facets for h in facet.heads})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        projector = FacetProjector(vectors.size(1), hidden_size or n_heads * head_size, head_size, heads, n_experts)
        projector.to(device)
        optimizer = torch.optim.Adam(projector.parameters(), lr=learning_rate)
        vectors, multi_hot = vectors.to(device), [m.to(device) for m in multi_hot]
        n_epochs = epochs if alternate == "step" else epochs * len(facets)
        totals = {}
        progress = tqdm(total=n_epochs, desc="text pre-training", disable=not show_progress, ncols=100)
        losses, current = [], 0
        logger = getLogger()

        def close_epoch(epoch):
            for f, facet in enumerate(facets):
                if (epoch, f) in totals:
                    total, steps = totals.pop((epoch, f))
                    losses.append({"epoch": epoch, "facet": facet.name, "loss": total / steps, "steps": steps})
            summary = ", ".join(f"{row['facet']} {row['loss']:.4f}" for row in losses if row["epoch"] == epoch)
            logger.info(f"text pre-training epoch {epoch + 1}/{n_epochs}: loss {summary}")
            progress.set_postfix_str(summary)
            progress.update(1)

        for epoch, f, batch in _schedule(facet_indices, epochs, alternate, batch_size, generator):
            if epoch != current:
                close_epoch(current)
                current = epoch
            batch = batch.to(device)
            weights = jaccard_weights(multi_hot[f][batch])
            loss = None
            for head_output in projector(vectors[batch], facets[f].heads).values():
                head_loss = supervised_contrastive_loss(head_output, weights, temperature)
                if head_loss is not None:
                    loss = head_loss if loss is None else loss + head_loss
            if loss is None:  # no two items of the batch share a label
                continue
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = totals.get((epoch, f), (0.0, 0))
            totals[(epoch, f)] = (total + loss.item() / len(facets[f].heads), steps + 1)
        close_epoch(current)
        progress.close()
    return projector.eval(), losses


@torch.no_grad()
def head_embeddings(projector, vectors, head_size, initializer_range, device="cpu"):
    """Each assigned head's unit projection of ``vectors``, scaled to a random sub-embedding's length."""
    vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32).to(device)
    scale = initializer_range * math.sqrt(head_size)
    heads = sorted(int(h) for h in projector.heads)
    return {h: (F.normalize(out, dim=-1) * scale).cpu() for h, out in projector(vectors, heads).items()}


# ---------------------------------------------------------------- the pipeline step


def text_settings(config):
    """The config's text pre-training settings, checked."""
    settings = {
        "encoder": config["text_encoder"],
        "fields": config["text_fields"],
        "epochs": config["text_pretrain_epochs"],
        "batch_size": config["text_pretrain_batch_size"],
        "learning_rate": config["text_pretrain_lr"],
        "temperature": config["text_pretrain_temperature"],
        "alternate": config["text_pretrain_alternate"],
        "adaptor_experts": config["text_adaptor_experts"],
    }
    experts = settings["adaptor_experts"]
    if isinstance(experts, bool) or not isinstance(experts, int) or experts < 0:
        raise ValueError(f"text_adaptor_experts must be an integer >= 0, got {experts!r}")
    if isinstance(settings["fields"], str):
        settings["fields"] = [settings["fields"]]
    if not settings["fields"]:
        raise ValueError(
            "text_pretrain is on but text_fields is empty: name the item fields to encode, e.g. [movie_title]"
        )
    if config["text_facets"] is None:
        raise ValueError(
            "text_pretrain is on but text_facets is not set: map facet names to an item field and heads, e.g. "
            "{genre: {field: class, heads: [1]}, decade: {field: release_year, bucket: 10, heads: [2]}}"
        )
    if settings["alternate"] not in ALTERNATE_MODES:
        raise ValueError(
            f"text_pretrain_alternate must be one of {ALTERNATE_MODES}, got {settings['alternate']!r}"
        )
    return settings


def text_cache_dir(config):
    return config["text_cache_dir"] or os.path.join(config["checkpoint_dir"], "text_cache")


_RESULTS = {}  # file -> FacetPretraining, so that stage 1 and stage 2 read it once


def text_pretraining(config, holdout_share=0.0, show_progress=None):
    """The pipeline step: the :class:`FacetPretraining` for ``config``, trained or from the cache.

    The result is cached in ``text_cache_dir`` under a hash of everything it depends on (text
    vectors, labels, heads, sizes, training settings, seed). ``holdout_share``: share of the items
    (drawn with the seed) whose labels the training does not see, for measuring how the alignment
    carries over to unseen items (:mod:`benchmarks.text_pretrain`).
    """
    # Loading the encoder draws random weights before reading its own: keep the caller's random
    # state, so that a run draws the same model weights whether this came from the cache or not.
    with torch.random.fork_rng(devices=[]):
        return _text_pretraining(config, holdout_share, show_progress)


def _text_pretraining(config, holdout_share, show_progress):
    logger = getLogger()
    settings = text_settings(config)
    show_progress = config["show_progress"] if show_progress is None else show_progress
    table = read_item_file(config, required=True)
    if table.malformed_lines:
        logger.warning(
            f"{table.path}: {len(table.malformed_lines)} lines with a wrong number of columns skipped "
            f"(first: line {table.malformed_lines[0]})"
        )
    n_heads, hidden_size = config["n_heads"], config["hidden_size"]
    if hidden_size % n_heads:
        raise ValueError(f"text_pretrain: hidden_size ({hidden_size}) must be divisible by n_heads ({n_heads})")
    head_size = hidden_size // n_heads
    facets = parse_facets(config["text_facets"], n_heads, table)
    texts = item_texts(table, settings["fields"])
    if not texts:
        raise ValueError(f"No item of {table.path} has text in text_fields {settings['fields']}")
    cache_dir = text_cache_dir(config)
    items, vectors = text_vectors(
        texts, settings["encoder"], settings["fields"], cache_dir, config["device"], show_progress
    )
    labels = [facet_labels(table, facet, items) for facet in facets]
    holdout = []
    if holdout_share:
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(config["seed"])).tolist()
        holdout = sorted(order[: int(round(holdout_share * len(items)))])

    key_content = {
        "vectors": hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest(),
        "items": items,
        "labels": [[sorted(s) for s in facet_labels_] for facet_labels_ in labels],
        "facets": [facet.spec() for facet in facets],
        "n_heads": n_heads,
        "hidden_size": hidden_size,
        "initializer_range": config["initializer_range"],
        "seed": config["seed"],
        "holdout": holdout,
        **{k: v for k, v in settings.items() if k not in ("encoder", "fields")},
    }
    key = hashlib.sha256(json.dumps(key_content, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"facet-pretrain-{key}.pt")
    if path in _RESULTS:
        return _RESULTS[path]
    if os.path.isfile(path):
        result = FacetPretraining(**torch.load(path, weights_only=True), file=path)
        logger.info(set_color("Text pre-training", "green") + f" read from {path}")
        _log_alignment(result)
        _RESULTS[path] = result
        return result

    start = time.time()
    logger.info(
        set_color("Text pre-training", "green")
        + f": {len(items)} items, facets "
        + ", ".join(f"{f.name} ({f.field}) -> head {'/'.join(str(h + 1) for h in f.heads)}" for f in facets)
        + f", alternating per {settings['alternate']}"
    )
    unassigned = sorted(set(range(n_heads)) - {h for f in facets for h in f.heads})
    if unassigned:
        logger.warning(
            f"Heads {[h + 1 for h in unassigned]} have no facet in text_facets: they keep their random initialisation"
        )
    held = set(holdout)
    trainable = [i for i in range(len(items)) if i not in held]
    projector, losses = train_projections(
        vectors,
        labels,
        facets,
        n_heads,
        head_size,
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        temperature=settings["temperature"],
        alternate=settings["alternate"],
        seed=config["seed"],
        device=config["device"],
        trainable=trainable,
        show_progress=show_progress,
        n_experts=settings["adaptor_experts"],
        hidden_size=hidden_size,
    )
    embeddings = head_embeddings(projector, vectors, head_size, config["initializer_range"], config["device"])
    result = FacetPretraining(
        items=items,
        head_embeddings=embeddings,
        facets=[facet.spec() for facet in facets],
        losses=losses,
        holdout=[items[i] for i in holdout],
    )
    result.alignment = alignment_rows(
        facets, labels, {"text": vectors, **{f"pretrained head {h + 1}": e for h, e in embeddings.items()}},
        random_size=head_size, seed=config["seed"], queries=holdout or None,
    )
    os.makedirs(cache_dir, exist_ok=True)
    stored = {k: v for k, v in result.__dict__.items() if k != "file"}
    torch.save(stored, path + ".tmp")
    os.replace(path + ".tmp", path)
    result.file = path
    logger.info(set_color("Text pre-training", "green") + f" done in {time.time() - start:.1f} s, written to {path}")
    _log_alignment(result)
    _RESULTS[path] = result
    return result


def alignment_rows(facets, labels, vectors_by_name, random_size, seed, queries=None, k=ALIGNMENT_K):
    """kNN label accuracy per (head, facet): of random vectors, of the text vectors, of the head's
    pre-trained sub-embeddings, and of any other ``vectors_by_name`` entry ``'<name> head <h>'``
    (per head) or ``'<name>'`` (the same vectors for every head)."""
    n = len(labels[0])
    random_vectors = torch.randn(n, random_size, generator=torch.Generator().manual_seed(seed))
    rows = []
    for facet, facet_labels_ in zip(facets, labels):
        for h in facet.heads:
            row = {"head": h + 1, "facet": facet.name}
            base = knn_label_accuracy(random_vectors, facet_labels_, k=k, queries=queries)
            row["random"] = base["accuracy"]
            row["majority"], row["n"] = base["majority"], base["n"]
            for name, vectors in vectors_by_name.items():
                prefix, _, head = name.rpartition(" head ")
                if head and head.isdigit():
                    if int(head) != h + 1:
                        continue
                    name = prefix
                row[name] = knn_label_accuracy(vectors, facet_labels_, k=k, queries=queries)["accuracy"]
            rows.append(row)
    return rows


def _log_alignment(result):
    logger = getLogger()
    for row in result.alignment:
        values = ", ".join(
            f"{name} {value:.3f}"
            for name, value in row.items()
            if name not in ("head", "facet", "n") and value is not None
        )
        logger.info(f"head {row['head']} ({row['facet']}): {ALIGNMENT_K}-NN label accuracy {values} (n={row['n']})")


# ---------------------------------------------------------------- using it in a model


def uses_text_pretraining(config):
    """Whether ``config``'s run initialises item embeddings from text (FAME or SASRec, text_pretrain on)."""
    return bool(config["text_pretrain"]) and config["model"] in TEXT_INIT_MODELS


@torch.no_grad()
def init_item_embeddings(model, config, dataset, pretraining=None):
    """Overwrite ``model.item_embedding``'s slices of the assigned heads with the pre-trained
    sub-embeddings, for every item of ``dataset`` that has text. Returns ``{"items", "no_text"}``."""
    pretraining = pretraining or text_pretraining(config)
    weight = model.item_embedding.weight
    head_size = config["hidden_size"] // config["n_heads"]
    if weight.shape[1] != config["hidden_size"]:
        raise ValueError(
            f"{config['model']}'s item embedding has {weight.shape[1]} columns, not hidden_size={config['hidden_size']}"
        )
    tokens = dataset.field2id_token[dataset.iid_field]
    rows = torch.tensor(pretraining.rows([str(t) for t in tokens[1:]]), dtype=torch.long)
    ids = torch.arange(1, len(tokens))[rows >= 0]
    for h, embeddings in pretraining.head_embeddings.items():
        weight[ids, h * head_size : (h + 1) * head_size] = embeddings[rows[rows >= 0]].to(weight)
    no_text = int((rows < 0).sum())
    getLogger().info(
        set_color("Item embeddings", "green")
        + f" of {config['model']} initialised from text for {len(ids)} items, heads "
        + f"{[h + 1 for h in sorted(pretraining.head_embeddings)]}"
        + (f"; {no_text} items without text keep random rows" if no_text else "")
    )
    return {"items": len(ids), "no_text": no_text}


@torch.no_grad()
def cold_start_item_embeddings(model, dataset, pretraining, raw_ids, ridge=1e-3):
    """Embeddings in ``model``'s item space for items that have text but no row in the model.

    A ridge regression from the pre-trained sub-embeddings (assigned heads side by side, plus a
    bias) to the model's item embeddings is fitted on the items that have both, then applied to
    ``raw_ids``. For a model right after its text initialisation this gives back (up to the ridge)
    the pre-trained sub-embeddings; after training, it follows where training moved the items.
    Score them as the model scores its own items, e.g. ``model.forward(seq, len) @ emb.T`` for
    FAME and SASRec. ``ridge`` is relative to the mean squared feature.
    """
    tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field][1:]]
    rows = torch.tensor(pretraining.rows(tokens), dtype=torch.long)
    warm = torch.nonzero(rows >= 0).flatten()
    if len(warm) == 0:
        raise ValueError("No item of the dataset has text: nothing to fit the cold-start mapping on")
    features = pretraining.embeddings([tokens[i] for i in warm]).double()
    targets = model.item_embedding.weight[warm + 1].detach().cpu().double()
    x = torch.cat([features, torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    penalty = ridge * float((features**2).mean()) * len(features)
    gram = x.T @ x + penalty * torch.eye(x.size(1), dtype=torch.float64)
    mapping = torch.linalg.solve(gram, x.T @ targets)
    cold = pretraining.embeddings(list(raw_ids)).double()
    cold = torch.cat([cold, torch.ones(len(cold), 1, dtype=torch.float64)], dim=1)
    return (cold @ mapping).to(model.item_embedding.weight)
