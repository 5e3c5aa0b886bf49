"""The pipeline behind ``run_fame.py``: RecBole's quick start, plus FAME's two stages.

For FAME with ``pretrain: True`` and no ``pretrained_path`` (section 4.4.2): SASRec is trained
with FAME's backbone settings on the same split, saved, and FAME is built from that checkpoint
and fine-tuned end to end. Any other model (``SASRec``, ``GRU4Rec``, ``CORE``, ...) is trained
and tested once, through the same data, protocol and evaluator.
"""

import json
import os
import sys
import time
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_logger, init_seed, set_color

from recbole_fame.bucketing import bucket_dataloaders
from recbole_fame.config import Config, get_model
from recbole_fame.data import check_dataset_files
from recbole_fame.speedups import use_fast_kernels

# What FAME shares with the SASRec it is built from.
BACKBONE_KEYS = (
    "n_layers",
    "n_heads",
    "hidden_size",
    "inner_size",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
    "loss_type",
    "MAX_ITEM_LIST_LENGTH",
)


def run(model="FAME", dataset="ml-100k", config_file_list=None, config_dict=None, saved=True):
    """Train and test ``model`` on ``dataset``.

    Returns the result dict of RecBole's ``run_recbole`` plus ``model_file``, ``seconds`` and,
    for FAME's two-stage run, ``pretrain_result`` (SASRec's, in the same form). When ``saved``,
    the result is also written as JSON next to the checkpoint (``<model_file>.json``).
    """
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    check_dataset_files(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = bucket_dataloaders(
        config, *data_preparation(config, dataset)
    )

    pretrain_result = None
    if config["model"] == "FAME" and config["pretrain"] and not config["pretrained_path"]:
        sasrec_config = Config(
            model="SASRec",
            dataset=config["dataset"],
            config_file_list=config_file_list,
            config_dict={**(config_dict or {}), **{k: config[k] for k in BACKBONE_KEYS}},
        )
        logger.info(set_color("Stage 1/2: SASRec with FAME's backbone settings", "green"))
        pretrain_result = train_and_test(sasrec_config, train_data, valid_data, test_data, True)
        config["pretrained_path"] = pretrain_result["model_file"]
        logger.info(set_color("Stage 2/2: FAME fine-tuned from ", "green") + config["pretrained_path"])

    result = train_and_test(config, train_data, valid_data, test_data, saved)
    result["pretrain_result"] = pretrain_result
    if saved:
        result_file = os.path.splitext(result["model_file"])[0] + ".json"
        with open(result_file, "w") as f:
            json.dump({"dataset": config["dataset"], **result}, f, indent=2)
        logger.info(set_color("Result written to ", "blue") + result_file)
    return result


def train_and_test(config, train_data, valid_data, test_data, saved=True):
    """RecBole's ``run_recbole`` from the model on, for a config whose data is already prepared.

    Besides RecBole's results, the dict has ``epochs_run``, ``best_epoch`` (0-based epoch of the
    best validation score), ``seconds_per_epoch`` (training only, mean over epochs) and
    ``parameters`` (all of the model's parameters).
    """
    logger = getLogger()
    start = time.time()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    if config["fast_kernels"]:
        use_fast_kernels(model)
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_seconds = _time_training_epochs(trainer)
    best_epoch = None

    def note_best_epoch(epoch_idx, valid_score):
        nonlocal best_epoch
        if trainer.cur_step == 0:  # early_stopping resets it exactly when validation improved
            best_epoch = epoch_idx

    best_valid_score, best_valid_result = trainer.fit(
        train_data,
        valid_data,
        saved=saved,
        show_progress=config["show_progress"],
        callback_fn=note_best_epoch,
    )
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "seconds": round(time.time() - start, 1),
        "epochs_run": len(epoch_seconds),
        "best_epoch": best_epoch,
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 3) if epoch_seconds else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _time_training_epochs(trainer):
    """Seconds of each training epoch of ``trainer.fit``, validation excluded.

    RecBole's ``fit`` times its epochs only for the log line, so the trainer's epoch method is
    wrapped on this instance; the list fills as ``fit`` runs.
    """
    seconds = []
    train_epoch = trainer._train_epoch

    def timed_train_epoch(*args, **kwargs):
        start = time.perf_counter()
        loss = train_epoch(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return loss

    trainer._train_epoch = timed_train_epoch
    return seconds
