"""Speed of MIRACLE against SASRec on one dataset, in one process.

    python benchmarks/miracle_speed.py --dataset=Scientific --reps=3 --out=results/speed-miracle-Scientific.md

Three trainers, each with the pipeline's defaults for this device: SASRec with the protocol's
settings (hidden 64, batch 256), MIRACLE with its own (hidden 300, batch 1024, from scratch,
transductive) and, to tell the model from its size, SASRec at MIRACLE's width and batch (hidden
300, 2 heads, inner 256, batch 1024). Each repetition trains one epoch of each, in an order that
rotates by repetition, and times ``--eval_reps`` full-sort validations after each epoch. Medians
(min-max) over the repetitions; the ratios are against SASRec's, in the same process.

With ``--breakdown_steps N`` it then times, on MIRACLE's first N training batches, a step's loss
and backward (not the optimizer step) against the item representations alone (every item's text
through the adaptor, Eq. 2-4, plus the ID embeddings when transductive; forward and backward),
which every step of Eq. 23 needs: where MIRACLE's extra cost goes.
"""

import argparse
import os
import statistics
import time

import torch
from recbole.utils import init_seed

from data_args import add_data_args, add_overwrite_arg, check_report_out, data_settings, prepare_raw_data
from recbole_fame import Config
from recbole_fame.data import prepare_data
from recbole_fame.files import output_mark, write_text
from recbole_fame.model import build_model
from recbole_fame.trainer import get_trainer

MIRACLE_WIDTH = {"hidden_size": 300, "n_heads": 2, "inner_size": 256, "train_batch_size": 1024}
# label -> (model, settings over the pipeline's)
TRAINERS = {
    "SASRec": ("SASRec", {}),
    "MIRACLE": ("MIRACLE", {}),
    "SASRec at MIRACLE's width and batch": ("SASRec", MIRACLE_WIDTH),
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.set_defaults(dataset="Scientific")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--eval_reps", type=int, default=2)
    parser.add_argument("--breakdown_steps", type=int, default=0,
                        help="then time MIRACLE's step against its adaptor alone on this many batches")
    parser.add_argument("--out", default=None, help="markdown report (default: print only)")
    add_overwrite_arg(parser)
    return parser


def fmt(values, digits=2):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def timed(work, device):
    """Seconds ``work()`` and its backward take (on a GPU, until its kernels have finished)."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    work().backward()
    synchronize()
    return time.perf_counter() - start


def step_breakdown(trainer, train_data, steps):
    """Lines of the table of a MIRACLE step against its adaptor alone (module docstring)."""
    model = trainer.model
    model.train()
    batches = []
    for batch in train_data:
        batches.append(batch.to(model.device))
        if len(batches) == steps:
            break
    step = "whole step (loss and backward)"
    parts = {step: lambda batch: model.calculate_loss(batch),
             "item representations: text adaptor over every item (Eq. 2-4), forward and backward":
                 lambda batch: model.item_representations().sum()}
    times = {label: [] for label in parts}
    for work in parts.values():  # untimed: the first call allocates
        timed(lambda: work(batches[0]), model.device)
        model.zero_grad(set_to_none=True)
    for i, batch in enumerate(batches):
        for label in list(parts)[:: 1 if i % 2 == 0 else -1]:  # order alternating by batch
            times[label].append(timed(lambda: parts[label](batch), model.device))
            model.zero_grad(set_to_none=True)
    whole = statistics.median(times[step])
    lines = ["", f"MIRACLE's step on its first {len(batches)} training batches, medians (min-max) in ms:", "",
             "| part | ms per step | share of the step |", "|---|---|---|"]
    for label, values in times.items():
        lines.append(f"| {label} | {fmt([v * 1000 for v in values], 1)} | {statistics.median(values) / whole:.2f} |")
    return lines


def main():
    args = build_parser().parse_args()
    if args.out:
        check_report_out(args.out, __file__, args.overwrite)
    command = prepare_raw_data(args)
    settings = {**data_settings(args), "show_progress": False, "state": "WARNING"}
    trainers, data = {}, {}
    for label, (model_name, overrides) in TRAINERS.items():
        config = Config(model=model_name, dataset=args.dataset, config_dict={**settings, **overrides})
        data[label] = prepare_data(config)[1:]
        init_seed(config["seed"], config["reproducibility"])
        trainers[label] = get_trainer(config)(config, build_model(config, data[label][0]._dataset))
    device = trainers["SASRec"].config["device"]

    times = {label: {"epoch": [], "eval": []} for label in TRAINERS}
    labels = list(TRAINERS)
    for rep in range(args.reps):
        for label in labels[rep % len(labels):] + labels[: rep % len(labels)]:
            trainer, (train_data, valid_data, _) = trainers[label], data[label]
            start = time.perf_counter()
            trainer._train_epoch(train_data, rep)
            times[label]["epoch"].append(time.perf_counter() - start)
            for _ in range(args.eval_reps):
                start = time.perf_counter()
                trainer.evaluate(valid_data, load_best_model=False)
                times[label]["eval"].append(time.perf_counter() - start)
            print(f"rep {rep} {label}: epoch {times[label]['epoch'][-1]:.1f} s, eval {times[label]['eval'][-1]:.2f} s",
                  flush=True)

    sasrec = {kind: statistics.median(times["SASRec"][kind]) for kind in ("epoch", "eval")}
    lines = [
        f"`{command}`",
        "",
        f"Dataset `{args.dataset}`, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}. "
        f"Medians (min-max) of {args.reps} repetitions, one epoch of each model per repetition (order rotating), "
        f"{args.eval_reps} full-sort validations after each epoch.",
        "",
        "| model | hidden | batch | train epoch s | / SASRec | valid eval s | / SASRec |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in TRAINERS:
        config = trainers[label].config
        cells = [label, str(config["hidden_size"]), str(config["train_batch_size"])]
        for kind in ("epoch", "eval"):
            cells += [fmt(times[label][kind]), f"{statistics.median(times[label][kind]) / sasrec[kind]:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if args.breakdown_steps:
        lines += step_breakdown(trainers["MIRACLE"], data["MIRACLE"][0], args.breakdown_steps)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_text(args.out, table + "\n" + output_mark("benchmarks/miracle_speed.py") + "\n")


if __name__ == "__main__":
    main()
