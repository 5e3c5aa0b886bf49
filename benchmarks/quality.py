"""Does this project's faster pipeline train as well as stock RecBole? Validation and test NDCG@10
after a fixed number of epochs, over several seeds, for both pipelines.

    python benchmarks/quality.py --dataset=ml-100k --epochs=5 --seeds 2020 2021 2022
    python benchmarks/quality.py --dataset=beauty --raw=../shared/datasets/Beauty.txt --epochs=3

stock = RecBole's loaders and layers (``fast_layers: False``, ``length_groups: 1``);
``fast_layers only``; ``fast_layers + length_groups`` (this project's default: RecBole's batches,
each computed in up to 4 length groups). Every run trains ``--epochs`` epochs without
early stopping and is validated once, at the end, then tested. Finished runs are kept in
``<out>.json`` and skipped when the command is run again; the markdown table goes to ``--out``
(default ``results/quality-<dataset>.md``).
"""

import argparse
import json
import os
import statistics

from data_args import add_data_args, add_overwrite_arg, check_report_out, data_settings, prepare_raw_data
from recbole_fame.files import write_json, write_text
from recbole_fame.quick_start import run

PIPELINES = {
    "stock": {"fast_layers": False, "length_groups": 1},
    "fast_layers only": {"fast_layers": True, "length_groups": 1},
    "fast_layers + length_groups": {"fast_layers": True, "length_groups": 4},
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES))
    parser.add_argument("--out")
    add_overwrite_arg(parser)
    return parser


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def main():
    args = build_parser().parse_args()
    command = prepare_raw_data(args)
    out = args.out or os.path.join("results", f"quality-{args.dataset}.md")
    # The store: one entry per "model|pipeline|seed|epochs".
    check_report_out(out, __file__, args.overwrite,
                     store_is_ours=lambda runs: isinstance(runs, dict) and all(k.count("|") == 3 for k in runs))
    store = os.path.splitext(out)[0] + ".json"
    done = json.load(open(store)) if os.path.isfile(store) else {}
    for seed in args.seeds:
        for pipeline in args.pipelines:
            settings = PIPELINES[pipeline]
            key = f"{args.model}|{pipeline}|{seed}|{args.epochs}"
            if key in done:
                continue
            result = run(args.model, args.dataset, saved=False, config_dict={
                **data_settings(args), "seed": seed, "epochs": args.epochs,
                "eval_step": args.epochs, "stopping_step": args.epochs, "show_progress": False,
                **settings})
            done[key] = {
                "valid_ndcg10": result["best_valid_result"]["ndcg@10"],
                "test_ndcg10": result["test_result"]["ndcg@10"],
                "test_hit10": result["test_result"]["hit@10"],
                "seconds": result["seconds"],
            }
            os.makedirs(os.path.dirname(store) or ".", exist_ok=True)
            write_json(store, done)

    lines = [f"`{command}`", "",
             f"{args.model} on `{args.dataset}`, {args.epochs} epochs, no early stopping; mean ± sd over seeds "
             f"{', '.join(map(str, args.seeds))}. Seconds are wall clock as these runs went (often several "
             "at once, one thread each), not a speed measurement: that is `benchmarks/speed.py`'s. The stock "
             "arm runs with RecBole's anomaly detection off, which changes no number.", "",
             "| pipeline | valid NDCG@10 | test NDCG@10 | test HR@10 | seconds per run | per seed (valid NDCG@10) |",
             "|---|---|---|---|---|---|"]
    for pipeline in args.pipelines:
        rows = [done[f"{args.model}|{pipeline}|{seed}|{args.epochs}"] for seed in args.seeds]
        lines.append(
            f"| {pipeline} | {mean_sd([r['valid_ndcg10'] for r in rows])} | "
            f"{mean_sd([r['test_ndcg10'] for r in rows])} | {mean_sd([r['test_hit10'] for r in rows])} | "
            f"{statistics.median(r['seconds'] for r in rows):.0f} | "
            + ", ".join("%.4f" % r["valid_ndcg10"] for r in rows) + " |"
        )
    table = "\n".join(lines) + "\n"
    write_text(out, table)
    print(table)


if __name__ == "__main__":
    main()
