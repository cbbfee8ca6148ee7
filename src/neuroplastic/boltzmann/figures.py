"""Pictures of trained Boltzmann machines: filters, sample grids and the log-likelihood curve over training."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..hebbian.viz import _plt, _save, _tiles


def _as_images(x: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Rows ``[K, D]`` as images ``[K, C, H, W]`` (flat inputs become the squarest grid that holds them)."""
    x = x.detach().float().cpu()
    if len(in_shape) == 3:
        return x.view(len(x), *in_shape)
    d = x.shape[1]
    side = math.isqrt(d)
    if side * side != d:
        x = torch.cat([x, torch.zeros(len(x), (side + 1) ** 2 - d)], 1)
        side += 1
    return x.view(len(x), 1, side, side)


def sample_grid(samples: torch.Tensor, in_shape: tuple[int, ...], path: Path, title: str) -> Path:
    """Model samples ``[K, D]`` (values in [0, 1]) as an image grid."""
    return _tiles(_as_images(samples, in_shape), path, title)


@torch.no_grad()
def rbm_figures(learner, bundle, out_dir: Path) -> list[Path]:
    """An RBM learner's filters (weights of the 96 most active hidden units), a grid of samples (the persistent
    chains after 1,000 more Gibbs steps, shown as :math:`p(v|h)`) and its monitored log-likelihood curve."""
    rbm = learner.rbm
    paths = []
    v = bundle.train.x.flatten(1)[:2000].clamp(0, 1)
    order = rbm.p_h(v).mean(0).argsort(descending=True)[:96]
    paths.append(_tiles(_as_images(rbm.W.T[order], learner.in_shape), out_dir / "filters.png",
                        f"{learner.name}: filters of the most active hidden units"))
    sampler = learner.sampler
    start = sampler.v if sampler.v.dim() == 2 else sampler.v[0]
    if not bool(sampler.ready):
        start = v[:64]
    g = torch.Generator().manual_seed(0)
    s, _ = rbm.gibbs(start[:64], 1000, g)
    h = (rbm.p_h(s) > torch.rand(len(s), rbm.W.shape[1], generator=g)).float()
    paths.append(sample_grid(rbm.p_v(h), learner.in_shape, out_dir / "samples.png",
                             f"{learner.name}: samples (1,000 Gibbs steps from the chains)"))
    curve = getattr(learner, "monitor_log", [])
    if curve and any(k.endswith("ll_ais_fast") for k in curve[0]):
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5, 3.2))
        key = next(k for k in curve[0] if k.endswith("ll_ais_fast"))
        ax.plot([r["epoch"] for r in curve], [r[key] for r in curve], marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("log-likelihood (nats, quick AIS)")
        ax.set_title(f"{learner.name}: {key.split('_')[0]} log-likelihood over training", fontsize=9)
        ax.grid(alpha=0.3)
        paths.append(_save(plt, fig, out_dir / "log_likelihood.png"))
    return paths
