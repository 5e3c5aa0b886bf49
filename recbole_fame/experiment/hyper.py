"""Hyper-parameter search with RecBole's ``HyperTuning``, over FAME's two-stage pipeline.

RecBole's ``HyperTuning`` (hyperopt underneath; ``exhaustive`` walks the whole grid) calls an
objective for every point. Here the objective is ``quick_start.run`` with the point's values, and
FAME's stage 1 is shared: points that differ only in keys SASRec does not have (``n_experts``,
``final_residual``, ``expert_init``) build FAME from the same SASRec checkpoint, trained once on the
first of them. After every point the grid so far is written as Markdown, CSV and JSON, so an
interrupted search keeps what it measured.

The params file is RecBole's format, one key a line (``n_heads choice [1,2,4,8,16]``; also
``uniform low,high``, ``quniform low,high,q``, ``loguniform low,high``), plus ``#`` comments.
"""

import ast
import csv
import io
import logging
import os
import time
from logging import getLogger

import yaml
from recbole.trainer import HyperTuning
from recbole.utils import get_local_time

from recbole_fame import quick_start
from recbole_fame.config import Config, model_defaults_file, resolve_config_file
from recbole_fame.files import check_folder_outputs, write_json, write_text

SPACE_TYPES = {"choice": None, "uniform": 2, "quniform": 3, "loguniform": 2}  # type -> numbers


def stage_two_keys():
    """Keys of FAME's defaults that RecBole's SASRec does not read: they never change stage 1."""
    import recbole

    recbole_properties = os.path.join(os.path.dirname(recbole.__file__), "properties")
    keys = set()
    for path, sign in (
        (model_defaults_file("FAME"), 1),
        (os.path.join(recbole_properties, "model", "SASRec.yaml"), -1),
        (os.path.join(recbole_properties, "overall.yaml"), -1),
    ):
        with open(path) as f:
            names = set(yaml.safe_load(f) or {})
        keys = keys | names if sign > 0 else keys - names
    return frozenset(keys)


def read_params_file(path, config):
    """The search space of a params file as ``HyperTuning``'s ``params_dict``, checked line by line
    against ``config`` (a ``Config`` of the search's fixed settings)."""
    space = {}
    seen = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ValueError(f"{where}: expected 'name type values', got '{line}'")
        name, kind, text = parts
        if kind not in SPACE_TYPES:
            raise ValueError(f"{where}: unknown type '{kind}' for '{name}'; use one of {list(SPACE_TYPES)}")
        if name not in config:
            raise ValueError(f"{where}: '{name}' is not a config key of {config['model']}")
        if name in seen:
            raise ValueError(f"{where}: '{name}' is already searched on line {seen[name]}")
        if name in config.cmd_config_dict:
            raise ValueError(
                f"{where}: '{name}' is also set on the command line (--{name}=...), which would "
                "override every point of the search"
            )
        try:
            values = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"{where}: cannot read the values of '{name}': {text}") from None
        wanted = SPACE_TYPES[kind]
        if wanted is None and not (isinstance(values, (list, tuple)) and len(values) > 0):
            raise ValueError(f"{where}: 'choice' needs a non-empty list, like [1,2,4], got {text}")
        if wanted is not None and not (
            isinstance(values, tuple)
            and len(values) == wanted
            and all(isinstance(v, (int, float)) for v in values)
        ):
            raise ValueError(f"{where}: '{kind}' needs {wanted} numbers separated by commas, got {text}")
        space.setdefault(kind, {})[name] = list(values)
        seen[name] = lineno
    if not seen:
        raise ValueError(f"{path} names no hyper-parameter to search")
    return space, list(seen)


class TwoStageObjective:
    """The objective ``HyperTuning`` calls: one ``quick_start.run`` per point, stage 1 shared.

    ``rows`` holds one dict per point in the order they ran; ``stage_one`` maps the stage-1
    settings of a point (its values of keys other than :func:`stage_two_keys`) to the result of
    the SASRec trained for them.
    """

    def __init__(self, model, dataset, config_dict, names, on_point=None):
        self.model = model
        self.names = names  # the params file's order, kept in rows and tables
        self.dataset = dataset
        self.config_dict = dict(config_dict or {})
        self.on_point = on_point
        self.shared_keys = stage_two_keys()
        self.stage_one = {}
        self.rows = []

    def __call__(self, params, config_file_list=None):
        params = {name: _plain(params[name]) for name in self.names}
        point = {**self.config_dict, **params}
        config = Config(model=self.model, dataset=self.dataset, config_file_list=config_file_list, config_dict=point)
        stage = "none"
        pretrain_result = None
        if quick_start.trains_stage_one(config):
            key = tuple(sorted((k, repr(v)) for k, v in params.items() if k not in self.shared_keys))
            pretrain_result = self.stage_one.get(key)
            if pretrain_result is not None:
                point["pretrained_path"] = pretrain_result["model_file"]
                stage = "reused"
            else:
                stage = "trained"
        # RecBole's own objective does the same: every point logs to a file of its own.
        for handler in logging.getLogger().handlers[:]:
            logging.getLogger().removeHandler(handler)
        start = time.time()
        result = quick_start.run(self.model, self.dataset, config_file_list, point)
        if stage == "trained":
            pretrain_result = result["pretrain_result"]
            self.stage_one[key] = pretrain_result
        self.rows.append(
            {
                "trial": len(self.rows) + 1,
                "params": params,
                "stage_one": stage,
                "stage_one_file": pretrain_result["model_file"] if pretrain_result else None,
                "stage_one_valid_score": pretrain_result["best_valid_score"] if pretrain_result else None,
                "valid_metric": config["valid_metric"].lower(),
                "best_valid_score": result["best_valid_score"],
                "valid_score_bigger": result["valid_score_bigger"],
                "best_valid_result": dict(result["best_valid_result"]),
                "test_result": dict(result["test_result"]),
                "model_file": result["model_file"],
                "seconds": round(time.time() - start, 1),
            }
        )
        if self.on_point:
            self.on_point(self.rows)
        return result


def best_row(rows):
    """The row with the best validation score (the first of equals, in the order they ran)."""
    bigger = rows[0]["valid_score_bigger"]
    return max(rows, key=lambda r: (r["best_valid_score"] if bigger else -r["best_valid_score"], -r["trial"]))


def hyper_search(
    model="FAME",
    dataset="ml-100k",
    params_file="hyper/fame.hyper",
    config_file_list=None,
    config_dict=None,
    output_dir=None,
    algo="exhaustive",
    max_evals=100,
    early_stop=10,
    overwrite=False,
):
    """Search ``params_file``'s space for ``model`` on ``dataset`` and write the grid as tables.

    ``algo="exhaustive"`` runs every point of the grid. ``random`` and ``bayes`` run up to
    ``max_evals`` points, and stop earlier after ``early_stop`` points in a row without a better
    validation score (hyperopt's ``no_progress_loss``, which counts the first point as one of
    them; 0 or None: never), which is logged and noted in the tables.

    Returns a dict with ``best`` (the best row), ``rows`` (one per point, in the order they ran),
    ``stopped_early`` (whether a random or bayes search ran fewer than ``max_evals`` points) and
    ``files`` (the Markdown, CSV and JSON tables under ``output_dir``, by default
    ``<checkpoint_dir>/hyper-<model>-<dataset>-<time>/``), which replace only the tables of an
    earlier search there, unless ``overwrite``.
    """
    early_stop = early_stop or 0
    if isinstance(early_stop, bool) or not isinstance(early_stop, int) or early_stop < 0:
        raise ValueError(f"early_stop must be an integer >= 0 (0: never), got {early_stop!r}")
    params_file = resolve_config_file(params_file)
    base = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    space, names = read_params_file(params_file, base)
    output_dir = output_dir or os.path.join(
        base["checkpoint_dir"], f"hyper-{base['model']}-{base['dataset']}-{get_local_time()}"
    )
    check_folder_outputs(output_dir, GRID_FILES, "run_hyper.py", "# Hyper-parameter search: ", overwrite)
    os.makedirs(output_dir, exist_ok=True)
    files = {name.split(".")[1]: os.path.join(output_dir, name) for name in GRID_FILES}
    header = {
        "model": base["model"],
        "dataset": base["dataset"],
        "params_file": params_file,
        "algo": algo,
        # The limits of a random or bayes search; an exhaustive one runs the whole grid.
        **({} if algo == "exhaustive" else {"max_evals": max_evals, "early_stop": early_stop}),
    }

    def write(rows):
        write_tables(files, header, names, rows)

    objective = TwoStageObjective(model, dataset, config_dict, names, on_point=write)
    # An exhaustive search visits every point: hyperopt's early stop must not cut it short.
    tuner = HyperTuning(
        objective,
        params_dict=space,
        fixed_config_file_list=config_file_list,
        algo=algo,
        max_evals=max_evals,
        early_stop=10**9 if algo == "exhaustive" or not early_stop else early_stop,
    )
    tuner.run()
    rows = objective.rows
    logger = getLogger()
    stopped_early = algo != "exhaustive" and len(rows) < max_evals
    if stopped_early:
        header["stopped_early"] = True
        write(rows)
        logger.warning(
            f"The {algo} search stopped after {len(rows)} of max_evals={max_evals} points: "
            f"early_stop={early_stop} points without a better validation score (early_stop=0 runs them all)"
        )
    best = best_row(rows)
    logger.info(f"Best of {len(rows)} points: {best['params']}; tables in {output_dir}")
    return {"best": best, "rows": rows, "stopped_early": stopped_early, "files": files}


# The tables a search writes; the Markdown one, which names the search, first.
GRID_FILES = ("grid.md", "grid.csv", "grid.json")


def write_tables(files, header, names, rows):
    """The grid as Markdown (for a person), CSV (for a spreadsheet) and JSON (everything), each
    replaced whole so that an interrupted search leaves the last complete tables."""
    best = best_row(rows)
    metric = best["valid_metric"]
    test_metrics = list(best["test_result"])
    ordered = sorted(rows, key=lambda r: [_sort_key(r["params"][n]) for n in names])

    two_stage = any(r["stage_one"] != "none" for r in rows)
    table = []
    for row in ordered:
        stage_one = {"stage 1": row["stage_one"], f"SASRec valid {metric}": row["stage_one_valid_score"]}
        table.append(
            {
                **{n: row["params"][n] for n in names},
                **(stage_one if two_stage else {}),
                f"valid {metric}": row["best_valid_score"],
                **{f"test {m}": row["test_result"][m] for m in test_metrics},
                "seconds": row["seconds"],
                "best": row is best,
            }
        )
    columns = list(table[0])

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    write_text(files["csv"], buffer.getvalue())

    write_json(files["json"], {**header, "searched": names, "best": best, "rows": rows}, default=str)

    trained = sum(r["stage_one"] == "trained" for r in rows)
    reused = sum(r["stage_one"] == "reused" for r in rows)
    flags = " ".join(f"--{n}={best['params'][n]}" for n in names)
    lines = [
        f"# Hyper-parameter search: {header['model']} on {header['dataset']}",
        "",
        f"- params file: `{header['params_file']}`, search: {header['algo']}, points run: {len(rows)}"
        + _limits(header),
        f"- selection: best validation {metric} ({'higher' if best['valid_score_bigger'] else 'lower'} is better)",
        f"- best: {flags} (valid {metric} {best['best_valid_score']}, "
        f"test {metric} {best['test_result'].get(metric)}); its checkpoint: `{best['model_file']}`",
        *([f"- stage 1 (SASRec): trained {trained} times, reused {reused} times"] if two_stage else []),
        "",
        "| " + " | ".join(c for c in columns if c != "best") + " |",
        "|" + "---|" * (len(columns) - 1),
    ]
    for row in table:
        cells = ["-" if row[c] is None else str(row[c]) for c in columns if c != "best"]
        if row["best"]:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    write_text(files["md"], "\n".join(lines) + "\n")


def _limits(header):
    """How a random or bayes search was bounded, for the Markdown table ('' for exhaustive)."""
    if header["algo"] == "exhaustive":
        return ""
    stopped = "; stopped early, without a better validation score" if header.get("stopped_early") else ""
    return f" (max_evals {header['max_evals']}, early_stop {header['early_stop'] or 'off'}{stopped})"


def _plain(value):
    """hyperopt hands numpy scalars for numeric ranges; configs and JSON want Python numbers."""
    return value.item() if hasattr(value, "item") else value


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))
