"""Files a person or a later run reads (results, tables, figures, checkpoints), written whole.

Everything is written to a temporary file beside its destination and renamed over it
(``os.replace`` is atomic on one file system): an interruption or an error while writing leaves
the previous file intact, never half of a new one, and the temporary file is removed. The
temporary name carries the process id, so two processes writing the same file do not mix their
bytes. Folders are not created here: a missing one raises ``FileNotFoundError`` naming it.
"""

import contextlib
import json
import os


@contextlib.contextmanager
def replacing(path):
    """A temporary path to write ``path``'s new content to; renamed to ``path`` when the block
    ends without error, removed when it raises."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Cannot write {path}: folder {folder} does not exist")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def save_figure(figure, path, **kwargs):
    """``figure`` to ``path``, in the format its extension names (PNG without one); ``kwargs`` go
    to ``savefig`` (``dpi``, ``bbox_inches``)."""
    extension = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    with replacing(path) as tmp:
        figure.savefig(tmp, format=extension or "png", **kwargs)
