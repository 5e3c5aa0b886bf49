"""Speed of FAME against SASRec, and of this project's pipeline against stock RecBole 1.2.1.

    python benchmarks/speed.py --dataset=ml-100k --reps=3
    python benchmarks/speed.py --dataset=beauty --raw=../shared/datasets/Beauty.txt --reps=3
    python benchmarks/speed.py --dataset=ml-100k --reps=5 --pipelines stock length_groups
    python benchmarks/speed.py --dataset=ml-100k --reps=5 --pipelines stock length_groups --keep_freed_memory
    python benchmarks/speed.py --dataset=ml-100k --reps=3 --skip_steps --baseline length_groups --pipelines compact

Everything runs in one process, interleaved, ``--reps`` times; the table reports medians with
min-max. Two parts:

1. Training step, on the same ``--steps`` batches of RecBole's loader (padded to the full length),
   for SASRec, FAME (H, N) and FAME (H, 32): seconds per step, peak extra memory of a step, and
   ratios against SASRec under the same layers. ``stock layers`` is RecBole as shipped (with the
   anomaly detection its ``sine.py`` switches on); ``fast layers`` is this project's
   (``recbole_fame.compat`` + ``fast_layers``).
2. Whole training epoch and full-sort validation, for SASRec and FAME (H, N), in four
   pipelines: ``stock`` (RecBole's loaders, layers and trainer, as shipped), ``fast_layers`` only,
   ``fast_layers + length_groups`` (RecBole's batches computed in up to 4 length groups,
   evaluation batches sorted and trimmed: the CPU default before the compact storage), and
   ``compact`` (the same with ``compact_sequences``: this project's CPU default), and
   ``compact_whole`` (``compact_sequences`` alone: this project's GPU default), with ratios
   against ``--baseline`` (stock by default). ``--pipelines`` picks some of them (the baseline
   always runs), so that more repetitions of the ones in question fit in a session.

``--keep_freed_memory`` applies the config key of that name before anything runs. glibc's
thresholds are process-wide, so it then holds for every pipeline, stock included: the ratios
against stock are what the rest of the pipeline gains on top of it. Without the flag every
pipeline runs under glibc's own thresholds, although the key is on by default in
``properties/overall.yaml``: stock RecBole does not set them, and one process cannot set them for
some pipelines only.

Peak memory is read from glibc's ``mallinfo2`` after every operator of the step (a dispatch mode),
minus the amount in use before the step; it is what the step's tensors add.
"""

import argparse
import os
import statistics
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import init_seed
from torch.utils._python_dispatch import TorchDispatchMode

import glibc_heap
from data_args import add_data_args, add_overwrite_arg, check_report_out, data_settings, prepare_raw_data
from recbole_fame import Config, get_model
from recbole_fame.data import prepare_data
from recbole_fame.files import write_text
from recbole_fame.model.fast_layers import use_fast_layers
from recbole_fame.trainer import get_trainer
from recbole_fame.trainer.memory import keep_freed_memory


# Pipelines of the epoch part: name as printed, (fast_layers, length_groups, compact_sequences).
PIPELINES = {
    "stock": ("stock", (False, 1, False)),
    "fast_layers": ("fast_layers", (True, 1, False)),
    "length_groups": ("fast_layers + length_groups", (True, 4, False)),
    "compact": ("fast_layers + length_groups + compact_sequences", (True, 4, True)),
    # What a GPU run gets by default (DEVICE_DEFAULTS in recbole_fame/config.py): RecBole's layers,
    # whole batches, the compact storage.
    "compact_whole": ("compact_sequences", (False, 1, True)),
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="batches timed per step measurement")
    parser.add_argument("--n_heads", type=int, default=4)
    parser.add_argument("--n_experts", type=int, default=8)
    parser.add_argument("--eval_reps", type=int, default=3,
                        help="full-sort validations timed after each epoch (they are short)")
    parser.add_argument("--skip_epochs", action="store_true", help="only the training-step part")
    parser.add_argument("--skip_steps", action="store_true", help="only the epoch part")
    parser.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES),
                        help="pipelines of the epoch part (the baseline always runs)")
    parser.add_argument("--baseline", choices=list(PIPELINES), default="stock",
                        help="the pipeline every epoch ratio is against (default: stock)")
    parser.add_argument("--keep_freed_memory", action="store_true",
                        help="glibc's thresholds fixed for the whole process (every pipeline)")
    parser.add_argument("--out")
    add_overwrite_arg(parser)
    return parser


def parse_args():
    parser = build_parser()
    args = parser.parse_args()
    if args.reps < 1 or args.eval_reps < 1 or args.steps < 1:
        parser.error("--reps, --eval_reps and --steps must be at least 1")
    return args


class _MallinfoPeak(TorchDispatchMode):
    """Highest glibc heap in use after any operator while active."""

    in_use = staticmethod(glibc_heap.in_use_bytes)

    def __enter__(self):
        self.peak = self.in_use()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.in_use())
        return out


def peak_step_mib(trainer, batch):
    try:
        before = _MallinfoPeak.in_use()
    except (OSError, AttributeError):  # not glibc
        return float("nan")
    with _MallinfoPeak() as mode:
        train_step(trainer, batch)
    return (mode.peak - before) / 2**20


def train_step(trainer, batch):
    trainer.optimizer.zero_grad()
    loss = trainer.model.calculate_loss(batch)
    loss.backward()
    trainer.optimizer.step()


def settle(device):
    """Wait for the device's queued work, so that a timer read next has counted it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def build(model_name, dataset_name, settings, train_data, **overrides):
    """A trainer of ``model_name``: RecBole's own for stock layers, the pipeline's otherwise."""
    config = Config(model=model_name, dataset=dataset_name, config_dict={**settings, **overrides})
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    if config["fast_layers"]:
        use_fast_layers(model)
    return (get_trainer(config) if config["fast_layers"] else Trainer)(config, model)


def device_name(device):
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def fmt(values, digits=3):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def training_step_table(args, specs, settings, train_stock, batches):
    """Part 1: training steps on the same padded batches, as table lines."""
    steps = {}
    for name, (model_name, extra) in specs.items():
        for fast in (False, True):
            steps[(name, fast)] = build(model_name, args.dataset, settings, train_stock,
                                        fast_layers=fast, **extra)
    step_times = {key: [] for key in steps}
    for trainer in steps.values():  # warm-up
        train_step(trainer, batches[0])
    memory = {key: peak_step_mib(trainer, batches[0]) for key, trainer in steps.items()}
    for rep in range(args.reps):
        for (name, fast), trainer in steps.items():
            torch.autograd.set_detect_anomaly(not fast)
            settle(trainer.device)
            start = time.perf_counter()
            for batch in batches[1:]:
                train_step(trainer, batch)
            settle(trainer.device)
            step_times[(name, fast)].append((time.perf_counter() - start) / args.steps)
            print(f"rep {rep} step {name} fast={fast}: {step_times[(name, fast)][-1]:.3f} s", flush=True)
    torch.autograd.set_detect_anomaly(False)

    lines = [
        "",
        f"### Training step ({args.steps} batches of RecBole's loader, padded to 50)",
        "",
        "| model | layers | s / step | / SASRec, same layers | / stock layers | peak step memory MiB | / SASRec |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, fast), values in step_times.items():
        base = statistics.median(step_times[("SASRec", fast)])
        stock = statistics.median(step_times[(name, False)])
        median = statistics.median(values)
        lines.append(
            f"| {name} | {'fast' if fast else 'stock'} | {fmt(values)} | {median / base:.2f} | "
            f"{median / stock:.2f} | {memory[(name, fast)]:.0f} | "
            f"{memory[(name, fast)] / memory[('SASRec', fast)]:.2f} |"
        )
    return lines


def main():
    args = parse_args()
    out = args.out or os.path.join("results", f"speed-{args.dataset}.md")
    check_report_out(out, __file__, args.overwrite)
    command = prepare_raw_data(args)
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("--keep_freed_memory: glibc's mallopt is not available or refused the thresholds")
    settings = {**data_settings(args), "show_progress": False, "state": "WARNING",
                "n_heads": args.n_heads, "pretrain": False, "length_groups": 1}
    fame = f"FAME H={args.n_heads} N={args.n_experts}"
    fame32 = f"FAME H={args.n_heads} N=32"
    specs = {"SASRec": ("SASRec", {}), fame: ("FAME", {"n_experts": args.n_experts}),
             fame32: ("FAME", {"n_experts": 32})}

    pipelines = dict(PIPELINES[key] for key in PIPELINES if key == args.baseline or key in args.pipelines)
    baseline = PIPELINES[args.baseline][0]
    data = {}
    for fast, groups, compact in {**pipelines, "stock": PIPELINES["stock"][1]}.values():
        config = Config(model="SASRec", dataset=args.dataset,
                        config_dict={**settings, "length_groups": groups, "compact_sequences": compact})
        init_seed(config["seed"], config["reproducibility"])
        data[(groups, compact)] = prepare_data(config)[1:]
    train_stock = data[(1, False)][0]
    batches = []
    for batch in train_stock:
        batches.append(batch.to(config["device"]))  # as the trainer moves each batch
        if len(batches) == args.steps + 1:
            break

    lines = [
        f"`{command}`",
        "",
        f"Dataset `{args.dataset}`, torch {torch.__version__}, device {device_name(config['device'])}, "
        f"{torch.get_num_threads()} threads, "
        "batch 256, hidden 64, 2 layers, max length 50, CE loss. Medians (min-max) of "
        f"{args.reps} interleaved repetitions."
        + (" `keep_freed_memory` applied to the whole process (stock included)." if args.keep_freed_memory else ""),
    ]
    if not args.skip_steps:
        lines += training_step_table(args, specs, settings, train_stock, batches)

    if not args.skip_epochs:
        # Part 2: whole epochs and full-sort validation, stock pipeline against this project's.
        epochs = {}
        for name in ("SASRec", fame):
            model_name, extra = specs[name]
            for pipeline, (fast, groups, compact) in pipelines.items():
                epochs[(name, pipeline)] = build(model_name, args.dataset, settings, data[(groups, compact)][0],
                                                 fast_layers=fast, length_groups=groups,
                                                 compact_sequences=compact, **extra)
        times = {key: {"epoch": [], "eval": []} for key in epochs}
        for rep in range(args.reps):
            # One pipeline at a time, SASRec and FAME back to back; which model and which pipeline
            # goes first alternates by repetition: the machine's speed drifts over minutes (and a
            # process's heap grows), and a drift then falls on both sides of a ratio alike.
            order = ("SASRec", fame) if rep % 2 == 0 else (fame, "SASRec")
            pipeline_order = list(pipelines) if rep % 2 == 0 else list(pipelines)[::-1]
            for pipeline, name in ((pipeline, name) for pipeline in pipeline_order for name in order):
                trainer = epochs[(name, pipeline)]
                fast, groups, compact = pipelines[pipeline]
                train_data, valid_data, _ = data[(groups, compact)]
                torch.autograd.set_detect_anomaly(not fast)
                settle(trainer.device)
                start = time.perf_counter()
                trainer._train_epoch(train_data, rep)
                settle(trainer.device)
                times[(name, pipeline)]["epoch"].append(time.perf_counter() - start)
                for _ in range(args.eval_reps):
                    start = time.perf_counter()
                    trainer.evaluate(valid_data, load_best_model=False)
                    times[(name, pipeline)]["eval"].append(time.perf_counter() - start)
                print(f"rep {rep} epoch {name} {pipeline}: {times[(name, pipeline)]['epoch'][-1]:.1f} s, "
                      f"eval {times[(name, pipeline)]['eval'][-1]:.2f} s", flush=True)
            torch.autograd.set_detect_anomaly(False)
        lines += [
            "",
            "### Epoch and full-sort validation",
            "",
            "stock = RecBole 1.2.1 as shipped (RecBole's loaders, layers and trainer, anomaly detection on). "
            "Epochs run pipeline by pipeline, SASRec's and FAME's back to back; the order of the "
            f"pipelines, and of the two models, reverses every repetition. Validation: {args.eval_reps} timings after each epoch, "
            "median and range over all.",
            "",
            f"| model | pipeline | train epoch s | / {baseline}, same model | / SASRec, same pipeline | valid eval s "
            f"| / {baseline} | / SASRec |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (name, pipeline), measured in times.items():
            cells = []
            for kind in ("epoch", "eval"):
                median = statistics.median(measured[kind])
                stock = statistics.median(times[(name, baseline)][kind])
                sasrec = statistics.median(times[("SASRec", pipeline)][kind])
                cells += [fmt(measured[kind], 2), f"{median / stock:.2f}", f"{median / sasrec:.2f}"]
            lines.append(f"| {name} | {pipeline} | " + " | ".join(cells) + " |")

    table = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    write_text(out, table)
    print(table)


if __name__ == "__main__":
    main()
