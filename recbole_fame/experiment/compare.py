"""FAME against FAME w/o MoE and RecBole's baselines on one dataset: the runs of ``run_compare.py``.

Every (model, seed) run goes through :func:`recbole_fame.quick_start.run`, so all models share the
Config, protocol, split, evaluator, seed and training budget. Each run is a child process of its
own, so that its peak memory is its own. A finished run is written at once to
``<out>/runs/<model>-seed<seed>.json``; the same command run again keeps it and skips it, so an
interrupted comparison loses only the run in progress. The tables and the chart
(:mod:`recbole_fame.experiment.report`) are rewritten after every run.

FAME's stage 1 is a SASRec with FAME's backbone settings (``quick_start.BACKBONE_KEYS``). When the
SASRec baseline of a seed has exactly those settings (the per-dataset files give every model the
same backbone), that baseline *is* stage 1: FAME and FAME w/o MoE start from its checkpoint
(``pretrained_path``) instead of training SASRec two more times. Otherwise a SASRec with FAME's
backbone (``SASRec-stage1``) is trained once per seed and shared by both.

Checkpoints are written under ``<out>/checkpoints/<run>/`` and records name them relative to
``<out>`` (``model_file``, ``pretrained_path``: ``checkpoints/SASRec-seed2020/SASRec-....pth``), so
that a results folder can move between machines. A checkpoint is a pickle, and loading one runs
code: the stage-1 checkpoint a record names is loaded only if it lies inside ``<out>/checkpoints/``
once symlinks are resolved. Absolute paths (records written before paths were relative) are never
loaded; ``--report_only`` loads no checkpoint, so such records still make tables.
"""

import hashlib
import importlib
import json
import multiprocessing
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from logging import getLogger
from typing import Optional

import yaml
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.config import Config as RecBoleConfig
from recbole.utils import init_logger, set_color

from recbole_fame.config import PROTOCOL_FILE, Config, dataset_settings_file, model_defaults_file, resolve_config_file
from recbole_fame.data import check_dataset_files
from recbole_fame.data.length_groups import length_groups_setting
from recbole_fame.experiment.report import REPORT_FILES, read_paper_table, write_reports
from recbole_fame.files import check_folder_outputs, write_json
from recbole_fame.model import PLUGIN_MODELS
from recbole_fame.quick_start import BACKBONE_KEYS, check_config, run
from recbole_fame.text.pretrain import TEXT_INIT_MODELS

DEFAULT_SEEDS = (2020, 2021, 2022)
DEFAULT_MODELS = ("FAME", "FAME-N1", "SASRec", "GRU4Rec", "CORE")
# Names in the comparison that are a model class plus settings.
VARIANTS = {"FAME-N1": ("FAME", {"n_experts": 1})}
STAGE_ONE = "SASRec-stage1"
# Keys the comparison sets itself; from the command line they would make runs disagree unnoticed.
CONTROLLED_KEYS = {
    "seed": "use --seeds",
    "model": "use --models",
    "dataset": "use --dataset",
    "checkpoint_dir": "checkpoints go under --out",
    "pretrained_path": "FAME starts from the SASRec run of the same seed",
}

# What a variant (Model:key=value) may not set: it would change the protocol of its row alone
# (the tables assume one protocol and validation by NDCG@10), or, for FAME, stage 1 (the text
# pre-training initialises the SASRec that FAME is fine-tuned from, not FAME itself).
VARIANT_REFUSED_KEYS = ("topk", "metrics", "valid_metric", "eval_args", "exclude_history", "data_path",
                        "load_col", "benchmark_filename", "user_inter_num_interval", "item_inter_num_interval")
VARIANT_REFUSED_PREFIXES = ("text_",)

# What the tables need besides the protocol's own metrics: the validation column and the chart
# show NDCG@10.
REPORTED_TOPK = (10,)
REPORTED_METRICS = ("NDCG",)

# Keys that change what a run prints, not what it computes: a rerun may differ in them.
OUTPUT_KEYS = ("show_progress", "state")
# Keys with project defaults (properties/overall.yaml) that change how a run trains or how long it
# takes: every run records their values, so a default changed later cannot mix pipelines in one
# table (the command line alone would not show it).
PIPELINE_KEYS = ("fast_layers", "length_groups", "keep_freed_memory", "compact_sequences")
# Of those, the ones that change time and memory but no number: a run finished under another
# value is kept (the table's pipeline line names the runs of each value).
TIMING_ONLY_KEYS = ("keep_freed_memory", "compact_sequences")


class RunFailed(RuntimeError):
    """A (model, seed) run that stopped with an error or was killed."""


@dataclass
class Job:
    """One (model, seed) training run of the comparison."""

    label: str  # name in the comparison: FAME, FAME-N1, SASRec, SASRec-stage1, ...
    model: str  # the model class behind it
    seed: int
    config_dict: dict
    reported: bool = True  # False for a stage-1 SASRec nobody asked to see
    stage_one: Optional[str] = None  # label of the run FAME starts from (same seed)
    settings: dict = field(default_factory=dict)

    @property
    def name(self):
        """File and folder name of the run: a variant's ':', ',' or '/' become '_', plus a hash
        of the label so that two variants never share a name."""
        safe = re.sub(r"[^A-Za-z0-9._=-]", "_", self.label)
        if safe != self.label:
            safe += "-" + hashlib.sha256(self.label.encode()).hexdigest()[:8]
        return f"{safe}-seed{self.seed}"


def parse_overrides(args):
    """``--key=value`` arguments as a config dict of strings (RecBole's Config converts them)."""
    overrides = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ValueError(f"Cannot read argument '{arg}': config overrides are written --key=value")
        if key in CONTROLLED_KEYS:
            raise ValueError(f"--{key} cannot be set for a comparison: {CONTROLLED_KEYS[key]}")
        overrides[key] = value
    return overrides


def resolve_model(name):
    """``(model class name, settings)`` for a name in ``--models``; ValueError naming it otherwise.

    ``Model:key=value,key=value`` is that model with those settings (the values as on RecBole's
    command line), for example ``FAME:learning_rate=0.0003``: its label is the whole name. For
    FAME they are stage 2's settings: stage 1 stays the seed's SASRec baseline unless a backbone
    key changes (then a SASRec with that backbone, as for any FAME), so a variant compares
    fine-tuning choices from the same SASRec. Keys of the protocol and of the text pre-training
    are refused (VARIANT_REFUSED_KEYS).
    """
    if name in VARIANTS:
        return VARIANTS[name]
    if ":" in name:
        base, _, assignments = name.partition(":")
        model, settings = resolve_model(base)
        settings, seen = dict(settings), set()
        for assignment in assignments.split(","):
            key, sep, value = assignment.partition("=")
            if not key or not sep or not value:
                raise ValueError(
                    f"Cannot read '{assignment}' in --models '{name}': a variant is written "
                    f"Model:key=value,key=value (values without commas)"
                )
            # MIRACLE's pretrained_path is the user's pre-training checkpoint, not a stage 1 of its own.
            if key in CONTROLLED_KEYS and not (key == "pretrained_path" and model == "MIRACLE"):
                raise ValueError(f"'{key}' in --models '{name}' cannot be set: {CONTROLLED_KEYS[key]}")
            # The text pre-training's keys initialise FAME, its stage 1 and SASRec (TEXT_INIT_MODELS);
            # a model with text keys of its own (MIRACLE) may vary them.
            if key in VARIANT_REFUSED_KEYS or (key.startswith(VARIANT_REFUSED_PREFIXES) and model in TEXT_INIT_MODELS):
                raise ValueError(
                    f"'{key}' in --models '{name}' cannot be set for one variant: it would change "
                    f"the protocol or FAME's stage 1; give it to the whole comparison as --{key}=..."
                )
            if key in seen:
                raise ValueError(f"'{key}' is given twice in --models '{name}'")
            seen.add(key)
            settings[key] = value
        return model, settings
    if name in PLUGIN_MODELS:
        return name, {}
    # Only RecBole's sequential models: the protocol (leave-one-out next item) is theirs.
    module = importlib.import_module("recbole.model.sequential_recommender")
    model_class = getattr(module, name, None)
    if isinstance(model_class, type) and issubclass(model_class, SequentialRecommender):
        return name, {}
    raise ValueError(
        f"Unknown model '{name}' in --models: the comparison runs FAME, FAME-N1 (FAME with "
        f"n_experts=1), RecBole's sequential models such as SASRec, GRU4Rec, CORE, and variants "
        f"of them written Model:key=value,key=value"
    )


def plan(dataset, models, seeds, config_file_list=None, overrides=None):
    """The runs of a comparison in training order: per seed, the stage-1 SASRec first."""
    if not models:
        raise ValueError("--models is empty")
    if not seeds:
        raise ValueError("--seeds is empty")
    for name in models:
        if list(models).count(name) > 1:
            raise ValueError(f"Model '{name}' is given twice in --models")
    for seed in seeds:
        if list(seeds).count(seed) > 1:
            raise ValueError(f"Seed {seed} is given twice in --seeds")
    specs = [(label, *resolve_model(label)) for label in models]
    files = _config_files_settings(config_file_list)
    jobs = []
    for seed in seeds:
        common = {**(overrides or {}), "seed": seed}
        seed_jobs = [Job(label, model, seed, {**common, **extra}) for label, model, extra in specs]
        stage_ones = {}
        for job in seed_jobs:
            if job.model != "FAME":
                continue
            provider = _stage_one_job(job, common, dataset, config_file_list)
            if provider is None:  # pretrain: False, FAME from scratch
                continue
            known = stage_ones.setdefault(provider.label, provider)
            if known.config_dict != provider.config_dict:
                raise ValueError(
                    f"The FAME variants in --models need stage-1 SASRecs with different backbones "
                    f"({known.config_dict} and {provider.config_dict}); compare them separately"
                )
            job.stage_one = provider.label
        requested = {job.label for job in seed_jobs}
        for label, provider in stage_ones.items():
            provider.reported = label in requested
        first = [next((job for job in seed_jobs if job.label == label), provider)
                 for label, provider in stage_ones.items()]
        jobs.extend(first + [job for job in seed_jobs if job.label not in stage_ones])
    for job in jobs:
        config = Config(model=job.model, dataset=dataset, config_file_list=config_file_list,
                        config_dict=dict(job.config_dict))
        try:  # in this process, before anything trains: a child's error would not name the variant
            check_config(config)
        except ValueError as exc:
            raise ValueError(f"{job.label} (--models): {exc}") from None
        job.settings = {
            "dataset": dataset,
            "model": job.model,
            "config_files": files,
            "config_dict": {k: v for k, v in job.config_dict.items() if k not in OUTPUT_KEYS},
            "pipeline": pipeline_settings(config),
            "project_settings": project_settings(config, job.config_dict),
        }
    return jobs


def pipeline_settings(config):
    """The values of ``PIPELINE_KEYS`` a run trains with; configs saved before a key existed ran
    with it off."""
    return {key: length_groups_setting(config) if key == "length_groups" else bool(config[key])
            for key in PIPELINE_KEYS}


def project_settings(config, config_dict):
    """The values a run has for the keys of the project's own yaml files (``properties/overall.yaml``,
    the model's defaults, the dataset's settings): an edit of those files, such as another ``n_heads``
    in ``properties/dataset/beauty.yaml``, counts as other settings. Keys recorded elsewhere (the
    pipeline's, ``config_dict``'s, the output ones) are left out, and so is ``data_path``: where
    the atomic files lie is not a setting of the run."""
    keys = project_keys(config["model"], config["dataset"], config_dict)
    # As JSON stores them, so that a record read back compares equal.
    return json.loads(json.dumps({key: config[key] for key in sorted(keys)}, default=str))


def project_keys(model, dataset, config_dict):
    """The keys :func:`project_settings` records for a run of ``model`` on ``dataset``. A key added
    to the project's yaml files later makes the runs recorded before it other settings ("None
    then") until their records are given the value they ran with."""
    files = [PROTOCOL_FILE, model_defaults_file(model), dataset_settings_file(dataset)]
    keys = set()
    for path in filter(None, files):
        with open(path, encoding="utf-8") as f:
            keys.update(yaml.safe_load(f) or {})
    return keys - {*PIPELINE_KEYS, *OUTPUT_KEYS, *config_dict, "data_path"}


def _stage_one_job(fame_job, common, dataset, config_file_list):
    """The SASRec run FAME's stage 2 starts from: the SASRec baseline when its backbone is FAME's."""
    fame = Config(model="FAME", dataset=dataset, config_file_list=config_file_list,
                  config_dict=dict(fame_job.config_dict))
    if not fame["pretrain"]:
        return None
    backbone = {key: fame[key] for key in BACKBONE_KEYS}
    sasrec = Config(model="SASRec", dataset=dataset, config_file_list=config_file_list,
                    config_dict=dict(common))
    if all(sasrec[key] == value for key, value in backbone.items()):
        return Job("SASRec", "SASRec", fame_job.seed, dict(common))
    # As quick_start's own stage 1: the same settings with FAME's backbone on top.
    return Job(STAGE_ONE, "SASRec", fame_job.seed, {**common, **backbone})


def _config_files_settings(config_file_list):
    """Each config file with a hash of its text, so that an edited file counts as other settings."""
    settings = []
    for path in config_file_list or []:
        with open(path, "rb") as f:
            settings.append({"path": path, "sha256": hashlib.sha256(f.read()).hexdigest()})
    return settings


def compare(dataset, models=DEFAULT_MODELS, seeds=DEFAULT_SEEDS, out=None, config_file_list=None,
            overrides=None, command=None, paper_table=None, report_only=False, overwrite=False):
    """Run (or resume) the comparison and write its tables and chart under ``out``.

    ``overrides`` are config keys over the yaml files, for every model. ``report_only``: train
    nothing, write the tables from the runs already finished under ``out`` (for runs made by
    several processes or machines into the same ``runs/``). ``overwrite``: let the tables and
    chart replace files of those names in ``out`` that an earlier comparison did not write.
    Returns the summary dict that ``<out>/results.json`` holds.
    """
    # RecBole's Config turns strings such as "16", "True" or "[5,10]" into values; done once here
    # (its converter uses nothing of the instance) so that every run records the same settings.
    overrides = RecBoleConfig._convert_config_dict(None, dict(overrides or {}))
    for key in overrides:
        if key in CONTROLLED_KEYS:
            raise ValueError(f"'{key}' cannot be set for a comparison: {CONTROLLED_KEYS[key]}")
    if config_file_list:
        config_file_list = [os.path.abspath(resolve_config_file(f)) for f in config_file_list]
    out = os.path.abspath(out or default_out(dataset, config_file_list, overrides))
    jobs = plan(dataset, list(models), list(seeds), config_file_list, overrides)
    # The table names its command: it vouches for the chart, CSV and JSON beside it.
    check_folder_outputs(out, REPORT_FILES, "run_compare.py", "Command: `python run_compare.py", overwrite)
    logger = _init_logger(dataset, config_file_list, overrides)
    if command is None:
        command = _command(dataset, models, seeds, out, config_file_list, overrides)

    runs_dir = os.path.join(out, "runs")
    records = {}
    for job in jobs:  # every finished run is checked before anything trains
        record = _load_record(runs_dir, job)
        if record is not None:
            records[job.name] = record
    for job in jobs:
        if job.stage_one and job.name in records:
            _check_started_from(job, records, runs_dir)
    todo = [job for job in jobs if job.name not in records]
    if read_paper_table(paper_table, dataset) is None:
        logger.info(f"No rows for '{dataset}' in the papers' tables ({paper_table or 'FAME, MIRACLE'}): none in table.md")
    logger.info(set_color(f"Comparison on {dataset}", "green") + f": {len(jobs)} runs, "
                f"{len(jobs) - len(todo)} finished earlier (kept, in {runs_dir}), {len(todo)} to train")

    def report():
        return write_reports(
            out, dataset, command, list(seeds), list(models),
            [records[job.name] for job in jobs if job.reported and job.name in records],
            total_runs=sum(job.reported for job in jobs), paper_table=paper_table,
        )

    if report_only:
        if todo:
            logger.info(f"--report_only: {len(todo)} unfinished runs left out: "
                        + ", ".join(job.name for job in todo))
        todo = []
    for job in todo:  # a refused or missing stage-1 checkpoint stops the comparison before it trains
        if job.stage_one and _stage_one_name(job) in records:
            _stage_one_checkpoint(job, records[_stage_one_name(job)], out)
    for position, job in enumerate(todo, 1):
        logger.info(set_color(f"Run {position}/{len(todo)}: {job.label}, seed {job.seed}", "green")
                    + f" ({len(todo) - position} more after it)")
        stage_one = records[_stage_one_name(job)] if job.stage_one else None
        records[job.name] = _execute(job, out, config_file_list, stage_one)
        logger.info(set_color(f"{job.label}, seed {job.seed} done", "green") + ": "
                    + os.path.join(runs_dir, job.name + ".json"))
        report()
    summary = report()
    logger.info(set_color("Comparison written to ", "blue") + out)
    return summary


def default_out(dataset, config_file_list=None, overrides=None):
    """``results/<dataset>-<ranking>``, the folder of the canonical comparison of ``dataset`` under
    the ranking the settings ask for: ``excl`` with ``exclude_history``, ``all`` (RecBole's ranking
    of every item) otherwise."""
    config = Config(model="SASRec", dataset=dataset, config_file_list=config_file_list,
                    config_dict=dict(overrides or {}))
    return os.path.join("results", f"{dataset}-{'excl' if config['exclude_history'] else 'all'}")


def _init_logger(dataset, config_file_list, overrides):
    """RecBole's logger for the comparison's progress lines (file under ``log/compare/``).

    Building this config also checks that the dataset's files are there, before anything trains.
    """
    config = Config(model="SASRec", dataset=dataset, config_file_list=config_file_list,
                    config_dict=dict(overrides))
    check_dataset_files(config)
    _check_reported_metrics(config)
    config["model"] = "compare"
    init_logger(config)
    return getLogger()


def _check_reported_metrics(config):
    """The tables show the protocol's metrics, and NDCG@10 in the validation column and chart:
    settings without it are refused before anything trains, not found missing after training."""
    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    missing = [k for k in REPORTED_TOPK if k not in topk]
    if missing:
        raise ValueError(f"topk={topk} lacks {missing}: the comparison's validation column and chart "
                         f"show NDCG@10; add it to topk")
    metrics = config["metrics"] if isinstance(config["metrics"], list) else [config["metrics"]]
    metrics = [m.lower() for m in metrics]
    missing = [m for m in REPORTED_METRICS if m.lower() not in metrics]
    if missing:
        raise ValueError(f"metrics={config['metrics']} lacks {missing}: the comparison's validation "
                         f"column and chart show NDCG@10; add it to metrics")


def _command(dataset, models, seeds, out, config_file_list, overrides):
    """The ``run_compare.py`` command line equivalent to a call of :func:`compare`."""
    parts = ["python run_compare.py", f"--dataset={dataset}", "--seeds", *map(str, seeds),
             "--models", *models, f"--out={os.path.relpath(out)}"]
    if config_file_list:
        parts.append(f"--config_files='{' '.join(config_file_list)}'")
    parts += [f"--{key}={value}" for key, value in overrides.items()]
    return " ".join(parts)


def _load_record(runs_dir, job):
    """The finished run of ``job``, or None; ValueError naming the file if it is unreadable or
    was run with other settings (it is left untouched)."""
    path = os.path.join(runs_dir, job.name + ".json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        stored = record["settings"]
        if not isinstance(stored["config_dict"], dict) or not isinstance(stored.get("project_settings", {}), dict):
            raise TypeError("settings.config_dict and settings.project_settings must be objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"Cannot read the finished run {path} ({exc}): move it away to rerun it")
    wanted = json.loads(json.dumps(job.settings))
    if "pipeline" not in stored:
        raise ValueError(
            f"{path} does not record its pipeline ({', '.join(PIPELINE_KEYS)}): it was run before "
            f"runs recorded them, so it cannot be told apart from a run under other defaults. "
            f"Move it away to rerun {job.label} with seed {job.seed}, or add them under "
            f"settings.pipeline as that run's log shows them"
        )
    if "project_settings" not in stored:
        raise ValueError(
            f"{path} does not record the settings of the project's yaml files (project_settings): "
            f"it was run before runs recorded them, so it cannot be told apart from a run under "
            f"other defaults. Move it away to rerun {job.label} with seed {job.seed}"
        )
    # A key added to the files since the run counts as a difference too ("None then"): nothing
    # shows that its value is what the run had. Such records are reused once given the key.
    stored, wanted = _results_settings(stored), _results_settings(wanted)
    if stored != wanted:
        differences = _differences(stored, wanted)
        raise ValueError(
            f"{path} was run with other settings ({'; '.join(differences)}): use another --out, "
            f"or move that file away to rerun {job.label} with seed {job.seed}"
        )
    return record


def _results_settings(settings):
    """What a run computed with: the pipeline without the keys that change no number
    (``TIMING_ONLY_KEYS``), and as ``settings`` the values of ``config_dict`` over
    ``project_settings``, so that a value counts the same whether the command line or a project
    file gave it (``--n_heads=2`` matches a run made when the dataset's file said 2)."""
    pipeline = settings["pipeline"]
    if isinstance(pipeline, dict):
        pipeline = {key: value for key, value in pipeline.items() if key not in TIMING_ONLY_KEYS}
    rest = {key: value for key, value in settings.items() if key not in ("config_dict", "project_settings")}
    return {**rest, "pipeline": pipeline,
            "settings": {**settings["project_settings"], **settings["config_dict"]}}


def _differences(stored, wanted):
    keys = sorted(set(stored) | set(wanted))
    differences = []
    for key in keys:
        old, new = stored.get(key), wanted.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{key}.{d}" for d in _differences(old, new)]
        else:
            differences.append(f"{key}: {old!r} then, {new!r} now")
    return differences


def _stage_one_name(job):
    """The name (record file without ``.json``) of the run ``job`` is fine-tuned from."""
    return f"{job.stage_one}-seed{job.seed}"


def _check_started_from(job, records, runs_dir):
    """A finished FAME run must come from the stage-1 checkpoint of the run kept for its seed."""
    path = os.path.join(runs_dir, job.name + ".json")
    stage_one = records.get(_stage_one_name(job))
    # Compared as recorded: a FAME run records the stage-1 record's model_file verbatim, relative
    # (checkpoints/...) or, in records written before paths were relative, absolute.
    started_from = records[job.name].get("pretrained_path")
    if stage_one is None or stage_one.get("model_file") != started_from:
        now = f"is {stage_one.get('model_file')}" if stage_one else "is not finished"
        raise ValueError(
            f"{path} was fine-tuned from {started_from}, but the {job.stage_one} run of seed "
            f"{job.seed} {now}: move {job.name}.json away too, to rerun it from that stage 1"
        )


def recorded_checkpoint(out, record_file, recorded):
    """The file to load for the checkpoint a record of the comparison in ``out`` names
    (``recorded``, relative to ``out``), symlinks resolved; ValueError naming ``record_file`` if it
    is not inside ``<out>/checkpoints/``. Nothing is read."""
    # The real folder, not wherever a symlink named checkpoints/ (or one inside it) points.
    allowed = os.path.join(os.path.realpath(out), "checkpoints")
    refused = (f"only checkpoints inside {os.path.join(out, 'checkpoints', '')} are loaded (a "
               f"checkpoint is a pickle: loading it runs code)")
    # Recorded paths shown as repr: a planted one could hold a line break, and the error is one line.
    if not isinstance(recorded, str) or not recorded:
        raise ValueError(f"{record_file} names no checkpoint (model_file {recorded!r}): {refused}")
    if os.path.isabs(recorded):
        raise ValueError(f"{record_file} names its checkpoint by the absolute path {recorded!r}, as "
                         f"records written before paths were relative to the output folder do; such a "
                         f"path is never loaded: {refused}")
    resolved = os.path.realpath(os.path.join(out, recorded))
    if os.path.commonpath([resolved, allowed]) != allowed or resolved == allowed:
        raise ValueError(f"{record_file} names the checkpoint {recorded!r}, which resolves to "
                         f"{resolved!r}: {refused}")
    return resolved


def _stage_one_checkpoint(job, stage_one, out):
    """The file to load for the checkpoint that ``stage_one``'s record names (``job`` starts from
    it): :func:`recorded_checkpoint`, the error saying how to rerun that stage 1;
    FileNotFoundError if it is missing."""
    record_file = os.path.join(out, "runs", _stage_one_name(job) + ".json")
    rerun = f"move {record_file} away to rerun {job.stage_one} with seed {job.seed}"
    try:
        resolved = recorded_checkpoint(out, record_file, stage_one.get("model_file"))
    except ValueError as exc:
        raise ValueError(f"{exc}; {rerun}") from None
    if not os.path.isfile(resolved):
        raise FileNotFoundError(
            f"{job.label}, seed {job.seed} starts from {resolved}, the checkpoint of "
            f"{stage_one['model']} seed {job.seed}, which is missing: restore it, or {rerun}"
        )
    return resolved


def _relative_to_out(path, out):
    """``path`` (a file this run wrote under ``out``) as records name it: relative to ``out``."""
    return None if path is None else os.path.relpath(os.path.abspath(path), out)


def _execute(job, out, config_file_list, stage_one):
    """Train and test ``job`` in a child process; its record, also written to ``<out>/runs/``."""
    pretrained_path = _stage_one_checkpoint(job, stage_one, out) if stage_one is not None else None
    payload = {
        "label": job.label,
        "model": job.model,
        "seed": job.seed,
        "dataset": job.settings["dataset"],
        "config_file_list": config_file_list,
        "config_dict": {**job.config_dict, "checkpoint_dir": os.path.join(out, "checkpoints", job.name)},
        "pretrained_path": pretrained_path,  # to load
        "stage_one_file": stage_one["model_file"] if stage_one else None,  # to record
        "stage_one_seconds": stage_one["seconds"] if stage_one else None,
        "settings": job.settings,
        "out": out,
        "record_file": os.path.join(out, "runs", job.name + ".json"),
        "cwd": os.getcwd(),
    }
    context = _process_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(payload, sender), name=job.name)
    process.start()
    sender.close()
    try:
        reply = receiver.recv()
    except EOFError:
        reply = None
    except BaseException:  # interrupted: stop the run too, nothing of it is kept
        process.terminate()
        process.join()
        raise
    finally:
        receiver.close()
    process.join()
    if reply is None:
        raise RunFailed(
            f"{job.label}, seed {job.seed}: the run's process ended with exit code "
            f"{process.exitcode} without a result (killed? out of memory?)"
        )
    status, value = reply
    if status != "ok":
        raise RunFailed(f"{job.label}, seed {job.seed} failed: {value} (traceback above, log in "
                        f"log/{job.model}/)")
    return value


def _process_context():
    """Forkserver where there is one: the server imports torch and RecBole once and every run forks
    from it (a fraction of a second, not seconds), with a fresh memory peak; spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _child_main(payload, sender):
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value from the command line
    os.chdir(payload["cwd"])
    try:
        record = _train(payload)
    except Exception as exc:
        traceback.print_exc()
        sender.send(("error", f"{type(exc).__name__}: {exc}"))
        sys.exit(1)
    sender.send(("ok", record))


def _train(payload):
    """In the child: one run through quick_start, its costs, and its record written to disk."""
    import torch

    config_dict = dict(payload["config_dict"])
    if payload["pretrained_path"]:
        config_dict["pretrained_path"] = payload["pretrained_path"]
    result = run(model=payload["model"], dataset=payload["dataset"],
                 config_file_list=payload["config_file_list"], config_dict=config_dict, saved=True)
    cuda = torch.cuda.is_initialized()
    record = {
        "model": payload["label"],
        "model_class": payload["model"],
        "seed": payload["seed"],
        "dataset": payload["dataset"],
        "test_result": dict(result["test_result"]),
        "best_valid_result": dict(result["best_valid_result"] or {}),
        "best_valid_score": result["best_valid_score"],
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "seconds_per_epoch": result["seconds_per_epoch"],
        "parameters": result["parameters"],
        "seconds": result["seconds"],
        "stage_one_seconds": payload["stage_one_seconds"],
        "device": "cuda" if cuda else "cpu",
        "peak_rss_mib": _peak_rss_mib(),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        # Relative to <out>, so that no path of this machine is recorded; pretrained_path is the
        # stage-1 record's model_file as written there, for _check_started_from to match them.
        "model_file": _relative_to_out(result["model_file"], payload["out"]),
        "pretrained_path": payload["stage_one_file"],
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": payload["settings"],
    }
    os.makedirs(os.path.dirname(payload["record_file"]), exist_ok=True)
    write_json(payload["record_file"], record)
    return record


def _peak_rss_mib():
    """Peak resident memory of this process in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux
