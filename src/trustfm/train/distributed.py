"""Data-parallel training under ``torchrun``: the same loop in every process, gradients all-reduced (gloo, CPU).

``trustfm train --nproc N`` starts ``torchrun --standalone --nproc-per-node N`` on ``trustfm train`` (the same
arguments); several machines run ``torchrun --nnodes M --node-rank K --rdzv-endpoint HOST:PORT -m trustfm.cli
train CONFIG`` each (docs/usage.md). Inside, :func:`world` reads torchrun's environment and the
:class:`DataParallel` component joins the run's components:

- every process builds the same batches (same seed, same length buckets; under DP-SGD, rank 0's secret Poisson
  batches are broadcast), and takes every N-th row of each: the step's rows are the single-process step's rows,
  split;
- after the step's backward passes, gradients are summed across processes weighted by rows and divided by the
  step's total rows: the gradient of the whole batch's mean loss, as one process would compute it; clipping then
  applies to it;
- under DP-SGD each process clips its own examples, only rank 0 adds noise, and the noisy sums are added up:
  per-example clipping before the all-reduce, noise once.

Rank 0 writes the run folder; the other ranks train in a scratch folder that is removed at the end, and charge a
scratch ledger (their spending is rank 0's: one model, one release).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from trustfm.train.callbacks import Callback
from trustfm.train.components import TrustComponent


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1


def world() -> World:
    """This process's place among torchrun's processes (rank 0 of 1 outside torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(rank=int(os.environ.get("RANK", "0")), size=size,
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


class SyncGradients(Callback):
    """Share each step's rows among the processes and combine their gradients (see the module doc)."""

    def __init__(self, world: World, dpsgd=None):
        self.world = world
        self.dpsgd = dpsgd

    def on_fit_start(self, trainer) -> None:
        if self.dpsgd is not None and self.world.rank != 0:
            self.dpsgd.adds_noise = False
        # every process starts from rank 0's weights (they are equal when seeded alike; this makes it certain)
        for p in trainer.model.state_dict().values():
            torch.distributed.broadcast(p, src=0)

    def on_epoch_batches(self, trainer, epoch: int, batches: list[np.ndarray]) -> list[np.ndarray]:
        shared = [batches]
        torch.distributed.broadcast_object_list(shared, src=0)
        return [b[self.world.rank::self.world.size] for b in shared[0]]

    def _params(self, trainer):
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return params

    def on_step_gradients(self, trainer, rows: int) -> None:
        if self.dpsgd is not None:
            return  # DP-SGD writes its gradients after clipping: they are combined in on_before_optimizer_step
        params = self._params(trainer)
        total = _sum_gradients(params, weight=float(rows))  # each process's mean gradient, weighted by its rows
        for p in params:
            p.grad.div_(max(total, 1.0))

    def on_before_optimizer_step(self, trainer) -> None:
        if self.dpsgd is None:
            return
        # clipped sums / expected batch, plus rank 0's noise; their requires_grad is off while the clipper holds them
        _sum_gradients(self.dpsgd.parameters(), weight=1.0)


def _sum_gradients(params: list, *, weight: float) -> float:
    """Replace each parameter's gradient by the sum over processes of ``weight`` x gradient (one all-reduce of one
    flat buffer); returns the sum of the processes' weights."""
    flat = torch.cat([p.grad.reshape(-1) * weight for p in params] + [torch.tensor([weight])])
    torch.distributed.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return float(flat[-1])


class DataParallel(TrustComponent):
    """Under torchrun (``WORLD_SIZE`` > 1): the gradient synchronisation callback, after every other callback."""

    name = "data_parallel"

    def __init__(self, world: World):
        self.world = world

    def callbacks(self, setup):
        # the last component: its callback runs after DP-SGD's (Poisson batches, noisy gradients) and every other
        dpsgd = setup.extra.get("dpsgd")
        if dpsgd is not None and dpsgd.clipping != "bookkeeping":
            from trustfm.errors import ConfigError

            raise ConfigError("privacy.dp.clipping: opacus adds noise in every process; with --nproc use the "
                              "default clipping: bookkeeping (noise added once)")
        return [SyncGradients(self.world, dpsgd)]


def rank_config(config, here: World):
    """The config a process trains with: rank 0's is the user's; another rank's writes to a scratch folder and a
    scratch ledger, and tracks nothing."""
    if here.rank == 0:
        return config, None
    scratch = tempfile.mkdtemp(prefix=f"trustfm-rank{here.rank}-")
    privacy = config.privacy.model_copy(update={"ledger": os.path.join(scratch, "ledger.jsonl")})
    train = config.train.model_copy(update={"tracking": config.train.tracking.model_copy(
        update={"tensorboard": False, "mlflow": False})})
    return config.model_copy(update={"output_dir": os.path.join(scratch, "run"), "privacy": privacy,
                                     "train": train}), scratch


def train_every_rank(config, *, show_progress: bool):
    """``train_run`` in this torchrun process; returns (rank 0's run paths or None on other ranks)."""
    from trustfm.train.run import train_run

    here = world()
    torch.distributed.init_process_group("gloo")
    try:
        mine, scratch = rank_config(config, here)
        paths = train_run(mine, show_progress=show_progress and here.rank == 0)
        torch.distributed.barrier()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            return None
        return paths
    finally:
        torch.distributed.destroy_process_group()
