"""The pipeline behind ``run_fame.py``: RecBole's quick start, plus FAME's two stages.

For FAME with ``pretrain: True`` and no ``pretrained_path`` (section 4.4.2): SASRec is trained
with FAME's backbone settings on the same split, saved, and FAME is built from that checkpoint
and fine-tuned end to end. Any other model (``SASRec``, ``GRU4Rec``, ``CORE``, ...) is trained
and tested once, through the same data, protocol and evaluator. :func:`resume` goes on with an
interrupted run from its checkpoint.
"""

import os
import sys
import time
from logging import getLogger

from recbole.utils import init_logger, init_seed, set_color

from recbole_fame.checkpoint import checkpoint_config, for_this_process, load_checkpoint
from recbole_fame.config import PROPERTIES_DIR, Config
from recbole_fame.config_checks import check_values, unknown_key_warnings
from recbole_fame.data import check_dataset_files, prepare_data
from recbole_fame.files import write_json
from recbole_fame.model import build_model
from recbole_fame.removed import check_removed_options
from recbole_fame.text.pretrain import (
    TEXT_INIT_MODELS,
    init_item_embeddings,
    text_pretraining,
    uses_text_pretraining,
)
from recbole_fame.trainer import get_trainer
from recbole_fame.trainer.trainer import last_saved_checkpoint
from recbole_fame.trainer.distributed import check_process_counts, parameter_checksums, run_distributed
from recbole_fame.trainer.memory import keep_freed_memory

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


def run(
    model="FAME",
    dataset="ml-100k",
    config_file_list=None,
    config_dict=None,
    saved=True,
    nproc=1,
    world_size=-1,
    ip="localhost",
    port="5678",
    group_offset=0,
):
    """Train and test ``model`` on ``dataset``.

    Returns the result dict of RecBole's ``run_recbole`` plus ``model_file``, ``seconds`` and,
    for FAME's two-stage run, ``pretrain_result`` (SASRec's, in the same form). When ``saved``,
    the result is also written as JSON next to the checkpoint (``<model_file>.json``).

    ``nproc``, ``world_size``, ``ip``, ``port`` and ``group_offset`` are those of RecBole's
    ``run``: with ``nproc > 1`` or a ``world_size``, training runs in ``nproc`` processes with
    DistributedDataParallel (:mod:`recbole_fame.distributed`), and the result of rank 0 is
    returned, with ``rank_checksums`` of each stage's parameters after training.
    """
    _RUN.update(started=time.time(), checkpoint_dir=None)
    if nproc != 1 or world_size > 0:
        check_process_counts(nproc, world_size, group_offset)
        # Bad config files and missing data get their clear errors here, not once per process.
        config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        check_config(config)
        _RUN["checkpoint_dir"] = config["checkpoint_dir"]
        check_dataset_files(config)
        if needs_text_pretraining(config):  # once, here: the ranks read it from the cache
            text_pretraining(config)
        return run_distributed(
            run, model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset
        )
    config = Config(
        model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict
    )
    check_config(config)
    _RUN["checkpoint_dir"] = config["checkpoint_dir"]
    _start(config)
    choices = getattr(config, "device_choices", {})
    if choices:
        getLogger().info(", ".join(f"{key}={value}" for key, value in choices.items())
                         + f": the defaults for {config['device'].type} (set a key to force it)")
    for warning in unknown_key_warnings(config, [PROPERTIES_DIR]):
        getLogger().warning(warning)
    data = prepare_data(config)[1:]
    if needs_text_pretraining(config):
        getLogger().info(set_color("Text-enhanced facet-aware pre-training of item embeddings", "green"))
        text_pretraining(config)

    sasrec_config = None
    if trains_stage_one(config):
        sasrec_config = Config(
            model="SASRec",
            dataset=config["dataset"],
            config_file_list=config_file_list,
            config_dict={**(config_dict or {}), **{k: config[k] for k in BACKBONE_KEYS}},
        )
    return _run_stages(config, sasrec_config, data, saved)


_RUN = {"started": None, "checkpoint_dir": None}  # this process's latest run(), for latest_checkpoint


def latest_checkpoint():
    """The checkpoint an interrupted :func:`run` goes on from: the one this process wrote last,
    or (the ranks of a ``--nproc`` run write theirs) the newest ``.pth`` of the run's
    ``checkpoint_dir`` written since it started; None when there is none."""
    if last_saved_checkpoint() is not None or not _RUN["checkpoint_dir"]:
        return last_saved_checkpoint()
    folder = _RUN["checkpoint_dir"]
    written = [os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".pth")] if (
        os.path.isdir(folder)) else []
    written = [path for path in written if os.path.getmtime(path) >= _RUN["started"]]
    return max(written, key=os.path.getmtime, default=None)


def check_config(config):
    """Every value ``config`` sets checked before anything is read or trained (FAME's keys
    included, so a bad one does not wait for stage 2), and no option removed since."""
    check_values(config)
    check_removed_options(config, "config")


def trains_stage_one(config):
    """Whether ``run`` trains SASRec first for this config (FAME, pretraining, no checkpoint given)."""
    return config["model"] == "FAME" and bool(config["pretrain"]) and not config["pretrained_path"]


def needs_text_pretraining(config):
    """Whether a run of ``config`` initialises some model's item embeddings from text: FAME
    itself, or the SASRec of its stage 1 (FAME built from a given SASRec checkpoint takes that
    checkpoint's embeddings)."""
    if not uses_text_pretraining(config):
        if config["text_pretrain"]:
            getLogger().warning(
                f"text_pretrain applies to {TEXT_INIT_MODELS}; {config['model']} keeps its random item embeddings"
            )
        return False
    return config["model"] != "FAME" or trains_stage_one(config) or not config["pretrained_path"]


def resume(checkpoint_file):
    """Go on with the training run that wrote ``checkpoint_file``, with the settings stored in it.

    The checkpoint's own stage is resumed: a FAME checkpoint goes on training FAME; the SASRec
    checkpoint of FAME's stage 1 goes on training SASRec and then runs stage 2 with the FAME
    settings stored beside it. With a checkpoint written by this package's trainer the run ends
    with the result the uninterrupted run would have had (see :mod:`recbole_fame.trainer`). A
    checkpoint of a ``--nproc`` run resumes in this one process (:func:`~recbole_fame.checkpoint.single_process`), with a
    warning: the remaining epochs then differ from the multi-process run's.
    Returns what :func:`run` returns.
    """
    # Read once here for the settings; the trainer reads it again for the weights.
    checkpoint = load_checkpoint(checkpoint_file)
    config = checkpoint_config(checkpoint, checkpoint_file, resuming=True)
    next_stage = checkpoint.get("next_stage")
    del checkpoint
    if next_stage is not None:
        check_removed_options(next_stage, f"the FAME stage stored in {checkpoint_file}")
    was_distributed = for_this_process(config)
    _start(config)
    logger = getLogger()
    logger.info(set_color("Resuming from ", "green") + str(checkpoint_file))
    if was_distributed:
        logger.warning(
            f"{checkpoint_file} was written by a multi-process run; it resumes in this one process, "
            "so the remaining epochs do not replay the multi-process run exactly"
        )
    data = prepare_data(config)[1:]
    if next_stage is not None:  # the SASRec stage of FAME's two-stage run
        for_this_process(next_stage)
        return _run_stages(next_stage, config, data, True, resume_file=checkpoint_file)
    return _run_stages(config, None, data, True, resume_file=checkpoint_file)


def _start(config):
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)


def build_pipeline_model(config, dataset, load_pretrained=True):
    """:func:`~recbole_fame.model.build_model`, with the item embeddings from the text
    pre-training when ``text_pretrain`` asks for them (not for weights that come from a
    checkpoint: ``load_pretrained=False``), and freed memory kept (``keep_freed_memory``)."""
    model = build_model(config, dataset, load_pretrained=load_pretrained)
    if load_pretrained and uses_text_pretraining(config):
        if config["model"] == "FAME" and config["pretrained_path"]:
            getLogger().info(f"FAME's item embeddings come from {config['pretrained_path']}, not from the text pre-training")
        else:
            init_item_embeddings(model, config, dataset)
    if config["keep_freed_memory"] and config["device"].type == "cpu":
        keep_freed_memory()
    return model


def _run_stages(config, first_stage, data, saved, resume_file=None):
    """Train and test ``first_stage`` (SASRec, for FAME's two-stage run) if given, then ``config``.

    ``resume_file`` is the checkpoint the first stage trained resumes from.
    """
    logger = getLogger()
    pretrain_result = None
    if first_stage is not None:
        logger.info(set_color("Stage 1/2: SASRec with FAME's backbone settings", "green"))
        pretrain_result = train_and_test(
            first_stage, *data, saved=True, resume_file=resume_file, next_stage=config
        )
        resume_file = None
        config["pretrained_path"] = pretrain_result["model_file"]
        rate = config["finetune_learning_rate"] or config["learning_rate"]
        logger.info(set_color("Stage 2/2: FAME fine-tuned from ", "green") + config["pretrained_path"]
                    + f" at learning rate {rate}")

    result = train_and_test(config, *data, saved=saved, resume_file=resume_file)
    result["pretrain_result"] = pretrain_result
    if saved and config["local_rank"] == 0:  # under DDP, rank 0 writes (as RecBole's trainer)
        result_file = os.path.splitext(result["model_file"])[0] + ".json"
        write_json(result_file, {"dataset": config["dataset"], **result})
        logger.info(set_color("Result written to ", "blue") + result_file)
    return result


def evaluate_as_built(trainer, valid_data, saved):
    """``epochs: 0``: the model as built (a pre-trained MIRACLE, zero-shot) validated, and saved as
    the run's checkpoint, as RecBole's ``fit`` would return and save it."""
    getLogger().info(set_color("epochs: 0", "green") + ": no training; the model as built is evaluated")
    if saved:
        trainer._save_checkpoint(-1)
    result = trainer.evaluate(valid_data, load_best_model=False, show_progress=trainer.config["show_progress"])
    return result[trainer.valid_metric], result


def train_and_test(
    config, train_data, valid_data, test_data, saved=True, resume_file=None, next_stage=None
):
    """RecBole's ``run_recbole`` from the model on, for a config whose data is already prepared.

    ``resume_file``: a checkpoint of this training to go on from. ``next_stage``: the config of
    the stage that follows, stored in the checkpoints so that resuming this stage runs it too.

    Besides RecBole's results, the dict has ``epochs_run`` (epochs trained in the whole run, a
    resumed one's earlier epochs included), ``best_epoch`` (0-based epoch of the best validation
    score), ``seconds_per_epoch`` (training only, mean over the epochs run here)
    and ``parameters`` (all of the model's parameters).
    """
    logger = getLogger()
    start = time.time()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = build_pipeline_model(config, train_data._dataset, load_pretrained=resume_file is None)
    logger.info(model)
    trainer = get_trainer(config)(config, model)
    trainer.next_stage = next_stage
    # A resumed run's best epoch so far is the one its checkpoint holds.
    best_epoch = None
    if resume_file is not None:
        trainer.resume_checkpoint(resume_file)
        best_epoch = trainer.start_epoch - 1
    # RecBole's model-specific trainers (S3Rec's, ...) do not time their epochs.
    epoch_seconds = getattr(trainer, "epoch_seconds", [])
    epoch_indices = getattr(trainer, "epochs_trained", [])

    def note_best_epoch(epoch_idx, valid_score):
        nonlocal best_epoch
        if trainer.cur_step == 0:  # early_stopping resets it exactly when validation improved
            best_epoch = epoch_idx

    if config["epochs"] == 0:
        best_valid_score, best_valid_result = evaluate_as_built(trainer, valid_data, saved)
    else:
        best_valid_score, best_valid_result = trainer.fit(
            train_data,
            valid_data,
            saved=saved,
            show_progress=config["show_progress"],
            callback_fn=note_best_epoch,
        )
    # Under DDP, before the best checkpoint is reloaded: did every rank end with the same weights?
    rank_checksums = None if config["single_spec"] else parameter_checksums(trainer.model)
    if rank_checksums and len(set(rank_checksums)) > 1:
        logger.error(f"Ranks ended training with different parameters: {rank_checksums}")
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
        # Epochs of the whole run, those before a resume included.
        "epochs_run": epoch_indices[-1] + 1 if epoch_indices else trainer.start_epoch,
        "best_epoch": best_epoch,
        "seconds_per_epoch": round(sum(epoch_seconds) / len(epoch_seconds), 3) if epoch_seconds else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        **({"rank_checksums": rank_checksums} if rank_checksums else {}),
    }
