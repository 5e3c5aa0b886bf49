"""Tiny datasets, models and checkpoints for the tests."""

import importlib.util
import os
import random

import torch
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec

from recbole_fame import FAME, Config


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
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)
    spec = importlib.util.spec_from_file_location(os.path.splitext(name)[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
