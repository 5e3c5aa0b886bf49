"""Datasets whose items have text, as RecBole atomic files: ``<name>.inter`` plus ``<name>.item``
with a ``text`` field (MIRACLE's item text; FAME's text pre-training reads the same file).

Three sources:

- ``benchmark``: RecBole benchmark files already split by leave-one-out, as UniSRec and MIRACLE
  publish their downstream sets (``Scientific/``): ``<name>.{train,valid,test}.inter`` (user,
  ``item_id_list``, ``item_id``; train holds every prefix of each history, capped at the longest
  list), ``<name>.text`` (ASIN -> text), ``<name>.item2index`` and ``<name>.user2index``. Each
  user's whole history is rebuilt from its rows (the first item of its shortest prefix, then every
  target in order) and checked against every row, so RecBole's leave-one-out on the written
  ``.inter`` gives back exactly the published split (and histories the 50-item cap had cut).
- ``json``: ``<name>.inter.json`` (``{user: [item, ...]}`` in time order) and
  ``<name>.item.json`` (``{item: {title, description, brand, categories}}``), the LC-Rec form of
  the Amazon 2014 sets (``Office/``).
- ``merge`` (:func:`merge_datasets`): several such datasets as one, for MIRACLE's pre-training on
  several domains: user and item ids prefixed by their dataset (``Office/12``), so they never
  collide, and each item's text composed from its own dataset's fields.

Positions in a history become the timestamps. Item text is written as one ``text`` field,
"title. categories. brand." for the Amazon sets (UniSRec's and MIRACLE's form), plus the parts
it was made of. Bad input raises :class:`~recbole_fame.data.converters.ConversionError` naming
the file and line: a row that contradicts the user's other rows, an item without text, an id
that is not in the index files.
"""

import json
import os
from collections import defaultdict

from recbole_fame.data.converters import (
    ConversionError,
    _lines,
    _shown,
    output_path,
    write_atomic_inter,
)
from recbole_fame.files import replacing

INTER_COLUMNS = ["user_id:token", "item_id:token", "timestamp:float"]
# The item file's columns: ``text`` is what MIRACLE encodes; the others are kept for facets and
# explanations (``token``: a whole category path or brand is one label).
ITEM_COLUMNS = ["item_id:token", "text:token_seq", "title:token_seq", "categories:token", "brand:token"]


def amazon_text(title, categories, brand):
    """``"title. categories. brand."``, the item text of UniSRec's and MIRACLE's Amazon sets."""
    return ". ".join(part.strip() for part in (title, categories, brand)) + "."


def _clean(value):
    """A field value on one line: tabs and line breaks would end the atomic file's field or row."""
    return " ".join(str(value).split())


# ---------------------------------------------------------------------------------------------
# benchmark: the published leave-one-out split


def _tsv_rows(path, columns=None):
    """(header, rows): the first line's tab-separated names, and (line number, fields) for each
    data line, checked to have as many fields; ``columns``: the header it must be."""
    with _lines(path) as lines:
        header = next(lines, "").rstrip("\r\n").split("\t")
        if columns is not None and header != columns:
            raise ConversionError(f"{path}:1: expected the header {columns}, got {header}")
        rows = []
        for line_no, text in enumerate(lines, 2):
            text = text.rstrip("\r\n")
            if not text:
                continue
            fields = text.split("\t")
            if len(fields) != len(header):
                raise ConversionError(
                    f"{path}:{line_no}: expected {len(header)} tab-separated fields, got {len(fields)}"
                )
            rows.append((line_no, fields))
    return header, rows


def _index_file(path):
    """``{index: raw id}`` from an ``<raw id>\\t<index>`` file."""
    ids = {}
    with _lines(path) as lines:
        for line_no, text in enumerate(lines, 1):
            text = text.rstrip("\r\n")
            if not text:
                continue
            fields = text.split("\t")
            if len(fields) != 2 or not fields[1].isdigit():
                raise ConversionError(f"{path}:{line_no}: expected '<raw id>\\t<index>', got {_shown(text)}")
            if fields[1] in ids:
                raise ConversionError(f"{path}:{line_no}: index {fields[1]} given twice")
            ids[fields[1]] = fields[0]
    return ids


def _split_text(text):
    """(title, categories, brand) of a "title. categories. brand." text, or (text, '', '')."""
    parts = text.rstrip().removesuffix(".").rsplit(". ", 2)
    if len(parts) != 3:
        return text.strip(), "", ""
    return tuple(part.strip() for part in parts)


def read_benchmark(folder, name):
    """``(rows, items)``: (user, item, position) rows of every whole history and ``{item: text}``
    for the benchmark files ``folder/name.*``."""
    path = lambda suffix: os.path.join(folder, f"{name}.{suffix}")  # noqa: E731
    users = _index_file(path("user2index"))
    items = _index_file(path("item2index"))
    texts = {}
    for line_no, (asin, text) in _tsv_rows(path("text"), ["item_id:token", "text:token_seq"])[1]:
        if asin in texts:
            raise ConversionError(f"{path('text')}:{line_no}: item {_shown(asin)} has a second text")
        texts[asin] = _clean(text)
    missing = [asin for asin in items.values() if asin not in texts]
    if missing:
        raise ConversionError(
            f"{path('text')} has no text for {len(missing)} of the {len(items)} items of "
            f"{path('item2index')} (first: {_shown(missing[0])}): text and interactions do not match"
        )

    columns = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
    histories = {}
    for split in ("train", "valid", "test"):
        by_user = defaultdict(list)
        for line_no, (user, history, target) in _tsv_rows(path(f"{split}.inter"), columns)[1]:
            by_user[user].append((line_no, history.split(), target))
        for user, rows in by_user.items():
            if split == "train":
                # The file lists a user's prefixes from the longest: rebuild from the shortest.
                rows = rows[::-1]
            for line_no, history, target in rows:
                _extend(histories, user, history, target, path(f"{split}.inter"), line_no)
    for user, sequence in histories.items():
        for item in sequence:
            if item not in items:
                raise ConversionError(f"{path('item2index')} has no item with index {item} (user {user})")
        if user not in users:
            raise ConversionError(f"{path('user2index')} has no user with index {user}")
    rows = [
        (users[user], items[item], position)
        for user, sequence in histories.items()
        for position, item in enumerate(sequence, 1)
    ]
    if not rows:
        raise ConversionError(f"{path('train.inter')} and the other splits hold no interactions")
    used = {items[item] for sequence in histories.values() for item in sequence}
    return rows, {asin: texts[asin] for asin in sorted(used)}


def _extend(histories, user, history, target, path, line_no):
    """Append ``target`` to ``user``'s history after checking that ``history`` is its end."""
    if not history:
        raise ConversionError(f"{path}:{line_no}: user {user} has an empty item_id_list")
    sequence = histories.setdefault(user, list(history))
    if sequence[-len(history):] != history:
        raise ConversionError(
            f"{path}:{line_no}: user {user}'s history {_shown(' '.join(history))} is not the end of "
            f"the items before it in the other rows ({_shown(' '.join(sequence[-len(history):]))})"
        )
    sequence.append(target)


# ---------------------------------------------------------------------------------------------
# json: {user: [items]} and {item: {title, description, brand, categories}}


def _json_object(path):
    with _lines(path) as lines:
        content = "".join(lines)
    try:
        value = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ConversionError(f"{path}:{exc.lineno}: not valid json ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: expected a json object, got {type(value).__name__}")
    return value


def read_json_pair(inter_path, item_path):
    """``(rows, items, parts)``: (user, item, position) rows, ``{item: text}`` and
    ``{item: (title, categories, brand)}`` from the LC-Rec json pair."""
    sequences = _json_object(inter_path)
    metadata = _json_object(item_path)
    rows = []
    for user, sequence in sequences.items():
        if not isinstance(sequence, list) or not sequence:
            raise ConversionError(f"{inter_path}: user {_shown(user)} has no list of items")
        rows.extend((str(user), str(item), position) for position, item in enumerate(sequence, 1))
    if not rows:
        raise ConversionError(f"{inter_path} has no interactions")
    used = sorted({item for _, item, _ in rows}, key=lambda item: (len(item), item))
    missing = [item for item in used if item not in metadata]
    if missing:
        raise ConversionError(
            f"{item_path} has no entry for {len(missing)} of the {len(used)} items of {inter_path} "
            f"(first: {_shown(missing[0])}): text and interactions do not match"
        )
    texts, parts = {}, {}
    for item in used:
        entry = metadata[item]
        if not isinstance(entry, dict):
            raise ConversionError(f"{item_path}: item {_shown(item)} is not an object")
        title, categories, brand = (_clean(entry.get(key) or "") for key in ("title", "categories", "brand"))
        if not (title or categories or brand):
            raise ConversionError(f"{item_path}: item {_shown(item)} has no title, categories or brand")
        texts[item] = amazon_text(title, categories, brand)
        parts[item] = (title, categories, brand)
    return rows, texts, parts


# ---------------------------------------------------------------------------------------------
# writing


def item_path(out_dir, name):
    return os.path.join(os.path.dirname(output_path(out_dir, name)), f"{name}.item")


def write_atomic_item(items, out_dir, name, columns=ITEM_COLUMNS):
    """Write ``out_dir/name/name.item``: one row per item, ``items`` = {item: [values after the id]}."""
    path = item_path(out_dir, name)
    with replacing(path) as tmp:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write("\t".join(columns) + "\n")
            for item, values in items.items():
                f.write("\t".join([item, *(_clean(v) for v in values)]) + "\n")
    return path


def _check_new_outputs(out_dir, name, overwrite):
    """Before anything is read: neither output may exist, unless ``overwrite``."""
    for path in (output_path(out_dir, name), item_path(out_dir, name)):
        if not overwrite and os.path.lexists(path):
            raise ConversionError(f"{path} exists: add --overwrite to replace it, or choose another --name")


def convert_text_dataset(source, inputs, out_dir, name, overwrite=False):
    """Convert ``inputs`` (``benchmark``: the folder; ``json``: the folder, or the two json files)
    to ``out_dir/name/name.{inter,item}``; returns (inter path, interactions, items)."""
    _check_new_outputs(out_dir, name, overwrite)
    if source == "benchmark":
        folder, prefix = _folder_and_name(inputs, ".train.inter")
        rows, texts = read_benchmark(folder, prefix)
        items = {item: [text, *_split_text(text)] for item, text in texts.items()}
    elif source == "json":
        folder, prefix = _folder_and_name(inputs, ".inter.json")
        rows, texts, parts = read_json_pair(
            os.path.join(folder, f"{prefix}.inter.json"), os.path.join(folder, f"{prefix}.item.json")
        )
        items = {item: [texts[item], *parts[item]] for item in texts}
    else:
        raise ConversionError(f"unknown text source {source!r}: use benchmark or json")
    inter = write_atomic_inter(rows, INTER_COLUMNS, out_dir, name)
    write_atomic_item(items, out_dir, name)
    return inter, len(rows), len(items)


def _folder_and_name(path, suffix):
    """(folder, dataset name) of a dataset folder holding one ``*<suffix>`` file, or of that file."""
    if os.path.isfile(path) and path.endswith(suffix):
        return os.path.dirname(path) or ".", os.path.basename(path)[: -len(suffix)]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Input not found: {path} (give the dataset folder)")
    names = sorted(f[: -len(suffix)] for f in os.listdir(path) if f.endswith(suffix))
    if len(names) != 1:
        raise ConversionError(f"{path} should hold one *{suffix} file, found {len(names)}: {names}")
    return path, names[0]


# ---------------------------------------------------------------------------------------------
# merge: several datasets as one pre-training set


def read_atomic(path, fields):
    """``{field: column}`` of ``fields`` from an atomic file (tab-separated, ``name:type`` header)."""
    header, rows = _tsv_rows(path)
    header = [column.split(":")[0] for column in header]
    missing = [field for field in fields if field not in header]
    if missing:
        raise ConversionError(f"{path}:1: no column {missing} (its columns: {header})")
    columns = {field: [values[header.index(field)] for _, values in rows] for field in fields}
    return columns


def merge_datasets(sources, out_dir, name, overwrite=False):
    """Write ``out_dir/name/name.{inter,item}`` holding every dataset of ``sources``: a list of
    ``(dataset name, folder, text fields)``. Ids become ``<dataset>/<id>``; an item's text is its
    ``text fields`` joined as the text encoder joins them (a field alone, else ``name: value; ...``).
    Returns (inter path, interactions, items)."""
    from recbole_fame.data.item_file import ItemFile
    from recbole_fame.text.encoder import item_texts

    _check_new_outputs(out_dir, name, overwrite)
    if len({dataset for dataset, _, _ in sources}) != len(sources):
        raise ConversionError(f"a dataset is named twice in {[dataset for dataset, _, _ in sources]}")
    rows, items = [], {}
    for dataset, folder, fields in sources:
        inter = read_atomic(os.path.join(folder, f"{dataset}.inter"), ["user_id", "item_id", "timestamp"])
        item_file = os.path.join(folder, f"{dataset}.item")
        columns = read_atomic(item_file, ["item_id", *fields])
        table = ItemFile(path=item_file, fields={field: "token_seq" for field in ["item_id", *fields]})
        for i, item in enumerate(columns["item_id"]):
            table.rows[item] = {field: columns[field][i] for field in ["item_id", *fields]}
        texts = item_texts(table, fields)
        used = set(inter["item_id"])
        missing = sorted(used - set(texts))
        if missing:
            raise ConversionError(
                f"{item_file} has no text in {fields} for {len(missing)} of the {len(used)} items of "
                f"{dataset}.inter (first: {_shown(missing[0])})"
            )
        rows.extend(
            (f"{dataset}/{user}", f"{dataset}/{item}", float(time))
            for user, item, time in zip(inter["user_id"], inter["item_id"], inter["timestamp"])
        )
        items.update({f"{dataset}/{item}": [texts[item]] for item in sorted(used)})
    path = write_atomic_inter(rows, INTER_COLUMNS, out_dir, name)
    write_atomic_item(items, out_dir, name, columns=["item_id:token", "text:token_seq"])
    return path, len(rows), len(items)
