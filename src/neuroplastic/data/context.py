r"""Context-dependent (selective) integration tasks, generated and seeded (after Mante et al. 2013, as set
up by Lin & Huang 2024, arXiv 2310.14621, Phys. Rev. E 110:024306).

A trial has ``silent + stim + after`` steps of :math:`\Delta t = 2` ms (default 50 + 200 + 250 = 500) and 4
input channels: two noisy stimuli :math:`u_k(t) = c_k + \mathcal N(0, \sigma^2)` with offsets
:math:`c_k \in \{\pm 0.5\}`, present only during the stimulus epoch; and two one-hot context channels
(which stimulus matters), on for the whole trial. The target is 0 during the first ``silent + stim``
steps, then :math:`\mathrm{sign}(c_\text{cued})` until the end. Switch variant: with probability
``p_switch`` (0.1) the context flips for the last ``switch_steps`` (200) steps, and the target becomes the
sign of the other stimulus's offset.

Splits: ``x`` float32 ``[N, T, 4]`` (channels: stimulus 1, stimulus 2, context 1, context 2), ``y``
float32 targets ``[N, T]``. A trial's *decision window* is the trailing run of steps whose target equals
the final non-zero target (:func:`decision_window`); the decision is the sign of the output averaged
over it.

Registered datasets (``generated=True, task="sequence"``, ``n_classes = 2`` decisions):
``context`` (500 steps, 8,000 train / 1,000 test trials), ``context-switch`` (same, with switches) and
``context-mini`` (10 + 40 + 50 = 100 steps, 2,000 / 500 trials; switch-free; for quick runs and tests).
The test set is drawn from a fixed seed independent of the run's seed; the training set from the seed.
"""

from __future__ import annotations

import functools

import torch

from .core import ArrayDataset, DatasetInfo, register_dataset

__all__ = ["context_task", "decision_window", "decisions"]

_TEST_SEED = 7_919_000


def context_task(n: int, seed: int = 0, *, silent: int = 50, stim: int = 200, after: int = 250,
                 offset: float = 0.5, noise: float = 1.0, switch: bool = False, p_switch: float = 0.1,
                 switch_steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generate ``n`` trials; returns ``(x [n, T, 4], y [n, T])`` (see the module docstring).

    >>> x, y = context_task(3, silent=2, stim=3, after=4)
    >>> x.shape, y.shape, y[:, :5].abs().sum().item()
    (torch.Size([3, 9, 4]), torch.Size([3, 9]), 0.0)
    """
    if n < 1 or silent < 0 or stim < 1 or after < 1:
        raise ValueError(f"context_task: need n >= 1, silent >= 0, stim >= 1, after >= 1; got "
                         f"n={n}, silent={silent}, stim={stim}, after={after}")
    if switch and not (0 < switch_steps <= after and 0 <= p_switch <= 1):
        raise ValueError(f"context_task: need 0 < switch_steps <= after ({after}) and 0 <= p_switch <= 1, "
                         f"got switch_steps={switch_steps}, p_switch={p_switch}")
    g = torch.Generator().manual_seed(int(seed))
    T = silent + stim + after
    signs = torch.randint(0, 2, (n, 2), generator=g).float() * 2 - 1  # offsets' signs
    ctx = torch.randint(0, 2, (n,), generator=g)  # which stimulus is cued
    x = torch.zeros(n, T, 4)
    x[:, silent:silent + stim, :2] = offset * signs[:, None, :] + noise * torch.randn(n, stim, 2, generator=g)
    x[torch.arange(n), :, 2 + ctx] = 1.0
    y = torch.zeros(n, T)
    y[:, silent + stim:] = signs[torch.arange(n), ctx][:, None]
    if switch:
        flip = torch.rand(n, generator=g) < p_switch
        t0 = T - switch_steps
        idx = flip.nonzero().flatten()
        if len(idx):
            new = 1 - ctx[idx]
            sel = torch.zeros(len(idx), switch_steps, 2)
            sel[torch.arange(len(idx)), :, new] = 1.0
            x[idx, t0:, 2:] = sel
            y[idx, t0:] = signs[idx, new][:, None]
    return x, y


def decision_window(y: torch.Tensor) -> torch.Tensor:
    """Boolean mask ``[N, T]``: the trailing run of steps whose target equals the final target."""
    if y.dim() != 2:
        raise ValueError(f"decision_window: targets must be [N, T], got {tuple(y.shape)}")
    eq = (y == y[:, -1:]) & (y != 0)
    return eq.flip(1).to(torch.int32).cumprod(1).flip(1).bool()


def decisions(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-trial correct decisions ``[N]`` (bool): :math:`\mathrm{sign}(\overline{o}_\text{window}) =
    \mathrm{sign}(y_T)`, with the mean of the output ``out`` ``[N, T]`` over :func:`decision_window`."""
    w = decision_window(y).to(out.dtype)
    mean = (out * w).sum(1) / w.sum(1).clamp_min(1)
    return torch.sign(mean) == torch.sign(y[:, -1])


def _loader(n_train: int, n_test: int, kw: dict, root=None, download: bool = False, seed: int = 0,
            ) -> tuple[ArrayDataset, ArrayDataset]:
    name = kw.pop("_name")
    try:
        xtr, ytr = context_task(n_train, seed, **kw)
        xte, yte = context_task(n_test, _TEST_SEED, **kw)
    finally:
        kw["_name"] = name
    return ArrayDataset(xtr, ytr, name, ("-1", "+1")), ArrayDataset(xte, yte, name, ("-1", "+1"))


def _register(name: str, n_train: int, n_test: int, description: str, **kw) -> None:
    kw["_name"] = name
    register_dataset(DatasetInfo(name, functools.partial(_loader, n_train, n_test, kw), 2, description,
                                 generated=True, task="sequence"))


_register("context", 8000, 1000, "context-dependent integration, 500 steps × 4 inputs (Lin & Huang 2024)")
_register("context-switch", 8000, 1000, "context-dependent integration with context switches (p = 0.1)",
          switch=True)
_register("context-mini", 2000, 500, "context-dependent integration, short (100 steps), for quick runs",
          silent=10, stim=40, after=50)
