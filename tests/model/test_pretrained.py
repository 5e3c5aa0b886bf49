"""The checkpoint-loading hook: FAME built from a trained SASRec (section 4.4.2)."""

import pytest
import torch

from recbole_fame.checkpoint import CheckpointError

from helpers import build_fame, save_sasrec_checkpoint, write_tiny_dataset


@pytest.mark.parametrize("final_residual", ["projection", "split", "none"])
def test_hook_copies_every_shared_tensor_exactly(tiny_config, tmp_path, final_residual):
    path = str(tmp_path / "sasrec.pth")
    sasrec = save_sasrec_checkpoint(path, tiny_config)
    fame, _, _ = build_fame(tiny_config, pretrained_path=path, final_residual=final_residual)
    sasrec_state, fame_state = sasrec.state_dict(), fame.state_dict()

    final = "trm_encoder.layer.1."
    dropped = (final + "multi_head_attention.query.", final + "feed_forward.")
    if final_residual != "projection":
        dropped += (final + "multi_head_attention.dense.", final + "multi_head_attention.LayerNorm.")
    shared = [k for k in sasrec_state if not k.startswith(dropped)]
    assert "item_embedding.weight" in shared and final + "multi_head_attention.key.weight" in shared
    for key in shared:
        assert torch.equal(fame_state[key], sasrec_state[key]), key

    # Every expert of head h starts at SASRec's W_Q^(h) plus noise of std initializer_range.
    expert_query = fame.trm_encoder.layer[1].multi_head_attention.expert_query
    w_q = sasrec_state[final + "multi_head_attention.query.weight"].view(2, 1, 8, 16)
    experts = expert_query.weight.view(2, 3, 8, 16)
    noise = experts - w_q
    assert 0.017 < noise.std() < 0.023
    assert not torch.equal(experts[:, 0], experts[:, 1])
    torch.testing.assert_close(
        expert_query.bias.view(2, 3, 8),
        sasrec_state[final + "multi_head_attention.query.bias"].view(2, 1, 8).expand(2, 3, 8),
    )


def test_single_expert_starts_exactly_as_sasrec(tiny_config, tmp_path):
    path = str(tmp_path / "sasrec.pth")
    sasrec = save_sasrec_checkpoint(path, tiny_config)
    fame, _, _ = build_fame(tiny_config, pretrained_path=path, n_experts=1)
    expert_query = fame.trm_encoder.layer[1].multi_head_attention.expert_query
    assert torch.equal(expert_query.weight, sasrec.trm_encoder.layer[1].multi_head_attention.query.weight)


def test_random_expert_init_ignores_w_q(tiny_config, tmp_path):
    path = str(tmp_path / "sasrec.pth")
    sasrec = save_sasrec_checkpoint(path, tiny_config)
    fame, _, _ = build_fame(tiny_config, pretrained_path=path, expert_init="random")
    w_q = sasrec.state_dict()["trm_encoder.layer.1.multi_head_attention.query.weight"].view(2, 1, 8, 16)
    experts = fame.trm_encoder.layer[1].multi_head_attention.expert_query.weight.view(2, 3, 8, 16)
    # Independent N(0, 0.02) draws: the difference has std 0.02 * sqrt(2), not the 0.02 of the noise.
    assert (experts - w_q).std() > 0.025
    assert torch.equal(fame.item_embedding.weight, sasrec.item_embedding.weight)


@pytest.mark.parametrize(
    "sasrec_overrides, message",
    [
        ({"hidden_size": 32}, "hidden_size=32"),
        ({"n_layers": 3}, "n_layers=3"),
        ({"n_heads": 4}, "n_heads=4"),
        ({"inner_size": 64}, "inner_size=64"),
        ({"hidden_act": "relu"}, "hidden_act='relu'"),
    ],
)
def test_hook_rejects_a_mismatched_sasrec(tiny_config, tmp_path, sasrec_overrides, message):
    path = str(tmp_path / "sasrec.pth")
    save_sasrec_checkpoint(path, tiny_config, **sasrec_overrides)
    with pytest.raises(CheckpointError) as excinfo:
        build_fame(tiny_config, pretrained_path=path)
    assert path in str(excinfo.value) and message in str(excinfo.value)


def test_hook_rejects_another_item_count(tiny_config, tmp_path):
    path = str(tmp_path / "sasrec.pth")
    other = write_tiny_dataset(str(tmp_path / "other"), n_items=50)
    save_sasrec_checkpoint(path, {**tiny_config, "data_path": other})
    with pytest.raises(CheckpointError) as excinfo:
        build_fame(tiny_config, pretrained_path=path)
    assert path in str(excinfo.value) and "items" in str(excinfo.value)


def test_hook_rejects_a_checkpoint_of_another_model(tiny_config, tmp_path):
    path = str(tmp_path / "fame.pth")
    fame, _, _ = build_fame(tiny_config)
    torch.save({"config": {"model": "GRU4Rec"}, "state_dict": fame.state_dict()}, path)
    with pytest.raises(CheckpointError, match="checkpoint of 'GRU4Rec', not of 'SASRec'"):
        build_fame(tiny_config, pretrained_path=path)


def test_hook_rejects_a_sasrec_state_with_foreign_tensors(tiny_config, tmp_path):
    path = str(tmp_path / "sasrec.pth")
    save_sasrec_checkpoint(path, tiny_config)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"]["extra_head.weight"] = torch.zeros(3)
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="extra_head.weight"):
        build_fame(tiny_config, pretrained_path=path)


def test_hook_rejects_unreadable_and_missing_files(tiny_config, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"Cannot read checkpoint {garbage}"):
        build_fame(tiny_config, pretrained_path=str(garbage))
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match=f"Checkpoint file not found: {missing}"):
        build_fame(tiny_config, pretrained_path=str(missing))
