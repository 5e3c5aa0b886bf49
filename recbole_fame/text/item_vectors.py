"""The text vector of every item of a RecBole dataset, row by internal id, for models whose items
are their text (MIRACLE, Eq. 1)."""

import torch

from recbole_fame.data.item_file import read_item_file
from recbole_fame.text.encoder import item_texts, text_vectors
from recbole_fame.text.pretrain import text_cache_dir


def dataset_text_vectors(config, dataset, model_name):
    """[n_items, text dim] float32: row i is the text vector of internal item id i; row 0 (the
    padding id) is zeros. Read from the text cache, or encoded by ``text_encoder`` and cached.

    Errors name the file: no item file, ``text_fields`` unset or not in it, or an item of the
    interactions without text (the item file does not belong to these interactions).
    """
    fields = config["text_fields"]
    try:
        table = read_item_file(config, required=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{model_name} needs the items' text: {exc}") from None
    if not fields:
        raise ValueError(
            f"{model_name} needs the items' text: set text_fields to the fields of {table.path} that "
            f"hold it (its fields: {list(table.fields)})"
        )
    if table.malformed_lines:
        raise ValueError(
            f"{table.path}: line {table.malformed_lines[0]} (and {len(table.malformed_lines) - 1} more) "
            f"has a number of columns other than the header's"
        )
    texts = item_texts(table, fields)
    tokens = [str(token) for token in dataset.field2id_token[dataset.iid_field][1:]]
    missing = [token for token in tokens if token not in texts]
    if missing:
        raise ValueError(
            f"{table.path} has no text in {fields} for {len(missing)} of the {len(tokens)} items of "
            f"{config['dataset']}'s interactions (first: {missing[0]!r}): the item file does not "
            f"match the interactions"
        )
    # Loading an encoder draws random weights before reading its own: keep the caller's random
    # state, so a run builds the same model whether the vectors came from the cache or not.
    with torch.random.fork_rng(devices=[]):
        items, vectors = text_vectors(
            {token: texts[token] for token in tokens}, config["text_encoder"], list(fields),
            text_cache_dir(config), config["device"], config["show_progress"],
        )
    rows = dict(zip(items, range(len(items))))
    table_vectors = torch.zeros(len(tokens) + 1, vectors.shape[1])
    table_vectors[1:] = torch.from_numpy(vectors[[rows[token] for token in tokens]])
    return table_vectors
