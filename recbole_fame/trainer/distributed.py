"""Multi-process training: one process per rank, started as RecBole's ``run_recboles`` does.

``quick_start.run(..., nproc=N)`` spawns N processes with torch.multiprocessing
(:func:`run_distributed`). Each one runs the whole pipeline with a ``local_rank`` in its config; RecBole's ``Config`` then joins the process
group (NCCL on GPUs, Gloo on CPUs: see :mod:`recbole_fame.compat`), its dataloaders shard the
training and evaluation samples with ``DistributedSampler``, its trainer averages gradients with
``DistributedDataParallel`` and its evaluation averages the metrics of all ranks. Rank 0 writes the
checkpoints and the result JSON and hands its result back to the calling process. FAME's stage 1
runs under DDP the same way, and every rank builds stage 2 from the checkpoint rank 0 wrote.
"""

import hashlib
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_distributed(
    run, model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset
):
    """``run(model, dataset, config_file_list, config_dict, saved)`` (the pipeline, a module-level
    function) in ``nproc`` processes on this machine, ranks ``group_offset`` to
    ``group_offset + nproc - 1`` of ``world_size``; returns the result of local rank 0."""
    world_size = check_process_counts(nproc, world_size, group_offset)
    # A queue of the spawn context, as RecBole's run does: the result of rank 0 comes back on it.
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = {
        **(config_dict or {}),
        "world_size": world_size,
        "ip": ip,
        "port": port,
        "nproc": nproc,
        "offset": group_offset,
    }
    mp.spawn(
        _run_rank,
        args=(run, model, dataset, config_file_list, config_dict, saved, queue),
        nprocs=nproc,
        join=True,
    )
    return None if queue.empty() else queue.get()


def check_process_counts(nproc, world_size, group_offset):
    """The world size (``nproc`` when ``world_size`` is -1); ValueError naming a count that cannot be."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    world_size = nproc if world_size == -1 else world_size
    if group_offset < 0 or group_offset + nproc > world_size:
        raise ValueError(
            f"ranks {group_offset}..{group_offset + nproc - 1} (group_offset={group_offset}, "
            f"nproc={nproc}) do not fit in world_size={world_size}"
        )
    return world_size


def _run_rank(local_rank, run, model, dataset, config_file_list, config_dict, saved, queue):
    try:
        result = run(model, dataset, config_file_list, {**config_dict, "local_rank": local_rank}, saved)
        if local_rank == 0:
            queue.put(result)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def parameter_checksums(model):
    """The SHA-256 of ``model``'s state dict on every rank, in rank order (all ranks must call it).

    DDP keeps replicas equal only if every step's gradients were averaged, so equal checksums after
    training show that the ranks stayed in sync."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    checksums = [None] * dist.get_world_size()
    dist.all_gather_object(checksums, digest.hexdigest())
    return checksums


def wait_for_checkpoint(config):
    """Under DDP, every rank waits here after each checkpoint save (rank 0 writes it).

    Every rank reloads the best checkpoint after training, and FAME's stage 2 is built from stage
    1's: none may read a file still being written. Both RecBole's ``_save_checkpoint`` (through
    :mod:`recbole_fame.compat`) and :class:`~recbole_fame.trainer.trainer.PipelineTrainer`'s call it.
    """
    if not config["single_spec"]:
        dist.barrier()


def join_process_group(config):
    """The distributed half of RecBole's ``Config._init_device`` for a rank's config (a dict with
    ``local_rank``), with Gloo and the CPU where there is no CUDA device to use (RecBole's own
    rule: ``gpu_id`` empty or no CUDA), and NCCL as before otherwise. RecBole always asked for
    NCCL on CUDA device ``local_rank``, impossible without a GPU. The group is joined once per
    process, so a second ``Config`` (FAME's stage 1 builds a SASRec one) does not fail on it."""
    missing = [k for k in ("world_size", "ip", "port", "offset", "nproc") if k not in config]
    if missing:
        raise ValueError(
            f"local_rank={config['local_rank']} asks for multi-process training, which also needs "
            f"the config keys {missing}: start it with run_fame.py --nproc=N or "
            "recbole_fame.quick_start.run(..., nproc=N)"
        )
    gpu_id = config["gpu_id"]
    gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
    config["gpu_id"] = gpu_id
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    local_rank = config["local_rank"]
    use_cuda = len(gpu_id) > 0 and torch.cuda.is_available()
    if use_cuda and len(gpu_id.split(",")) < config["nproc"]:
        raise ValueError(
            f"nproc={config['nproc']} processes need one GPU each, but gpu_id='{gpu_id}' names "
            f"{len(gpu_id.split(','))}; set gpu_id to as many devices, or gpu_id='' for CPU processes"
        )
    rank = local_rank + config["offset"]
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            init_method=f"tcp://{config['ip']}:{config['port']}",
            rank=rank,
            world_size=config["world_size"],
        )
    elif (dist.get_rank(), dist.get_world_size()) != (rank, config["world_size"]):
        raise ValueError(
            f"this process already trains as rank {dist.get_rank()} of {dist.get_world_size()}, "
            f"but the config asks for rank {rank} of {config['world_size']}"
        )
    if use_cuda:
        config["device"] = torch.device("cuda", local_rank)
        torch.cuda.set_device(local_rank)
    else:
        config["device"] = torch.device("cpu")
    config["single_spec"] = False
    if local_rank != 0:  # as in RecBole: one process logs and shows progress
        config["state"] = "error"
        config["show_progress"] = False
        config["verbose"] = False


def rank0_value(value, config):
    """``value`` as rank 0 has it, on every rank of a ``--nproc`` run (all ranks must call it)."""
    if config["single_spec"]:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]
