r"""Pictures of a trained Hebbian network (Journé et al. 2023; Nimmo & Mondragón 2025, figures of filters,
receptive fields, UMAP of features and winner statistics).

- :func:`plot_filters` — first-layer kernels as image tiles.
- :func:`receptive_fields` — inputs that maximally drive deeper units, by projected gradient ascent:
  :math:`x \leftarrow \Pi_{[0,1]}\big(x + \alpha\,\nabla_x a_k(x)/\lVert\nabla_x a_k(x)\rVert\big)` for 500 steps,
  with :math:`a_k` unit ``k``'s activation at the centre position of a stage (network frozen, eval mode).
- :func:`plot_umap` — UMAP of probe features coloured by class (needs the ``viz`` extra: ``umap-learn``).
- :func:`plot_winner_frequency` — share of positions each unit won during the unsupervised epoch, per layer
  (units that never won are dead).
- :func:`report_figures` — all of the above into a folder; returns the written paths (for the report/CLI).
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

__all__ = [
    "UMAP_MISSING",
    "plot_filters",
    "plot_receptive_fields",
    "plot_umap",
    "plot_winner_frequency",
    "receptive_fields",
    "report_figures",
]

_umap_warned = False
UMAP_MISSING = ("UMAP pictures need the optional 'viz' extra: pip install 'neuroplastic[viz]' (umap-learn); "
                "skipped")



def _save(plt, fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` (folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tiles(imgs: torch.Tensor, path: str | os.PathLike, title: str, max_n: int = 96) -> Path:
    """Save ``imgs`` ``[K, C, H, W]`` (each min-max scaled to [0, 1]) as a grid."""
    plt = _plt()
    imgs = imgs[:max_n].detach().float().cpu()
    k = len(imgs)
    cols = min(12, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        im = imgs[i]
        im = (im - im.min()) / (im.max() - im.min()).clamp_min(1e-12)
        if im.shape[0] == 3:
            ax.imshow(im.permute(1, 2, 0).numpy())
        else:
            ax.imshow(im[0].numpy(), cmap="gray")
    fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def plot_filters(learner, path: str | os.PathLike) -> Path:
    """First-layer kernels of ``learner.net`` (``[C_out, C_in, k, k]``; linear layers reshaped to the input)."""
    _, layer, _ = learner.net.hebb_layers()[0]
    w = layer.weight.detach()
    if w.dim() == 2:
        shape = getattr(learner, "in_shape", None)
        side = math.isqrt(w.shape[1])
        w = w.view(len(w), *shape) if shape is not None and math.prod(shape) == w.shape[1] else \
            w[:, :side * side].reshape(len(w), 1, side, side)
    return _tiles(w, path, f"{learner.name}: first-layer filters")


def receptive_fields(learner, stage: int, units: list[int] | None = None, steps: int = 500, step_size: float = 0.05,
                     seed: int = 0) -> torch.Tensor:
    """Inputs maximising the activation of ``units`` of stage ``stage`` (projected gradient ascent, see module).

    Returns ``[len(units), C, H, W]`` in [0, 1], in the space of the learner's inputs (after the data stages of
    its protocol, e.g. ZCA whitening)."""
    net = learner.net
    if not 0 <= stage < len(net.stages):
        raise ValueError(f"stage must be in [0, {len(net.stages) - 1}], got {stage}")
    was = learner.training
    learner.eval()
    net.set_plastic(False)
    shape = tuple(learner.in_shape)
    dev = next(net.parameters()).device
    with torch.no_grad():
        h = torch.zeros(1, *shape, device=dev)
        for s in net.stages[:stage + 1]:
            h = s(h)
    n_units = h.shape[1]
    units = list(range(min(16, n_units))) if units is None else list(units)
    g = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.01 * torch.randn(len(units), *shape, generator=g)).to(dev).requires_grad_(True)
    idx = torch.tensor(units, device=dev)
    for _ in range(steps):
        with torch.enable_grad():  # callers may hold no_grad; the ascent needs the input gradient
            h = x
            for s in net.stages[:stage + 1]:
                h = s(h)
            a = h[torch.arange(len(units), device=dev), idx]
            if a.dim() == 3:
                a = a[:, a.shape[1] // 2, a.shape[2] // 2]
            (grad,) = torch.autograd.grad(a.sum(), x)
        with torch.no_grad():
            gn = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * len(shape)))
            x.add_(step_size * grad / gn).clamp_(0.0, 1.0)
    learner.train(was)
    return x.detach()


def plot_receptive_fields(learner, path: str | os.PathLike, stage: int = 1, steps: int = 500) -> Path:
    """Receptive fields of the first 16 units of ``stage`` as a picture."""
    rf = receptive_fields(learner, stage, steps=steps)
    return _tiles(rf, path, f"{learner.name}: receptive fields of stage {stage} (gradient ascent, {steps} steps)")


def plot_umap(features: torch.Tensor, labels: torch.Tensor, path: str | os.PathLike, max_points: int = 5000,
              seed: int = 0) -> Path | None:
    """UMAP of ``features`` ``[N, D]`` coloured by ``labels``; returns ``None`` when ``umap-learn`` is not installed,
    saying so (:data:`UMAP_MISSING`) once per process, not once per run."""
    global _umap_warned
    try:
        import umap
    except ImportError:
        if not _umap_warned:
            print(UMAP_MISSING, file=sys.stderr)
            _umap_warned = True
        return None
    plt = _plt()
    f = features[:max_points].float().cpu().numpy()
    y = labels[:max_points].cpu().numpy()
    emb = umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(f)
    fig, ax = plt.subplots(figsize=(5, 5))
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, s=2, cmap="tab10")
    ax.legend(*sc.legend_elements(), fontsize=6, loc="best", markerscale=0.8)
    ax.set_title("UMAP of probe features by class", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    return _save(plt, fig, path)


def plot_winner_frequency(learner, path: str | os.PathLike) -> Path:
    """Sorted share of positions won per unit, one panel per Hebbian layer; dead units counted in titles."""
    plt = _plt()
    layers = learner.net.hebb_layers()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 2.6), squeeze=False)
    for ax, (name, m, _) in zip(axes[0], layers):
        f = m.winner_frequency().sort(descending=True).values.cpu().numpy()
        dead = int((m.win_counts == 0).sum())
        ax.bar(range(len(f)), f, width=1.0)
        ax.axhline(1.0 / len(f), color="r", lw=0.8, ls="--")
        ax.set_title(f"{name}: {dead}/{len(f)} dead", fontsize=8)
        ax.set_xlabel("unit (sorted)", fontsize=7)
        ax.set_ylabel("win share", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _save(plt, fig, path)


def report_figures(learner, bundle, outdir: str | os.PathLike, rf_steps: int = 500,
                   max_points: int = 3000) -> dict[str, Path | None]:
    """Every picture of a trained Hebbian learner into ``outdir``: filters, receptive fields of stage 1 (or
    0 for one-stage nets), UMAP of test features (if ``umap-learn`` is installed) and winner frequencies."""
    outdir = Path(outdir)
    out: dict[str, Path | None] = {"filters": plot_filters(learner, outdir / "filters.png")}
    if learner.net.stages[0].kind != "linear":
        st = 1 if len(learner.net.stages) > 1 else 0
        try:
            out["receptive_fields"] = plot_receptive_fields(learner, outdir / "receptive_fields.png", st, rf_steps)
        except ValueError as e:
            print(f"receptive fields skipped: {e}")
            out["receptive_fields"] = None
    from ..probe import cached_features

    n = min(max_points, len(bundle.test))
    feats = cached_features(learner, bundle.test.x[:n])
    out["umap"] = plot_umap(feats, bundle.test.y[:n], outdir / "umap.png")
    out["winners"] = plot_winner_frequency(learner, outdir / "winner_frequency.png")
    return out


def main(argv: list[str] | None = None) -> int:
    """``neuroplastic analyze hebbian RUN_DIR --out DIR``: every picture of a trained Hebbian learner."""
    import argparse

    from ..experiment import load_trained

    ap = argparse.ArgumentParser(prog="neuroplastic analyze hebbian",
                                 description="Filters, receptive fields (projected gradient ascent), UMAP of "
                                 "features by class and winner frequencies of a trained Hebbian learner.")
    ap.add_argument("run", help="the --out folder of `neuroplastic train` (config.yaml + checkpoint.pt)")
    ap.add_argument("--out", required=True, help="output folder for the PNGs")
    ap.add_argument("--rf-steps", type=int, default=500, help="gradient-ascent iterations (paper: 500)")
    ap.add_argument("--points", type=int, default=3000, help="test samples in the UMAP")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    learner, bundle, _ = load_trained(a.run, a.device)
    if not hasattr(learner, "net") or not hasattr(learner.net, "stages"):
        raise ValueError(f"{a.run}: not a Hebbian learner (learner {learner.name!r})")
    out = report_figures(learner, bundle, a.out, rf_steps=a.rf_steps, max_points=a.points)
    for name, path in out.items():
        print(f"{name}: {path if path is not None else 'skipped'}")
    return 0
