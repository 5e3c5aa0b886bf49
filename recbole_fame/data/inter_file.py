"""A RecBole ``.inter`` atomic file checked line by line before RecBole reads it.

RecBole fills a missing float value with the column's mean and a missing token with padding
(``Dataset._fill_nan``): a row without its timestamp gets the mean time, which can move another
item into that user's test target without a word. A non-numeric value, a row with more fields
than the header, an empty file or a header without ``name:type`` columns fail inside pandas with
no file or line named. :func:`check_interaction_file` stops at the first such row with
:class:`DataFileError` naming the file, the line and the field.
"""

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
    inter = None if load_col is None else load_col.get("inter", [])
    wanted = None if inter == "*" or inter is None else set(inter)  # RecBole: '*' loads every column
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


_BLOCK = 1 << 26  # bytes read at a time when counting fields


def _check_field_counts(path, separator, names):
    """Every line after the header has ``width`` fields (blank lines aside), and no field holds
    a double quote, which RecBole's reader takes for the start of a quoted field (a stray one
    merges the lines after it). Counted on the bytes, block by block: pandas silently takes a
    first row with one field too many for one with an index column."""
    sep, quote, newline = ord(separator), ord('"'), ord("\n")
    line_number = 2
    with open(path, "rb") as f:
        f.readline()  # the header
        rest = b""
        while True:
            block = f.read(_BLOCK)
            data = rest + block
            if not block:  # the last line, without its line end
                data, rest = (data + b"\n" if data else data), b""
            else:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
            if data:
                line_number += _check_block(path, np.frombuffer(data, dtype=np.uint8), sep, quote, newline,
                                            names, line_number)
            if not block:
                return


def _check_block(path, data, sep, quote, newline, names, first_line):
    """:func:`_check_field_counts` for whole lines ``data`` starting at line ``first_line``;
    returns the number of lines."""
    ends = np.flatnonzero(data == newline)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts
    blank = (lengths == 0) | ((lengths == 1) & (data[np.minimum(starts, len(data) - 1)] == 13))
    fields = np.bincount(np.searchsorted(ends, np.flatnonzero(data == sep)), minlength=len(ends)) + 1
    wrong = (fields != len(names)) & ~blank
    if wrong.any():
        line = _first(wrong)
        missing = f" (no value for '{names[fields[line]]}')" if fields[line] < len(names) else ""
        raise DataFileError(
            f"{path}:{first_line + line}: {fields[line]} fields, but the header has {len(names)}{missing}"
        )
    quotes = np.flatnonzero(data == quote)
    if len(quotes):
        line = int(np.searchsorted(ends, quotes[0]))
        raise DataFileError(
            f"{path}:{first_line + line}: a value holds a double quote (\"), which RecBole's reader takes "
            "for quoting: remove it from the file"
        )
    return len(ends)


def _chunks(path, separator, width, encoding):
    """The rows after the header as strings, ``_CHUNK_ROWS`` at a time, blank lines kept (so
    that a row's index + 2 is its line number). Every line has ``width`` fields by now."""
    return pd.read_csv(
        path, sep=separator, header=None, skiprows=1, names=range(width), index_col=False, dtype=str,
        keep_default_na=False, skip_blank_lines=False, quoting=3, encoding=encoding, chunksize=_CHUNK_ROWS,
        engine="c" if len(separator) == 1 else "python",
    )


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
    if len(separator) == 1:  # a longer one is rare: pandas' python engine then names the line
        _check_field_counts(path, separator, [name for name, _ in columns])
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
        if kind not in ("token", "float"):  # a sequence may be empty
            continue
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
