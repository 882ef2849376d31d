"""Several processes and machines: PyTorch's own process groups, set up from torchrun's
environment.

Under ``torchrun`` every process sees ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`setup` joins the process group (gloo on CPU, nccl on CUDA) when there is more than one
process. Everything else here is a thin helper over :mod:`torch.distributed` that answers
sensibly in a single process, so the training loop reads the same either way:

- :func:`is_main`, :func:`rank`, :func:`world_size`, :func:`local_rank`,
  :func:`local_world_size`: where this process stands;
- :func:`all_reduce_sum`, :func:`any_true`, :func:`broadcast_int`: agreement between ranks,
  so early stopping, divergence and stop requests are decided identically everywhere.

Only rank 0 writes files (checkpoints, models, logs, plots); see :func:`is_main`.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

__all__ = [
    "setup",
    "teardown",
    "is_distributed",
    "is_main",
    "rank",
    "world_size",
    "local_rank",
    "local_world_size",
    "all_reduce_sum",
    "any_true",
    "broadcast_int",
    "barrier",
    "configure_threads",
]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def setup(device: torch.device | str | None = None) -> int:
    """Join the process group that ``torchrun`` describes; return the world size.

    Does nothing (and returns 1) in a single process, or when a group is already set up
    (then its size is returned). The backend is nccl when ``device`` is CUDA, gloo
    otherwise; on CUDA each process uses the GPU numbered by its ``LOCAL_RANK``.

    Parameters
    ----------
    device : torch.device or str, optional
        The device training runs on.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return 1
    if not dist.is_available():  # pragma: no cover - builds without distributed support
        raise RuntimeError(
            "WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; run one process."
        )
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo")
    # a process group left to the interpreter's teardown can abort the process (gloo's
    # threads are destroyed while still joinable), so leave it explicitly at exit
    atexit.register(teardown)
    logger.info(
        "Joined a process group: rank %d of %d (%s)", rank(), world_size(), dist.get_backend()
    )
    return dist.get_world_size()


def teardown() -> None:
    """Leave the process group, if one is set up; safe to call more than once.

    Called at interpreter exit by :func:`setup`; call it earlier to free the group.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a rank already gone must not block the exit
            logger.debug("barrier before leaving the process group failed", exc_info=True)
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True when a process group with more than one process is set up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    """Number of processes training together (1 in a single process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def local_rank() -> int:
    """This process's rank on its own machine (``LOCAL_RANK``; 0 in a single process)."""
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    """Number of processes on this machine (``LOCAL_WORLD_SIZE``; 1 in a single process)."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", 1))


def is_main() -> bool:
    """True on the process that writes files and prints: rank 0, or the only process."""
    return rank() == 0


def _reduce_device() -> torch.device:
    # nccl reduces CUDA tensors only; gloo reduces CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum each of ``values`` over all ranks (in float64); unchanged in a single process."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    return all_reduce_sum([1.0 if flag else 0.0])[0] > 0


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (for example a seed drawn at random)."""
    if not is_distributed():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_reduce_device())
    dist.broadcast(t, src=0)
    return int(t.item())


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def configure_threads(device: torch.device | str = "cpu") -> int | None:
    """Set PyTorch's intra-op threads for CPU training; return the number set, or None.

    ``HLAE_NUM_THREADS`` wins when set. Otherwise, when several processes share this machine
    under ``torchrun`` (which sets ``OMP_NUM_THREADS=1`` unless told otherwise), the
    machine's cores are divided among them; a single process keeps PyTorch's own default.
    """
    if torch.device(device).type != "cpu":
        return None
    wanted = os.environ.get("HLAE_NUM_THREADS")
    if wanted:
        try:
            n = max(1, int(wanted))
        except ValueError:
            logger.warning("Ignoring HLAE_NUM_THREADS=%r: not an integer", wanted)
            return None
    elif local_world_size() > 1:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cores = os.cpu_count() or 1
        n = max(1, cores // local_world_size())
    else:
        return None
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
