"""Raw benchmark files to RecBole atomic ``.inter`` files.

Three sources:

- ``sequences``: the preprocessed format of S3-Rec / ICLRec / FAME (``user item item ...``, one
  user a line, items in time order). The position in the line becomes the timestamp, so a user on
  two lines (identical or not) is refused: their timestamps would collide.
- ``movielens``: ``ratings.csv`` (ml-20m, ml-25m, ml-latest: header ``userId,movieId,rating,timestamp``)
  or ``ratings.dat`` (ml-1m: ``UserID::MovieID::Rating::Timestamp``).
- ``amazon``: reviews as json lines (``reviewerID``/``asin``/``unixReviewTime``, or
  ``user_id``/``parent_asin``/``timestamp``) or csv (``user,item,rating,time`` or ``user,item,time``).

``movielens`` and ``amazon`` apply the paper's 5-core filter (every user and item keeps at least
``min_core`` interactions), repeated until nothing changes.

Input must be UTF-8 (a leading byte-order mark is allowed); line ends may be ``\\n`` or ``\\r\\n``,
blank lines are skipped and the last line needs no line end. Bad input (bytes that are not
UTF-8, with the line and byte offset; a missing column; a number that is not a finite number; a
json line that is not an object; broken csv quoting; a user or item id that is empty or holds a
control character such as a tab, line break or NUL) raises :class:`ConversionError` naming the
file and line.

The output is ``out_dir/name/name.inter``. ``name`` must be a plain name (letters, digits, ``-``,
``_``, ``.``, starting with a letter or digit) and the output's real path (symbolic links
resolved) must lie inside ``out_dir``; both are checked before the input is read. The output is
written to a temporary file and renamed, so a failed conversion leaves an existing output as it
was and writes nothing.
"""

import contextlib
import csv
import json
import math
import os
import re
from collections import Counter

from recbole_fame.files import replacing


class ConversionError(ValueError):
    """A raw dataset file that cannot be converted; the message names the file and line."""


# ---------------------------------------------------------------------------------------------
# The output path


# ASCII only: the name becomes a folder and a file name, and must mean the same on every system.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(name):
    """Refuse a dataset name that is not a plain name (it would become a path of its own)."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
        raise ConversionError(
            f"dataset name {name!r} is not allowed: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit (a plain name, not a path)"
        )


def output_path(out_dir, name):
    """``out_dir/name/name.inter`` once it is sure to be a file inside ``out_dir``; nothing is created."""
    check_name(name)
    folder = os.path.join(out_dir, name)
    path = os.path.join(folder, f"{name}.inter")
    # A plain name cannot climb out, but a symbolic link already at ``name`` or ``name.inter`` can.
    root = os.path.realpath(out_dir)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise ConversionError(
            f"{path} resolves to {os.path.realpath(path)}, outside {root}: "
            "remove the symbolic link or choose another name"
        )
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ConversionError(f"{folder} exists and is not a folder")
    if os.path.isdir(path):
        raise ConversionError(f"{path} exists and is a folder")
    return path


# ---------------------------------------------------------------------------------------------
# Reading lines and fields


@contextlib.contextmanager
def _lines(path):
    """The input's lines as text with their line ends, checked to be UTF-8 as they are read."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Input file not found: {path}")
    if not os.path.isfile(path):
        raise ConversionError(f"{path} is not a file")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path} is empty")
    # Binary, decoded a line at a time: a decoding error then knows its line and byte offset,
    # which a text-mode file (decoding blocks of 8 KiB) cannot tell.
    with open(path, "rb") as f:
        yield _decoded(f, path)


def _decoded(binary_lines, path):
    """Each line of ``binary_lines`` as text, raising on bytes that are not UTF-8."""
    offset = 0
    for line_no, raw in enumerate(binary_lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversionError(
                f"{path}:{line_no}: bytes {raw[exc.start:exc.end]!r} at byte offset {offset + exc.start} "
                f"(counting from 0) are not UTF-8; the file must be UTF-8 "
                f"(convert it first, e.g. iconv -f latin1 -t utf-8)"
            ) from None
        if line_no == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark, as some editors write
        offset += len(raw)
        yield text


def _csv_records(lines, path):
    """(first line number, fields) for each csv record; quoted fields may span lines."""
    reader = csv.reader(lines, strict=True)
    line_no = 1
    try:
        for record in reader:
            yield line_no, record
            line_no = reader.line_num + 1  # where the next record starts
    except csv.Error as exc:
        raise ConversionError(f"{path}:{line_no}: malformed csv ({exc})") from None


def _shown(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, so one bad field cannot flood the error line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_blank(fields):
    """Whether a split line holds nothing but white space (such lines are skipped); ``,,,`` is
    not blank but a record of empty fields."""
    return len(fields) < 2 and not (fields and fields[0].strip())


def _number(value, path, line_no, what):
    """``value`` as a finite float; nan and inf are refused as they would poison sorting by time."""
    try:
        if isinstance(value, bool):  # json true/false: float() would take them for 1 and 0
            raise TypeError
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a json integer beyond float
        raise ConversionError(f"{path}:{line_no}: {what} {_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise ConversionError(f"{path}:{line_no}: {what} {_shown(value)} is not a finite number")
    return number


def _is_number(value):
    """Whether ``value`` reads as a number (used to tell a csv header from data)."""
    try:
        float(value)
    except ValueError:
        return False
    return True


# Control characters: a tab or line break in an id would corrupt the tab-separated .inter file.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _token(value, path, line_no, what):
    """``value`` as a user or item id, refusing one that is empty or holds a control character."""
    if type(value) is not str:  # json ids may be integers (not booleans, which are ints too)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConversionError(f"{path}:{line_no}: {what} {_shown(value)} is not a string or an integer")
        value = str(value)
    if not value or value.isspace() or _CONTROL.search(value):
        raise ConversionError(
            f"{path}:{line_no}: {what} {_shown(value)} is empty or holds a control character "
            f"(tab, line break, NUL)"
        )
    return value


def _no_rows(path):
    """The error for an input that holds no interaction at all."""
    return ConversionError(f"{path} has no interactions")


# ---------------------------------------------------------------------------------------------
# sequences


def read_sequences(path):
    """(user, item, position) rows from ``user item item ...`` lines, one line per user."""
    rows = []
    seen = {}  # user -> (line number, items), to name both lines of a repeated user
    with _lines(path) as lines:
        for line_no, text in enumerate(lines, 1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ConversionError(
                    f"{path}:{line_no}: expected 'user item [item ...]', got {_shown(text.strip())}"
                )
            user, items = fields[0], tuple(fields[1:])  # a tuple: the garbage collector can skip it
            _check_new_user(seen, user, items, path, line_no)
            rows.extend((user, item, position) for position, item in enumerate(items, 1))
    if not rows:
        raise _no_rows(path)
    return rows


def _check_new_user(seen, user, items, path, line_no):
    """Refuse a user already seen: positions restart on each line, so timestamps would collide.

    Identical lines are refused too: the file is then not one line per user (a file pasted twice,
    a bad join), and keeping one silently would hide that.
    """
    if user in seen:
        first, first_items = seen[user]
        how = "the same items" if first_items == items else "different items"
        raise ConversionError(
            f"{path}:{line_no}: user {_shown(user)} is on lines {first} and {line_no} ({how}); "
            f"a sequences file has one line per user"
        )
    seen[user] = (line_no, items)


# ---------------------------------------------------------------------------------------------
# movielens


_MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]


def read_movielens(path):
    """(user, item, rating, timestamp) rows from ``ratings.csv`` or ``ratings.dat``."""
    if not path.endswith((".dat", ".csv")):
        raise ConversionError(f"{path}: unknown MovieLens format (expected ratings.csv or ratings.dat)")
    rows = []
    with _lines(path) as lines:
        records = _dat_records(lines) if path.endswith(".dat") else _movielens_csv_records(lines, path)
        for line_no, record in records:
            if _is_blank(record):
                continue
            if len(record) != 4:
                raise ConversionError(
                    f"{path}:{line_no}: expected 4 columns (user, item, rating, timestamp), got {len(record)}"
                )
            user, item, rating, timestamp = record
            rows.append(
                (
                    _token(user, path, line_no, "user"),
                    _token(item, path, line_no, "item"),
                    _number(rating, path, line_no, "rating"),
                    _number(timestamp, path, line_no, "timestamp"),
                )
            )
    if not rows:
        raise _no_rows(path)
    return rows


def _dat_records(lines):
    """(line number, fields) of ``::``-separated lines, line ends removed."""
    return ((line_no, text.rstrip("\r\n").split("::")) for line_no, text in enumerate(lines, 1))


def _movielens_csv_records(lines, path):
    """(line number, fields) of the records after the ``userId,movieId,rating,timestamp`` header."""
    records = _csv_records(lines, path)
    line_no, header = next(records, (1, []))
    if [h.strip() for h in header[:4]] != _MOVIELENS_HEADER:
        raise ConversionError(
            f"{path}:{line_no}: expected the header 'userId,movieId,rating,timestamp', got {_shown(header)}"
        )
    return records


# ---------------------------------------------------------------------------------------------
# amazon


_AMAZON_JSON_KEYS = (("reviewerID", "asin", "unixReviewTime"), ("user_id", "parent_asin", "timestamp"))


def read_amazon(path):
    """(user, item, timestamp) rows from Amazon reviews as json lines or csv."""
    if path.endswith((".json", ".jsonl")):
        reader = _amazon_json_rows
    elif path.endswith(".csv"):
        reader = _amazon_csv_rows
    else:
        raise ConversionError(f"{path}: unknown Amazon format (expected .json, .jsonl or .csv)")
    with _lines(path) as lines:
        rows = list(reader(lines, path))
    if not rows:
        raise _no_rows(path)
    return rows


def _amazon_json_rows(lines, path):
    """(user, item, time) from json lines, one review object a line."""
    for line_no, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ConversionError(f"{path}:{line_no}: not a json object ({exc})") from None
        if not isinstance(record, dict):
            raise ConversionError(f"{path}:{line_no}: expected a json object {{...}}, got {_shown(record)}")
        keys = next((k for k in _AMAZON_JSON_KEYS if all(key in record for key in k)), None)
        if keys is None:
            raise ConversionError(
                f"{path}:{line_no}: expected the keys {' or '.join(map(str, _AMAZON_JSON_KEYS))}"
            )
        user, item, time = (record[k] for k in keys)
        yield (
            _token(user, path, line_no, keys[0]),
            _token(item, path, line_no, keys[1]),
            _number(time, path, line_no, keys[2]),
        )


def _amazon_csv_rows(lines, path):
    """(user, item, time) from ``user,item,rating,time`` or ``user,item,time`` csv, header optional."""
    first = True
    for line_no, record in _csv_records(lines, path):
        if _is_blank(record):
            continue
        if len(record) not in (3, 4):
            raise ConversionError(
                f"{path}:{line_no}: expected 'user,item,rating,time' or 'user,item,time', "
                f"got {len(record)} columns"
            )
        if first and not _is_number(record[-1]):
            first = False
            continue  # a header line
        first = False
        yield (
            _token(record[0], path, line_no, "user"),
            _token(record[1], path, line_no, "item"),
            _number(record[-1], path, line_no, "time"),
        )


# ---------------------------------------------------------------------------------------------
# Filtering and writing


def k_core(rows, min_core=5):
    """Keep rows whose user (column 0) and item (column 1) both have >= min_core rows, until stable."""
    while True:
        users = Counter(r[0] for r in rows)
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if users[r[0]] >= min_core and items[r[1]] >= min_core]
        if len(kept) == len(rows):
            return kept
        rows = kept


def write_atomic_inter(rows, columns, out_dir, name):
    """Write ``out_dir/name/name.inter``; returns its path. ``columns`` are RecBole ``field:type`` names."""
    if not rows:
        raise ConversionError(f"nothing left to write for '{name}' (all interactions were filtered out)")
    path = output_path(out_dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    path = output_path(out_dir, name)  # again: the folder may have appeared since the first check
    with replacing(path) as tmp:
        # "x": never write through a file or link already at the temporary name.
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(columns) + "\n")
            for row in rows:
                f.write("\t".join(_format(v) for v in row) + "\n")
    return path


def _format(value):
    """A field as text; whole floats without ``.0`` (timestamps, ratings)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Each source: its reader, whether the k-core filter applies, and the .inter columns.
_SOURCES = {
    "sequences": (read_sequences, False, ["user_id:token", "item_id:token", "timestamp:float"]),
    "movielens": (
        read_movielens,
        True,
        ["user_id:token", "item_id:token", "rating:float", "timestamp:float"],
    ),
    "amazon": (read_amazon, True, ["user_id:token", "item_id:token", "timestamp:float"]),
}


def convert(source, path, out_dir, name, min_core=5, overwrite=False):
    """Convert one raw file; returns (output path, number of interactions written). An existing
    output is replaced only with ``overwrite`` (it may be a hand-made file, or another source's)."""
    if source not in _SOURCES:
        raise ConversionError(f"unknown source {source!r}: use sequences, movielens or amazon")
    target = output_path(out_dir, name)  # refuse a bad name or output before reading anything
    if os.path.lexists(target) and not overwrite:
        raise ConversionError(f"{target} exists: add --overwrite to replace it, or choose another --name")
    reader, filtered, columns = _SOURCES[source]
    rows = reader(path)
    if filtered:
        rows = k_core(rows, min_core)
    return write_atomic_inter(rows, columns, out_dir, name), len(rows)
