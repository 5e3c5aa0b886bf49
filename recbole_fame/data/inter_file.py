"""A RecBole ``.inter`` atomic file checked line by line before RecBole reads it.

RecBole fills a missing float value with the column's mean and a missing token with padding
(``Dataset._fill_nan``): a row without its timestamp gets the mean time, which can move another
item into that user's test target without a word. A non-numeric value, a row with more fields
than the header, an empty file or a header without ``name:type`` columns fail inside pandas with
no file or line named. :func:`check_interaction_file` stops at the first such row with
:class:`DataFileError` naming the file, the line and the field.
"""

import re

import numpy as np
import pandas as pd

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
_CHUNK_ROWS = 1_000_000  # bounded memory on files of tens of millions of rows


class DataFileError(ValueError):
    """An atomic file RecBole would misread; the message names the file, line and field."""


def _header(path, separator, encoding):
    with open(path, "rb") as f:
        raw = f.readline()
    if not raw.strip():
        raise DataFileError(
            f"{path} is empty: an interaction file starts with a header such as "
            f"'user_id:token{separator}item_id:token{separator}timestamp:float'"
        )
    try:
        line = raw.decode(encoding).rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}:1: not {encoding} text (byte {exc.start})") from None
    columns = []
    for column in line.split(separator):
        name, colon, kind = column.partition(":")
        if not colon or not name or kind not in FIELD_TYPES:
            raise DataFileError(
                f"{path}:1: header column {column!r} is not 'name:type' with a type among "
                f"{', '.join(FIELD_TYPES)} (fields are separated by {separator!r})"
            )
        columns.append((name, kind))
    return columns


def _loaded(columns, config):
    """The columns RecBole loads from the interaction file (``load_col``, ``unload_col``)."""
    load_col, unload_col = config["load_col"], config["unload_col"]
    wanted = None if load_col is None else set((load_col or {}).get("inter", []))
    skipped = set((unload_col or {}).get("inter", []))
    return [
        (index, name, kind)
        for index, (name, kind) in enumerate(columns)
        if (wanted is None or name in wanted) and name not in skipped
    ]


def _check_required_fields(path, columns, loaded, config):
    names = [name for name, _ in columns]
    loaded_names = {name for _, name, _ in loaded}
    required = {"USER_ID_FIELD": config["USER_ID_FIELD"], "ITEM_ID_FIELD": config["ITEM_ID_FIELD"]}
    if (config["eval_args"] or {}).get("order") == "TO":  # ordered by time: the time is needed
        required["TIME_FIELD"] = config["TIME_FIELD"]
    for key, field in required.items():
        if field is not None and field not in loaded_names:
            where = "its header has" if field not in names else "load_col loads"
            raise DataFileError(
                f"{path}:1: no '{field}' column ({key}); {where} {sorted(loaded_names) if field in names else names}"
            )


_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _chunks(path, separator, width, encoding):
    """The rows after the header as strings, ``_CHUNK_ROWS`` at a time, blank lines kept (so
    that a row's index + 2 is its line number); a row with too many fields raises."""
    reader = pd.read_csv(
        path, sep=separator, header=None, skiprows=1, names=range(width), dtype=str, keep_default_na=False,
        skip_blank_lines=False, quoting=3, encoding=encoding, chunksize=_CHUNK_ROWS,
        engine="c" if len(separator) == 1 else "python",
    )
    try:
        yield from reader
    except pd.errors.ParserError as exc:  # pandas numbers the file's lines from 1, the skipped header included
        match = _PARSER_LINE.search(str(exc))
        if match is None:
            raise DataFileError(f"{path}: cannot be read as {separator!r}-separated fields ({exc})") from None
        _, line, saw = match.groups()
        raise DataFileError(f"{path}:{line}: {saw} fields, but the header has {width}") from None


def _first(mask):
    return int(np.flatnonzero(mask)[0])


def _first_undecodable_line(path, encoding):
    """(line number, byte offset in the file) of the first line that is not ``encoding`` text."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                return number, offset + exc.start
            offset += len(raw)
    return None, None


def _separators_only(path, line_numbers, separator):
    """The first of ``line_numbers`` that holds separators but no value: pandas reads such a
    line as empty values, which RecBole would fill in, while a truly blank line is skipped."""
    wanted = set(line_numbers)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number in wanted and raw.strip(b"\r\n"):
                return number
            if number > max(wanted):
                return None
    return None


def check_interaction_file(path, config):
    """Raise :class:`DataFileError` at the first problem of the interaction file ``path`` that
    RecBole would silently fill in or fail on without naming it. Blank lines are allowed (RecBole
    skips them). Returns the number of interaction rows."""
    separator = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    columns = _header(path, separator, encoding)
    loaded = _loaded(columns, config)
    _check_required_fields(path, columns, loaded, config)
    rows = 0
    try:
        for chunk in _chunks(path, separator, len(columns), encoding):
            rows += _check_rows(path, chunk, columns, loaded, separator)
    except UnicodeDecodeError:
        line, byte = _first_undecodable_line(path, encoding)
        raise DataFileError(f"{path}:{line}: not {encoding} text (byte {byte} of the file)") from None
    if rows == 0:
        raise DataFileError(f"{path} has a header but no interactions")
    return rows


def _check_rows(path, chunk, columns, loaded, separator):
    """Check one chunk of rows (as strings); returns how many are interactions (not blank)."""
    first_line = int(chunk.index[0]) + 2 if len(chunk) else 0
    values = chunk.to_numpy(dtype=object)
    # pandas reads a missing field and an empty one alike, as '': both are "no value" here.
    empty = values == ""
    blank = empty.all(axis=1)
    if blank.any():
        line = _separators_only(path, (first_line + np.flatnonzero(blank)).tolist(), separator)
        if line is not None:
            raise DataFileError(f"{path}:{line}: a line of separators without values")
    for index, name, kind in loaded:
        absent = empty[:, index] & ~blank
        if absent.any():
            row = _first(absent)
            raise DataFileError(
                f"{path}:{first_line + row}: no value for '{name}' (field {index + 1} of the header's {len(columns)})"
            )
        if kind == "float":
            column = values[:, index]
            numbers = pd.to_numeric(pd.Series(np.where(blank, "0", column)), errors="coerce").to_numpy()
            bad = ~np.isfinite(numbers)
            if bad.any():
                row = _first(bad)
                raise DataFileError(f"{path}:{first_line + row}: '{name}' is {column[row]!r}, not a finite number")
    return int((~blank).sum())
