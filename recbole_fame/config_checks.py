"""A run's settings checked before anything is read or trained.

RecBole takes any value for any key: ``--n_heads=abc`` stays the string ``'abc'`` and fails deep
inside a layer, ``--epochs=0`` trains nothing and saves the untrained model, ``--loss_type=XYZ``
is read as BPR by some models, a misspelt ``--n_expertz=4`` is silently unused. Here every key
the pipeline, RecBole's trainer and evaluator, the sequential models and FAME read is checked for
its type and range (:class:`ConfigError`, one line naming the key, its value, where it was set
and what is allowed), and keys nobody reads are reported with the closest known key
(:func:`unknown_key_warnings`). A model adds its own keys' checks as a ``config_checks`` class
attribute (``{key: check}``, checks made with the functions below).
"""

import difflib
import functools
import importlib.util
import math
import os
import re

# RecBole's model folders, in the order its ``get_model`` searches them.
_RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


class ConfigError(ValueError):
    """A setting with a value the run cannot use; the message is one line naming the key."""


# Checks: each takes a value and returns None when it is allowed, else what is allowed.


def integer(minimum=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            return "an integer" + (f" >= {minimum}" if minimum is not None else "")
        return None

    return check


def number(minimum=None, above=None, below=None):
    """A finite int or float, ``>= minimum``, ``> above`` and ``< below`` where given."""
    bounds = [f"{sign} {bound}" for sign, bound in ((">=", minimum), (">", above), ("<", below)) if bound is not None]
    allowed = "a finite number" + (" " + " and ".join(bounds) if bounds else "")

    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return allowed
        if (minimum is not None and value < minimum) or (above is not None and value <= above) or (
            below is not None and value >= below
        ):
            return allowed
        return None

    return check


def boolean(value):
    return None if isinstance(value, bool) else "True or False"


def one_of(*choices, case_sensitive=True):
    def check(value):
        if isinstance(value, str) and (value if case_sensitive else value.lower()) in choices:
            return None
        return "one of " + ", ".join(repr(c) for c in choices)

    return check


def optional(check):
    """``check``, or None (``~`` in yaml, ``None`` on the command line)."""

    def optional_check(value):
        if value is None:
            return None
        problem = check(value)
        return None if problem is None else f"{problem} or None"

    return optional_check


def text(value):
    return None if isinstance(value, str) and value else "a non-empty string"


def _topk(value):
    values = value if isinstance(value, list) else [value]
    if values and all(integer(1)(v) is None for v in values):
        return None
    return "an integer >= 1 or a list of them"


# Keys of RecBole and of this pipeline that mean the same in every model that reads them.
COMMON_CHECKS = {
    "epochs": integer(0),  # 0: evaluate the model as built (zero-shot)
    "train_batch_size": integer(1),
    "eval_batch_size": integer(1),
    "learning_rate": number(above=0),
    "weight_decay": number(minimum=0),
    "stopping_step": integer(0),
    "eval_step": integer(0),  # 0: no validation
    "learner": one_of("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam", case_sensitive=False),
    "seed": integer(),
    "reproducibility": boolean,
    "show_progress": boolean,
    "topk": _topk,
    "metric_decimal_place": integer(0),
    "MAX_ITEM_LIST_LENGTH": integer(1),
    "hidden_size": integer(1),
    "embedding_size": integer(1),
    "inner_size": integer(1),
    "n_layers": integer(0),  # 0 is a valid depth for some models (LightGCN)
    "num_layers": integer(0),
    "n_heads": integer(1),
    "hidden_dropout_prob": number(minimum=0, below=1),
    "attn_dropout_prob": number(minimum=0, below=1),
    "dropout_prob": number(minimum=0, below=1),
    "layer_norm_eps": number(above=0),
    "initializer_range": number(above=0),
    "hidden_act": one_of("gelu", "relu", "swish", "tanh", "sigmoid"),
    "checkpoint_dir": text,
    "exclude_history": boolean,
    "train_exclude_history": boolean,
    "fast_layers": boolean,
    "length_groups": integer(1),
    "compact_sequences": boolean,
    "keep_freed_memory": boolean,
    "text_pretrain": boolean,
}

# loss_type is read by every sequential model; what each accepts.
SEQUENTIAL_LOSSES = ("CE", "BPR")


def _source(config, key):
    """Where ``config`` got ``key``'s value, for error messages."""
    if key in getattr(config, "cmd_config_dict", {}):
        return "command line"
    if key in getattr(config, "variable_config_dict", {}):
        return "config_dict"
    if key in getattr(config, "file_config_dict", {}):
        setting = [path for path, values in getattr(config, "config_file_settings", []) if key in values]
        return f"config file {setting[-1]}" if setting else "config file"
    return "default"


def _fail(config, key, allowed):
    raise ConfigError(f"{key}={config[key]!r} ({_source(config, key)}): must be {allowed}")


def check_keys(config, checks):
    """Raise :class:`ConfigError` for the first key of ``checks`` (``{key: check}``) whose value
    in ``config`` the check refuses. A default of None means "not set" and is not checked; a
    None the user gives is."""
    for key, check in checks.items():
        if (key in config and config[key] is not None) or key in getattr(config, "external_config_dict", {}):
            problem = check(config[key])
            if problem is not None:
                _fail(config, key, problem)


def check_values(config):
    """Raise :class:`ConfigError` for the first key of ``config`` (a RecBole ``Config``) whose
    value the run cannot use: the common keys, ``loss_type`` of sequential models, the model's
    own ``config_checks``, and the relations between keys (heads dividing the hidden size, the
    validation metric among the evaluated ones)."""
    check_keys(config, {**COMMON_CHECKS, **getattr(getattr(config, "model_class", None), "config_checks", {})})
    model_type = config["MODEL_TYPE"]
    if model_type is not None and model_type.name == "SEQUENTIAL" and "loss_type" in config:
        check_keys(config, {"loss_type": one_of(*SEQUENTIAL_LOSSES)})
    check_heads_divide_hidden_size(config)
    _check_valid_metric(config)


def check_heads_divide_hidden_size(config):
    """Raise :class:`ConfigError` when ``n_heads`` does not divide ``hidden_size`` for a model
    with heads (one whose defaults set ``n_heads``)."""
    if "n_heads" not in getattr(config, "internal_config_dict", {"n_heads": None}):
        return
    heads, hidden = config["n_heads"], config["hidden_size"]
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 and hidden % heads:
        raise ConfigError(
            f"hidden_size={hidden} ({_source(config, 'hidden_size')}) is not a multiple of "
            f"n_heads={heads} ({_source(config, 'n_heads')}): each head takes hidden_size / n_heads dimensions"
        )


def _check_valid_metric(config):
    """RecBole looks ``valid_metric`` up in the validation results after the first epoch: a
    metric or cut-off that is not evaluated would fail only then. (RecBole's Config itself
    refuses unknown metric names.)"""
    metrics = config["metrics"]
    valid = config["valid_metric"]
    if not isinstance(valid, str):
        _fail(config, "valid_metric", "a metric name such as 'NDCG@10'")
    name, _, cutoff = valid.partition("@")
    topk = config["topk"] if isinstance(config["topk"], list) else [config["topk"]]
    if name.lower() not in [m.lower() for m in metrics] or (cutoff and (not cutoff.isdigit() or int(cutoff) not in topk)):
        raise ConfigError(
            f"valid_metric={valid!r} ({_source(config, 'valid_metric')}) is not evaluated: metrics are "
            f"{metrics} at topk {topk}"
        )


# Unknown keys.


@functools.lru_cache(maxsize=None)
def _keys_read_in(folder):
    """Every ``config["key"]`` / ``config['key']`` the Python files under ``folder`` read."""
    keys = set()
    pattern = re.compile(r"config\[\s*[\"'](\w+)[\"']\s*\]")
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    keys.update(pattern.findall(f.read()))
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def _keys_in_yaml(folder):
    """Top-level keys of every yaml file under ``folder`` (``key:`` at the start of a line)."""
    keys = set()
    pattern = re.compile(r"^([A-Za-z_]\w*)\s*:", re.M)
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name.endswith((".yaml", ".yml")):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    keys.update(pattern.findall(f.read()))
    return frozenset(keys)


# The options of run_fame.py, run_compare.py and run_hyper.py: RecBole's Config reads every
# --key=value of the command line, these included, though the scripts take them.
SCRIPT_OPTIONS = frozenset({
    "algo", "checkpoint", "config_files", "dataset", "early_stop", "explain", "explain-summary", "explain_topk",
    "group_offset", "ip", "max_evals", "model", "models", "nproc", "out", "output_dir", "overwrite",
    "paper_table", "params_file", "plot", "port", "report_only", "resume", "seeds", "user", "world_size",
})


def known_keys(yaml_folders=()):
    """Keys RecBole, its models or this package read or set defaults for (in RecBole's yaml
    files, ``yaml_folders`` and the code of both), and the scripts' options."""
    import recbole

    recbole_dir = os.path.dirname(recbole.__file__)
    package_dir = os.path.dirname(os.path.abspath(__file__))
    keys = _keys_read_in(recbole_dir) | _keys_in_yaml(os.path.join(recbole_dir, "properties"))
    for folder in yaml_folders:
        keys |= _keys_in_yaml(folder)
    return keys | _keys_read_in(package_dir) | SCRIPT_OPTIONS


def unknown_key_warnings(config, yaml_folders=()):
    """One line per key the user set (command line, config files, config_dict) that nothing
    reads, with the closest known key when there is one; ``yaml_folders`` hold defaults too."""
    known = known_keys(tuple(yaml_folders))
    lines = []
    for key in getattr(config, "external_config_dict", {}):
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        lines.append(
            f"config key '{key}' ({_source(config, key)}) is not read by RecBole or recbole-fame and is ignored{hint}"
        )
    return lines


# Model names.


@functools.lru_cache(maxsize=None)
def recbole_model_names():
    """RecBole's model class names, read from its model folders without importing them
    (RecBole's ``get_model`` imports ``exlib_recommender``, which needs xgboost and lightgbm)."""
    base = importlib.util.find_spec("recbole.model").submodule_search_locations[0]
    names = set()
    for package in _RECBOLE_MODEL_PACKAGES:
        folder = os.path.join(base, package)
        for name in os.listdir(folder):
            if not name.endswith(".py") or name == "__init__.py":
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                classes = re.findall(r"^class (\w+)\(", f.read(), re.M)
            names.update(c for c in classes if c.lower() == name[:-3])
    return frozenset(names)


def check_model_name(name, plugin_models):
    """Raise :class:`ConfigError` unless ``name`` is one of ``plugin_models`` or a RecBole model."""
    known = set(plugin_models) | recbole_model_names()
    if name in known:
        return
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[name.lower()]] if isinstance(name, str) and name.lower() in by_lower else (
        difflib.get_close_matches(str(name), sorted(known), n=3, cutoff=0.6)
    )
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"model {name!r} is neither recbole-fame's ({', '.join(plugin_models)}) nor a RecBole model: {hint}"
        f"RecBole's sequential models include SASRec, GRU4Rec, CORE, BERT4Rec, NARM, STAMP, Caser"
    )
