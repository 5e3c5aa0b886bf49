"""What README.md, docs/ and results/ pages name still holds: links, commands, paths, Python names."""

import functools
import glob
import importlib
import os
import re
import shlex

import pytest
import yaml

from helpers import REPO, load_script

PAGES = sorted(
    [os.path.join(REPO, "README.md"), os.path.join(REPO, "results", "README.md")]
    + glob.glob(os.path.join(REPO, "docs", "*.md"))
    + glob.glob(os.path.join(REPO, "results", "*", "README.md"))
)
# The repository's own folders: a path in inline code that starts with one of them must exist.
REPO_FOLDERS = ("recbole_fame", "properties", "benchmarks", "results", "docs", "tests", "dataset_atomic")
SCRIPTS = ("run_fame.py", "run_compare.py", "run_hyper.py", "dataset_atomic/convert.py", "dataset_atomic/merge.py")


def _rel(path):
    return os.path.relpath(path, REPO)


def _text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _slug(heading):
    """GitHub's anchor of a markdown heading."""
    heading = heading.strip().lower().replace("`", "")
    heading = re.sub(r"[^\w\- ]", "", heading)
    return heading.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def _anchors(path):
    anchors = set()
    in_code = False
    for line in _text(path).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _prose_and_code(text):
    """(prose lines, lines of fenced code blocks)."""
    prose, code, in_code = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        else:
            (code if in_code else prose).append(line)
    return prose, code


def _inline_code(path):
    prose, _ = _prose_and_code(_text(path))
    return [span for line in prose for span in re.findall(r"`([^`]+)`", line)]


def _commands(path):
    """Every ``python <script> ...`` command of a page: lines of its code blocks and inline code."""
    _, code = _prose_and_code(_text(path))
    joined = []  # shell lines continued with a backslash, as one
    for line in code:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line)
    found = []
    for candidate in joined + _inline_code(path):
        candidate = candidate.strip()
        if not candidate.startswith("python "):
            continue
        args = shlex.split(candidate, comments=True)
        for stop in (">", "|", "&&"):  # shell redirections and chains end the command
            args = args[: args.index(stop)] if stop in args else args
        if len(args) < 2 or args[1] in ("-m", "-c") or "..." in args:
            continue  # python -m pytest; prose like "python run_compare.py ... --report_only"
        found.append(args[1:])
    return found


def test_pages_exist():
    names = [_rel(path) for path in PAGES]
    for needed in ("README.md", "results/README.md", "docs/usage.md", "docs/model.md", "docs/speed.md",
                   "docs/text-pretraining.md", "docs/experiments.md"):
        assert needed in names


def test_readme_is_short():
    assert len(_text(os.path.join(REPO, "README.md")).splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_lead_to_files_and_headings_that_exist(page):
    broken = []
    prose, _ = _prose_and_code(_text(page))
    for target in re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(resolved):
            broken.append(f"{target}: no such file")
        elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {_rel(resolved)}")
    assert not broken, f"{_rel(page)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_in_code_exist(page):
    missing = []
    for span in _inline_code(page):
        if span.split("/")[0] in REPO_FOLDERS and "/" in span and not re.search(r"[<>*{}\s]|\.\.\.", span):
            if not os.path.exists(os.path.join(REPO, span.rstrip("/"))):
                missing.append(span)
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"


def _resolve(dotted):
    """The object a dotted name starting with recbole_fame names (ImportError/AttributeError if none)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_python_names_exist(page):
    missing = []
    for span in _inline_code(page):
        match = re.match(r"(recbole_fame(?:\.[A-Za-z_]\w*)+)", span)
        if match:
            try:
                _resolve(match.group(1))
            except (ImportError, AttributeError):
                missing.append(match.group(1))
    assert not missing, f"{_rel(page)} names what recbole_fame does not have: {missing}"


@functools.lru_cache(maxsize=None)
def _known_keys():
    """Config keys of RecBole and of this project (its yaml files, and each model's config)."""
    import recbole

    from recbole_fame import Config

    keys = set()
    for folder in (os.path.join(os.path.dirname(recbole.__file__), "properties"),
                   os.path.join(REPO, "properties")):
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            with open(path, encoding="utf-8") as f:
                keys.update(yaml.safe_load(f) or {})
    for model in ("FAME", "SASRec", "GRU4Rec", "CORE"):
        keys.update(Config(model=model, dataset="ml-100k", config_dict={"data_path": REPO}).final_config_dict)
    return keys


def _check_config_args(args, where):
    from recbole_fame.removed import REMOVED_OPTIONS

    for arg in args:
        assert arg.startswith("--") and "=" in arg, f"{where}: {arg!r} is not --key=value"
        key = arg[2:].split("=", 1)[0]
        assert key in _known_keys() and key not in REMOVED_OPTIONS, f"{where}: --{key} is not a config key"


def _check_command(args, where, monkeypatch):
    script, argv = args[0], args[1:]
    if script == "run_fame.py":
        _, config_args = load_script("run_fame.py").parse_args(argv)
        _check_config_args(config_args, where)
    elif script == "run_compare.py":
        from recbole_fame.experiment.compare import parse_overrides, resolve_model
        from recbole_fame.removed import REMOVED_OPTIONS

        parsed, rest = load_script("run_compare.py").build_parser().parse_known_args(argv)
        parse_overrides(rest)
        _check_config_args(rest, where)
        for name in parsed.models:
            _, settings = resolve_model(name)
            for key in settings:  # a recorded variant may name an option removed since
                assert key in _known_keys() or key in REMOVED_OPTIONS, f"{where}: {name}: unknown key {key}"
    elif script == "run_hyper.py":
        _, rest = load_script("run_hyper.py").build_parser().parse_known_args(argv)
        _check_config_args(rest, where)
    elif script in ("dataset_atomic/convert.py", "dataset_atomic/merge.py"):
        load_script(script).build_parser().parse_args(argv)
    elif script.startswith("benchmarks/"):
        monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
        module = load_script(script)
        if hasattr(module, "parse_args") and script.endswith("text_pretrain.py"):
            module.parse_args(argv)
        else:
            module.build_parser().parse_args(argv)
    else:
        pytest.fail(f"{where}: unknown script {script}")


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_commands_parse_their_arguments(page, monkeypatch):
    commands = _commands(page)
    for args in commands:
        where = f"{_rel(page)}: python {' '.join(args)}"
        try:
            _check_command(args, where, monkeypatch)
        except SystemExit as exc:
            pytest.fail(f"{where}: argparse refused it ({exc})")


def test_the_checks_catch_what_they_should(tmp_path, monkeypatch):
    """The checks above fail on a broken link, a bad option and a removed key."""
    with pytest.raises(SystemExit):
        _check_command(["run_fame.py", "--explain"], "x", monkeypatch)  # needs --checkpoint
    with pytest.raises(AssertionError, match="--n_expertz is not a config key"):
        _check_command(["run_fame.py", "--n_expertz=4"], "x", monkeypatch)
    with pytest.raises(AssertionError, match="--head_mixing is not a config key"):
        _check_command(["run_compare.py", "--dataset=beauty", "--head_mixing=scores"], "x", monkeypatch)
    with pytest.raises(SystemExit):
        _check_command(["benchmarks/speed.py", "--repz=3"], "x", monkeypatch)
    assert _slug("Several processes: --nproc") == "several-processes---nproc"
    assert _slug("Options removed in 0.2.0") == "options-removed-in-020"
    assert _slug("`run_fame.py`: train") == "run_famepy-train"
