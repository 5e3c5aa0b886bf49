"""Multi-process training: one process per rank, started as RecBole's ``run_recboles`` does.

``quick_start.run(..., nproc=N)`` spawns N processes with torch.multiprocessing. Each one runs the
whole pipeline with a ``local_rank`` in its config; RecBole's ``Config`` then joins the process
group (NCCL on GPUs, Gloo on CPUs: see :mod:`recbole_fame.compat`), its dataloaders shard the
training and evaluation samples with ``DistributedSampler``, its trainer averages gradients with
``DistributedDataParallel`` and its evaluation averages the metrics of all ranks. Rank 0 writes the
checkpoints and the result JSON and hands its result back to the calling process. FAME's stage 1
runs under DDP the same way, and every rank builds stage 2 from the checkpoint rank 0 wrote.
"""

import hashlib

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_distributed(
    model, dataset, config_file_list, config_dict, saved, nproc, world_size, ip, port, group_offset
):
    """Train and test in ``nproc`` processes on this machine, ranks ``group_offset`` to
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
        args=(model, dataset, config_file_list, config_dict, saved, queue),
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


def _run_rank(local_rank, model, dataset, config_file_list, config_dict, saved, queue):
    from recbole_fame.quick_start import run  # the pipeline imports this module

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
