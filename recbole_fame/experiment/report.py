"""The comparison's results as files a person opens: markdown table, CSV, JSON and a bar chart.

Input is the list of finished run records of :mod:`recbole_fame.experiment.compare` (one per model and seed);
every file is rewritten whole, through a temporary file and a rename (:mod:`recbole_fame.files`).
"""

import csv
import io
import os
import statistics

from recbole_fame.files import new_figure, save_figure, write_json, write_text

# How RecBole's metric keys are shown: the papers' names (HR in FAME's Table 2, Recall in MIRACLE's).
METRIC_NAMES = {"hit": "HR", "recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "precision": "Precision"}
# The metrics of FAME's protocol (properties/overall.yaml); a dataset's protocol may set others
# (Scientific: Recall and NDCG at 10 and 50), and the tables show what the runs measured.
METRICS = (("HR@5", "hit@5"), ("HR@10", "hit@10"), ("HR@20", "hit@20"),
           ("NDCG@5", "ndcg@5"), ("NDCG@10", "ndcg@10"), ("NDCG@20", "ndcg@20"))
COSTS = ("seconds_per_epoch", "epochs_to_best", "epochs_run", "parameters", "peak_memory_mib",
         "total_seconds")
VALID = "valid NDCG@10"  # the selection criterion (best epoch), shown beside the test metrics
COLUMNS = ("model", "seed") + tuple(name for name, _ in METRICS) + (VALID,) + COSTS
# The papers' Table 2 (copies of ../shared/reference/*_paper_table2.csv), shipped in the package:
# a dataset's rows come from the first that has it.
PAPER_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fame_paper_table2.csv")
MIRACLE_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "miracle_paper_table2.csv")
PAPER_TABLES = (PAPER_TABLE, MIRACLE_TABLE)


def metrics_of(records):
    """(shown name, RecBole key) of every test metric the runs measured, in RecBole's order."""
    keys = list(dict.fromkeys(key for record in records for key in record["test_result"]))
    return tuple((METRIC_NAMES.get(key.partition("@")[0], key.partition("@")[0]) + "@" + key.partition("@")[2], key)
                 for key in keys) or METRICS


def columns_of(metrics):
    return ("model", "seed") + tuple(name for name, _ in metrics) + (VALID,) + COSTS


def chart_metrics(metrics):
    """The two metrics the chart and the paper comparison show: each family's @10 (HR@10 and
    NDCG@10; Recall@10 and NDCG@10), else the first two."""
    at10 = [name for name, _ in metrics if name.endswith("@10")]
    return tuple(at10[:2]) if len(at10) >= 2 else tuple(name for name, _ in metrics[:2])


def run_row(record, metrics=METRICS):
    """One run as a flat row of ``columns_of(metrics)``."""
    row = {"model": record["model"], "seed": record["seed"]}
    row.update({name: record["test_result"].get(key) for name, key in metrics})
    row[VALID] = (record.get("best_valid_result") or {}).get("ndcg@10")
    best = record["best_epoch"]
    row.update(
        seconds_per_epoch=record["seconds_per_epoch"],
        epochs_to_best=None if best is None else best + 1,
        epochs_run=record["epochs_run"],
        parameters=record["parameters"],
        # On CUDA the tensors' peak on the device; on CPU the process's peak resident memory.
        peak_memory_mib=record["peak_cuda_mib"] if record.get("peak_cuda_mib") is not None
        else record["peak_rss_mib"],
        # FAME's run starts from a trained SASRec: its wall time includes that stage 1.
        total_seconds=round(record["seconds"] + (record.get("stage_one_seconds") or 0), 1),
    )
    return row


def summarize(rows, models, columns=COLUMNS):
    """Per model (in ``models`` order, those with a finished run): seeds, mean and sample sd,
    unrounded: the table rounds them once (rounded to 6 places first, a sd of 0.0104504 would
    show as 0.0104)."""
    summary = []
    for model in models:
        own = [row for row in rows if row["model"] == model]
        if not own:
            continue
        mean, sd = {}, {}
        for column in columns[2:]:
            values = [row[column] for row in own if row[column] is not None]
            mean[column] = statistics.mean(values) if values else None
            sd[column] = statistics.stdev(values) if len(values) > 1 else None
        summary.append({"model": model, "seeds": [row["seed"] for row in own], "mean": mean, "sd": sd})
    return summary


def _rounded(entry, digits=6):
    """A :func:`summarize` entry with its means and sds rounded, for results.json and table.csv."""
    return {**entry, **{kind: {column: None if value is None else round(value, digits)
                               for column, value in entry[kind].items()} for kind in ("mean", "sd")}}


def read_paper_table(path, dataset):
    """``(name in the paper, {model: {metric: value}})`` for ``dataset`` (beauty -> Beauty,
    sports -> Sports, ml-20m -> ML-20m: names match ignoring case), or None. ``path`` None: the
    first of :data:`PAPER_TABLES` with rows for ``dataset``. Columns that are not numbers (MIRACLE's
    ``Improv``) are left out."""
    if path is None:
        return next(filter(None, (read_paper_table(table, dataset) for table in PAPER_TABLES)), None)
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        models = [name for name in reader.fieldnames if name not in ("dataset", "metric")]
        rows = [row for row in reader if row["dataset"].lower() == dataset.lower()]
    if not rows:
        return None
    models = [model for model in models if all(_is_number(row[model]) for row in rows)]
    table = {model: {row["metric"]: float(row[model]) for row in rows} for model in models}
    return rows[0]["dataset"], table


def _is_number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


# What write_reports writes in the output folder.
REPORT_FILES = ("table.md", "table.csv", "results.json", "chart.png")


def write_reports(out, dataset, command, seeds, models, records, total_runs=None, paper_table=None):
    """Write ``table.md``, ``table.csv``, ``results.json`` and ``chart.png`` under ``out``.

    Returns what ``results.json`` holds. Its runs name their checkpoint (``model_file``) as their
    records do: relative to ``out`` (absolute in records written before that).
    """
    metrics = metrics_of(records)
    rows = [run_row(record, metrics) for record in records]
    summary = summarize(rows, models, columns_of(metrics))
    paper = read_paper_table(paper_table, dataset)
    compared = {_base_model(name) for name in models}
    data = {
        "dataset": dataset,
        "command": command,
        "metrics": [name for name, _ in metrics],
        "seeds": seeds,
        "models": models,
        "runs_finished": len(records),
        "runs_planned": total_runs if total_runs is not None else len(records),
        "summary": summary,
        "runs": [{**row, "model_file": record["model_file"], "device": record["device"],
                  "stage_one_seconds": record.get("stage_one_seconds"),
                  "pipeline": record.get("settings", {}).get("pipeline"),
                  "exclude_history": run_setting(record, "exclude_history"),
                  "train_exclude_history": run_setting(record, "train_exclude_history")}
                 for row, record in zip(rows, records)],
        "paper": None if paper is None else {"dataset": paper[0], "table2": {
            model: values for model, values in paper[1].items() if model in compared}},
    }
    os.makedirs(out, exist_ok=True)
    write_text(os.path.join(out, "table.md"), _markdown(data, paper, metrics))
    _chart(os.path.join(out, "chart.png"), dataset, rows, summary, chart_metrics(metrics))
    data["summary"] = [_rounded(entry) for entry in summary]
    write_json(os.path.join(out, "results.json"), data)
    write_text(os.path.join(out, "table.csv"), _csv(rows, data["summary"], columns_of(metrics)))
    return data


def _csv(rows, summary, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for entry in summary:
        writer.writerows(row for row in rows if row["model"] == entry["model"])
    for kind in ("mean", "sd"):
        for entry in summary:
            writer.writerow({"model": entry["model"], "seed": kind, **entry[kind]})
    return buffer.getvalue()


def _number(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def _cell(entry, column, digits):
    mean, sd = entry["mean"][column], entry["sd"][column]
    if mean is None:
        return "-"
    return _number(mean, digits) if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def run_setting(record, key):
    """A run's value of ``key``: its command line's, else its project files' (None: not recorded)."""
    settings = record.get("settings", {})
    return {**settings.get("project_settings", {}), **settings.get("config_dict", {})}.get(key)


def _ranking_text(runs):
    """What every item is ranked against, from the runs' ``exclude_history``."""
    texts = {"ranking against all items but those each user had before the target (`exclude_history`)"
             if run.get("exclude_history") else "ranking against all items" for run in runs}
    if len(texts) > 1:
        raise ValueError("runs with and without exclude_history cannot share one table")
    return next(iter(texts), "ranking against all items")


def _training_text(runs):
    """The runs whose training cross-entropy leaves out each sample's input items, if any."""
    masked = list(dict.fromkeys(run["model"] for run in runs if run.get("train_exclude_history")))
    if not masked:
        return ""
    who = "every model" if all(run.get("train_exclude_history") for run in runs) else ", ".join(masked)
    return f"; {who} trained with a cross-entropy without each sample's input items (`train_exclude_history`)"


def _pipeline_line(runs):
    """The training pipeline (``compare.PIPELINE_KEYS``) of the runs, one line per distinct one."""
    pipelines = {}
    for run in runs:
        pipeline = run["pipeline"]
        text = ("not recorded" if pipeline is None
                else ", ".join(f"`{key}={value}`" for key, value in pipeline.items()))
        pipelines.setdefault(text, []).append(f"{run['model']} seed {run['seed']}")
    if len(pipelines) <= 1:
        return f"Pipeline: {next(iter(pipelines), 'no runs')}."
    return "Pipelines differ between runs: " + "; ".join(
        f"{text} ({', '.join(names)})" for text, names in pipelines.items()) + "."


def _markdown(data, paper, metrics):
    seeds, summary = data["seeds"], data["summary"]
    plugin = [name for name in ("MIRACLE", "FAME") if name in map(_base_model, data["models"])]
    lines = [
        f"# {', '.join(plugin) or 'Models'} and baselines on {data['dataset']}",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Test split, mean ± sample sd over seeds {', '.join(map(str, seeds))} "
        f"({data['runs_finished']} of {data['runs_planned']} runs finished). Every model ran through "
        "`recbole_fame.quick_start` with the same protocol (`properties/overall.yaml`: leave-one-out, "
        f"{_ranking_text(data['runs'])}, best epoch by validation NDCG@10{_training_text(data['runs'])}), "
        "settings and seed.",
        "",
        _pipeline_line(data["runs"]),
        "",
        "| model | seeds | " + " | ".join(name for name, _ in metrics)
        + f" | {VALID} | s/epoch | epochs to best | epochs run | parameters | peak memory MiB | wall s |",
        "|---|---|" + "---|" * (len(metrics) + 7),
    ]
    for entry in summary:
        cells = [entry["model"], str(len(entry["seeds"]))]
        cells += [_cell(entry, name, 4) for name, _ in metrics] + [_cell(entry, VALID, 4)]
        cells += [_cell(entry, "seconds_per_epoch", 2), _cell(entry, "epochs_to_best", 1),
                  _cell(entry, "epochs_run", 1), f"{entry['mean']['parameters']:,.0f}",
                  _cell(entry, "peak_memory_mib", 0), _cell(entry, "total_seconds", 0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if "FAME-N1" in data["models"]:
        lines.append("- FAME-N1: FAME with `n_experts=1` (the paper's \"FAME w/o MoE\").")
    if any(record.get("stage_one_seconds") is not None for record in data["runs"]):
        lines.append("- FAME is fine-tuned from a SASRec with its backbone trained with the same seed "
                     "(stage 1; the SASRec run when its settings are FAME's): s/epoch and epochs are "
                     "stage 2's; wall s (training, validation and test) includes stage 1.")
    lines.append(f"- {VALID}: the best epoch's validation score, the one the epoch was chosen by "
                 "(test metrics above are that epoch's).")
    lines.append("- s/epoch: training only, validation excluded. Peak memory: the run's own process, "
                 "peak resident memory on CPU (Python, torch and RecBole included), "
                 "`torch.cuda.max_memory_allocated` on CUDA.")
    if paper is not None:
        lines += _paper_section(data, paper, metrics)
    return "\n".join(lines) + "\n"


def _base_model(label):
    """The model a row is a variant of: ``FAME`` for ``FAME:learning_rate=0.0003``."""
    return label.partition(":")[0]


def _paper_section(data, paper, metrics):
    """The paper's rows of the models compared (a variant's under its model's name), and each
    row of the paper's own model (FAME, MIRACLE) on the chart's metrics as a share of the paper's."""
    name, table = paper
    shown = list(dict.fromkeys(_base_model(model) for model in data["models"]
                               if _base_model(model) in table))
    metrics = [metric for metric, _ in metrics if all(metric in values for values in table.values())]
    lines = ["", f"## The paper's Table 2 ({name})", "",
             "| model | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for model in shown:
        lines.append(f"| {model} (paper) | "
                     + " | ".join(f"{table[model][metric]:.4f}" for metric in metrics) + " |")
    for entry in data["summary"]:
        model = _base_model(entry["model"])
        if model not in ("FAME", "MIRACLE") or model not in table:
            continue
        parts = [f"{metric} {entry['mean'][metric]:.4f} = "
                 f"{100 * entry['mean'][metric] / table[model][metric]:.1f}% of the paper's "
                 f"{table[model][metric]:.4f}" for metric in chart_metrics(tuple((m, m) for m in metrics))]
        lines += ["", f"{entry['model']} here: " + "; ".join(parts) + "."]
    return lines


def _tick_label(model):
    """A variant's settings each on a line of their own under its model: long labels would run
    into their neighbours' (``FAME:learning_rate=0.0003,n_experts=8`` takes three lines)."""
    base, _, assignments = model.partition(":")
    return "\n".join([base] + (assignments.split(",") if assignments else []))


def _chart(path, dataset, rows, summary, shown=("HR@10", "NDCG@10")):
    """Two metrics (``shown``: HR@10 and NDCG@10) per model: bars at the mean, error bars one sd,
    dots the seeds."""
    labels = [_tick_label(entry["model"]) for entry in summary]
    # Each model's slot is as wide as its longest label line (8 pt text: about 0.055 in a
    # character), so that settings such as facet_projection_init=scaled_selector stay apart.
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    slot = max(1.3, 0.055 * longest + 0.2)
    figure = new_figure(figsize=(slot * max(len(summary), 2) + 1.2, 4.0))
    axes = figure.subplots()
    width = 0.38
    for offset, (metric, color) in zip((-width / 2, width / 2),
                                       zip(shown, ("#4c72b0", "#dd8452"))):
        for i, entry in enumerate(summary):
            x = i + offset
            sd = entry["sd"][metric] or 0.0
            axes.bar(x, entry["mean"][metric], width, yerr=sd, capsize=3, color=color,
                     label=metric if i == 0 else None)
            seeds = [row[metric] for row in rows if row["model"] == entry["model"]]
            axes.plot([x] * len(seeds), seeds, "k.", markersize=4,
                      label="one seed" if i == 0 and metric == shown[0] else None)
    axes.set_xticks(range(len(summary)))
    axes.set_xticklabels(labels, fontsize=8)
    axes.set_xlim(-0.6, len(summary) - 0.4)
    counts = sorted({len(entry["seeds"]) for entry in summary}) or [0]
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"  # rows may differ
    axes.set_title(f"{dataset}, test: mean over {seeds} seed{'s' if seeds != '1' else ''}, bars ± 1 sd",
                   fontsize=10)
    axes.set_ylabel(", ".join(shown))
    # Autoscaling already spans the tallest bar, seed and error bar: add headroom for the legend.
    axes.set_ylim(0.0, 1.2 * axes.get_ylim()[1])
    axes.legend(fontsize=8, loc="upper right", ncol=3)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)
