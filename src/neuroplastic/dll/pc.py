"""Predictive coding (Whittington & Bogacz 2017, Neural Computation 29:1229) on any feed-forward net.

The network is cut into blocks ``g_l`` (a weight layer with its activation/pooling). Value nodes ``x_l``
(``l = 1..L−1``) start at the feed-forward pass; the input ``x_0`` is clamped, and the output is
clamped to the label through the cross-entropy of the last block's prediction. Energy, per sample:

.. math::

    F = \\sum_{l=1}^{L-1} \\tfrac12 \\lVert ε_l \\rVert^2 + \\mathrm{CE}(g_L(x_{L-1}), y),
    \\qquad ε_l = x_l − g_l(x_{l-1})

Inference relaxes the value nodes for ``n_steps`` steps, ``x_l ← x_l − γ ∂F/∂x_l`` with
``∂F/∂x_l = ε_l − (∂g_{l+1}/∂x_l)^T ε_{l+1}`` (the Jacobian transpose carries ``W^T``: PC needs weight
symmetry, C1 ✘, and a relaxation phase, C3 ✘; its errors are local, C2 ✓ — Lv et al. 2025 Table 1).
Then every block learns from its own prediction error at equilibrium: ``ΔW_l ∝ −∂F/∂W_l`` (for a
linear block ``ε_l ⊙ f'`` times ``x_{l−1}^T``), computed per block with the value nodes held fixed.
We use the ``x_l = f(W x_{l-1})`` form of the prediction (Millidge et al. 2022); W&B 2017 write
``W f(x_{l-1})`` — the same model up to where the nonlinearity sits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["pc_relax", "pc_weight_loss", "split_blocks"]


def split_blocks(net: nn.Sequential) -> list[nn.Sequential]:
    """Cut a flat ``nn.Sequential`` into blocks, one per ``Linear``/``Conv2d``: parameter-free modules before
    the first weight layer join it; those after a weight layer (activation, pooling, flatten) follow it."""
    blocks: list[list[nn.Module]] = []
    lead: list[nn.Module] = []
    for m in net:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            blocks.append(lead + [m])
            lead = []
        elif any(True for _ in m.parameters()):
            raise ValueError(f"split_blocks: unsupported parameterised module {m}")
        elif blocks:
            blocks[-1].append(m)
        else:
            lead.append(m)
    if not blocks:
        raise ValueError("split_blocks: the network has no Linear/Conv2d layer")
    return [nn.Sequential(*b) for b in blocks]


def pc_energy(blocks: list[nn.Module], x0: torch.Tensor, xs: list[torch.Tensor], y: torch.Tensor,
              ) -> torch.Tensor:
    """Energy ``F`` summed over the batch for value nodes ``xs = [x_1, ..., x_{L-1}]`` (see module doc)."""
    e = x0.new_zeros(())
    prev = x0
    for blk, xl in zip(blocks[:-1], xs):
        e = e + 0.5 * (xl - blk(prev)).pow(2).sum()
        prev = xl
    return e + F.cross_entropy(blocks[-1](prev), y, reduction="sum")


def pc_relax(blocks: list[nn.Module], x0: torch.Tensor, y: torch.Tensor, n_steps: int, gamma: float,
             ) -> list[torch.Tensor]:
    """Feed-forward initialisation then ``n_steps`` of ``x_l ← x_l − γ ∂F/∂x_l``; returns detached ``x_l``."""
    xs = []
    with torch.no_grad():
        h = x0
        for blk in blocks[:-1]:
            h = blk(h)
            xs.append(h)
    for _ in range(n_steps):
        xs = [v.detach().requires_grad_(True) for v in xs]
        grads = torch.autograd.grad(pc_energy(blocks, x0, xs, y), xs)
        xs = [v.detach() - gamma * g for v, g in zip(xs, grads)]
    return [v.detach() for v in xs]


def pc_weight_loss(blocks: list[nn.Module], x0: torch.Tensor, xs: list[torch.Tensor], y: torch.Tensor,
                   ) -> torch.Tensor:
    """``F / N`` with the value nodes fixed: its gradient w.r.t. block ``l``'s weights involves only
    ``ε_l`` and ``x_{l−1}`` (local), and equals ``−ΔW_l`` of predictive coding."""
    return pc_energy(blocks, x0, [v.detach() for v in xs], y) / x0.shape[0]
