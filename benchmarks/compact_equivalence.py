"""Does the compact sequence storage give RecBole's samples, runs and metrics on a real dataset?

    python benchmarks/compact_equivalence.py --dataset=beauty --raw=../shared/datasets/Beauty.txt --out=results/compact-equivalence-beauty.md

``tests/data/test_compact.py`` checks the same on small data in CI; this is the check at a real
dataset's size (issue 45). Three parts, each compared exactly (``==`` on every value; metrics are
kept to 17 decimal places, not the protocol's 4, so that no difference is rounded away):

1. **Samples.** RecBole's ``SequentialDataset`` and :class:`CompactSequentialDataset` built from
   the same config: in each split, every column of every sample (user, target, history, its
   length, times), in order and dtype, read by dataset index in batches of ``--batch``.
2. **Training.** Each model trained ``--epochs`` epochs from the same seed through this project's
   pipeline on each storage (everything else the pipeline's defaults; FAME from scratch): the
   trained weights (``torch.equal`` on every tensor of the two checkpoints) and the validation and
   test results.
3. **A fixed model.** The model trained on RecBole's storage, evaluated on both storages'
   validation and test data under both rankings (``exclude_history`` False and True).
"""

import argparse
import os
import tempfile

import torch
from recbole.data import create_dataset

from data_args import add_data_args, add_overwrite_arg, check_report_out, data_settings, prepare_raw_data
from recbole_fame import Config
from recbole_fame.data import prepare_data
from recbole_fame.data.cache import recbole_caches
from recbole_fame.data.compact import CompactSequentialDataset
from recbole_fame.files import output_mark, write_text
from recbole_fame.model import build_model
from recbole_fame.quick_start import run
from recbole_fame.trainer import get_trainer

SPLITS = ("train", "valid", "test")
STORAGES = {False: "RecBole's rows", True: "compact"}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(parser)
    parser.add_argument("--models", nargs="+", default=["SASRec", "FAME"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4096, help="samples read at a time in part 1")
    parser.add_argument("--out", default=None, help="markdown report (default: print only)")
    add_overwrite_arg(parser)
    return parser


def differing_fields(expected, actual):
    """The fields of two ``Interaction`` batches that differ in presence, dtype or any value."""
    fields = set(expected.interaction) | set(actual.interaction)
    return sorted(f for f in fields if f not in expected.interaction or f not in actual.interaction
                  or expected[f].dtype != actual[f].dtype or not torch.equal(expected[f], actual[f]))


def compare_samples(config, batch):
    """Part 1: per split, (samples in RecBole's storage, in the compact one, fields that differ)."""
    with recbole_caches(config):  # a fresh build: no dataset file RecBole might find saved
        stock = create_dataset(config).build()
    compact = CompactSequentialDataset(config).build()
    rows = []
    for name, stock_part, compact_part in zip(SPLITS, stock, compact):
        differing = set()
        if len(stock_part) == len(compact_part):
            for start in range(0, len(stock_part), batch):
                index = torch.arange(start, min(start + batch, len(stock_part)))
                differing.update(differing_fields(stock_part[index], compact_part[index]))
        rows.append((name, len(stock_part), len(compact_part), sorted(differing)))
    return rows


def evaluate_fixed_model(model_name, settings, dataset, model_file):
    """Part 3: {(exclude_history, compact): (valid result, test result)} of one checkpoint."""
    state = torch.load(model_file, weights_only=False, map_location="cpu")["state_dict"]
    results = {}
    for exclude_history in (False, True):
        for compact in STORAGES:
            config = Config(model=model_name, dataset=dataset, config_dict={
                **settings, "compact_sequences": compact, "exclude_history": exclude_history})
            _, _, valid_data, test_data = prepare_data(config)
            model = build_model(config, valid_data._dataset, load_pretrained=False)
            model.load_state_dict(state)
            trainer = get_trainer(config)(config, model)
            results[(exclude_history, compact)] = (trainer.evaluate(valid_data, load_best_model=False),
                                                   trainer.evaluate(test_data, load_best_model=False))
    return results


def same_weights(model_files):
    """Whether two checkpoints hold the same tensors, every one equal."""
    states = [torch.load(path, weights_only=False, map_location="cpu")["state_dict"] for path in model_files]
    return states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def headline(result):
    """NDCG@10 and HR@10 (or the first two metrics) of a result, for the tables."""
    keys = [k for k in ("ndcg@10", "hit@10", "recall@10") if k in result][:2] or list(result)[:2]
    return ", ".join(f"{k} {result[k]:.4f}" for k in keys)


def verdict(equal):
    return "equal" if equal else "**differs**"


def main():
    args = build_parser().parse_args()
    if args.out:
        check_report_out(args.out, __file__, args.overwrite)
    command = prepare_raw_data(args)
    settings = {**data_settings(args), "show_progress": False, "state": "WARNING", "pretrain": False,
                "metric_decimal_place": 17}
    lines = [f"`{command}`", ""]
    everything_equal = True

    config = Config(model="SASRec", dataset=args.dataset, config_dict={**settings, "compact_sequences": False})
    lines += [f"Dataset `{args.dataset}`, MAX_ITEM_LIST_LENGTH {config['MAX_ITEM_LIST_LENGTH']}, "
              f"torch {torch.__version__}, device {config['device']}.", "",
              "### 1. Samples", "",
              "| split | samples, RecBole's rows | samples, compact | every column of every sample |",
              "|---|---|---|---|"]
    for name, stock_count, compact_count, differing in compare_samples(config, args.batch):
        equal = stock_count == compact_count and not differing
        everything_equal &= equal
        detail = verdict(equal) + (f" ({', '.join(differing)})" if differing else "")
        lines.append(f"| {name} | {stock_count:,} | {compact_count:,} | {detail} |")
    print("\n".join(lines), flush=True)

    training = ["", f"### 2. Training {args.epochs} epoch(s) from the same seed on each storage", "",
                "| model | storage | best valid | test | weights, valid and test results |", "|---|---|---|---|---|"]
    fixed = ["", "### 3. The model trained on RecBole's rows, evaluated on each storage", "",
             "| model | exclude_history | split | RecBole's rows | compact |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as checkpoints:
        settings["checkpoint_dir"] = os.path.join(checkpoints, "evaluation")  # where trainers may write
        for model_name in args.models:
            runs = {}
            for compact in STORAGES:
                runs[compact] = run(model_name, args.dataset, config_dict={
                    **settings, "compact_sequences": compact, "seed": config["seed"], "epochs": args.epochs,
                    "eval_step": args.epochs, "stopping_step": args.epochs,
                    "checkpoint_dir": os.path.join(checkpoints, f"{model_name}-{int(compact)}")})
            reference, result = runs[False], runs[True]
            equal = all(result[k] == reference[k] for k in ("best_valid_result", "test_result")) and (
                same_weights([reference["model_file"], result["model_file"]]))
            everything_equal &= equal
            for compact, verdict_cell in ((False, "reference"), (True, verdict(equal))):
                training.append(f"| {model_name} | {STORAGES[compact]} | {headline(runs[compact]['best_valid_result'])} | "
                                f"{headline(runs[compact]['test_result'])} | {verdict_cell} |")
            results = evaluate_fixed_model(model_name, settings, args.dataset, runs[False]["model_file"])
            for exclude_history in (False, True):
                for i, split in enumerate(("valid", "test")):
                    stock, compact = results[(exclude_history, False)][i], results[(exclude_history, True)][i]
                    everything_equal &= stock == compact
                    fixed.append(f"| {model_name} | {exclude_history} | {split} | {headline(stock)} | "
                                 f"{headline(compact)}: {verdict(stock == compact)} (all {len(stock)} metrics) |")
            print("\n".join(training[-2:] + fixed[-4:]), flush=True)

    lines += training + fixed
    lines += ["", "**Everything equal.**" if everything_equal else "**Something differs: see the tables.**"]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        write_text(args.out, table + "\n" + output_mark("benchmarks/compact_equivalence.py") + "\n")
    if not everything_equal:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
