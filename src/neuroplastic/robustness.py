r"""Robustness of a trained learner at inference, without retraining: what the decision report compares when a rule
is meant for noisy or low-precision hardware.

- **Device mismatch:** every synaptic weight (each floating parameter of the learner with two or more
  dimensions — weights, kernels, the probe's readout) is multiplied by a fixed log-normal factor,
  :math:`w \leftarrow w\,e^{\sigma\varepsilon}`, :math:`\varepsilon \sim \mathcal N(0, 1)` drawn once per weight from a
  seeded generator (a fabricated chip: the same error on every inference).
- **Input noise:** :math:`x \leftarrow x + s\,\varepsilon` on the test inputs, in the units the learner sees (after the
  run's data stages), drawn once from a seeded generator.
- **Quantisation:** each weight tensor rounded to :math:`b` bits, symmetric and uniform per tensor,
  :math:`w \leftarrow \Delta\,\mathrm{round}(w/\Delta)`, :math:`\Delta = \max|w| / (2^{b-1}-1)`.

Every level is measured on the test split by the learner's own ``eval_step`` with the weights restored afterwards;
level 0 is the plain evaluation, so it equals the unperturbed test accuracy exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

#: The levels measured by default (the issue's σ for mismatch; input noise in data units; bit widths).
MISMATCH = (0.0, 0.05, 0.1, 0.2)
INPUT_NOISE = (0.0, 0.1, 0.3)
BITS = (8, 4)


def synaptic_weights(learner: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors perturbed: floating parameters with at least two dimensions (weights, kernels, learned feedback,
    the probe's readout); biases, normalisation statistics and state buffers (chains, traces) are left alone."""
    return [(n, t) for n, t in learner.named_parameters() if t.is_floating_point() and t.dim() >= 2]


@contextlib.contextmanager
def perturbed(learner: torch.nn.Module, kind: str, level: float, seed: int = 0) -> Iterator[None]:
    """Within the block the learner's synaptic weights carry ``kind`` (``mismatch``: log-normal factor of width
    ``level``; ``quantize``: ``level`` bits); they are restored exactly on exit."""
    if kind not in ("mismatch", "quantize"):
        raise ValueError(f"unknown perturbation {kind!r}; allowed: mismatch, quantize")
    weights = synaptic_weights(learner)
    saved = [t.detach().clone() for _, t in weights]
    g = torch.Generator().manual_seed(50_000 + seed)
    try:
        with torch.no_grad():
            for _, t in weights:
                if kind == "mismatch":
                    eps = torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.device, t.dtype)
                    t.mul_(torch.exp(level * eps))
                else:
                    bits = int(level)
                    if bits < 2:
                        raise ValueError(f"quantisation needs at least 2 bits, got {level!r}")
                    step = t.abs().max() / (2 ** (bits - 1) - 1)
                    if step > 0:
                        t.copy_(torch.round(t / step) * step)
        yield
    finally:
        with torch.no_grad():
            for (_, t), s in zip(weights, saved):
                t.copy_(s)


def _accuracy(learner: Any, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> float:
    from .trainer import evaluate, seed_everything

    seed_everything(seed)  # learners that sample at inference (spike encodings) draw the same numbers each time
    return evaluate(learner, x, y, batch_size)["acc"]


def robustness(learner: Any, bundle: Any, *, mismatch: tuple[float, ...] = MISMATCH,
               input_noise: tuple[float, ...] = INPUT_NOISE, bits: tuple[int, ...] = BITS, seed: int = 0,
               batch_size: int = 1000) -> dict[str, float]:
    """Test accuracy (fraction) of a trained ``learner`` under each level: keys ``robust_mismatch/<σ>``,
    ``robust_noise/<s>``, ``robust_bits/<b>`` (see the module docstring). Level 0 is the plain evaluation."""
    x, y = bundle.test.x, bundle.test.y
    plain = _accuracy(learner, x, y, batch_size, seed)
    out: dict[str, float] = {}
    for s in mismatch:
        if s == 0:
            out[f"robust_mismatch/{s:g}"] = plain
            continue
        with perturbed(learner, "mismatch", s, seed):
            out[f"robust_mismatch/{s:g}"] = _accuracy(learner, x, y, batch_size, seed)
    g = torch.Generator().manual_seed(60_000 + seed)
    eps = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x.device, x.dtype) if any(input_noise) else None
    for s in input_noise:
        out[f"robust_noise/{s:g}"] = plain if s == 0 else _accuracy(learner, x + s * eps, y, batch_size, seed)
    for b in bits:
        with perturbed(learner, "quantize", b, seed):
            out[f"robust_bits/{b}"] = _accuracy(learner, x, y, batch_size, seed)
    return out
