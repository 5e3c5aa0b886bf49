"""Train and test FAME (default) or any RecBole model through the same pipeline.

    python run_fame.py                                   # FAME on RecBole's bundled ml-100k
    python run_fame.py --dataset=ml-20m --config_files=fame.yaml
    python run_fame.py --model=SASRec --epochs=5         # any RecBole model, any config key
    python run_fame.py --nproc=2                         # 2 processes, DistributedDataParallel
    python run_fame.py --resume=saved/FAME-....pth       # go on with an interrupted run
    python run_fame.py --explain --checkpoint=saved/FAME-....pth --user=196 [--explain_topk=20] [--plot=u196.png]
    python run_fame.py --explain-summary --checkpoint=saved/FAME-....pth [--plot=summary.png]
    python run_fame.py --model=MIRACLE --dataset=Office --train_stage=pretrain   # then fine-tune:
    python run_fame.py --model=MIRACLE --dataset=Scientific --pretrained_path=saved/MIRACLE-....pth

--explain and --explain-summary also take a MIRACLE checkpoint: which history items activated
which interest capsule, each interest's top items, and the activation statistics over test users.
"""

import argparse
import sys

from recbole_fame.checkpoint import CheckpointError
from recbole_fame.quick_start import latest_checkpoint, resume, run
from recbole_fame.text.encoder import TextExtraMissing


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Every other --key=value is a RecBole config key. A checkpoint (.pth) is a pickle: loading "
               "one (--resume, --checkpoint, --pretrained_path) runs code it contains, so load only your "
               "own or trusted ones.",
    )
    parser.add_argument("--model", "-m", default="FAME", help="FAME or a RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument(
        "--config_files", default=None, help="space-separated yaml files (also looked up in properties/)"
    )
    # Multi-process training, as RecBole's run_recbole.py (NCCL on GPUs, Gloo on CPUs).
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", default="localhost", help="address of the machine of rank 0")
    parser.add_argument("--port", default="5678", help="free port on the machine of rank 0")
    parser.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process")
    parser.add_argument("--resume", metavar="PATH", help="go on with the run that wrote this checkpoint")
    parser.add_argument("--explain", action="store_true", help="explain FAME's lists (Fig. 7) or MIRACLE's interests for --user")
    parser.add_argument(
        "--explain-summary", action="store_true", help="gates, experts and lists over all test users"
    )
    parser.add_argument("--checkpoint", metavar="PATH", help="the FAME or MIRACLE checkpoint to explain")
    parser.add_argument("--user", help="raw user id to explain")
    # Not --topk: that is RecBole's config key of the evaluated list lengths (--topk=[5,10]).
    parser.add_argument("--explain_topk", type=int, default=20, help="length of the explained lists")
    parser.add_argument("--plot", metavar="FILE.png", help="also write a figure there")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="let --plot replace a file that is not an earlier figure (or table) of the same command",
    )
    return parser


def parse_args(argv=None):
    """The script's options and the ``--key=value`` config arguments, checked together."""
    parser = build_parser()
    # Every other --key=value is a RecBole config key, read by Config from the command line.
    args, config_args = parser.parse_known_args(argv)
    bad = [arg for arg in config_args if not (arg.startswith("--") and "=" in arg)]
    if bad:
        parser.error(f"config keys are written --key=value, got {' '.join(bad)}")
    if (args.explain or args.explain_summary) and not args.checkpoint:
        parser.error("--explain and --explain-summary need --checkpoint=PATH")
    if args.explain and args.user is None:
        parser.error("--explain needs --user=RAW_USER_ID")
    if args.resume:
        # Refused rather than ignored: the run would silently differ from what the command asks.
        ignored = [
            f"--{name}={getattr(args, name)}"
            for name in ("model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "group_offset")
            if getattr(args, name) != parser.get_default(name)
        ]
        if ignored or config_args:
            parser.error(
                "--resume takes every setting from the checkpoint and resumes in one process; "
                f"drop {' '.join(ignored + config_args)}"
            )
    return args, config_args


def main():
    args, _ = parse_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    if args.explain or args.explain_summary:
        from recbole_fame.explain import explain_command, explain_summary_command

        try:
            if args.explain:
                print(explain_command(args.checkpoint, args.user, args.explain_topk, args.plot, args.overwrite))
            else:
                print(explain_summary_command(args.checkpoint, args.explain_topk, args.plot, args.overwrite))
        except (OSError, CheckpointError, ValueError) as exc:  # ValueError: user, topk; OSError: files
            sys.exit(f"error: {exc}")
        return
    try:
        if args.resume:
            resume(args.resume)
        else:
            run(
                model=args.model,
                dataset=args.dataset,
                config_file_list=config_file_list,
                nproc=args.nproc,
                world_size=args.world_size,
                ip=args.ip,
                port=args.port,
                group_offset=args.group_offset,
            )
    except (FileNotFoundError, CheckpointError, TextExtraMissing, ValueError) as exc:  # ValueError: process counts, config values
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:
        checkpoint = latest_checkpoint()
        print(
            f"\ninterrupted: python run_fame.py --resume={checkpoint} goes on from its last saved epoch"
            if checkpoint else "\ninterrupted before the first checkpoint was written",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
