"""The pipeline's trainers: which one a model gets, and FAME's stage-2 learning rate."""

import pytest
from recbole.trainer import S3RecTrainer
from recbole.utils import ModelType
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_fame import FAME, FAMETrainer
from recbole_fame.checkpoint import load_checkpoint
from recbole_fame.quick_start import run
from recbole_fame.trainer import PipelineTrainer, get_trainer

from helpers import make_config, make_data, save_sasrec_checkpoint


def test_each_model_gets_its_trainer(tiny_config):
    assert get_trainer(make_config("FAME", tiny_config)) is FAMETrainer
    assert get_trainer(make_config("SASRec", tiny_config)) is PipelineTrainer
    # RecBole's model-specific trainers stay RecBole's.
    assert get_trainer(make_config("S3Rec", tiny_config)) is S3RecTrainer
    # RecBole's own get_trainer finds FAME's by the model's name too (compat.py registers it).
    assert recbole_get_trainer(ModelType.SEQUENTIAL, "FAME") is FAMETrainer


def _fame_trainer(tiny_config, tmp_path, **overrides):
    path = tmp_path / "sasrec.pth"
    save_sasrec_checkpoint(path, tiny_config)
    config = make_config("FAME", tiny_config, pretrained_path=str(path), **overrides)
    _, train_data, _, _ = make_data(config)
    return FAMETrainer(config, FAME(config, train_data._dataset))


def _rate(trainer):
    (group,) = trainer.optimizer.param_groups
    return group["lr"]


def test_fame_fine_tuned_from_sasrec_trains_at_the_finetune_rate(tiny_config, tmp_path):
    trainer = _fame_trainer(tiny_config, tmp_path, learning_rate=0.002)
    assert trainer.config["finetune_learning_rate"] == 0.0003  # properties/model/FAME.yaml
    assert _rate(trainer) == trainer.learning_rate == 0.0003
    trainer = _fame_trainer(tiny_config, tmp_path, learning_rate=0.002, finetune_learning_rate=0.0001)
    assert _rate(trainer) == 0.0001
    # ~ (and checkpoints saved before the key existed): the learning rate of both stages.
    trainer = _fame_trainer(tiny_config, tmp_path, learning_rate=0.002, finetune_learning_rate=None)
    assert _rate(trainer) == 0.002


def test_fame_from_scratch_trains_at_learning_rate(tiny_config):
    config = make_config("FAME", tiny_config, pretrain=False, learning_rate=0.002)
    _, train_data, _, _ = make_data(config)
    assert _rate(FAMETrainer(config, FAME(config, train_data._dataset))) == 0.002


@pytest.mark.parametrize("value", [0, -0.001, "fast", True, float("inf")])
def test_a_bad_finetune_rate_is_named(tiny_config, tmp_path, value):
    with pytest.raises(ValueError, match=r"finetune_learning_rate=.* \(config_dict\): must be a finite number > 0 or None"):
        _fame_trainer(tiny_config, tmp_path, finetune_learning_rate=value)


def test_the_two_stage_run_fine_tunes_at_the_finetune_rate(tiny_config):
    result = run("FAME", "tiny", config_dict={**tiny_config, "epochs": 1})
    (sasrec_group,) = load_checkpoint(result["pretrain_result"]["model_file"])["optimizer"]["param_groups"]
    (fame_group,) = load_checkpoint(result["model_file"])["optimizer"]["param_groups"]
    assert (sasrec_group["lr"], fame_group["lr"]) == (0.001, 0.0003)


def test_a_removed_pipeline_option_is_refused_before_anything_trains(tiny_config):
    with pytest.raises(ValueError, match=r"config: length_bucketing=True is an option recbole-fame removed in 0\.2\.0"):
        run("SASRec", "tiny", config_dict={**tiny_config, "length_bucketing": True})
