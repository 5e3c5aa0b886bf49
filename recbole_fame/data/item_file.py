"""A dataset's ``.item`` atomic file, read as text, whatever the training loaded.

The protocol loads only the interaction fields (``load_col`` in ``properties/overall.yaml``), so
RecBole never reads the item file; the explanations (titles, genres) and the text pre-training
(text fields, facet labels) read it here, by raw item id.
"""

import csv
import os
from dataclasses import dataclass, field


@dataclass
class ItemFile:
    """The rows of ``<data_path>/<dataset>.item`` by raw item id, every value a raw string."""

    path: str
    fields: dict = field(default_factory=dict)  # field name -> RecBole type (token, token_seq, ...), file order
    rows: dict = field(default_factory=dict)  # raw item id -> {field name: value}
    seq_separator: str = " "
    malformed_lines: list = field(default_factory=list)  # 1-based line numbers skipped

    def value(self, item, name):
        """The raw value of field ``name`` for ``item`` ('' when the item or the value is absent)."""
        return self.rows.get(item, {}).get(name, "")

    def tokens(self, item, name):
        """A ``token_seq`` field's value split into its tokens (a one-element list for other types)."""
        value = self.value(item, name)
        if self.fields.get(name) == "token_seq":
            return [token for token in value.split(self.seq_separator) if token]
        return [value] if value else []


def item_file_path(config):
    """``<data_path>/<dataset>.item`` (RecBole has already joined ``data_path`` and the dataset)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.item")


def read_item_file(config, required=False):
    """The dataset's item file, or None when there is none (``FileNotFoundError`` if ``required``).

    Lines whose number of columns differs from the header's are skipped and listed in
    ``malformed_lines``: no value for that item rather than a wrong one. A header without the
    config's ``ITEM_ID_FIELD`` raises ``ValueError`` naming the file.
    """
    path = item_file_path(config)
    if not os.path.isfile(path):
        if required:
            raise FileNotFoundError(
                f"Dataset '{config['dataset']}' has no item file at {os.path.abspath(path)}"
            )
        return None
    separator = config["field_separator"] or "\t"
    table = ItemFile(path=path, seq_separator=config["seq_separator"] or " ")
    with open(path, encoding=config["encoding"] or "utf-8", newline="") as f:
        rows = csv.reader(f, delimiter=separator, quoting=csv.QUOTE_NONE)
        header = next(rows, [])
        for column in header:
            name, _, kind = column.partition(":")
            table.fields[name] = kind
        names = list(table.fields)
        item_field = config["ITEM_ID_FIELD"]
        if item_field not in table.fields:
            raise ValueError(f"Item file {path} has no '{item_field}' column (its columns: {names})")
        for line_number, row in enumerate(rows, start=2):
            if not row:  # a blank line
                continue
            if len(row) != len(names):
                table.malformed_lines.append(line_number)
                continue
            values = dict(zip(names, row))
            table.rows[values[item_field]] = values
    return table
