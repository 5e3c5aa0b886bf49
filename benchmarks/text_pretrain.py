"""Does the text-enhanced facet-aware pre-training help? FAME with and without it, same budget,
over seeds; test metrics on all users and on the least-interacted items as targets; and how well
each head's sub-embeddings separate its facet's labels.

    python benchmarks/text_pretrain.py                                  # ml-100k, seeds 2020 2021 2022
    python benchmarks/text_pretrain.py --arms off step epoch --epochs=20
    python benchmarks/text_pretrain.py --seeds 2020 --epochs=1 --hidden_size=16 --MAX_ITEM_LIST_LENGTH=10   # smoke

Arms: ``off`` (random item embeddings, today's default), ``step`` and ``epoch`` (text pre-training
on, facets alternating per step or per epoch). Every other ``--key=value`` is a config key for all
arms (``--epochs``, ``--pretrain=False``, ``--text_pretrain_epochs``, ...). Each finished run is
written at once to ``<out>.json``; the same command again skips it (other settings in the same
file are refused), so an interrupted measurement loses only the run in progress. The markdown
report goes to ``--out`` (default ``results/text-pretrain-<dataset>.md``); checkpoints and the
text cache to ``<out>-checkpoints/`` (not committed).

Facet alignment (10-NN label accuracy per head, :mod:`recbole_fame.text.alignment`) is measured
for random vectors, the frozen text vectors, the pre-trained head sub-embeddings (``step`` and
``epoch``, whatever ``--arms`` says: the pre-training alone takes seconds), the same with the labels
of a held-out share of items hidden from the pre-training (queried on those items only), and the
sub-embeddings x_v W_f^(h) of each trained model.
"""

import argparse
import json
import os
import shlex
import statistics
import sys

import torch

from recbole_fame import Config, load_data_and_model
from recbole_fame.experiment.compare import OUTPUT_KEYS, parse_overrides
from recbole_fame.files import check_replaceable
from recbole_fame.text.evaluation import describe_items, least_interacted_items, target_metrics
from recbole_fame.text.alignment import knn_label_accuracy
from recbole_fame.text.pretrain import facet_labels, parse_facets, text_pretraining
from recbole_fame.data.item_file import read_item_file
from recbole_fame.quick_start import run
from recbole_fame.text.encoder import TextExtraMissing

ARMS = {
    "off": {"text_pretrain": False},
    "step": {"text_pretrain": True, "text_pretrain_alternate": "step"},
    "epoch": {"text_pretrain": True, "text_pretrain_alternate": "epoch"},
}
ARM_KEYS = ("text_pretrain", "text_pretrain_alternate")
ALIGNMENT_K = 10


class SettingsMismatch(ValueError):
    """The results file holds runs made with other settings."""


def build_parser():
    """The script's own options; every other ``--key=value`` is a config key for all arms."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", "-d", default="ml-100k")
    parser.add_argument("--model", default="FAME", help="FAME (default) or SASRec")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--arms", nargs="+", default=["off", "step"], choices=list(ARMS))
    parser.add_argument("--tail_share", type=float, default=0.2, help="share of least-interacted items")
    parser.add_argument("--holdout_share", type=float, default=0.2,
                        help="share of items whose labels the held-out pre-training hides")
    parser.add_argument("--out", help="markdown report (default results/text-pretrain-<dataset>.md)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --out replace a file that is not an earlier report of this benchmark")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    for key in ARM_KEYS:
        if key in overrides:
            parser.error(f"--{key} is set by --arms")
    return args, overrides


def load_store(path, settings):
    """The finished runs of ``path``; SettingsMismatch when they were made with other settings."""
    if not os.path.isfile(path):
        return {"settings": settings, "runs": {}}
    with open(path) as f:
        store = json.load(f)
    def flat(values):  # the config overrides key by key, output-only keys left out
        out = {k: v for k, v in values.items() if k != "overrides"}
        out.update({f"--{k}": v for k, v in values["overrides"].items() if k not in OUTPUT_KEYS})
        return out

    wanted, stored = flat(settings), flat(store["settings"])
    for key in sorted(set(wanted) | set(stored)):
        if wanted.get(key) != stored.get(key):
            raise SettingsMismatch(
                f"{path} holds runs made with {key}={stored.get(key)!r}, this command has "
                f"{key}={wanted.get(key)!r}: use another --out, or move that file away"
            )
    return store


def save_store(path, store):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(store, f, indent=2)
    os.replace(path + ".tmp", path)


def facets_and_labels(config, tokens):
    """The config's facets and each one's label sets for the raw ids ``tokens`` (None without facets)."""
    if not config["text_facets"]:
        return None, None
    table = read_item_file(config, required=True)
    facets = parse_facets(config["text_facets"], config["n_heads"], table)
    return facets, [facet_labels(table, facet, tokens) for facet in facets]


@torch.no_grad()
def head_sub_embeddings(model, config):
    """[n_items, H, d'] sub-embeddings: x_v W_f^(h) for FAME, the head slices of x_v otherwise."""
    weight = model.item_embedding.weight
    if hasattr(model, "facet_projection"):
        weight = model.facet_projection(weight)
    return weight.view(weight.size(0), config["n_heads"], -1).cpu()


def pretraining_record(args, overrides, mode, seed, cache_dir):
    """Alignment of a pre-training alone (all items, and with held-out labels), and its losses."""
    config = Config(model=args.model, dataset=args.dataset, config_dict={
        **overrides, **ARMS[mode], "seed": seed, "checkpoint_dir": cache_dir, "text_cache_dir": cache_dir,
        "show_progress": False})
    full = text_pretraining(config)
    held = text_pretraining(config, holdout_share=args.holdout_share)
    first, last = {}, {}
    for row in full.losses:  # per facet: its first and its last epoch
        first.setdefault(row["facet"], row["loss"])
        last[row["facet"]] = row["loss"]
    return {
        "alignment": full.alignment,
        "alignment_holdout": held.alignment,
        "loss_first": first,
        "loss_last": last,
        "loss_by_epoch": full.losses,
    }


def training_record(args, overrides, arm, seed, checkpoint_dir, cache_dir):
    """One trained and tested model: metrics on all test users and on the tail items, alignment."""
    result = run(args.model, args.dataset, saved=True, config_dict={
        **overrides, **ARMS[arm], "seed": seed, "checkpoint_dir": checkpoint_dir, "text_cache_dir": cache_dir})
    config, model, dataset, _, _, test_data = load_data_and_model(result["model_file"])
    tail = least_interacted_items(dataset, args.tail_share)
    record = {
        "test_result": dict(result["test_result"]),
        "best_valid_result": dict(result["best_valid_result"] or {}),
        "all": target_metrics(model, test_data),
        "tail": target_metrics(model, test_data, tail),
        "tail_items": describe_items(dataset, tail),
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "seconds": result["seconds"],
        "stage_one_seconds": (result["pretrain_result"] or {}).get("seconds"),
        "model_file": result["model_file"],
        "alignment_trained": [],
    }
    tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field]]
    facets, labels = facets_and_labels(config, tokens[1:])
    if facets:
        subs = head_sub_embeddings(model, config)[1:]
        for facet, facet_labels_ in zip(facets, labels):
            for h in facet.heads:
                accuracy = knn_label_accuracy(subs[:, h], facet_labels_, k=ALIGNMENT_K)
                record["alignment_trained"].append({"head": h + 1, "facet": facet.name, **accuracy})
    return record


def mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def report(args, store, command):
    runs = store["runs"]
    seeds = args.seeds
    lines = [f"# Text-enhanced facet-aware pre-training on {args.dataset}", "", f"`{command}`", ""]
    overrides = " ".join(f"`--{k}={v}`" for k, v in store["settings"]["overrides"].items())
    lines.append(
        f"{args.model}, settings of `run_fame.py` plus {overrides or 'nothing'}; mean ± sd over seeds "
        f"{', '.join(map(str, seeds))} (runs missing from a row are still to do). Arms: `off` = random item "
        "embeddings; `step` / `epoch` = text pre-training, facets alternating per step / per epoch."
    )
    lines += ["", "## Test metrics", ""]
    lines.append(
        f"'tail' = test users whose target is among the {args.tail_share:.0%} least-interacted items "
        "(n = such users per seed: with few of them, these columns are noisy)."
    )
    lines += ["", "| arm | runs | HR@10 | NDCG@10 | tail HR@10 | tail NDCG@10 | tail n | valid NDCG@10 "
                  "| best epoch | seconds (both stages) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in args.arms:
        rows = [runs[f"train|{arm}|{seed}"] for seed in seeds if f"train|{arm}|{seed}" in runs]
        if not rows:
            continue
        lines.append(
            f"| {arm} | {len(rows)} | {mean_sd([r['all']['hit@10'] for r in rows])} | "
            f"{mean_sd([r['all']['ndcg@10'] for r in rows])} | {mean_sd([r['tail']['hit@10'] for r in rows])} | "
            f"{mean_sd([r['tail']['ndcg@10'] for r in rows])} | {', '.join(str(r['tail']['n']) for r in rows)} | "
            f"{mean_sd([r['best_valid_result'].get('ndcg@10') for r in rows])} | "
            f"{', '.join(str(r['best_epoch']) for r in rows)} | {statistics.median(r['seconds'] + (r['stage_one_seconds'] or 0) for r in rows):.0f} |"
        )
    tail_info = next((r["tail_items"] for r in runs.values() if "tail_items" in r), None)
    if tail_info:
        lines += ["", f"Tail items: {tail_info['items']}, with {tail_info['min']} to {tail_info['max']} "
                      f"interactions (median {tail_info['median']:g})."]

    lines += ["", f"## Facet alignment ({ALIGNMENT_K}-NN label accuracy per head)", ""]
    lines.append(
        "Leave-one-out over the items with a label; 'majority' always predicts the most frequent label. "
        "'held-out' rows: the pre-training did not see the labels of "
        f"{args.holdout_share:.0%} of the items, which are the only queries. 'trained' = x_v W_f^(h) of the "
        "trained model of that arm."
    )
    columns = ["majority", "random", "text"]
    lines += ["", "| head (facet) | items | " + " | ".join(columns) + " | pre-trained (step) | pre-trained (epoch) | "
              + " | ".join(f"trained ({arm})" for arm in args.arms) + " |"]
    lines.append("|---|---|" + "---|" * (len(columns) + 2 + len(args.arms)))
    for variant in ("alignment", "alignment_holdout"):
        base_rows = [runs[f"pretrain|step|{seed}"] for seed in seeds if f"pretrain|step|{seed}" in runs]
        if not base_rows:
            continue
        for i, row in enumerate(base_rows[0][variant]):
            def values(records, name):
                return mean_sd([r[variant][i].get(name) for r in records])

            epoch_rows = [runs[f"pretrain|epoch|{seed}"] for seed in seeds if f"pretrain|epoch|{seed}" in runs]
            cells = [values(base_rows, c) for c in columns]
            cells += [values(base_rows, "pretrained"), values(epoch_rows, "pretrained") if epoch_rows else "–"]
            for arm in args.arms:
                trained = [runs[f"train|{arm}|{seed}"] for seed in seeds if f"train|{arm}|{seed}" in runs]
                cells.append(mean_sd([r["alignment_trained"][i]["accuracy"] for r in trained
                                      if r["alignment_trained"]]) if variant == "alignment" else "")
            label = f"{row['head']} ({row['facet']})" + (", held-out" if variant == "alignment_holdout" else "")
            lines.append(f"| {label} | {row['n']} | " + " | ".join(cells) + " |")

    lines += ["", "## Pre-training loss (first → last epoch, mean over seeds)", "",
              "| alternate | facet | first | last |", "|---|---|---|---|"]
    for mode in ("step", "epoch"):
        records = [runs[f"pretrain|{mode}|{seed}"] for seed in seeds if f"pretrain|{mode}|{seed}" in runs]
        for facet in (records[0]["loss_first"] if records else {}):
            lines.append(f"| {mode} | {facet} | {mean_sd([r['loss_first'][facet] for r in records])} | "
                         f"{mean_sd([r['loss_last'][facet] for r in records])} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args, overrides = parse_args(argv)
    words = sys.argv if argv is None else ["benchmarks/text_pretrain.py", *argv]
    command = " ".join(["python"] + [shlex.quote(word) for word in words])
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    out = args.out or os.path.join("results", f"text-pretrain-{args.dataset}.md")
    check_replaceable(out, "benchmarks/text_pretrain.py", args.overwrite, legacy="python benchmarks/text_pretrain.py")
    store_path = os.path.splitext(out)[0] + ".json"
    work_dir = os.path.splitext(out)[0] + "-checkpoints"
    cache_dir = os.path.join(work_dir, "text_cache")
    settings = {"dataset": args.dataset, "model": args.model, "overrides": overrides,
                "tail_share": args.tail_share, "holdout_share": args.holdout_share}

    def write():
        save_store(store_path, store)
        with open(out, "w") as f:
            f.write(report(args, store, command))

    try:
        store = load_store(store_path, settings)
        for seed in args.seeds:
            for mode in ("step", "epoch"):
                key = f"pretrain|{mode}|{seed}"
                if key not in store["runs"]:
                    store["runs"][key] = pretraining_record(args, overrides, mode, seed, cache_dir)
                    write()
            for arm in args.arms:
                key = f"train|{arm}|{seed}"
                if key not in store["runs"]:
                    checkpoint_dir = os.path.join(work_dir, f"{arm}-seed{seed}")
                    store["runs"][key] = training_record(args, overrides, arm, seed, checkpoint_dir, cache_dir)
                    write()
    except (TextExtraMissing, FileNotFoundError, SettingsMismatch) as exc:
        sys.exit(f"error: {exc}")
    write()
    print(open(out).read())
    print(f"Written: {out}, {store_path}")


if __name__ == "__main__":
    main()
