"""What a trained MIRACLE's interest capsules do: for one user, which history items activated which
interest and each interest's top items; over all test users, how many capsules users activate and
how the load spreads over the C capsules (the paper's section 4.6 looks at the same).

``run_fame.py --explain`` and ``--explain-summary`` call these for a MIRACLE checkpoint (FAME's
go to :mod:`recbole_fame.explain`).
"""

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from recbole_fame.explain import EXPLAIN, EXPLAIN_SUMMARY, ItemMetadata, TopK, _save, user_history
from recbole_fame.files import new_figure
from recbole_fame.inference import check_k, encode_histories, history_interaction, top_items


@dataclass
class InterestExplanation:
    user: str
    history: list  # raw item ids, oldest first, as the model reads them
    target: str  # the ground truth (test split), or None
    capsules: list  # the capsule each history item activated (Eq. 8)
    interests: dict  # capsule -> TopK of its interest u_j alone
    recommended: TopK  # MIRACLE's list: max over the interests (Eq. 17)
    chosen_by: list  # for each recommended item, the capsule whose interest gave its score


@torch.no_grad()
def explain_user_interests(model, dataset, test_data, user, k=20):
    """The interests of raw user id ``user`` (an :class:`InterestExplanation`)."""
    check_k(dataset, k)
    history, target = user_history(dataset, test_data, user)
    (encoded,) = encode_histories(dataset, [history])
    history = history[-model.max_seq_length:]
    model.eval()
    _, active, activation, scores = model.interest_analysis(history_interaction(model, [encoded]))
    capsules = torch.nonzero(active[0]).flatten().tolist()

    def as_topk(values):
        top_values, ids = top_items(values, k)
        return TopK(dataset.id2token(dataset.iid_field, ids.cpu()).tolist(), top_values.cpu().tolist())

    interest_scores = scores[0, capsules]  # [K, n_items]
    best, which = interest_scores.max(0)
    recommended_values, recommended_ids = top_items(best, k)
    return InterestExplanation(
        user=str(user),
        history=history,
        target=target,
        capsules=activation[0, : len(history)].tolist(),
        interests={j: as_topk(scores[0, j]) for j in capsules},
        recommended=TopK(dataset.id2token(dataset.iid_field, recommended_ids.cpu()).tolist(),
                         recommended_values.cpu().tolist()),
        chosen_by=[capsules[i] for i in which[recommended_ids].tolist()],
    )


def format_interest_explanation(e, metadata=None):
    """The explanation as text: '*' marks the ground truth, '(seen)' an item of the history."""
    metadata = metadata or ItemMetadata()
    seen = set(e.history)
    lines = [f"User {e.user}: the {len(e.history)} items the model reads, oldest first, and the "
             f"capsule each activated (Eq. 8); {len(e.interests)} of the capsules active"]
    lines += [f"  {i:3d}. [capsule {c:2d}] {metadata.label(item, 70)}" for i, (item, c) in
              enumerate(zip(e.history, e.capsules), 1)]
    if e.target is not None:
        lines.append(f"Ground-truth next item (test split): {metadata.label(e.target)}   (marked * below)")

    def ranked(title, topk, notes=None):
        out = ["", title]
        for rank, (item, score) in enumerate(zip(topk.items, topk.scores), 1):
            mark = "*" if item == e.target else " "
            note = ("  (seen)" if item in seen else "") + (f"  from capsule {notes[rank - 1]}" if notes else "")
            out.append(f" {mark}{rank:3d}. {metadata.label(item, 60):60s}  {score:8.4f}{note}")
        return out

    for capsule, topk in e.interests.items():
        items = [i for i, c in enumerate(e.capsules, 1) if c == capsule]
        lines += ranked(f"Interest of capsule {capsule} (history items {items}): its own top-{len(topk.items)}", topk)
    lines += ranked("MIRACLE: each item's best interest (Eq. 17)", e.recommended, e.chosen_by)
    return "\n".join(lines)


def plot_interest_explanation(e, path, metadata=None, producer=EXPLAIN):
    """History items on the left, coloured by capsule; each active interest's top items beside it,
    one column (2.4 inches, 34 characters) per interest."""
    metadata = metadata or ItemMetadata()
    history_width, column_width = 5.0, 2.4
    width = history_width + column_width * max(len(e.interests), 1)
    figure = new_figure(figsize=(width, 0.32 * max(len(e.history), 12) + 1.5))
    axes = figure.add_axes([0, 0, 1, 1])
    axes.axis("off")
    colours = {c: f"C{i % 10}" for i, c in enumerate(e.interests)}
    axes.text(0.01, 0.98, f"User {e.user}: history [capsule]", fontsize=10, weight="bold", va="top")
    for i, (item, capsule) in enumerate(zip(e.history, e.capsules)):
        axes.text(0.01, 0.93 - i * 0.88 / max(len(e.history), 12), f"[{capsule}] {metadata.label(item, 60)}",
                  color=colours.get(capsule, "k"), fontsize=8, va="top")
    for column, (capsule, topk) in enumerate(e.interests.items()):
        x = (history_width + column * column_width) / width
        axes.text(x, 0.98, f"interest of capsule {capsule}", color=colours[capsule], fontsize=9, weight="bold", va="top")
        for rank, item in enumerate(topk.items[:12]):
            mark = "* " if item == e.target else ""
            axes.text(x, 0.93 - rank * 0.88 / 12, mark + metadata.label(item, 34),
                      fontsize=7, va="top", color=colours[capsule])
    _save(figure, path, producer)


@dataclass
class InterestSummary:
    users: int
    n_capsules: int
    activated_per_user: np.ndarray  # [users]: how many capsules each test user activates
    history_lengths: np.ndarray  # [users]
    item_load: np.ndarray  # [C]: share of all history items that activate each capsule
    user_load: np.ndarray  # [C]: share of users activating each capsule


@torch.no_grad()
def summarize_interests(model, test_data, show_progress=False):
    """Activation statistics over every test user (an :class:`InterestSummary`)."""
    model.eval()
    activated, lengths = [], []
    items = torch.zeros(model.capsules.n_capsules, dtype=torch.float64)
    users = torch.zeros(model.capsules.n_capsules, dtype=torch.float64)
    x = model.item_representations()  # the same for every batch
    for batch in tqdm(test_data, disable=not show_progress, desc="interests"):
        interaction = batch[0].to(model.device)
        item_seq = interaction[model.ITEM_SEQ]
        _, active, _, activation = model.interests(item_seq, x)
        valid = item_seq > 0
        activated.append(active.sum(1).cpu())
        lengths.append(valid.sum(1).cpu())
        items += torch.bincount(activation[valid].cpu(), minlength=len(items)).double()
        users += active.sum(0).cpu().double()
    activated = torch.cat(activated).numpy()
    return InterestSummary(
        users=len(activated),
        n_capsules=len(items),
        activated_per_user=activated,
        history_lengths=torch.cat(lengths).numpy(),
        item_load=(items / items.sum()).numpy(),
        user_load=(users / len(activated)).numpy(),
    )


def format_interest_summary(s, checkpoint=None):
    """Markdown: activated capsules per user (by history length too) and the load per capsule."""
    counts = np.bincount(s.activated_per_user, minlength=s.n_capsules + 1)
    ratio = s.activated_per_user / np.maximum(s.history_lengths, 1)
    lines = [f"# MIRACLE's interest capsules over {s.users} test users", ""]
    if checkpoint:
        lines += [f"Checkpoint: `{checkpoint}`", ""]
    lines += [
        f"Activated capsules per user: mean {s.activated_per_user.mean():.2f}, median "
        f"{np.median(s.activated_per_user):.0f}, max {s.activated_per_user.max()} (of C = {s.n_capsules}); "
        f"per history item {ratio.mean():.2f} (1.00: every item a capsule of its own).",
        "",
        "| activated capsules | users | share |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {c} | {c / s.users:.3f} |" for n, c in enumerate(counts) if c]
    used = int((s.item_load > 0).sum())
    entropy = -(s.item_load[s.item_load > 0] * np.log(s.item_load[s.item_load > 0])).sum() / np.log(s.n_capsules)
    lines += [
        "",
        f"Load over capsules: {used} of {s.n_capsules} capsules activated by some history item; normalised "
        f"entropy of the item load {entropy:.3f} (1: even, 0: one capsule takes every item).",
        "",
        "| capsule | share of history items | share of users |",
        "|---|---|---|",
    ]
    order = np.argsort(-s.item_load, kind="stable")
    lines += [f"| {j} | {s.item_load[j]:.3f} | {s.user_load[j]:.3f} |" for j in order]
    return "\n".join(lines) + "\n"


def plot_interest_summary(s, path, producer=EXPLAIN_SUMMARY):
    figure = new_figure(figsize=(11, 3.8))
    left, right = figure.subplots(1, 2)
    counts = np.bincount(s.activated_per_user, minlength=s.n_capsules + 1)
    shown = max(int(np.flatnonzero(counts).max()) + 1, 2)
    left.bar(range(shown), counts[:shown] / s.users, color="#4c72b0")
    left.set_xlabel("capsules a user activates")
    left.set_xticks(range(0, shown, max(1, shown // 10)))
    left.set_ylabel("share of test users")
    left.set_title(f"Activated interests ({s.users} users, C = {s.n_capsules})", fontsize=10)
    order = np.argsort(-s.item_load, kind="stable")
    right.bar(range(s.n_capsules), s.item_load[order], color="#dd8452", label="history items")
    right.plot(range(s.n_capsules), s.user_load[order] * s.item_load.max() / max(s.user_load.max(), 1e-12),
               "k.", label="users (scaled)")
    right.axhline(1 / s.n_capsules, color="grey", linewidth=0.8, linestyle="--", label="even load")
    right.set_xlabel("capsule, by load")
    right.set_ylabel("share of history items")
    right.set_title("Load over capsules", fontsize=10)
    right.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path, producer)
