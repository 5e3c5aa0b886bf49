"""Training-epoch and full-sort evaluation time: SASRec and FAME, RecBole's stock batching and
``length_bucketing``, measured in one process, interleaved, several repetitions.

    python benchmarks/speed.py --dataset=ml-100k --reps=3
    python benchmarks/speed.py --dataset=beauty --raw=../shared/datasets/Beauty.txt --reps=3

Writes a markdown table (median and min-max of each measurement, ratios against stock SASRec) to
``--out`` (default ``results/speed-<dataset>.md``) and prints it.
"""

import argparse
import os
import statistics
import sys
import time

import torch

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

from recbole_fame import Config, get_model
from recbole_fame.bucketing import bucket_dataloaders
from recbole_fame.converters import convert

MODELS = ("SASRec", "FAME")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--raw", help="a 'user item item ...' file to convert first (Beauty.txt)")
    parser.add_argument("--data_path", default="dataset_atomic")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n_heads", type=int, default=4)
    parser.add_argument("--n_experts", type=int, default=8)
    parser.add_argument("--out")
    return parser.parse_args()


def main():
    args = parse_args()
    command = " ".join(["python"] + sys.argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    if args.raw and not os.path.isfile(os.path.join(args.data_path, args.dataset, f"{args.dataset}.inter")):
        convert("sequences", args.raw, args.data_path, args.dataset)
    settings = {
        "data_path": args.data_path,
        "show_progress": False,
        "state": "WARNING",
        "n_heads": args.n_heads,
        "n_experts": args.n_experts,
        "pretrain": False,
    }
    data, runs = {}, {}
    for bucketing in (False, True):
        config = Config(model="SASRec", dataset=args.dataset, config_dict={**settings, "length_bucketing": bucketing})
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        data[bucketing] = bucket_dataloaders(config, *data_preparation(config, dataset))
        for model_name in MODELS:
            config = Config(model=model_name, dataset=args.dataset, config_dict={**settings, "length_bucketing": bucketing})
            init_seed(config["seed"], config["reproducibility"])
            model = get_model(model_name)(config, data[bucketing][0]._dataset).to(config["device"])
            trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
            runs[(model_name, bucketing)] = trainer
    times = {key: {"epoch": [], "eval": []} for key in runs}
    for rep in range(args.reps):
        for (model_name, bucketing), trainer in runs.items():  # interleaved
            train_data, valid_data, _ = data[bucketing]
            start = time.perf_counter()
            trainer._train_epoch(train_data, rep)
            times[(model_name, bucketing)]["epoch"].append(time.perf_counter() - start)
            start = time.perf_counter()
            trainer.evaluate(valid_data, load_best_model=False)
            times[(model_name, bucketing)]["eval"].append(time.perf_counter() - start)
            print(f"rep {rep} {model_name} bucketing={bucketing}: epoch {times[(model_name, bucketing)]['epoch'][-1]:.1f} s, "
                  f"eval {times[(model_name, bucketing)]['eval'][-1]:.2f} s", flush=True)

    base = {k: statistics.median(times[("SASRec", False)][k]) for k in ("epoch", "eval")}
    lines = [
        f"Dataset `{args.dataset}`, {args.reps} interleaved repetitions, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, FAME H={args.n_heads} N={args.n_experts}, batch 256, "
        "hidden 64, 2 layers, max length 50, CE loss.",
        "",
        "| model | batching | train epoch s, median (min-max) | / stock SASRec | full-sort valid eval s, median (min-max) | / stock SASRec |",
        "|---|---|---|---|---|---|",
    ]
    for (model_name, bucketing), measured in times.items():
        cells = []
        for kind in ("epoch", "eval"):
            values = measured[kind]
            median = statistics.median(values)
            cells += [f"{median:.2f} ({min(values):.2f}-{max(values):.2f})", f"{median / base[kind]:.2f}"]
        lines.append(f"| {model_name} | {'length_bucketing' if bucketing else 'stock'} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    out = args.out or os.path.join("results", f"speed-{args.dataset}.md")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        f.write(f"`{command}`\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
