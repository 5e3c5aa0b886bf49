"""Explaining a trained FAME: one user (the paper's Fig. 7) and a summary over the test users."""

import os
import runpy
import sys
from collections import Counter
from types import SimpleNamespace

import matplotlib.image
import pytest
import torch
from recbole.data import create_dataset

import recbole_fame.inference
from recbole_fame import load_data_and_model, recommend
from recbole_fame.explain import (
    explain_user,
    format_explanation,
    format_summary,
    plot_explanation,
    plot_summary,
    read_item_metadata,
    summarize,
)
from recbole_fame.quick_start import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 10


def write_item_file(folder, name="tiny", n_items=30):
    """Titles, years and genres: every item is in G0, G1 or G2 by id mod 3, items 1-10 also 'Low'."""
    with open(os.path.join(folder, name, f"{name}.item"), "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(1, n_items + 1):
            genres = f"G{i % 3}" + (" Low" if i <= 10 else "")
            f.write(f"i{i}\tTitle {i}\t{1990 + i}\t{genres}\n")


@pytest.fixture
def trained_fame(tiny_config, tiny_data):
    write_item_file(tiny_data)
    # A user with one interaction: in the dataset, but in no split (no history to predict from).
    with open(os.path.join(tiny_data, "tiny", "tiny.inter"), "a") as f:
        f.write("solo\ti3\t999999\n")
    config = {**tiny_config, "pretrain": False, "epochs": 1}
    result = run(model="FAME", dataset="tiny", config_dict=config)
    return result, load_data_and_model(result["model_file"])


def test_item_metadata_reads_titles_years_and_genres(trained_fame, tmp_path):
    _, (config, *_) = trained_fame
    metadata = read_item_metadata(config)
    assert metadata.titles["i7"] == "Title 7 (1997)" and len(metadata.titles) == 30
    assert metadata.genres["i7"] == ["G1", "Low"] and metadata.genres["i12"] == ["G0"]
    assert metadata.genre_field == "class"
    assert metadata.label("i7") == "i7  Title 7 (1997)" and metadata.label("i99") == "i99"

    os.remove(os.path.join(config["data_path"], "tiny.item"))
    assert read_item_metadata(config).titles == {}


def test_explain_user_matches_the_model_and_the_test_split(trained_fame):
    _, (config, model, dataset, _, _, test_data) = trained_fame
    explanation = explain_user(model, dataset, test_data, "u5", k=K)

    # The test split's history and next item for u5, in raw ids.
    feat = test_data._dataset.inter_feat
    row = int((feat["user_id"] == dataset.token2id("user_id", "u5")).nonzero())
    length = int(feat["item_length"][row])
    assert explanation.history == dataset.id2token("item_id", feat["item_id_list"][row, :length]).tolist()
    assert explanation.target == dataset.id2token("item_id", int(feat["item_id"][row]))

    assert len(explanation.gate) == 2 and sum(explanation.gate) == pytest.approx(1.0)
    assert len(explanation.expert_weights) == 2 and len(explanation.expert_weights[0]) == 3
    for weights in explanation.expert_weights:
        assert sum(weights) == pytest.approx(1.0)
    # FAME's integrated list is the model's own ranking, with the model's own scores.
    assert explanation.integrated.items == recommend(model, dataset, [explanation.history], k=K)[0]
    with torch.no_grad():
        scores = model.full_sort_predict(feat[row : row + 1])[0]
    ids = dataset.token2id("item_id", explanation.integrated.items)
    torch.testing.assert_close(torch.tensor(explanation.integrated.scores), scores[ids])
    # Each head's list carries its own scores; equal gates are the mean of the heads' scores.
    with torch.no_grad():
        _, head_scores = model.facet_scores(feat[row : row + 1])
    for h, topk in enumerate(explanation.heads):
        ids = dataset.token2id("item_id", topk.items)
        torch.testing.assert_close(torch.tensor(topk.scores), head_scores[0, h, ids])
    ids = dataset.token2id("item_id", explanation.equal_gates.items)
    torch.testing.assert_close(torch.tensor(explanation.equal_gates.scores), head_scores[0, :, ids].mean(0))
    for topk in explanation.heads + [explanation.integrated, explanation.equal_gates]:
        assert len(topk.items) == K and "[PAD]" not in topk.items
        assert topk.scores == sorted(topk.scores, reverse=True)


def test_explanation_text_and_plot(trained_fame, tmp_path):
    _, (config, model, dataset, _, _, test_data) = trained_fame
    explanation = explain_user(model, dataset, test_data, "u5", k=30)  # the whole catalogue
    text = format_explanation(explanation, read_item_metadata(config))

    assert text.startswith(f"User u5: the {len(explanation.history)} items the model reads")
    target_label = f"{explanation.target}  Title {explanation.target[1:]}"
    assert f"Ground-truth next item (test split): {target_label}" in text
    # Every list holds the whole catalogue, so each marks the ground truth once and every seen item.
    marked = [line for line in text.splitlines() if line.startswith(" *")]
    assert len(marked) == 4 and all(target_label in line for line in marked)
    assert text.count("(seen)") == 4 * len(set(explanation.history))
    assert f"Head 1: gate {explanation.gate[0]:.3f}" in text
    assert "Simple concatenation (equal gates 1/2)" in text
    assert f"  head  2 {explanation.expert_weights[1][0]:10.3f}" in text

    path = str(tmp_path / "user.png")
    plot_explanation(explanation, path, read_item_metadata(config))
    height, width, _ = matplotlib.image.imread(path).shape
    assert width > 1000 and height > 500
    with pytest.raises(FileNotFoundError, match="folder .*nowhere does not exist"):
        plot_explanation(explanation, str(tmp_path / "nowhere" / "user.png"))


def test_one_forward_pass_per_batch(trained_fame):
    _, (_, model, dataset, _, _, test_data) = trained_fame
    passes = []
    facets = model._facets
    model._facets = lambda *args: passes.append(len(args[0])) or facets(*args)
    try:
        explain_user(model, dataset, test_data, "u5", k=K)
        assert passes == [1]
        summarize(model, dataset, test_data, k=K)  # the 40 test users fit in one batch
        assert passes == [1, 40]
    finally:
        del model._facets


def test_explain_user_outside_the_test_split(trained_fame):
    _, (config, model, dataset, _, _, test_data) = trained_fame
    # A split without u5: u5's latest sample and that sample's target.
    feat = test_data._dataset.inter_feat
    u5 = dataset.token2id("user_id", "u5")
    (row,) = (feat["user_id"] == u5).nonzero().flatten().tolist()
    sequence = dataset.id2token("item_id", feat["item_id_list"][row, : feat["item_length"][row]]).tolist()
    sequence.append(dataset.id2token("item_id", int(feat["item_id"][row])))
    without_u5 = SimpleNamespace(_dataset=SimpleNamespace(inter_feat=feat[feat["user_id"] != u5]))

    explanation = explain_user(model, dataset, without_u5, "u5", k=K)
    assert explanation.history == sequence[-10:] and explanation.target is None
    assert explanation.integrated.items == recommend(model, dataset, [sequence], k=K)[0]
    text = format_explanation(explanation, read_item_metadata(config))
    assert "Not in the test split: no ground truth" in text and "ground truth" not in text.split("\n", 12)[12]

    with pytest.raises(ValueError, match="User 'solo' has no history the model can read in dataset 'tiny'"):
        explain_user(model, dataset, test_data, "solo", k=K)
    # Before RecBole builds samples, the dataset's raw interactions are the history.
    raw = create_dataset(config)
    assert explain_user(model, raw, test_data, "solo", k=K).history == ["i3"]


def test_explain_user_rejects_unknown_users_and_sizes(trained_fame):
    _, (_, model, dataset, _, _, test_data) = trained_fame
    with pytest.raises(ValueError, match="User 'nobody' is not in dataset 'tiny'"):
        explain_user(model, dataset, test_data, "nobody")
    # The check recommend() makes, with the same message.
    with pytest.raises(ValueError, match="k=31 is larger than the catalogue: the dataset has 30 items"):
        explain_user(model, dataset, test_data, "u5", k=31)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        summarize(model, dataset, test_data, k=0)


def test_summary_over_test_users(trained_fame, tmp_path):
    result, (config, model, dataset, _, _, test_data) = trained_fame
    metadata = read_item_metadata(config)
    summary = summarize(model, dataset, test_data, k=K, metadata=metadata)

    assert summary.n_users == 40 and summary.gate.shape == (40, 2) and summary.expert_weights.shape == (40, 2, 3)
    torch.testing.assert_close(torch.from_numpy(summary.gate.sum(1)), torch.ones(40))
    fame = summary.lists["FAME (integrated)"]
    # The integrated list's hit rate is RecBole's evaluator's test hit@10.
    assert round(fame[f"HR@{K}"], 4) == result["test_result"][f"hit@{K}"]

    # Genre concentration, recomputed from recommend() and the item file.
    histories = [
        dataset.id2token("item_id", seq[:n]).tolist()
        for seq, n in zip(test_data._dataset.inter_feat["item_id_list"], test_data._dataset.inter_feat["item_length"])
    ]
    shares = []
    for items in recommend(model, dataset, histories, k=K):
        counts = Counter(g for item in items for g in metadata.genres[item])
        shares.append(max(counts.values()) / K)
    assert fame["top-genre share"] == pytest.approx(sum(shares) / len(shares))
    assert 0.0 < fame["genre entropy"] < 1.0
    assert summary.genre_names == ["G0", "G1", "G2", "Low"]
    # Every item is in exactly one of G0-G2, so those shares add up to 1 in every list.
    for profile in summary.genre_profiles.values():
        assert profile[:3].sum() == pytest.approx(1.0)
    assert 0.0 <= summary.lists["head 1"]["overlap with other heads"] <= 1.0

    table = format_summary(summary, "x.pth")
    assert table.startswith("# FAME explain summary: x.pth")
    assert f"| 1 | {summary.gate[:, 0].mean():.3f} |" in table
    assert f"| FAME (integrated) | {fame[f'HR@{K}']:.3f} |" in table
    assert "## Most frequent genres per list" in table
    path = str(tmp_path / "summary.png")
    plot_summary(summary, path)
    assert matplotlib.image.imread(path).shape[1] > 1000


def test_plots_leave_the_callers_matplotlib_backend_alone(trained_fame, tmp_path):
    """A notebook's inline backend must survive a plot: the figures use no pyplot state."""
    _, (_, model, dataset, _, _, test_data) = trained_fame
    original = matplotlib.get_backend()
    matplotlib.use("pdf")  # stands in for a notebook's backend
    try:
        plot_explanation(explain_user(model, dataset, test_data, "u5", k=3), str(tmp_path / "u.png"))
        plot_summary(summarize(model, dataset, test_data, k=3), str(tmp_path / "s.png"))
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(original)
    assert (tmp_path / "u.png").read_bytes().startswith(b"\x89PNG") and os.path.isfile(tmp_path / "s.png")


def test_summary_without_item_metadata_has_no_genre_columns(trained_fame):
    _, (_, model, dataset, _, _, test_data) = trained_fame
    summary = summarize(model, dataset, test_data, k=K)
    assert summary.genre_names is None and "top-genre share" not in summary.lists["head 1"]
    assert "genre" not in format_summary(summary)


def _run_fame(monkeypatch, *args):
    """run_fame.py in this process (a subprocess would spend seconds importing RecBole again)."""
    monkeypatch.setattr(sys, "argv", ["run_fame.py", *args])
    runpy.run_path(os.path.join(REPO, "run_fame.py"), run_name="__main__")


def test_explain_cli(trained_fame, tmp_path, monkeypatch, capsys):
    checkpoint = trained_fame[0]["model_file"]
    _run_fame(monkeypatch, "--explain", f"--checkpoint={checkpoint}", "--user=u5", "--explain_topk=5", "--plot=u5.png")
    out = capsys.readouterr().out
    assert out.startswith("User u5:") and "Head 2: gate" in out and "Title" in out
    assert "Figure written to u5.png" in out and os.path.getsize(tmp_path / "u5.png") > 10000
    with pytest.raises(SystemExit) as excinfo:
        _run_fame(monkeypatch, "--explain-summary", f"--checkpoint={checkpoint}", "--explain_topk=31")
    assert excinfo.value.code == "error: --explain_topk=31 is larger than the catalogue: the dataset has 30 items"


def test_explain_summary_cli_writes_figure_and_table(trained_fame, tmp_path, monkeypatch, capsys):
    checkpoint = trained_fame[0]["model_file"]
    with pytest.raises(SystemExit) as excinfo:
        _run_fame(monkeypatch, "--explain-summary", f"--checkpoint={checkpoint}", "--plot=out/s.png")
    assert f"folder {tmp_path / 'out'} does not exist" in str(excinfo.value.code)
    os.mkdir(tmp_path / "out")
    capsys.readouterr()
    _run_fame(monkeypatch, "--explain-summary", f"--checkpoint={checkpoint}", "--plot=out/s.png", "--explain_topk=5")
    out = capsys.readouterr().out
    table = (tmp_path / "out" / "s.md").read_text()
    mark = "\n<!-- written by recbole-fame run_fame.py --explain-summary -->\n"
    assert table.endswith(mark) and table[: -len(mark)] in out and "top-5 lists" in table and "top-genre share" in table
    assert os.path.isfile(tmp_path / "out" / "s.png")


def test_cli_errors_name_what_is_wrong(tiny_config, tmp_path, monkeypatch, capsys):
    sasrec = run(model="SASRec", dataset="tiny", config_dict={**tiny_config, "epochs": 1})["model_file"]
    # Refused from the checkpoint alone, before its dataset is loaded.
    with monkeypatch.context() as patch:
        patch.setattr(recbole_fame.inference, "prepare_data", lambda config: pytest.fail("dataset loaded"))
        with pytest.raises(SystemExit) as excinfo:
            _run_fame(monkeypatch, "--explain", f"--checkpoint={sasrec}", "--user=u5")
    assert excinfo.value.code == f"error: Explaining needs a FAME or MIRACLE checkpoint; {sasrec} holds a SASRec"

    with pytest.raises(SystemExit) as excinfo:
        _run_fame(monkeypatch, "--explain", f"--checkpoint={sasrec}")
    assert excinfo.value.code == 2 and "--explain needs --user=RAW_USER_ID" in capsys.readouterr().err

    with pytest.raises(SystemExit) as excinfo:
        _run_fame(monkeypatch, f"--resume={sasrec}", "--epochs=10")
    assert excinfo.value.code == 2
    assert "--resume takes every setting from the checkpoint and resumes in one process; drop --epochs=10" in (
        capsys.readouterr().err
    )

    missing = str(tmp_path / "nope.pth")
    with pytest.raises(SystemExit) as excinfo:
        _run_fame(monkeypatch, f"--resume={missing}")
    assert excinfo.value.code == f"error: Checkpoint file not found: {missing}"


def test_plots_and_tables_replace_only_their_own_earlier_files(trained_fame, tmp_path, monkeypatch, capsys):
    checkpoint = trained_fame[0]["model_file"]
    summary = ["--explain-summary", f"--checkpoint={checkpoint}", "--explain_topk=5"]
    (tmp_path / "README.md").write_text("a user's own file\n")
    with monkeypatch.context() as patch:  # refused before the checkpoint's dataset is loaded
        patch.setattr(recbole_fame.inference, "prepare_data", lambda config: pytest.fail("dataset loaded"))
        with pytest.raises(SystemExit) as excinfo:
            _run_fame(monkeypatch, *summary, "--plot=README.png")
        assert excinfo.value.code == (
            "error: README.md exists and was not written by run_fame.py --explain-summary: name another file, "
            "or add --overwrite to replace it"
        )
        with pytest.raises(SystemExit) as excinfo:
            _run_fame(monkeypatch, *summary, "--plot=summary.pdf")
        assert excinfo.value.code == "error: --plot=summary.pdf: the figure is written as PNG, so name a .png file"
    assert (tmp_path / "README.md").read_text() == "a user's own file\n"
    assert not (tmp_path / "README.png").exists()

    _run_fame(monkeypatch, *summary, "--plot=s.png")
    _run_fame(monkeypatch, *summary, "--plot=s.png")  # its own figure and table: replaced
    assert (tmp_path / "s.md").read_text().endswith("<!-- written by recbole-fame run_fame.py --explain-summary -->\n")
    with pytest.raises(SystemExit, match="s.png exists and was not written by run_fame.py --explain"):
        _run_fame(monkeypatch, "--explain", f"--checkpoint={checkpoint}", "--user=u5", "--plot=s.png")
    _run_fame(monkeypatch, *summary, "--plot=README.png", "--overwrite")
    assert "a user's own file" not in (tmp_path / "README.md").read_text()
