"""Time of one Adam step over a model's parameters: PyTorch's three implementations.

    python benchmarks/optimizer_step.py --dataset=beauty --raw=../shared/datasets/Beauty.txt
    python benchmarks/optimizer_step.py --dataset=ml-100k

RecBole's trainer builds ``torch.optim.Adam(params, lr, weight_decay)``. On CPU, PyTorch then
takes its for-loop implementation: a dozen small operations per parameter tensor and step.
``foreach=True`` batches them across tensors, ``fused=True`` does each tensor's update in one
kernel. This measures the three on the parameters of SASRec and FAME as built for ``--dataset``
(random gradients; an update's cost does not depend on their values), interleaved, ``--reps``
times ``--steps`` steps, and writes a markdown table. Nothing here changes the training pipeline.
"""

import argparse
import statistics
import time

import torch
from recbole.utils import init_seed

from data_args import add_data_args, add_overwrite_arg, check_report_out, data_settings, prepare_raw_data
from recbole_fame import Config, get_model
from recbole_fame.data import prepare_data
from recbole_fame.files import write_text

IMPLEMENTATIONS = {"for-loop (RecBole's default on CPU)": {"foreach": False},
                   "foreach": {"foreach": True}, "fused": {"fused": True}}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=None)
    add_overwrite_arg(parser)
    return parser


def main():
    args = build_parser().parse_args()
    if args.out:
        check_report_out(args.out, __file__, args.overwrite)
    command = prepare_raw_data(args)
    settings = {**data_settings(args), "state": "WARNING", "n_heads": 4, "n_experts": 8, "pretrain": False}
    dataset = None
    optimizers = {}
    for model_name in ("SASRec", "FAME"):
        config = Config(model=model_name, dataset=args.dataset, config_dict=settings)
        init_seed(config["seed"], config["reproducibility"])
        dataset = dataset or prepare_data(config)[0]  # RecBole's caches only when asked for and signed
        model = get_model(model_name)(config, dataset).to(config["device"])
        for label, options in IMPLEMENTATIONS.items():
            params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
            for param in params:
                param.grad = torch.randn_like(param)
            optimizer = torch.optim.Adam(params, lr=config["learning_rate"], **options)
            optimizer.step()  # the state is created on the first step
            optimizers[model_name, label] = optimizer
    times = {key: [] for key in optimizers}
    for _ in range(args.reps):
        for key, optimizer in optimizers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            times[key].append((time.perf_counter() - start) / args.steps * 1000)
    lines = [
        f"`{command}`",
        "",
        f"Dataset `{args.dataset}`, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"FAME H=4 N=8. Medians (min-max) of {args.reps} interleaved repetitions of {args.steps} steps.",
        "",
        "| model | parameter tensors | Adam | ms / step | / for-loop |",
        "|---|---|---|---|---|",
    ]
    for (model_name, label), values in times.items():
        median = statistics.median(values)
        base = statistics.median(times[model_name, next(iter(IMPLEMENTATIONS))])
        count = len(optimizers[model_name, label].param_groups[0]["params"])
        lines.append(f"| {model_name} | {count} | {label} | {median:.2f} ({min(values):.2f}-{max(values):.2f}) "
                     f"| {median / base:.2f} |")
    table = "\n".join(lines) + "\n"
    if args.out:
        write_text(args.out, table)
    print(table)


if __name__ == "__main__":
    main()
