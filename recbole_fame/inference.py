"""Using a trained model: reload it from its checkpoint, recommend for any history of raw item ids.

``load_data_and_model`` is RecBole's function of that name for this package's checkpoints (FAME or
any RecBole model saved by ``run_fame.py``); ``recommend`` scores histories that need not belong to
a user of the training data, through the model's own ``full_sort_predict``.
"""

from logging import getLogger

import torch
from recbole.data.interaction import Interaction
from recbole.utils import init_logger, init_seed

from recbole_fame.checkpoint import checkpoint_config, for_this_process, load_checkpoint, load_model_state
from recbole_fame.data import prepare_data
from recbole_fame.model import build_model

# Histories scored per forward pass.
RECOMMEND_BATCH_SIZE = 1024


def load_data_and_model(model_file):
    """Reload a checkpoint with the data it was trained on, as RecBole's ``load_data_and_model``.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``: the config pickled in
    the checkpoint, the model with its trained weights in eval mode on the config's device (the
    CPU if the checkpoint was written on a GPU machine and this one has none; a ``--nproc`` run's
    checkpoint is reloaded in this one process), the filtered
    dataset and the loaders the pipeline trained and tested with. The returned config's
    ``pretrained_path`` is cleared: the weights come from ``model_file``, and building FAME from
    that config again must not re-read (or need) the SASRec file FAME started from.

    Raises ``FileNotFoundError`` for a missing file or dataset, and
    :class:`~recbole_fame.checkpoint.CheckpointError` naming the file when it cannot be read, is
    not a RecBole checkpoint, or does not fit the model its config describes.
    """
    return data_and_model(load_checkpoint(model_file), model_file)


def data_and_model(checkpoint, model_file):
    """:func:`load_data_and_model` for ``checkpoint``, already read from ``model_file`` (to look at
    it, e.g. at its model's name, before the data is loaded)."""
    config = checkpoint_config(checkpoint, model_file)
    if config["pretrained_path"]:
        config["pretrained_path"] = None
    for_this_process(config)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    getLogger().info(config)

    dataset, train_data, valid_data, test_data = prepare_data(config)
    init_seed(config["seed"], config["reproducibility"])
    model = build_model(config, train_data._dataset)  # its weights come from model_file
    load_model_state(model, checkpoint, model_file)
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def recommend(model, dataset, histories, k, exclude_seen=False):
    """The top-``k`` items for each history, as raw item ids (best first).

    ``histories``: a list of histories, each a list of raw item ids, oldest first, as in the
    dataset's atomic files (ids are compared as strings: ``242`` and ``"242"`` are the same item).
    They need not be histories of training users. ``model`` is any RecBole sequential model
    trained on ``dataset`` (FAME, SASRec, GRU4Rec, ...): it scores every item with its
    ``full_sort_predict``. Behaviour at the edges:

    - an id the dataset does not know raises ``ValueError`` naming it and its history;
    - an empty history raises ``ValueError`` (a sequential model has nothing to go on);
    - ``k`` larger than the catalogue (or, with ``exclude_seen``, than the items a history has
      not seen) raises ``ValueError``: nothing is clamped silently;
    - a history longer than the model's ``MAX_ITEM_LIST_LENGTH`` is cut to its most recent items,
      as RecBole cuts training histories;
    - the padding item is never recommended; with ``exclude_seen`` neither is any item of the
      history (all of it, not only the part the model reads);
    - models with a user embedding (Caser, HGN, ...) score these histories as the padding user.
    """
    catalogue = check_k(dataset, k)
    encoded = encode_histories(dataset, histories)
    if exclude_seen:
        for index, history in enumerate(encoded):
            unseen = catalogue - len(set(history))
            if k > unseen:
                raise ValueError(
                    f"k={k} but history {index} leaves only {unseen} unseen items to recommend"
                )

    was_training = model.training
    model.eval()
    recommendations = []
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), RECOMMEND_BATCH_SIZE):
                batch = encoded[start : start + RECOMMEND_BATCH_SIZE]
                scores = model.full_sort_predict(history_interaction(model, batch))
                scores = scores.view(len(batch), -1)
                top = top_items(scores, k, exclude=batch if exclude_seen else None).indices.cpu()
                recommendations += [
                    dataset.id2token(dataset.iid_field, row).tolist() for row in top
                ]
    finally:
        model.train(was_training)
    return recommendations


def check_k(dataset, k, name="k"):
    """The catalogue's size (items without padding); ValueError naming ``name`` unless ``k`` is an
    integer from 1 to it."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    catalogue = dataset.item_num - 1  # id 0 is padding
    if k > catalogue:
        raise ValueError(f"{name}={k} is larger than the catalogue: the dataset has {catalogue} items")
    return catalogue


def top_items(scores, k, exclude=None):
    """``torch.topk`` (values, internal ids) of ``[..., n_items]`` scores over real items: never the
    padding item, nor, per row of 2-d scores, the ids in ``exclude[row]``. ``scores`` is unchanged."""
    scores = scores.clone()
    scores[..., 0] = -torch.inf
    for row, ids in enumerate(exclude or ()):
        scores[row, ids] = -torch.inf
    return torch.topk(scores, k, dim=-1)


def encode_histories(dataset, histories):
    """Histories of raw item ids as lists of the dataset's internal ids, checked as
    :func:`recommend` documents."""
    if isinstance(histories, (str, bytes)) or not hasattr(histories, "__iter__"):
        raise TypeError(f"histories must be a list of histories (lists of item ids), got {histories!r}")
    token_to_id = dataset.field2token_id[dataset.iid_field]
    padding = dataset.id2token(dataset.iid_field, 0)
    encoded = []
    for index, history in enumerate(histories):
        if isinstance(history, (str, bytes, int)) or not hasattr(history, "__iter__"):
            raise TypeError(
                f"history {index} is {history!r}, not a list of item ids "
                "(for one history pass [[id, id, ...]])"
            )
        tokens = [str(item) for item in history]
        if not tokens:
            raise ValueError(f"history {index} is empty: give at least one item id")
        unknown = [t for t in tokens if t == padding or t not in token_to_id]
        if unknown:
            raise ValueError(
                f"history {index} has item ids unknown to dataset '{dataset.dataset_name}': "
                f"{sorted(set(unknown))[:10]}"
            )
        encoded.append([token_to_id[t] for t in tokens])
    return encoded


def history_interaction(model, histories):
    """An Interaction of histories (lists of internal item ids, oldest first) as a sequential
    model reads them: left-aligned, padded to ``MAX_ITEM_LIST_LENGTH``, the most recent kept."""
    width = model.max_seq_length
    item_seq = torch.zeros(len(histories), width, dtype=torch.long)
    lengths = torch.zeros(len(histories), dtype=torch.long)
    for row, history in enumerate(histories):
        recent = history[-width:]
        item_seq[row, : len(recent)] = torch.tensor(recent, dtype=torch.long)
        lengths[row] = len(recent)
    interaction = Interaction(
        {
            model.ITEM_SEQ: item_seq,
            model.ITEM_SEQ_LEN: lengths,
            model.USER_ID: torch.zeros(len(histories), dtype=torch.long),
        }
    )
    return interaction.to(model.device)
