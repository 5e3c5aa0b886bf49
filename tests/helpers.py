"""Tiny datasets, models and checkpoints for the tests."""

import importlib.util
import os
import random
import sys

import torch
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec

from recbole_fame import FAME, Config

# The repository's root: its scripts, properties/ and results/.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.join(REPO, "..", "shared", "datasets")


def make_config(model, base, **overrides):
    return Config(model=model, dataset="tiny", config_dict={**base, **overrides})


def make_data(config):
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    return dataset, train_data, valid_data, test_data


def build_fame(base, **overrides):
    config = make_config("FAME", base, **overrides)
    dataset, train_data, _, test_data = make_data(config)
    return FAME(config, train_data._dataset), train_data, test_data


def save_sasrec_checkpoint(path, base, **overrides):
    """A checkpoint as RecBole's trainer writes it, of a SASRec with random weights."""
    config = make_config("SASRec", base, **overrides)
    _, train_data, _, _ = make_data(config)
    model = SASRec(config, train_data._dataset)
    torch.save({"config": config, "epoch": 0, "state_dict": model.state_dict()}, path)
    return model


def first_batch(data):
    batch = next(iter(data))
    return batch[0] if isinstance(batch, tuple) else batch


def load_script(name):
    """A command-line script of the repository (``run_fame.py``, ...) as a module, not run."""
    path = os.path.join(REPO, name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(name)[0], path)
    module = importlib.util.module_from_spec(spec)
    # As when it runs: its own folder is on the path (benchmarks/ import data_args.py).
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def write_tiny_dataset(folder, name="tiny", n_users=40, n_items=30, seed=0):
    """RecBole atomic files: users with 6-14 timestamped interactions over n_items items."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    with open(os.path.join(folder, name, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(1, n_users + 1):
            length = rng.randint(6, 14)
            # A user drifts through the catalogue, so there is sequential signal to learn.
            start = rng.randrange(n_items)
            for t in range(length):
                item = (start + t + rng.randint(0, 2)) % n_items + 1
                f.write(f"u{user}\ti{item}\t{1000 * user + t}\n")
    return folder


GENRE_WORDS = ("space", "love", "crime")
ERA_WORDS = ("silent", "neon")
NOISE_WORDS = ("red", "blue", "night", "day", "city")


def write_text_item_file(folder, name="tiny", n_items=30, cold_items=4):
    """An item file with text and facet labels for items 1..n_items and ``cold_items`` more
    items that have no interaction: item i is of genre G{i % 3} (items 1-10 also 'Low'), from
    the 1970s or 1980s by i % 2, and its title names both in words (plus a noise word)."""
    path = os.path.join(folder, name, f"{name}.item")
    with open(path, "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, n_items + cold_items + 1):
            genres = f"G{i % 3}" + (" Low" if i <= 10 else "")
            title = f"{GENRE_WORDS[i % 3]} {ERA_WORDS[i % 2]} {NOISE_WORDS[i % 5]} {i}"
            f.write(f"i{i}\t{title}\t{1970 + 10 * (i % 2) + i % 7}\t{genres}\n")
    return path


class StubTextEncoder:
    """A deterministic stand-in for the sentence encoder in unit tests: each word is a fixed random
    direction (seeded by the word), a text the unit-length sum of its words' directions."""

    def __init__(self, dim=24, version="1"):
        self.dim = dim
        self.version = version
        self.encoded = []  # every text encoded, in order

    def fingerprint(self):
        return f"stub-{self.dim}-{self.version}"

    def load(self, device):
        return self

    def encode(self, texts, batch_size=64, show_progress=False):
        import hashlib

        import numpy as np

        self.encoded.extend(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                seed = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                vectors[row] += np.random.default_rng(seed).standard_normal(self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
