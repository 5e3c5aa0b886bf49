"""The same trained models under both full rankings: RecBole's for sequential models (every item)
and S3-Rec's (``exclude_history``: the items each user had before the target left out).

    python benchmarks/protocol.py results/beauty-excl/runs/*.json --out=results/protocol-beauty.md

Each argument is a run file of ``run_compare.py``; its ``model_file`` (the checkpoint of the epoch
chosen on validation under the ranking the run was made with) is evaluated on the validation and
test splits under both rankings by RecBole's own trainer. The markdown table goes to ``--out``
(default ``results/protocol-<dataset>.md``), the numbers also to ``<out>.json``.
"""

import argparse
import json
import os
import shlex
import sys

from recbole.utils import get_trainer

from data_args import add_overwrite_arg, check_report_out
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.experiment.compare import recorded_checkpoint
from recbole_fame.experiment.report import run_setting
from recbole_fame.files import write_json, write_text
from recbole_fame.data.history import history_excluding_dataloaders
from recbole_fame.inference import data_and_model

METRICS = ("hit@10", "ndcg@10")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run files (<out>/runs/*.json) of run_compare.py")
    parser.add_argument("--out")
    add_overwrite_arg(parser)
    return parser


def evaluate_both(model_file):
    """{ranking: {split: {metric: value}}} for ranking in ('all items', 'exclude_history')."""
    checkpoint = load_checkpoint(model_file)
    checkpoint["config"]["exclude_history"] = False  # the plain loaders first
    config, model, _, train_data, valid_data, test_data = data_and_model(checkpoint, model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    plain = (train_data, valid_data, test_data)
    config["exclude_history"] = True
    excluding = history_excluding_dataloaders(config, *plain)
    return {
        ranking: {split: {key: value for key, value in trainer.evaluate(
            loaders[index], load_best_model=False).items() if key in METRICS}
            for split, index in (("valid", 1), ("test", 2))}
        for ranking, loaders in (("all items", plain), ("exclude_history", excluding))
    }


def markdown(command, rows):
    lines = [
        "# The same checkpoints under both full rankings",
        "",
        f"Command: `{command}`",
        "",
        "Each row is one run's checkpoint (best epoch by validation NDCG@10 under the ranking in the "
        "'chosen under' column), evaluated by RecBole's trainer ranking all items, then without the "
        "items each user had before the target (`exclude_history`, S3-Rec's full ranking).",
        "",
        "| model | seed | chosen under | valid NDCG@10 all / excl. | test HR@10 all / excl. "
        "| test NDCG@10 all / excl. |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        result = row["result"]

        def pair(split, metric):
            return f"{result['all items'][split][metric]:.4f} / {result['exclude_history'][split][metric]:.4f}"

        lines.append(f"| {row['model']} | {row['seed']} | {row['chosen_under']} | {pair('valid', 'ndcg@10')} "
                     f"| {pair('test', 'hit@10')} | {pair('test', 'ndcg@10')} |")
    return "\n".join(lines) + "\n"


def main():
    args = build_parser().parse_args()
    command = " ".join(["python"] + [shlex.quote(arg) for arg in sys.argv])
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    records = []
    for path in args.runs:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        # A record names its checkpoint relative to its comparison's folder (<out>/runs/<run>.json).
        out_folder = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        records.append((record, recorded_checkpoint(out_folder, path, record["model_file"])))
    out = args.out or os.path.join("results", f"protocol-{records[0][0]['dataset']}.md")
    check_report_out(out, __file__, args.overwrite, store_is_ours=lambda data: str(
        data.get("command", "")).startswith("python benchmarks/protocol.py") if isinstance(data, dict) else False)
    rows = []
    for record, model_file in records:
        chosen = run_setting(record, "exclude_history")
        rows.append({"model": record["model"], "seed": record["seed"], "dataset": record["dataset"],
                     "chosen_under": "exclude_history" if chosen else "all items",
                     "model_file": record["model_file"], "result": evaluate_both(model_file)})
    write_json(os.path.splitext(out)[0] + ".json", {"command": command, "runs": rows})
    write_text(out, markdown(command, rows))
    print(markdown(command, rows))


if __name__ == "__main__":
    main()
