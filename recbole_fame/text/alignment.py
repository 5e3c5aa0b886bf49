"""How well item vectors separate a facet's labels: leave-one-out kNN label accuracy.

Each query item's k nearest other items (cosine similarity, items without a label left out) vote
with their labels; the prediction is the label with the most votes (ties: the label that comes
first in sorted order) and it counts as right when the query carries it. With one label per item
this is plain majority-vote kNN accuracy; with several (ml-100k's genres) the query is right when
the voted genre is one of its own. The ``majority`` baseline always predicts the most frequent label:
vectors that carry nothing about the facet score about that, not 0.
"""

import numpy as np
import torch


def label_matrix(labels):
    """Multi-hot [n, C] float tensor of ``labels`` (a list of sets) and the sorted label names."""
    names = sorted({label for item_labels in labels for label in item_labels})
    column = {name: j for j, name in enumerate(names)}
    matrix = torch.zeros(len(labels), len(names))
    for i, item_labels in enumerate(labels):
        for label in item_labels:
            matrix[i, column[label]] = 1.0
    return matrix, names


@torch.no_grad()
def knn_label_accuracy(vectors, labels, k=10, queries=None, batch_size=1024):
    """Leave-one-out kNN label accuracy of ``vectors`` [n, d] for ``labels`` (n sets, empty = none).

    ``queries``: indices of the items to predict (default: every labelled item); their neighbours
    are searched among all labelled items but themselves. Returns ``{"accuracy", "majority", "n"}``
    (``n`` labelled queries; accuracy and majority are None when there are none).
    """
    vectors = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    if vectors.shape[0] != len(labels):
        raise ValueError(f"{vectors.shape[0]} vectors for {len(labels)} label sets")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    multi_hot, _ = label_matrix(labels)
    labelled = multi_hot.sum(1) > 0
    candidates = torch.nonzero(labelled).flatten()
    if queries is None:
        queries = candidates
    else:
        queries = torch.as_tensor(list(queries), dtype=torch.long)
        queries = queries[labelled[queries]]
    if len(queries) == 0 or len(candidates) < 2:
        return {"accuracy": None, "majority": None, "n": 0}
    k = min(k, len(candidates) - 1)
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    candidate_vectors = unit[candidates]
    correct = 0
    for start in range(0, len(queries), batch_size):
        query = queries[start : start + batch_size]
        similarity = unit[query] @ candidate_vectors.T
        similarity[query.unsqueeze(1) == candidates.unsqueeze(0)] = -torch.inf  # not its own neighbour
        neighbours = candidates[similarity.topk(k, dim=1).indices]  # [q, k]
        votes = multi_hot[neighbours].sum(1)  # [q, C]
        predicted = votes.argmax(1)  # first maximum: the earliest label in sorted order
        correct += int(multi_hot[query, predicted].sum())
    most_frequent = multi_hot[candidates].sum(0).argmax()
    return {
        "accuracy": correct / len(queries),
        "majority": int(multi_hot[queries, most_frequent].sum()) / len(queries),
        "n": len(queries),
    }
