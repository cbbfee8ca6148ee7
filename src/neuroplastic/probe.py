"""The standard linear probe on frozen features, shared by every unsupervised learner.

Protocol (Journé et al., ICLR 2023; Nimmo & Mondragón 2025): features of every split are computed
once with the learner frozen and cached; a ``Dropout(p) → Linear(D → classes)`` classifier is trained
by Adam (lr 1e-3) with cross-entropy, the learning rate halved at 20/35/50/60/70/80/90 % of the epochs.
Reported accuracy is that of the final epoch; the validation split is only for model selection.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import DataBundle, batches
from .data.core import per_class_subset

_HALVING = (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9)
_BITS = torch.arange(8, dtype=torch.uint8)


def half_mask(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A keep mask :math:`m_i \sim \mathrm{Bernoulli}(1/2)` i.i.d. shaped like ``x`` (``uint8``, 0 or 1), taken from
    the 8 bits of uniform random bytes: one random number per 8 elements (on a CPU, ``bernoulli_`` over the
    24,576-dimensional features of SoftHebb dominated the probe's time)."""
    n = x.numel()
    r = torch.randint(0, 256, (-(-n // 8),), dtype=torch.uint8, device=x.device, generator=generator)
    return ((r.unsqueeze(1) >> _BITS.to(x.device)) & 1).flatten()[:n].view_as(x)


def half_dropout(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Dropout with :math:`p = 1/2`: :math:`y = 2\,m \odot x` with :math:`m` = :func:`half_mask` (the same
    distribution as ``F.dropout(x, 0.5)``; Srivastava et al. 2014)."""
    return x * half_mask(x, generator).to(x.dtype) * 2.0


class LinearProbe(nn.Module):
    """``scores = W · dropout((flatten(f) − μ) / σ) + b`` with μ, σ the training features' statistics.

    The standardisation is an affine map a linear classifier could absorb, but under dropout and Adam it is
    not neutral: it fixes the conditioning (features of saturating units otherwise vary by a few hundredths
    and Adam at 1e-3 barely moves) and also amplifies rarely active features. ``standardize=False`` gives
    ``W · dropout(flatten(f)) + b`` on the raw features, SoftHebb's readout (Journé et al., ICLR 2023).
    """

    def __init__(self, in_features: int, n_classes: int, dropout: float = 0.5, standardize: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, n_classes)
        self.standardize = bool(standardize)
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        #: draws of the dropout masks (None: torch's global generator); not part of the state_dict
        self.generator = generator
        if generator is not None:  # nn.Linear's own initialisation, drawn from ``generator``
            with torch.no_grad():
                nn.init.kaiming_uniform_(self.linear.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
                self.linear.bias.uniform_(-bound, bound, generator=generator)

    def _standardized(self, f: torch.Tensor, fresh: bool = False) -> torch.Tensor:
        """``flatten(f)`` in float32, standardised when on; ``fresh``: never the caller's own tensor."""
        f = f.flatten(1)
        if self.standardize:
            return (f.float() - self.mean) / self.std
        return f.to(torch.float32, copy=fresh)

    def set_stats(self, f: torch.Tensor) -> None:
        """Standardise with the mean and std of the training features ``f`` ``[N, D]`` (no-op when off)."""
        if not self.standardize:
            return
        self.mean.copy_(f.float().mean(0))
        self.std.copy_(f.float().std(0).clamp_min(1e-6) if len(f) > 1 else torch.ones_like(self.std))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout.p == 0.5:
            # W (2 m ⊙ x) + b computed as (2 W)(m ⊙ x) + b: equal bit for bit (doubling is exact), with one
            # in-place product over the wide features instead of three passes (mask cast, product, doubling)
            x = self._standardized(f, fresh=True)
            x.mul_(half_mask(x, self.generator))
            return nn.functional.linear(x, self.linear.weight * 2.0, self.linear.bias)
        f = self._standardized(f)
        if self.training and self.dropout.p > 0 and self.generator is not None:
            keep = torch.rand(f.shape, generator=self.generator, device=f.device) >= self.dropout.p
            return self.linear(f * keep.to(f.dtype) / (1 - self.dropout.p))
        return self.linear(self.dropout(f))


#: Feature caches larger than this many values are stored in float16 (halves e.g. the 5.9 GB of
#: SoftHebb's 24,576-dim CIFAR-10 features); the probe computes in float32.
HALF_ABOVE = 2**28


@torch.no_grad()
def cached_features(learner: nn.Module, x: torch.Tensor, batch_size: int = 500, half: bool | None = None,
                    ) -> torch.Tensor:
    """``learner.features`` over ``x`` in evaluation mode, batch by batch, flattened to ``[N, D]``
    (float16 when ``half``; ``None``: when ``N·D`` exceeds :data:`HALF_ABOVE`)."""
    was = learner.training
    learner.eval()
    out = []
    for xb, _ in batches(x, x, batch_size):
        if hasattr(learner, "reset_state"):
            learner.reset_state()
        f = learner.features(xb).flatten(1)
        if half is None:
            half = len(x) * f.shape[1] > HALF_ABOVE
        out.append(f.half() if half else f)
    learner.train(was)
    return torch.cat(out)


def train_probe(f_train: torch.Tensor, y_train: torch.Tensor, n_classes: int, *, epochs: int = 20,
                lr: float = 1e-3, dropout: float = 0.5, batch_size: int = 64, seed: int = 0,
                evals: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None, progress: bool = False,
                standardize: bool = True, eval_every: int = 1, f_flip: torch.Tensor | None = None,
                f_stats: torch.Tensor | None = None) -> tuple[LinearProbe, list[dict[str, float]]]:
    """Fit a :class:`LinearProbe` on cached features; returns it and per-epoch rows.

    Every row has ``probe_epoch`` and ``probe_loss``; the ``{split}_acc`` of ``evals`` are measured every
    ``eval_every`` epochs and always at the last one (the reported, final-epoch accuracy).

    ``f_flip``: features of the horizontally mirrored training images (row ``i`` mirrors row ``i`` of
    ``f_train``). Each training sample then enters each epoch as one of its two views, drawn with probability
    1/2: exactly random horizontal flips of the probe's inputs (the authors' probe, Nimmo & Mondragón 2025),
    since a flip has only two outcomes and the features are frozen. The standardisation statistics are then
    taken over both views.

    ``f_stats``: the features whose mean and standard deviation standardise (default: the training features and
    their mirrored views); :func:`fit_probe` passes every training image's features to a probe of a few labels.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if f_flip is not None and f_flip.shape != f_train.shape:
        raise ValueError(f"f_flip must be shaped like f_train {tuple(f_train.shape)}, got {tuple(f_flip.shape)}")
    g = torch.Generator().manual_seed(seed)
    # the probe's own generator for its initialisation and dropout masks (the process-wide RNG is left alone)
    g_init = torch.Generator().manual_seed(seed)
    probe = LinearProbe(f_train.shape[1], n_classes, dropout, standardize, generator=g_init).to(f_train.device)
    if f_train.device.type != "cpu":
        probe.generator = torch.Generator(device=f_train.device).manual_seed(seed)
    if standardize:  # statistics over every view, from at most 20,000 rows when the cache is large
        views = [f_stats] if f_stats is not None else [f_train] if f_flip is None else [f_train, f_flip]
        k = len(views[0]) if sum(v.numel() for v in views) <= HALF_ABOVE else 20000 // len(views)
        probe.set_stats(views[0][:k].float() if len(views) == 1 else torch.cat([v[:k] for v in views]).float())
    rows = torch.arange(len(f_train), device=f_train.device)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    milestones = sorted({max(1, round(epochs * m)) for m in _HALVING})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.5)
    hist = []
    for epoch in tqdm(range(epochs), desc="linear probe", disable=not progress, leave=False, file=sys.stderr):
        probe.train()
        tot, n = 0.0, 0
        for ib, yb in batches(rows, y_train, batch_size, shuffle=True, generator=g):
            fb = f_train[ib]
            if f_flip is not None:
                pick = torch.rand(len(ib), generator=g) < 0.5
                fb = torch.where(pick.to(fb.device).unsqueeze(1), f_flip[ib], fb)
            loss = nn.functional.cross_entropy(probe(fb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(yb)
            n += len(yb)
        sched.step()
        row = {"probe_epoch": epoch + 1, "probe_loss": tot / max(n, 1)}
        hist.append(row)
        if (epoch + 1) % eval_every and epoch + 1 < epochs:
            continue
        probe.eval()
        with torch.no_grad():
            for name, (f, y) in (evals or {}).items():
                correct = sum(int((probe(fb).argmax(1) == yb).sum()) for fb, yb in batches(f, y, 4096))
                row[f"{name}_acc"] = correct / max(len(y), 1)
    probe.eval()
    return probe, hist


def probe_options(learner, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The probe's settings: the learner's defaults (``probe_epochs``, ``probe_lr``, ``probe_dropout``,
    ``probe_batch_size``, ``probe_standardize``, ``probe_eval_every``; no flips) overridden by the protocol's
    ``probe`` mapping (``None`` entries keep the default)."""
    out = {"epochs": learner.probe_epochs, "lr": learner.probe_lr, "dropout": learner.probe_dropout,
           "batch_size": learner.probe_batch_size, "standardize": getattr(learner, "probe_standardize", True),
           "flip": False, "eval_every": getattr(learner, "probe_eval_every", 1)}
    out.update({k: v for k, v in (options or {}).items() if v is not None})
    return out


def fit_probe(learner, bundle: DataBundle, *, seed: int = 0, progress: bool = True, eval_batch_size: int = 500,
              train_idx: torch.Tensor | None = None, options: dict[str, Any] | None = None,
              labels_per_class: list | None = None, min_steps: int = 500,
              ) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """Cache ``learner.features`` on every split, train the probe on all labels (or ``train_idx``), attach it as
    ``learner.probe``; then one probe per count of ``labels_per_class`` on the same cached features.

    Returns the all-label probe's per-epoch rows and one row per label count (``labels_per_class``,
    ``n_labels``, ``test_acc``, ``val_acc``, ``probe_epochs``). A label subset is :func:`per_class_subset`
    (seeded by ``seed``); its probe gets at least ``min_steps`` updates (more epochs than ``epochs`` when an epoch
    is a handful of batches: a rule fixed before any result) and is evaluated after its last epoch only. It
    standardises with the statistics of every training image's features, their labels unused (the learner saw those
    images unlabelled): the statistics of the labelled few leave a feature that is constant on them at σ = 1e-6, so
    it enters the test images' scores a million-fold and the probe guesses (the optimal Hebbian preset's 1-label
    probes were at chance, 7.9-11.4 % on MNIST, suite hebbian-mnist).
    ``options``: :func:`probe_options` (``flip``: also cache the mirrored training images' features and train
    with random flips).
    """
    opt = probe_options(learner, options)
    if opt["flip"] and bundle.train.x.dim() != 4:
        raise ValueError(f"probe.flip needs image inputs [N, C, H, W], dataset {bundle.name!r} has "
                         f"{tuple(bundle.train.x.shape)}")
    f_train = cached_features(learner, bundle.train.x, eval_batch_size)
    half = f_train.dtype == torch.float16  # every split in the training features' precision
    feats = {"train": f_train, **{s: cached_features(learner, getattr(bundle, s).x, eval_batch_size, half)
                                  for s in ("val", "test") if getattr(bundle, s) is not None}}
    f_flip = cached_features(learner, bundle.train.x.flip(-1), eval_batch_size, half) if opt["flip"] else None
    evals = {s: (feats[s], getattr(bundle, s).y) for s in ("val", "test") if s in feats}

    def one(idx: torch.Tensor | None, epochs: int, eval_every: int, subset: bool = False):
        f_train, y_train, ff = feats["train"], bundle.train.y, f_flip
        stats = None
        if idx is not None:
            if subset:  # a few labels: standardised as every training image (docstring)
                stats = f_train if f_flip is None else torch.cat([f_train[:10000], f_flip[:10000]])
            f_train, y_train = f_train[idx], y_train[idx]
            ff = None if ff is None else ff[idx]
        return train_probe(f_train, y_train, bundle.n_classes, epochs=epochs, lr=opt["lr"], dropout=opt["dropout"],
                           batch_size=opt["batch_size"], seed=seed, evals=evals, progress=progress,
                           standardize=opt["standardize"], eval_every=eval_every, f_flip=ff, f_stats=stats)

    probe, hist = one(train_idx, opt["epochs"], opt["eval_every"])
    learner.probe = probe
    runs = []
    for n in labels_per_class or ():
        if n == "all":
            last = hist[-1]
            runs.append({"labels_per_class": "all", "n_labels": len(bundle.train) if train_idx is None
                         else len(train_idx), "test_acc": last.get("test_acc"), "val_acc": last.get("val_acc"),
                         "probe_epochs": opt["epochs"]})
            continue
        idx = per_class_subset(bundle.train.y.cpu(), int(n), seed).to(bundle.train.y.device)
        steps = -(-len(idx) // opt["batch_size"])
        n_ep = max(opt["epochs"], -(-min_steps // steps))
        _, h = one(idx, n_ep, n_ep, subset=True)
        runs.append({"labels_per_class": int(n), "n_labels": len(idx), "test_acc": h[-1].get("test_acc"),
                     "val_acc": h[-1].get("val_acc"), "probe_epochs": n_ep})
    return hist, runs
