"""Options removed from recbole-fame, each with the one value whose behaviour was kept.

Every non-default value of these options was measured and not adopted (``docs/model.md`` and
``docs/speed.md`` keep the measurements), so 0.2.0 removed them. A config or checkpoint that sets
one to the value kept still works, as before; any other value names the key, since no code builds
that model or pipeline any more.
"""

REMOVED_IN = "0.2.0"

# key -> the value whose behaviour every version since REMOVED_IN has (None: any value, the key
# did nothing under the kept values of the others), where its measurements are, and what it
# changed: the model ("model": a checkpoint with another value cannot be rebuilt) or only how it
# was trained ("training": such a checkpoint still loads, but does not resume).
REMOVED_OPTIONS = {
    "head_mixing": ("scores", "docs/model.md", "model"),
    "positions_from": ("start", "docs/model.md", "model"),
    "scoring": ("dot", "docs/model.md", "model"),
    "scoring_temperature": (None, "docs/model.md", "model"),
    "facet_projection_init": ("selector", "docs/model.md", "model"),
    "length_bucketing": (False, "docs/speed.md", "training"),
    "bucket_pool_batches": (None, "docs/speed.md", "training"),
}


def removed_settings(config, scopes=("model", "training")):
    """The removed options of ``scopes`` that ``config`` (a RecBole ``Config`` or a dict) sets to a
    value other than the one kept, as ``{key: value}``."""
    found = {}
    for key, (kept, _, scope) in REMOVED_OPTIONS.items():
        value = config[key] if key in config else None
        if scope in scopes and kept is not None and value is not None and value != kept:
            found[key] = value
    return found


def check_removed_options(config, where, scopes=("model", "training")):
    """ValueError naming the first removed option of ``scopes`` that ``config`` sets to a value no
    longer built; ``where`` says whose config it is (a model, a file)."""
    for key, value in removed_settings(config, scopes).items():
        kept, docs, _ = REMOVED_OPTIONS[key]
        raise ValueError(
            f"{where}: {key}={value!r} is an option recbole-fame removed in {REMOVED_IN}, after its "
            f"measurements ({docs}); only {key}={kept!r} is built now. Remove the key, or use "
            f"recbole-fame < {REMOVED_IN} for that setting"
        )
