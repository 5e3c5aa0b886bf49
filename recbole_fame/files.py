"""Files a person or a later run reads (results, tables, figures, checkpoints), written whole,
and never over a file the command did not write.

Everything is written to a temporary file beside its destination and renamed over it
(``os.replace`` is atomic on one file system): an interruption or an error while writing leaves
the previous file intact, never half of a new one, and the temporary file is removed. The
temporary name carries the process id, so two processes writing the same file do not mix their
bytes; one left by a process killed while writing (SIGKILL skips the clean-up) is removed by the
next write of that file. Folders are not created here: a missing one raises ``FileNotFoundError``
naming it.

An output a user names (a figure, a table) may replace only a previous output of the same
command (:func:`check_replaceable`): each writer leaves its mark (:func:`output_mark` in a
markdown file, a PNG's ``Software`` text), and anything else needs ``overwrite``.
"""

import contextlib
import json
import os
import re
import time


@contextlib.contextmanager
def replacing(path):
    """A temporary path to write ``path``'s new content to; renamed to ``path`` when the block
    ends without error, removed when it raises."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist")
    remove_stale_temporaries(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path):
    """Remove ``<path>.tmp<pid>`` files of processes that no longer run: what a process killed
    while writing ``path`` left behind."""
    folder, name = os.path.split(os.path.abspath(path))
    _remove_stale(folder, re.escape(name))


def remove_stale_temporaries_in(folder, extension, min_age_seconds=600):
    """Remove every ``*<extension>.tmp<pid>`` in ``folder`` of a process that no longer runs and
    untouched for ``min_age_seconds`` (the temporary checkpoints of runs killed while saving, whose
    names no later run writes again): the age keeps a file another machine is writing into a
    shared folder, whose process this machine cannot see."""
    _remove_stale(folder, r".+" + re.escape(extension), min_age_seconds)


def _remove_stale(folder, name_pattern, min_age_seconds=0):
    pattern = re.compile(name_pattern + r"\.tmp(\d+)")
    now = time.time()
    for entry in os.listdir(folder) if os.path.isdir(folder) else ():
        match = pattern.fullmatch(entry)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                if now - os.path.getmtime(os.path.join(folder, entry)) >= min_age_seconds:
                    os.remove(os.path.join(folder, entry))


def output_mark(producer):
    """The line a markdown output of ``producer`` (a command, e.g. ``run_fame.py --explain-summary``)
    ends with: an HTML comment, invisible where the markdown is shown."""
    return f"<!-- written by recbole-fame {producer} -->"


def _png_software(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get("Software")
    except (OSError, ValueError):
        return None


def is_output_of(path, producer, legacy=None):
    """Whether the existing file ``path`` was written by ``producer``: a PNG carrying its
    ``Software`` text, a text file holding :func:`output_mark` or, for files written before the
    marks existed, the text ``legacy`` in its first 4 KB."""
    if os.path.splitext(os.fspath(path))[1].lower() == ".png":
        return _png_software(path) == f"recbole-fame {producer}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return False
    return output_mark(producer) in text or (legacy is not None and legacy in text[:4096])


def check_replaceable(path, producer, overwrite=False, legacy=None):
    """Raise ``FileExistsError`` when ``path`` exists and is neither a previous output of
    ``producer`` (:func:`is_output_of`) nor allowed to go (``overwrite``)."""
    if overwrite or not os.path.lexists(path):
        return
    if os.path.isdir(path) or not is_output_of(path, producer, legacy):
        raise FileExistsError(
            f"{path} exists and was not written by {producer}: name another file, or add --overwrite to replace it"
        )


def check_folder_outputs(folder, names, producer, legacy=None, overwrite=False):
    """``FileExistsError`` when ``folder`` holds one of the files ``names`` that ``producer``
    writes there while the first of them, which vouches for the rest (outputs of earlier versions
    carry no mark of their own), is not a previous output of ``producer`` (:func:`is_output_of`)."""
    existing = [name for name in names if os.path.lexists(os.path.join(folder, name))]
    if overwrite or not existing:
        return
    first = os.path.join(folder, names[0])
    if not (os.path.isfile(first) and is_output_of(first, producer, legacy)):
        raise FileExistsError(
            f"{os.path.join(folder, existing[0])} exists and was not written by {producer}: "
            "choose another folder, or add --overwrite to replace it"
        )


def write_text(path, text):
    """``text`` to ``path`` in UTF-8, exactly as given (no newline translation)."""
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def write_json(path, data, **kwargs):
    """``data`` as indented JSON to ``path`` (``kwargs`` go to ``json.dumps``, e.g. ``default=str``)."""
    write_text(path, json.dumps(data, indent=2, **kwargs) + "\n")


def new_figure(**kwargs):
    """A matplotlib ``Figure`` (``kwargs`` as for ``Figure``) drawn by the Agg canvas.

    The object API, not pyplot: no global backend switch and no figure registry in the caller's
    process (a notebook keeps its backend), and nothing to close.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path, producer=None, **kwargs):
    """``figure`` to ``path``, in the format its extension names (PNG without one); ``kwargs`` go
    to ``savefig`` (``dpi``, ``bbox_inches``). A PNG carries ``producer``'s mark (:func:`is_output_of`)."""
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    if producer is not None and extension == "png":
        kwargs["metadata"] = {**kwargs.get("metadata", {}), "Software": f"recbole-fame {producer}"}
    with replacing(path) as tmp:
        figure.savefig(tmp, format=extension, **kwargs)
