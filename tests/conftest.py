import sys

import pytest

import recbole_fame  # noqa: F401  (applies the RecBole fixes)

from helpers import write_tiny_dataset


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    """RecBole reads --key=value from sys.argv and writes log/ into the working directory; the
    cache signing key (recbole_fame.data.cache) goes to the test's own folder."""
    monkeypatch.setattr(sys, "argv", ["pytest"])
    monkeypatch.chdir(tmp_path)
    key_file = str(tmp_path / "cache" / "recbole-fame" / "cache-signing-key")
    monkeypatch.setattr("recbole_fame.data.cache._key_file", lambda: key_file)


@pytest.fixture
def tiny_data(tmp_path):
    return write_tiny_dataset(str(tmp_path / "data"))


@pytest.fixture
def tiny_config(tiny_data, tmp_path):
    """A config dict for fast runs on the tiny dataset."""
    return {
        "data_path": tiny_data,
        "checkpoint_dir": str(tmp_path / "saved"),
        "hidden_size": 16,
        "inner_size": 32,
        "n_layers": 2,
        "n_heads": 2,
        "n_experts": 3,
        "MAX_ITEM_LIST_LENGTH": 10,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "epochs": 2,
        "show_progress": False,
        "state": "WARNING",
    }


@pytest.fixture
def stub_encoder(monkeypatch):
    """The deterministic stub as text_encoder 'stub', with the in-process caches emptied."""
    from helpers import StubTextEncoder

    from recbole_fame.text import encoder as text_encoder, pretrain as facet_pretrain

    encoder = StubTextEncoder()
    monkeypatch.setitem(text_encoder.TEXT_ENCODERS, "stub", encoder)
    monkeypatch.setattr(text_encoder, "_LOADED", {})
    monkeypatch.setattr(facet_pretrain, "_RESULTS", {})
    return encoder


@pytest.fixture
def text_config(tiny_config, tiny_data, stub_encoder):
    """tiny_config with an item file with text and labels, and the text pre-training on."""
    from helpers import write_text_item_file

    write_text_item_file(tiny_data)
    return {
        **tiny_config,
        "text_pretrain": True,
        "text_encoder": "stub",
        "text_fields": ["movie_title"],
        "text_facets": {
            "genre": {"field": "class", "heads": [1]},
            "decade": {"field": "release_year", "bucket": 10, "heads": [2]},
        },
        "text_pretrain_epochs": 20,
        "text_pretrain_batch_size": 16,
        "text_pretrain_lr": 0.01,
    }
