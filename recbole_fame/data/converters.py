"""Raw benchmark files to RecBole atomic ``.inter`` files.

Three sources:

- ``sequences``: the preprocessed format of S3-Rec / ICLRec / FAME (``user item item ...``, one
  user a line, items in time order). The position in the line becomes the timestamp.
- ``movielens``: ``ratings.csv`` (ml-20m, ml-25m, ml-latest: header ``userId,movieId,rating,timestamp``)
  or ``ratings.dat`` (ml-1m: ``UserID::MovieID::Rating::Timestamp``).
- ``amazon``: reviews as json lines (``reviewerID``/``asin``/``unixReviewTime``, or
  ``user_id``/``parent_asin``/``timestamp``) or csv (``user,item,rating,time`` or ``user,item,time``).

``movielens`` and ``amazon`` apply the paper's 5-core filter (every user and item keeps at least
``min_core`` interactions), repeated until nothing changes. Bad input raises
:class:`ConversionError` naming the file and line; the output is written to a temporary file and
renamed, so an existing output is never left half-written.
"""

import csv
import json
import os
from collections import Counter

from recbole_fame.files import replacing


class ConversionError(ValueError):
    """A raw dataset file that cannot be converted; the message names the file and line."""


def _open_lines(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Input file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path} is empty")
    return open(path, encoding="utf-8", newline="")


def _number(value, path, line_no, what):
    try:
        return float(value)
    except ValueError:
        raise ConversionError(f"{path}:{line_no}: {what} {value!r} is not a number") from None


def _is_number(value):
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_sequences(path):
    """(user, item, position) rows from ``user item item ...`` lines."""
    rows = []
    with _open_lines(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ConversionError(
                    f"{path}:{line_no}: expected 'user item [item ...]', got {line.strip()!r}"
                )
            user = fields[0]
            rows.extend((user, item, position) for position, item in enumerate(fields[1:], 1))
    if not rows:
        raise ConversionError(f"{path} has no interactions")
    return rows


def read_movielens(path):
    """(user, item, rating, timestamp) rows from ``ratings.csv`` or ``ratings.dat``."""
    rows = []
    with _open_lines(path) as f:
        if path.endswith(".dat"):
            records = ((n, line.rstrip("\n").split("::")) for n, line in enumerate(f, 1))
        elif path.endswith(".csv"):
            reader = csv.reader(f)
            header = next(reader)
            if [h.strip() for h in header[:4]] != ["userId", "movieId", "rating", "timestamp"]:
                raise ConversionError(
                    f"{path}:1: expected the header 'userId,movieId,rating,timestamp', got {header}"
                )
            records = ((n, record) for n, record in enumerate(reader, 2))
        else:
            raise ConversionError(f"{path}: unknown MovieLens format (expected ratings.csv or ratings.dat)")
        for line_no, record in records:
            if record == [""] or not record:
                continue
            if len(record) != 4:
                raise ConversionError(
                    f"{path}:{line_no}: expected 4 columns (user, item, rating, timestamp), got {len(record)}"
                )
            user, item, rating, timestamp = record
            rows.append(
                (
                    user,
                    item,
                    _number(rating, path, line_no, "rating"),
                    _number(timestamp, path, line_no, "timestamp"),
                )
            )
    if not rows:
        raise ConversionError(f"{path} has no interactions")
    return rows


_AMAZON_JSON_KEYS = (("reviewerID", "asin", "unixReviewTime"), ("user_id", "parent_asin", "timestamp"))


def read_amazon(path):
    """(user, item, timestamp) rows from Amazon reviews as json lines or csv."""
    rows = []
    with _open_lines(path) as f:
        if path.endswith((".json", ".jsonl")):
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConversionError(f"{path}:{line_no}: not a json object ({exc})") from None
                keys = next((k for k in _AMAZON_JSON_KEYS if all(key in record for key in k)), None)
                if keys is None:
                    raise ConversionError(
                        f"{path}:{line_no}: expected the keys {' or '.join(map(str, _AMAZON_JSON_KEYS))}"
                    )
                user, item, time = (record[k] for k in keys)
                rows.append((str(user), str(item), _number(str(time), path, line_no, "time")))
        elif path.endswith(".csv"):
            for line_no, record in enumerate(csv.reader(f), 1):
                if not record:
                    continue
                if len(record) not in (3, 4):
                    raise ConversionError(
                        f"{path}:{line_no}: expected 'user,item,rating,time' or 'user,item,time', "
                        f"got {len(record)} columns"
                    )
                if line_no == 1 and not _is_number(record[-1]):
                    continue  # a header line
                rows.append((record[0], record[1], _number(record[-1], path, line_no, "time")))
        else:
            raise ConversionError(f"{path}: unknown Amazon format (expected .json, .jsonl or .csv)")
    if not rows:
        raise ConversionError(f"{path} has no interactions")
    return rows


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
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.inter")
    with replacing(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\t".join(columns) + "\n")
            for row in rows:
                f.write("\t".join(_format(v) for v in row) + "\n")
    return path


def _format(value):
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def convert(source, path, out_dir, name, min_core=5):
    """Convert one raw file; returns (output path, number of interactions written)."""
    if source == "sequences":
        rows = read_sequences(path)
        columns = ["user_id:token", "item_id:token", "timestamp:float"]
    elif source == "movielens":
        rows = k_core(read_movielens(path), min_core)
        columns = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    elif source == "amazon":
        rows = k_core(read_amazon(path), min_core)
        columns = ["user_id:token", "item_id:token", "timestamp:float"]
    else:
        raise ConversionError(f"unknown source {source!r}: use sequences, movielens or amazon")
    return write_atomic_inter(rows, columns, out_dir, name), len(rows)
