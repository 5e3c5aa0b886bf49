"""Test metrics over a subset of the test samples: those whose target is a rarely interacted item.

RecBole's evaluator averages HR@k and NDCG@k over every test user; cold-ish items are a small
share of the targets, so what text pre-training does for them is lost in that mean.
:func:`target_metrics` ranks exactly as RecBole's full-sort evaluation does for sequential models
(every item but the padding one, no history masking, ``torch.topk`` over the largest k of
``topk``) and averages over the samples whose target is in ``items``.
"""

import numpy as np
import torch


def item_interaction_counts(dataset):
    """Interactions per internal item id (index 0, the padding item, is 0), first items included.

    RecBole's sequential dataset keeps one sample per next-item target; its ``inter_matrix`` adds
    each user's first interaction back, so its column sums are the interaction file's counts.
    """
    matrix = dataset.inter_matrix(form="csr")
    return np.asarray(matrix.sum(axis=0)).ravel().astype(np.int64)


def least_interacted_items(dataset, share=0.2):
    """Internal ids of the ``share`` of items with the fewest interactions (ties: lower id first)."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    counts = item_interaction_counts(dataset)[1:]
    order = np.lexsort((np.arange(len(counts)), counts))  # by count, then by id
    n = max(1, int(round(share * len(counts))))
    return (order[:n] + 1).tolist()


@torch.no_grad()
def target_metrics(model, test_data, items=None, topk=(5, 10, 20), batch_size=1024):
    """``{"hit@k", "ndcg@k" for k in topk, "n"}`` over the test samples whose target is in
    ``items`` (internal ids; None: every sample, which gives RecBole's test result). With no such
    sample, every metric is None and ``n`` is 0."""
    model.eval()
    feat = test_data._dataset.inter_feat
    iid_field = test_data._dataset.iid_field
    targets = feat[iid_field]
    rows = torch.arange(len(feat))
    if items is not None:
        keep = torch.zeros(model.n_items, dtype=torch.bool)
        keep[torch.as_tensor(list(items), dtype=torch.long)] = True
        rows = rows[keep[targets]]
    max_k = max(topk)
    ranks = []
    for start in range(0, len(rows), batch_size):
        batch = feat[rows[start : start + batch_size]].to(model.device)
        scores = model.full_sort_predict(batch).view(len(batch), -1)
        scores[:, 0] = -torch.inf
        top = torch.topk(scores, max_k, dim=-1).indices
        hit = top == batch[iid_field].unsqueeze(1)
        # Rank of the target within the top max_k (max_k when it is not there).
        missed = torch.full((len(batch),), max_k, dtype=torch.long, device=hit.device)
        ranks.append(torch.where(hit.any(1), hit.float().argmax(1), missed).cpu())
    result = {"n": len(rows)}
    rank = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
    for k in topk:
        if len(rank) == 0:
            result[f"hit@{k}"] = result[f"ndcg@{k}"] = None
            continue
        inside = rank < k
        result[f"hit@{k}"] = float(inside.float().mean())
        gains = torch.where(inside, 1.0 / torch.log2(rank.double() + 2), torch.zeros(len(rank), dtype=torch.float64))
        result[f"ndcg@{k}"] = float(gains.mean())
    return result


def describe_items(dataset, items):
    """Interactions of the given items: ``{"items", "min", "median", "max"}`` (for reports)."""
    counts = item_interaction_counts(dataset)[list(items)]
    return {
        "items": len(counts),
        "min": int(counts.min()),
        "median": float(np.median(counts)),
        "max": int(counts.max()),
    }
