"""The trainer: one loop for every learner, with metrics, atomic checkpoints, exact resume and NaN guards.

``fit`` knows only the learner protocol (:mod:`neuroplastic.learners.base`): ``train_step``,
``eval_step``, ``end_epoch``; for unsupervised learners it then fits the standard linear probe on cached
frozen features (:mod:`neuroplastic.probe`).
"""

from __future__ import annotations

import dataclasses
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import DataBundle, batches
from .learners.base import Learner, check_loss

CHECKPOINT = "checkpoint.pt"


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; with ``deterministic`` ask torch for deterministic kernels. Fresh tensors are
    not NaN-filled (``torch.utils.deterministic.fill_uninitialized_memory``, on by default in deterministic
    mode, costs a pass over every allocation — 1–2 % of a Hebbian step); our code writes every element it
    reads, and the reproducibility tests check that seeded runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` by write-then-rename, so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process (CUDA: peak allocated on the device; CPU: peak resident set)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@dataclasses.dataclass
class FitResult:
    """What a run produced: per-epoch history and final metrics."""

    history: list[dict[str, float]]
    final: dict[str, float]
    train_seconds: float
    peak_memory_mb: float
    epochs_done: int


@torch.no_grad()
def evaluate(learner: Learner, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Run ``eval_step`` over a split and return ``acc`` (and ``loss`` if reported) as means."""
    was_training = learner.training
    learner.eval()
    tot: dict[str, float] = {}
    for xb, yb in batches(x, y, batch_size):
        learner.reset_state()
        for k, v in learner.eval_step(xb, yb).items():
            tot[k] = tot.get(k, 0.0) + float(v)
    learner.train(was_training)
    n = max(tot.pop("n", 0.0), 1.0)
    out = {"acc": tot.pop("correct", 0.0) / n}
    for k, v in tot.items():
        out[k] = v / n
    return out


def _split_metrics(learner: Learner, bundle: DataBundle, eval_batch_size: int, splits: tuple[str, ...],
                   ) -> dict[str, float]:
    out: dict[str, float] = {}
    for split in splits:
        ds = getattr(bundle, split)
        if ds is None:
            continue
        for k, v in evaluate(learner, ds.x, ds.y, eval_batch_size).items():
            out[f"{split}_{k}"] = v
    return out


def fit(learner: Learner, bundle: DataBundle, *, epochs: int, batch_size: int, seed: int = 0,
        checkpoint_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        eval_batch_size: int = 1000, check_every: int = 50, eval_train: bool = False, eval_every: int = 1,
        log: Any = None) -> FitResult:
    """Train ``learner`` on ``bundle`` for ``epochs``; evaluate validation and test after every
    ``eval_every``-th epoch and always after the last (tiny label sets train for hundreds of short epochs,
    where evaluating every epoch would cost more than training).

    - Deterministic on CPU given ``seed`` (shuffling uses a dedicated generator saved in checkpoints).
    - With ``checkpoint_dir``, a checkpoint is written atomically after every epoch; ``resume=True``
      continues from it exactly (weights, optimizer, scheduler, all RNG states, history).
    - NaN/Inf in the loss (every step) or in any parameter (every ``check_every`` steps and at epoch
      end) raises :class:`NonFiniteError` naming the tensor and the step; the last good checkpoint stays.
    - Unsupervised learners (``learner.supervised is False``) train with ``y=None``; then a linear probe
      is fitted on cached frozen features (:func:`neuroplastic.probe.fit_probe`).
    """
    if epochs < 0 or batch_size < 1 or eval_every < 1:
        raise ValueError(f"epochs must be >= 0, batch_size >= 1 and eval_every >= 1 (got {epochs}, {batch_size}, "
                         f"{eval_every})")
    expected = getattr(learner, "in_shape", None)
    if expected is not None and tuple(expected) != tuple(bundle.in_shape):
        raise ValueError(f"{learner.name}: built for inputs of shape {tuple(expected)}, but dataset "
                         f"{bundle.name!r} has samples of shape {tuple(bundle.in_shape)}")
    device = next(iter(learner.parameters()), torch.empty(0)).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    gen = torch.Generator().manual_seed(seed)
    n_train = len(bundle.train)
    steps_per_epoch = (n_train + batch_size - 1) // batch_size
    learner.configure(epochs, steps_per_epoch)
    history: list[dict[str, float]] = []
    start_epoch, spent = 0, 0.0
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False, map_location=device)
        learner.load_training_state(state["learner"])
        gen.set_state(state["shuffle_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, start_epoch, spent = state["history"], state["epoch"], state["train_seconds"]

    def save(epoch: int) -> None:
        if ckpt_path is None:
            return
        atomic_save({"learner": learner.training_state(), "shuffle_rng": gen.get_state(),
                     "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                     "history": history, "epoch": epoch, "train_seconds": spent}, ckpt_path)

    y_train = bundle.train.y
    for epoch in range(start_epoch, epochs):
        learner.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        nsteps = 0
        bar = tqdm(batches(bundle.train.x, y_train, batch_size, shuffle=True, generator=gen),
                   total=steps_per_epoch, desc=f"{learner.name} epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, file=sys.stderr)
        for xb, yb in bar:
            learner.reset_state()
            metrics = learner.train_step(xb, yb if learner.supervised else None)
            nsteps += 1
            where = f"at epoch {epoch + 1} step {nsteps}"
            if "loss" in metrics:
                check_loss(metrics["loss"], learner.name, where)
            if nsteps % check_every == 0:
                learner.check_finite(where)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if progress and "loss" in metrics and nsteps % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / nsteps:.4f}")
        learner.check_finite(f"at the end of epoch {epoch + 1}")
        diag = learner.end_epoch(epoch)
        seconds = time.perf_counter() - t0
        spent += seconds
        row: dict[str, float] = {"epoch": epoch + 1, "seconds": seconds, "samples_per_s": n_train / seconds}
        row.update({f"train_{k}": v / max(nsteps, 1) for k, v in sums.items()})
        if learner.supervised and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            row.update(_split_metrics(learner, bundle, eval_batch_size,
                                      ("train", "val", "test") if eval_train else ("val", "test")))
        row.update(diag)
        history.append(row)
        save(epoch + 1)
        if log is not None:
            log(row)

    final = dict(history[-1]) if history else {}
    if not learner.supervised:
        from .probe import fit_probe

        probe_hist = fit_probe(learner, bundle, seed=seed, progress=progress, eval_batch_size=eval_batch_size)
        final.update(probe_hist[-1])
        final["probe_history"] = probe_hist  # type: ignore[assignment]
    return FitResult(history, final, spent, peak_memory_mb(device), len(history))
