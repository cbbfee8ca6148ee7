"""Shared protocol of the Hebbian benchmark scripts (not a test): Hebbian epoch with checkpoints, forward-pass
timing, feature caching, linear probe, label-efficiency probes, standard records.

Protocol (Journé et al. 2023; Nimmo & Mondragón 2025): one unsupervised epoch (all Hebbian layers learn at
once), freeze, cache features of every split, linear probe (Adam 1e-3, dropout 0.5, lr halving); the
reported accuracy is the probe's final-epoch test accuracy; the validation split is only reported.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from neuroplastic import data, experiment
from neuroplastic.probe import train_probe
from neuroplastic.trainer import atomic_save, seed_everything

LABEL_COUNTS = (1, 10, 100, 1000)


def per_class_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` seeded random samples of every class of ``y`` (all of a class if it has fewer)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    idx = []
    for c in torch.unique(y).tolist():
        where = torch.nonzero(y == c).flatten()
        idx.append(where[torch.randperm(len(where), generator=g)[:n]])
    return torch.cat(idx).sort().values


@torch.no_grad()
def cache(learner, x: torch.Tensor, batch_size: int = 500, dtype=torch.float16) -> torch.Tensor:
    """``learner.features`` over ``x`` in eval mode, stored as ``dtype`` (fp16 halves the memory of 24k-dim
    CIFAR features; the probe computes in fp32)."""
    learner.eval()
    out = [learner.features(x[i:i + batch_size]).flatten(1).to(dtype) for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def hebbian_epoch(learner, bundle, batch_size: int, seed: int, ckpt: Path | None, every: int = 500,
                  log=print) -> float:
    """One unsupervised epoch with an atomic checkpoint every ``every`` steps; resumes from ``ckpt``.
    Returns the seconds spent (summed over resumptions)."""
    n = len(bundle.train)
    steps = (n + batch_size - 1) // batch_size
    learner.configure(1, steps)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    start, spent = 0, 0.0
    if ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        learner.load_training_state(st["learner"])
        start, spent = st["step"], st["seconds"]
        log(f"resumed at step {start}/{steps}")
    learner.train()
    t0 = time.perf_counter()
    x = bundle.train.x
    for s in range(start, steps):
        idx = order[s * batch_size:(s + 1) * batch_size]
        learner.train_step(x[idx], None)
        if (s + 1) % every == 0 or s + 1 == steps:
            learner.check_finite(f"at step {s + 1}")
            if ckpt is not None and s + 1 < steps:
                atomic_save({"learner": learner.training_state(), "step": s + 1,
                             "seconds": spent + time.perf_counter() - t0}, ckpt)
            log(f"hebbian step {s + 1}/{steps} {spent + time.perf_counter() - t0:.0f}s")
    learner.end_epoch(0)
    return spent + time.perf_counter() - t0


@torch.no_grad()
def forward_seconds(learner, x: torch.Tensor, batch_size: int) -> float:
    """Seconds of a plain forward pass (no plasticity, same batch size; eval-mode BN so running statistics
    stay untouched) over ``x``."""
    learner.eval()
    learner.net.set_plastic(False)
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        learner.net(learner.whiten(x[i:i + batch_size]))
    return time.perf_counter() - t0


def probe_records(learner, bundle, feats: dict, *, base: dict, seed: int, counts=LABEL_COUNTS, log=print,
                  min_steps: int = 500, eval_every: int = 1, epochs: int | None = None) -> list[dict]:
    """Fit the probe on all labels, then on ``counts`` labels per class; one record per fit.

    Small label sets get at least ``min_steps`` probe updates (more epochs than ``probe_epochs`` when an
    epoch is a single batch), a fixed rule chosen before seeing any result. Their probes are evaluated at the
    final epoch only (``eval_every`` applies to the all-label probe, whose curve is kept): with 1 label per
    class that is 500 epochs, and evaluating val+test every few of them cost more than the fits.
    ``feats["train_flip"]``, if present: features of the mirrored training images, for a probe trained with
    random horizontal flips (:func:`~neuroplastic.probe.train_probe`'s ``f_flip``). ``epochs``: the probe's
    epochs (default: ``learner.probe_epochs``)."""
    probe_epochs = epochs or learner.probe_epochs
    recs = []
    evals = {s: (feats[s], getattr(bundle, s).y) for s in ("val", "test") if s in feats}
    for n in (None, *counts):
        idx = None if n is None else per_class_subset(bundle.train.y, n, seed)
        ftr = feats["train"] if idx is None else feats["train"][idx]
        ffl = feats.get("train_flip")
        ffl = ffl if ffl is None or idx is None else ffl[idx]
        ytr = bundle.train.y if idx is None else bundle.train.y[idx]
        t0 = time.perf_counter()
        steps = -(-len(ytr) // learner.probe_batch_size)
        n_ep = max(probe_epochs, -(-min_steps // steps)) if idx is not None else probe_epochs
        _, hist = train_probe(ftr, ytr, bundle.n_classes, epochs=n_ep, lr=learner.probe_lr,
                              dropout=learner.probe_dropout, batch_size=learner.probe_batch_size, seed=seed,
                              evals=evals, standardize=learner.probe_standardize,
                              eval_every=eval_every if idx is None else n_ep, f_flip=ffl)
        last = hist[-1]
        rec = dict(base, test_acc=last["test_acc"], val_acc=last.get("val_acc"),
                   labels_per_class=n if n is not None else "all", n_labels=len(ytr),
                   probe_seconds=round(time.perf_counter() - t0, 2), probe_epochs=n_ep)
        log(f"probe labels/class={rec['labels_per_class']}: test {rec['test_acc']:.4f} val {rec['val_acc']}")
        recs.append(rec)
    return recs


def base_record(learner_name: str, dataset: str, preset: str, seed: int, batch_size: int, params: dict,
                device: str = "cpu") -> dict:
    """The standard record keys (experiment.record's) that do not depend on the result."""
    env = experiment.environment(device)
    return {"learner": learner_name, "dataset": dataset, "preset": preset, "seed": seed, "epochs": 1,
            "status": "done", "commit": env["commit"], "cpu": env["cpu"], "cpu_isa": env["cpu_isa"],
            "torch": env["torch"], "threads": env["threads"], "gpu": env.get("gpu"), "device": device,
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "params": params,
            "batch_size": batch_size}


def prepare(dataset: str, root: str | None, seed: int, device: str, limit_train=None, limit_test=None):
    """Seeded data bundle with a 10 % validation split (5,000 for CIFAR-10, 6,000 for MNIST)."""
    seed_everything(seed)
    return data.prepare(dataset, root=root, val=0.1, seed=seed, device=device, limit_train=limit_train,
                        limit_test=limit_test)


def write(records: list[dict], path: str | os.PathLike) -> None:
    """Write the records atomically (``experiment.write_json_atomic``)."""
    experiment.write_json_atomic(records, path)
