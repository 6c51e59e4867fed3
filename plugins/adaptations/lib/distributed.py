"""Data-parallel training of one job in several processes (``gaia-bench run --gpus-per-job N``).

:func:`run_data_parallel` starts N fresh processes (``spawn``: safe with CUDA and with the
driver's threads), one *rank* each, joined into a ``torch.distributed`` group: ``nccl`` with one
GPU per rank on CUDA, ``gloo`` on CPU (N CPU processes: how the data-parallel path is tested on a
machine without GPUs). Each rank calls ``fn(rank, payload)``; the caller stays out of the group,
shows rank 0's progress and gets rank 0's return value back. :meth:`Rank.wrap` puts a model in
:class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged over the ranks), with
BatchNorm made synchronous on CUDA (``SyncBatchNorm``: statistics over the global batch, as one
process computes them); ``SyncBatchNorm`` has no CPU kernel, so gloo ranks keep per-rank
statistics and the details say so.

Failure never hangs: the first rank that raises reports its error and exits, the caller then kills
the others (blocked in a collective, waiting for it) and raises that rank's error -- a
:class:`~gaia_bench.errors.GaiaBenchError` keeps its class, message and hint. A rank that dies
without a word (killed, out of memory) is named with its signal. A rank stuck in a collective fails
after ``GAIA_BENCH_DDP_TIMEOUT_S`` seconds (default 1800).

The group meets through a file store in a private temporary directory (no port to pick, nothing
left behind); rank 0's return value comes back the same way (``torch.save``).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from gaia_bench.errors import GaiaBenchError, UsageError

TIMEOUT_ENV = "GAIA_BENCH_DDP_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0
POLL_S = 0.1


@dataclass(frozen=True)
class Launch:
    """Where the ranks of one job run: ``devices[r]`` is rank r's device."""

    backend: str  # "nccl" or "gloo"
    devices: tuple[str, ...]

    @property
    def world_size(self) -> int:
        return len(self.devices)

    @property
    def batchnorm(self) -> str:
        """How :meth:`Rank.wrap` treats BatchNorm layers with this backend."""
        return ("synchronized over the ranks (SyncBatchNorm)" if self.backend == "nccl"
                else "per-rank statistics (SyncBatchNorm needs CUDA)")

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "devices": list(self.devices)}


def plan_launch(device: str, processes: int) -> Launch:
    """The launch of ``processes`` ranks for a job whose session runs on ``device``: ``cuda:K``
    gives ranks the GPUs K … K+N-1 (under Slurm the job's GPUs are numbered from 0), ``cpu`` gives
    N gloo processes. Raises a :class:`UsageError` naming the fix when that is not possible here."""
    import torch

    if processes < 1:
        raise UsageError(f"--gpus-per-job {processes} is out of range", "use 1 or more")
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return Launch("gloo", ("cpu",) * processes)
    if kind != "cuda":
        raise UsageError(f"--gpus-per-job {processes} needs --device cuda or cpu "
                         f"({device} has no multi-process backend)",
                         "drop --gpus-per-job, or use --device cuda (nccl) or --device cpu (gloo, for testing)")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    first = int(index or 0)
    if first + processes > available:
        usable = max(available - first, 0)
        raise UsageError(f"--gpus-per-job {processes} from {device}, but only {usable} CUDA device(s) are usable there "
                         f"({available} visible)",
                         f"use --gpus-per-job {max(usable, 1)} or fewer"
                         + (", or --device cuda:0" if first else "")
                         + ", or --device cpu for gloo processes")
    return Launch("nccl", tuple(f"cuda:{first + r}" for r in range(processes)))


def shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items; the first ``n % world_size`` ranks get one more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class Rank:
    """What ``fn`` gets in a rank: who it is, its device, and the few collectives a trainer needs."""

    def __init__(self, rank: int, launch: Launch, queue: Any) -> None:
        self.rank = rank
        self.launch = launch
        self.device = launch.devices[rank]
        self._queue = queue

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        return shard(n, self.rank, self.world_size)

    def advance(self, n: int = 1) -> None:
        """Rank 0's progress, shown by the caller's progress bar."""
        if self.is_main:
            self._queue.put(("progress", 0, n))

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks (float64)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def wrap(self, model: Any) -> Any:
        """``model`` (on this rank's device) in DistributedDataParallel; BatchNorm synchronized on CUDA.
        ``static_graph``: a backbone whose pooling leaves some parameters unused still trains."""
        from torch.nn.parallel import DistributedDataParallel

        if self.launch.backend == "nccl":
            from timm.layers import convert_sync_batchnorm  # also converts timm's BatchNormAct layers

            model = convert_sync_batchnorm(model)
            index = int(self.device.partition(":")[2] or 0)
            return DistributedDataParallel(model, device_ids=[index], output_device=index, static_graph=True)
        return DistributedDataParallel(model, static_graph=True)



def _timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds", f"e.g. {TIMEOUT_ENV}=600") from None


def _cpu_threads(world_size: int) -> int:
    """Each gloo rank's share of this machine's cores: oversubscribed OpenMP threads spin and can
    make a step 10x slower."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // world_size)


def _worker(index: int, fn: Callable[[Rank, Any], Any], payload: Any, launch: Launch, store: str, result: str,
            queue: Any, timeout_s: float) -> None:
    """One rank's process: join the group, run ``fn``, hand rank 0's value back. An error is
    reported on the queue -- before this process exits, so before the others notice -- and the
    process exits with code 1 (the caller raises it; no second traceback on the terminal)."""
    import datetime
    import warnings

    import torch
    import torch.distributed as dist

    # DDP's note that a parameter's gradient layout differs from its bucket's is about speed only
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    try:
        device = launch.devices[index]
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        else:
            torch.set_num_threads(_cpu_threads(launch.world_size))
        dist.init_process_group(launch.backend, init_method=f"file://{store}", rank=index,
                                world_size=launch.world_size, timeout=datetime.timedelta(seconds=timeout_s))
        value = fn(Rank(index, launch, queue), payload)
        if index == 0:
            torch.save(value, result)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which raises it
        queue.put(("error", index, _describe(exc)))
        sys.exit(1)


def _describe(exc: BaseException) -> dict:
    """A picklable account of ``exc``; a GaiaBenchError keeps its class (when importable), message and hint."""
    info = {"type": type(exc).__name__, "message": str(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    if isinstance(exc, GaiaBenchError):
        try:
            pickle.dumps(type(exc))
            info["gaia_class"] = type(exc)
        except Exception:  # noqa: BLE001 - e.g. a class defined inside a function
            info["gaia_class"] = GaiaBenchError
        info.update(gaia_message=exc.message, hint=exc.hint)
    return info


class RankFailed(RuntimeError):
    """A rank raised an error that is not a GaiaBenchError; the rank's traceback is in the message."""


def _rank_error(index: int, world_size: int, info: dict) -> BaseException:
    where = f"rank {index} of {world_size}"
    cls = info.get("gaia_class")
    if cls is not None:
        error = cls.__new__(cls)
        GaiaBenchError.__init__(error, f"{info['gaia_message']} [{where}]", info.get("hint"))
        return error
    return RankFailed(f"{where} failed: {info['type']}: {info['message']}\n"
                      f"--- {where} traceback ---\n{info['traceback']}")


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name} (out of memory, or killed?)"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode} without reporting an error"


def run_data_parallel(fn: Callable[[Rank, Any], Any], payload: Any, launch: Launch,
                      on_progress: Callable[[int], None] = lambda n: None) -> Any:
    """Run ``fn(rank, payload)`` in ``launch.world_size`` processes and return rank 0's value.

    ``fn`` must be importable by name (a module-level function) and ``payload`` picklable. Its CPU
    tensors travel through shared memory: every rank sees the SAME storage, so a rank copies what
    it modifies (a model to train: ``copy.deepcopy``). Raises the first failing rank's error, after stopping
    the others."""
    import torch.multiprocessing as mp
    from multiprocessing.connection import wait

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    timeout_s = _timeout_s()
    processes: list = []
    with tempfile.TemporaryDirectory(prefix="gaia-bench-ddp-") as tmp:
        store, result = str(Path(tmp) / "store"), str(Path(tmp) / "rank0.pt")
        try:
            for index in range(launch.world_size):
                process = context.Process(target=_worker, name=f"gaia-bench-rank{index}",
                                          args=(index, fn, payload, launch, store, result, queue, timeout_s))
                try:
                    process.start()
                except Exception as exc:  # e.g. a model that cannot be pickled
                    raise GaiaBenchError(f"cannot start data-parallel rank {index}: {type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:400]}",
                                         "the model and data must be picklable; use --gpus-per-job 1") from exc
                processes.append(process)
            errors: list[tuple[int, dict]] = []
            running = {p.sentinel: (i, p) for i, p in enumerate(processes)}
            failed: tuple[int, Any] | None = None
            while running and failed is None:
                ready = wait(list(running), timeout=POLL_S)
                _drain(queue, on_progress, errors)
                for sentinel in ready:
                    index, process = running.pop(sentinel)
                    process.join()
                    if process.exitcode != 0 and failed is None:
                        failed = (index, process)
            if failed is not None:
                time.sleep(POLL_S)  # a rank's report precedes its exit; let the pipe deliver it
                _drain(queue, on_progress, errors)
                if errors:  # the first report is the cause: the others failed because it left
                    index, info = errors[0]
                    raise _rank_error(index, launch.world_size, info)
                index, process = failed
                raise RankFailed(f"rank {index} of {launch.world_size} {_exit_reason(process.exitcode)}")
            _drain(queue, on_progress, errors)
            import torch

            return torch.load(result, weights_only=False)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
            for process in processes:
                process.join()


def _drain(queue: Any, on_progress: Callable[[int], None], errors: list) -> None:
    while not queue.empty():
        kind, index, value = queue.get()
        if kind == "progress":
            on_progress(value)
        else:
            errors.append((index, value))
