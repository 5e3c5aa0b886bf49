"""What a trained FAME's heads, gate and experts do: the paper's case study (Fig. 7) for any user,
and a summary over all test users.

For one user (:func:`explain_user`): the history, each head's top-k with its gate value (Eq. 10),
FAME's integrated top-k (Eq. 11), the top-k of "simple concatenation" (every head weighted 1/H,
what the paper contrasts FAME with), and the router's weights over each head's experts at the
predicted position (Eq. 16); the ground-truth next item is marked when the user is in the test split.

Over all test users (:func:`summarize`): the distribution of gate values per head, expert usage
per head, how often each list holds the ground truth, how much the heads' lists overlap, and, when
the dataset has an item file with a genre field (ml-100k's ``class``), how concentrated each
head's top-k genres are. Heads that collapse show equal gates and overlapping lists; experts that
collapse show one expert taking (nearly) all the weight, or all of them weighted 1/N.

Item titles and genres come from the dataset's ``.item`` atomic file when it has them, whether or
not the training loaded it.
"""

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from recbole_fame.checkpoint import checkpoint_config, load_checkpoint
from recbole_fame.files import check_replaceable, new_figure, output_mark, save_figure, write_text
from recbole_fame.inference import check_k, data_and_model, encode_histories, history_interaction, top_items
from recbole_fame.data.item_file import read_item_file

TITLE_FIELDS = ("title", "movie_title", "name")
YEAR_FIELDS = ("release_year", "year")
GENRE_FIELDS = ("class", "genre", "genres", "categories")
# Cap on batch x heads x items scores held at once in the summary (~128 MB of float32).
SUMMARY_SCORE_BUDGET = 2**25


@dataclass
class ItemMetadata:
    """Titles and genre lists by raw item id, from the dataset's ``.item`` file (empty if none)."""

    titles: dict = field(default_factory=dict)
    genres: dict = field(default_factory=dict)
    genre_field: str = None

    def label(self, item, width=None):
        title = self.titles.get(item)
        text = f"{item}  {title}" if title else str(item)
        if width and len(text) > width:
            text = text[: width - 1] + "…"
        return text


def read_item_metadata(config):
    """Titles (``title``/``movie_title`` field, with ``release_year`` if there) and genres (``class``/``genre`` field) from
    ``<data_path>/<dataset>.item``; empty metadata when the file or the fields are missing."""
    metadata = ItemMetadata()
    try:
        table = read_item_file(config)
    except ValueError:  # no item id column: nothing to label items with
        return metadata
    if table is None:
        return metadata
    title_field = next((n for n in TITLE_FIELDS if n in table.fields), None)
    year_field = next((n for n in YEAR_FIELDS if n in table.fields), None)
    genre_field = next((n for n in GENRE_FIELDS if n in table.fields), None)
    metadata.genre_field = genre_field
    for item, row in table.rows.items():
        if title_field is not None and row[title_field]:
            year = row[year_field] if year_field is not None else ""
            metadata.titles[item] = f"{row[title_field]} ({year})" if year else row[title_field]
        if genre_field is not None:
            metadata.genres[item] = [g for g in row[genre_field].split(table.seq_separator) if g]
    return metadata


@dataclass
class TopK:
    """One ranked list: raw item ids and their scores, best first."""

    items: list
    scores: list


@dataclass
class Explanation:
    user: str
    history: list  # raw item ids the model reads, oldest first
    target: str  # the ground-truth next item, or None outside the test split
    gate: list  # [H]
    heads: list  # [H] TopK
    integrated: TopK
    equal_gates: TopK
    expert_weights: list  # [H][N]


def user_history(dataset, test_data, user):
    """The history to explain for raw user id ``user``, oldest first, and the ground truth if the
    user is in the test split.

    A test user's history is the one the test split scores (the ground truth excluded). Another
    user's is everything the dataset holds of them (their latest sample and its target, once
    RecBole has built the samples; else their interactions by time), with no ground truth.
    """
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    token_to_id = dataset.field2token_id[uid_field]
    if str(user) not in token_to_id or token_to_id[str(user)] == 0:
        raise ValueError(f"User '{user}' is not in dataset '{dataset.dataset_name}'")
    uid = token_to_id[str(user)]
    list_field = iid_field + dataset.config["LIST_SUFFIX"]
    length_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]

    def sample(feat, row):
        history = feat[list_field][row, : int(feat[length_field][row])]
        return dataset.id2token(iid_field, history).tolist(), str(dataset.id2token(iid_field, int(feat[iid_field][row])))

    test_feat = test_data._dataset.inter_feat
    rows = (test_feat[uid_field] == uid).nonzero().flatten()
    if len(rows):
        return sample(test_feat, int(rows[-1]))
    feat = dataset.inter_feat  # RecBole's Interaction, or a DataFrame before the samples are built
    rows = np.flatnonzero(np.asarray(feat[uid_field]) == uid)
    times = np.asarray(feat[dataset.time_field])[rows] if dataset.time_field in feat.columns else None
    if len(rows) and list_field in feat.columns:  # one sample per target item
        # The latest sample: the last one of the user when no time field orders them.
        latest = rows[times.argmax()] if times is not None else rows[-1]
        history, target = sample(feat, int(latest))
        return history + [target], None
    if len(rows):  # raw interactions
        if times is not None:
            rows = rows[np.argsort(times, kind="stable")]
        return dataset.id2token(iid_field, np.asarray(feat[iid_field])[rows]).tolist(), None
    raise ValueError(
        f"User '{user}' has no history the model can read in dataset '{dataset.dataset_name}' "
        "(a single interaction makes no sample)"
    )


def mix_heads(gate, head_scores):
    """Eq. 11 for any gate [B, H] (the model's, or equal gates for "simple concatenation"): the
    scores [B, n_items] of ``head_scores`` [B, H, n_items] weighted by it."""
    return (gate.unsqueeze(-1) * head_scores).sum(1)


@torch.no_grad()
def explain_user(model, dataset, test_data, user, k=20):
    """The case study of Fig. 7 for raw user id ``user`` (an :class:`Explanation`)."""
    check_k(dataset, k)
    history, target = user_history(dataset, test_data, user)
    (encoded,) = encode_histories(dataset, [history])
    history = history[-model.max_seq_length :]  # what the model reads
    model.eval()
    interaction = history_interaction(model, [encoded])
    # [1, H], [1, H, n_items], [1, H, N]
    gate, head_scores, expert_weights = model.facet_analysis(interaction)
    integrated = mix_heads(gate, head_scores)
    equal_gates = mix_heads(torch.full_like(gate, 1 / model.n_heads), head_scores)

    def as_topk(scores):
        values, ids = top_items(scores, k)
        return TopK(dataset.id2token(dataset.iid_field, ids.cpu()).tolist(), values.cpu().tolist())

    return Explanation(
        user=str(user),
        history=history,
        target=target,
        gate=gate[0].cpu().tolist(),
        heads=[as_topk(head_scores[0, h]) for h in range(model.n_heads)],
        integrated=as_topk(integrated[0]),
        equal_gates=as_topk(equal_gates[0]),
        expert_weights=expert_weights[0].cpu().tolist(),
    )


def format_explanation(explanation, metadata=None):
    """The explanation as text: '*' marks the ground truth, '(seen)' an item of the history."""
    metadata = metadata or ItemMetadata()
    e = explanation
    seen = set(e.history)
    lines = [f"User {e.user}: the {len(e.history)} items the model reads, oldest first"]
    lines += [f"  {i:3d}. {metadata.label(item)}" for i, item in enumerate(e.history, 1)]
    if e.target is not None:
        lines.append(f"Ground-truth next item (test split): {metadata.label(e.target)}   (marked * below)")
    else:
        lines.append("Not in the test split: no ground truth, the lists are for the item after this history")

    def ranked(title, topk):
        out = ["", title]
        for rank, (item, score) in enumerate(zip(topk.items, topk.scores), 1):
            mark = "*" if item == e.target else " "
            note = "  (seen)" if item in seen else ""
            out.append(f" {mark}{rank:3d}. {metadata.label(item, 60):60s}  {score:8.4f}{note}")
        hit = e.target in topk.items
        if e.target is not None:
            out.append(f"  ground truth {'at rank ' + str(topk.items.index(e.target) + 1) if hit else 'not in this list'}")
        return out

    for h, (gate, topk) in enumerate(zip(e.gate, e.heads), 1):
        lines += ranked(f"Head {h}: gate {gate:.3f}, top-{len(topk.items)} by its own scores", topk)
    lines += ranked("FAME (integrated, gate-weighted heads)", e.integrated)
    lines += ranked(f"Simple concatenation (equal gates 1/{len(e.gate)})", e.equal_gates)

    n_experts = len(e.expert_weights[0])
    lines += ["", "Router weights over experts at the last position (Eq. 16)"]
    lines.append("          " + "".join(f"{'expert ' + str(n):>10s}" for n in range(1, n_experts + 1)))
    for h, weights in enumerate(e.expert_weights, 1):
        lines.append(f"  head {h:2d} " + "".join(f"{w:10.3f}" for w in weights))
    return "\n".join(lines)


EXPLAIN = "run_fame.py --explain"
EXPLAIN_SUMMARY = "run_fame.py --explain-summary"


def _save(fig, path, producer):
    save_figure(fig, path, producer=producer, dpi=120, bbox_inches="tight")


def check_outputs(plot, producer, overwrite=False):
    """Before anything is loaded: ``plot`` must be a PNG, and it (and, for the summary, the tables
    beside it) may replace only a previous output of the same command unless ``overwrite``."""
    if os.path.splitext(plot)[1].lower() != ".png":
        raise ValueError(f"--plot={plot}: the figure is written as PNG, so name a .png file")
    check_replaceable(plot, producer, overwrite)
    if producer == EXPLAIN_SUMMARY:
        check_replaceable(summary_table_path(plot), producer, overwrite, legacy="# FAME explain summary: ")


def summary_table_path(plot):
    """Where ``--explain-summary --plot=X.png`` writes its tables: ``X.md``."""
    return os.path.splitext(plot)[0] + ".md"


def _heatmap(ax, values, row_labels, col_labels, title, notes=None):
    """Shares in [0, 1] (weights, shares of lists) on a fixed 0..1 colour scale, values written in
    (with ``notes[i][j]`` under them when given)."""
    values = np.asarray(values, dtype=float)
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    many = len(col_labels) > 8
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=45 if many else 0, ha="right" if many else "center")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_title(title)
    if values.size <= 400:
        for (i, j), value in np.ndenumerate(values):
            text = f"{value:.2f}" + (f"\n{notes[i][j]}" if notes is not None else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="black" if value > 0.5 else "white")
    return image


def plot_explanation(explanation, path, metadata=None, producer=EXPLAIN):
    """Per-head top-k bars titled with the gate values, FAME's and equal gates' lists, and a
    heatmap of the router's expert weights per head; written to ``path`` (PNG)."""
    metadata = metadata or ItemMetadata()
    e = explanation
    panels = [(f"Head {h}  (gate {g:.2f})", t) for h, (g, t) in enumerate(zip(e.gate, e.heads), 1)]
    panels += [("FAME (integrated)", e.integrated), (f"Equal gates (1/{len(e.gate)})", e.equal_gates)]
    k = len(e.integrated.items)
    fig = new_figure(figsize=(4.8 * len(panels), 0.28 * k + 2.2 + 0.4 * len(e.gate) + 1.2), layout="constrained")
    grid = fig.add_gridspec(2, len(panels), height_ratios=[0.28 * k + 1.5, 0.4 * len(e.gate) + 1.2])
    for column, (title, topk) in enumerate(panels):
        ax = fig.add_subplot(grid[0, column])
        colors = ["tab:orange" if item == e.target else "tab:blue" for item in topk.items]
        ax.barh(range(k), topk.scores, color=colors)
        ax.set_yticks(range(k), [metadata.label(item, 30) for item in topk.items], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("score")
    ax = fig.add_subplot(grid[1, :])
    n_experts = len(e.expert_weights[0])
    image = _heatmap(
        ax,
        e.expert_weights,
        [f"head {h} (gate {g:.2f})" for h, g in enumerate(e.gate, 1)],
        [f"expert {n}" for n in range(1, n_experts + 1)],
        "Router weights over experts at the last position",
    )
    fig.colorbar(image, ax=ax)
    truth = f"; ground truth {metadata.label(e.target, 40)} in orange" if e.target is not None else ""
    fig.suptitle(f"User {e.user}: top-{k} per head, FAME and equal gates{truth}")
    _save(fig, path, producer)


@dataclass
class Summary:
    n_users: int
    k: int
    gate: np.ndarray  # [U, H]
    expert_weights: np.ndarray  # [U, H, N]
    lists: dict  # name -> dict of per-list statistics (heads, then FAME, then equal gates)
    genre_names: list = None
    genre_profiles: dict = None  # name -> [G] share of top-k items carrying each genre


def _genre_matrix(dataset, metadata):
    """[n_items, G] multi-hot genres by internal item id, and the genre names (None without genres)."""
    if not metadata.genres:
        return None, None
    names = sorted({g for genres in metadata.genres.values() for g in genres})
    column = {g: j for j, g in enumerate(names)}
    matrix = torch.zeros(dataset.item_num, len(names))
    tokens = dataset.field2id_token[dataset.iid_field]
    for item_id in range(1, dataset.item_num):
        for genre in metadata.genres.get(str(tokens[item_id]), ()):
            matrix[item_id, column[genre]] = 1.0
    return matrix, names


@torch.no_grad()
def summarize(model, dataset, test_data, k=20, metadata=None, show_progress=False):
    """Gate values, expert weights and top-k lists over every user of the test split."""
    check_k(dataset, k)
    metadata = metadata or ItemMetadata()
    model.eval()
    genres, genre_names = _genre_matrix(dataset, metadata)
    feat = test_data._dataset.inter_feat
    names = [f"head {h}" for h in range(1, model.n_heads + 1)] + ["FAME (integrated)", "equal gates"]
    batch_size = max(1, min(1024, SUMMARY_SCORE_BUDGET // (model.n_heads * model.n_items)))
    gates, experts = [], []
    tops = {name: [] for name in names}
    hits = {name: 0 for name in names}
    batches = range(0, len(feat), batch_size)
    for start in tqdm(batches, desc="explain-summary", disable=not show_progress):
        batch = feat[start : start + batch_size].to(model.device)
        gate, head_scores, expert_weights = model.facet_analysis(batch)
        gates.append(gate.cpu())
        experts.append(expert_weights.cpu())
        lists = [head_scores[:, h] for h in range(model.n_heads)]
        lists += [mix_heads(gate, head_scores),
                  mix_heads(torch.full_like(gate, 1 / model.n_heads), head_scores)]
        target = batch[dataset.iid_field].unsqueeze(1)
        for name, scores in zip(names, lists):
            ids = top_items(scores, k).indices
            tops[name].append(ids.cpu())
            hits[name] += int((ids == target).any(1).sum())

    n_users = len(feat)
    tops = {name: torch.cat(parts) for name, parts in tops.items()}
    stats = {}
    head_names = names[: model.n_heads]
    for name in names:
        ids = tops[name]
        entry = {
            f"HR@{k}": hits[name] / n_users,
            "distinct items": int(torch.unique(ids).numel()),
        }
        if name in head_names and model.n_heads > 1:
            others = [o for o in head_names if o != name]
            entry["overlap with other heads"] = float(
                np.mean([_overlap(ids, tops[o]) for o in others])
            )
        if genres is not None:
            counts = genres[ids].sum(1)  # [U, G]: top-k items carrying each genre
            entry["top-genre share"] = float((counts.max(1).values / k).mean())
            entry["genre entropy"] = float(_normalized_entropy(counts).mean())
            entry["profile"] = (counts / k).mean(0).numpy()
        stats[name] = entry
    summary = Summary(
        n_users=n_users,
        k=k,
        gate=torch.cat(gates).numpy(),
        expert_weights=torch.cat(experts).numpy(),
        lists=stats,
    )
    if genres is not None:
        summary.genre_names = genre_names
        summary.genre_profiles = {name: stats[name].pop("profile") for name in names}
    return summary


def _overlap(ids_a, ids_b):
    """Mean share of one list's items that the other list holds too, per user."""
    shared = (ids_a.unsqueeze(2) == ids_b.unsqueeze(1)).any(2).float().sum(1)
    return float((shared / ids_a.size(1)).mean())


def _normalized_entropy(counts):
    """Entropy of each row's distribution over columns, divided by log(columns): 0 = one column, 1 = uniform."""
    totals = counts.sum(1, keepdim=True)
    p = counts / totals.clamp(min=1e-12)
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(1)
    return entropy / math.log(counts.size(1)) if counts.size(1) > 1 else torch.zeros(counts.size(0))


def format_summary(summary, checkpoint=None):
    """The summary as markdown tables."""
    s = summary
    n_heads, n_experts = s.expert_weights.shape[1:]
    lines = [f"# FAME explain summary{': ' + checkpoint if checkpoint else ''}", ""]
    lines.append(f"{s.n_users} test users, top-{s.k} lists, H={n_heads} heads, N={n_experts} experts per head.")
    lines += ["", "## Gate values per head (Eq. 10)", ""]
    lines.append("| head | mean | std | min | median | max | users for whom it has the largest gate |")
    lines.append("|---|---|---|---|---|---|---|")
    leading = np.bincount(s.gate.argmax(1), minlength=n_heads) / s.n_users
    for h in range(n_heads):
        g = s.gate[:, h]
        lines.append(
            f"| {h + 1} | {g.mean():.3f} | {g.std():.3f} | {g.min():.3f} | {np.median(g):.3f} | "
            f"{g.max():.3f} | {leading[h]:.1%} |"
        )
    lines += ["", "## Expert usage per head (router weights at the last position, Eq. 16)", ""]
    lines.append(
        "Each cell: mean weight (share of users for whom that expert has the largest weight). "
        "Router entropy: 0 = one expert takes all the weight, 1 = all experts weighted 1/N."
    )
    lines.append("")
    lines.append("| head | " + " | ".join(f"expert {n + 1}" for n in range(n_experts)) + " | router entropy |")
    lines.append("|---|" + "---|" * (n_experts + 1))
    for h in range(n_heads):
        w = s.expert_weights[:, h]
        top = np.bincount(w.argmax(1), minlength=n_experts) / s.n_users
        entropy = _normalized_entropy(torch.from_numpy(w)).mean() if n_experts > 1 else 0.0
        cells = " | ".join(f"{w[:, n].mean():.3f} ({top[n]:.0%})" for n in range(n_experts))
        lines.append(f"| {h + 1} | {cells} | {float(entropy):.3f} |")
    lines += ["", f"## Top-{s.k} lists", ""]
    columns = list(next(iter(s.lists.values())).keys())
    columns += [c for entry in s.lists.values() for c in entry if c not in columns]
    lines.append("| list | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for name, entry in s.lists.items():
        cells = [
            ("" if c not in entry else f"{entry[c]}" if isinstance(entry[c], int) else f"{entry[c]:.3f}")
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"HR@{s.k}: share of test users whose next item is in the list. Overlap: mean share of a "
        "head's list also in another head's list (1 = the heads recommend the same items)."
    )
    if s.genre_names:
        lines[-1] += (
            " Top-genre share: share of a list's items carrying its most frequent genre; genre "
            "entropy: of the genre counts in a list, 0 = one genre, 1 = all genres equally."
        )
        lines += ["", "## Most frequent genres per list (share of top-k items carrying the genre)", ""]
        lines += ["| list | genres |", "|---|---|"]
        for name, profile in s.genre_profiles.items():
            order = np.argsort(-profile)[:5]
            lines.append(
                f"| {name} | " + ", ".join(f"{s.genre_names[j]} {profile[j]:.2f}" for j in order) + " |"
            )
    return "\n".join(lines) + "\n"


def plot_summary(summary, path, producer=EXPLAIN_SUMMARY):
    """Gate distributions per head, mean expert weights per head, and (with genres) each list's
    genre profile; written to ``path`` (PNG)."""
    s = summary
    n_heads, n_experts = s.expert_weights.shape[1:]
    panels = 3 if s.genre_names else 2
    fig = new_figure(
        figsize=(5.5 * panels + (3 if s.genre_names else 0), 1.5 + 0.5 * max(n_heads, 6)),
        layout="constrained",
    )
    axes = fig.subplots(1, panels)
    bins = np.linspace(0.0, 1.0, 41)
    for h in range(n_heads):
        axes[0].hist(s.gate[:, h], bins=bins, histtype="step", linewidth=1.5, label=f"head {h + 1}")
    axes[0].axvline(1 / n_heads, color="gray", linestyle="--", linewidth=1)
    axes[0].set_xlabel("gate value")
    axes[0].set_ylabel("test users")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"Gate values over {s.n_users} test users\n(dashed: equal gates 1/H)")
    leading = [
        np.bincount(s.expert_weights[:, h].argmax(1), minlength=n_experts) / s.n_users
        for h in range(n_heads)
    ]
    image = _heatmap(
        axes[1],
        s.expert_weights.mean(0),
        [f"head {h}" for h in range(1, n_heads + 1)],
        [f"e{n}" for n in range(1, n_experts + 1)],
        "Mean router weight per expert\n(below: share of users for whom it weighs most)",
        notes=[[f"{share:.0%}" for share in row] for row in leading],
    )
    fig.colorbar(image, ax=axes[1])
    if s.genre_names:
        names = list(s.genre_profiles)
        image = _heatmap(
            axes[2],
            [s.genre_profiles[n] for n in names],
            names,
            s.genre_names,
            f"Share of top-{s.k} items carrying each genre",
        )
        fig.colorbar(image, ax=axes[2])
    _save(fig, path, producer)


def _load_explained(checkpoint_file):
    """load_data_and_model for a FAME or MIRACLE checkpoint, without RecBole's console log of config
    and data; another model's checkpoint is refused before its dataset is loaded."""
    checkpoint = load_checkpoint(checkpoint_file)
    model_name = checkpoint_config(checkpoint, checkpoint_file)["model"]
    if model_name not in ("FAME", "MIRACLE"):
        raise ValueError(f"Explaining needs a FAME or MIRACLE checkpoint; {checkpoint_file} holds a {model_name}")
    logging.disable(logging.INFO)
    try:
        config, model, dataset, _, _, test_data = data_and_model(checkpoint, checkpoint_file)
    finally:
        logging.disable(logging.NOTSET)
    return config, model, dataset, test_data


def explain_command(checkpoint, user, k=20, plot=None, overwrite=False):
    """``run_fame.py --explain``: the text explanation of ``user`` (and a figure at ``plot``)."""
    if plot:
        check_outputs(plot, EXPLAIN, overwrite)
    config, model, dataset, test_data = _load_explained(checkpoint)
    check_k(dataset, k, "--explain_topk")
    metadata = read_item_metadata(config)
    if config["model"] == "MIRACLE":
        from recbole_fame import explain_interests as interests

        explanation = interests.explain_user_interests(model, dataset, test_data, user, k)
        text = interests.format_interest_explanation(explanation, metadata)
        plot_figure = interests.plot_interest_explanation
    else:
        explanation = explain_user(model, dataset, test_data, user, k)
        text = format_explanation(explanation, metadata)
        plot_figure = plot_explanation
    if plot:
        plot_figure(explanation, plot, metadata)
        text += f"\n\nFigure written to {plot}"
    return text


def explain_summary_command(checkpoint, k=20, plot=None, overwrite=False):
    """``run_fame.py --explain-summary``: markdown tables (and, with ``plot``, a figure at ``plot`` and
    the tables beside it as ``<plot>.md``)."""
    if plot:
        check_outputs(plot, EXPLAIN_SUMMARY, overwrite)
    config, model, dataset, test_data = _load_explained(checkpoint)
    check_k(dataset, k, "--explain_topk")
    if config["model"] == "MIRACLE":
        from recbole_fame import explain_interests as interests

        summary = interests.summarize_interests(model, test_data, show_progress=config["show_progress"])
        text = interests.format_interest_summary(summary, checkpoint)
        plot_figure = interests.plot_interest_summary
    else:
        metadata = read_item_metadata(config)
        summary = summarize(model, dataset, test_data, k, metadata, show_progress=config["show_progress"])
        text = format_summary(summary, checkpoint)
        plot_figure = plot_summary
    if plot:
        plot_figure(summary, plot)
        table = summary_table_path(plot)
        write_text(table, text + "\n" + output_mark(EXPLAIN_SUMMARY) + "\n")
        text += f"\nFigure written to {plot}, tables to {table}\n"
    return text
