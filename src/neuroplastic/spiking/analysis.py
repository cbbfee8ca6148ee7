r"""Analysis of trained mode networks (Lin & Huang 2024, arXiv 2310.14621): mode projections, 3-D
trajectories, mode-importance spectrum, pruning curve, spike rasters and firing-rate statistics.

* projections of the filtered activity on the modes, :math:`\kappa^\text{in}(t) = \xi_\text{in}^\top r(t)`,
  :math:`\kappa^\text{out}(t) = \xi_\text{out}^\top r(t)`; 3-D trajectories of the first three modes coloured
  by context and choice (context tasks: four attractors) or by class (MNIST);
* mode importance :math:`\tau_\mu` sorted and the sorted :math:`|\lambda_\mu|` spectrum (log-log);
* pruning (ours, not in the paper): accuracy keeping only the top-:math:`k` modes by :math:`\tau_\mu`;
* spike raster of one input and the distribution of per-neuron firing rates.

Command line (a run folder of ``neuroplastic train --out`` or ``bench``'s ``results/runs/<hash>/``, holding the
config and ``model.pt``; or a single ``{"config", "state_dict"}`` file)::

    neuroplastic analyze spiking RUN_FOLDER --out DIR [--trials 200] [--limit 2000]

writes ``trajectories.png``, ``spectrum.png``, ``pruning.png``, ``raster.png`` and ``summary.json`` in
``DIR``. The same is available as :func:`report`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "firing_stats",
    "load_model",
    "mode_projections",
    "plot_pruning",
    "plot_raster",
    "plot_spectrum",
    "plot_trajectories",
    "report",
]


def load_model(path: str | Path, device: str = "cpu", data_root: str | None = None):
    """Rebuild a trained learner from a run folder (:func:`neuroplastic.experiment.load_trained`) or a file
    ``{"config", "state_dict"}`` (read with ``weights_only``: no code runs); returns ``(learner, bundle, cfg)``."""
    from .. import experiment

    path = Path(path)
    if path.is_dir():  # a run folder: config + model.pt
        if data_root is not None:
            import os

            os.environ["NEUROPLASTIC_DATA"] = data_root
        return experiment.load_trained(path, device)
    from ..trainer import load_state_file

    blob = load_state_file(path, device)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not a saved spiking model (expected keys 'config' and 'state_dict')")
    cfg = dict(blob["config"])
    cfg["device"] = device
    if data_root is not None:
        import os

        os.environ["NEUROPLASTIC_DATA"] = data_root
    cfg, bundle, learner = experiment.build(cfg)
    learner.load_state_dict(blob["state_dict"])
    learner.eval()
    return learner, bundle, cfg


@torch.no_grad()
def mode_projections(learner, x: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""Filtered activity and its mode projections for inputs ``x`` (a batch of samples):
    ``r`` ``[T, B, N]``, ``spikes`` ``[T, B, N]`` (or None), ``proj_in`` = :math:`r\xi_\text{in}` and
    ``proj_out`` = :math:`r\xi_\text{out}` ``[T, B, P]`` (None for a full-rank network), ``out`` (scores or
    per-step output)."""
    learner.eval()
    xs = learner.encode(x, train=False)
    out, s, r = learner.outputs(xs)
    pin, pout = learner.net.project(r) if learner.net.rank == "mode" else (None, None)  # full rank: no modes
    return {"r": r, "spikes": s, "proj_in": pin, "proj_out": pout, "out": out}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectories(learner, x: torch.Tensor, y: torch.Tensor, path: str | Path, which: str = "in") -> None:
    """3-D trajectories of :math:`\\xi^\\top r(t)` (top three modes by importance), coloured by context and
    choice (sequence tasks) or by class (classification)."""
    plt = _plt()
    pr = mode_projections(learner, x)
    proj = (pr["proj_in"] if which == "in" else pr["proj_out"]).cpu()
    order = torch.argsort(learner.net.mode_importance(), descending=True).cpu()
    dims = order[:3].tolist() + [order[0].item()] * max(0, 3 - len(order))
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    if learner.task == "sequence":
        ctx = x[:, 0, 2:].argmax(1).cpu()
        choice = (y[:, -1] > 0).long().cpu()
        labels = ctx * 2 + choice
        names = ["ctx 1, choice −", "ctx 1, choice +", "ctx 2, choice −", "ctx 2, choice +"]
        colors = ["tab:blue", "tab:cyan", "tab:red", "tab:orange"]
    else:
        labels = y.cpu()
        names = [str(i) for i in range(int(labels.max()) + 1)]
        colors = [plt.cm.tab10(i) for i in range(10)]
    seen = set()
    for b in range(proj.shape[1]):
        c = int(labels[b])
        tr = proj[:, b, dims]
        ax.plot(tr[:, 0], tr[:, 1], tr[:, 2], color=colors[c % len(colors)], lw=0.6, alpha=0.6,
                label=names[c] if c not in seen else None)
        ax.scatter(tr[-1, 0], tr[-1, 1], tr[-1, 2], color=colors[c % len(colors)], s=6)
        seen.add(c)
    ax.set_xlabel(f"mode {dims[0]}")
    ax.set_ylabel(f"mode {dims[1]}")
    ax.set_zlabel(f"mode {dims[2]}")
    ax.set_title(f"ξ_{which}ᵀ r(t), {learner.name}")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_spectrum(learner, path: str | Path) -> dict[str, list[float]]:
    """Sorted mode importance :math:`\\tau_\\mu` and sorted :math:`|\\lambda_\\mu|` against rank (log-log)."""
    plt = _plt()
    imp = learner.net.mode_importance().sort(descending=True).values.cpu()
    lam = learner.net.lam.detach().abs().sort(descending=True).values.cpu()
    fig, ax = plt.subplots(figsize=(5, 4))
    k = torch.arange(1, len(imp) + 1)
    ax.loglog(k, imp, "o-", label="τ_μ (importance)")
    ax.loglog(k, lam, "s-", label="|λ_μ|")
    ax.set_xlabel("rank")
    ax.set_ylabel("value")
    ax.legend()
    ax.set_title(f"mode spectrum, P = {len(imp)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"importance_sorted": imp.tolist(), "lambda_abs_sorted": lam.tolist()}


def plot_pruning(curve: dict[int, float], path: str | Path, full_acc: float | None = None) -> None:
    """Accuracy against the number of top modes kept."""
    plt = _plt()
    ks = sorted(curve)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(ks, [curve[k] for k in ks], "o-")
    if full_acc is not None:
        ax.axhline(full_acc, ls="--", color="gray", label="all modes")
        ax.legend()
    ax.set_xscale("log" if ks[-1] > 10 else "linear")
    ax.set_xlabel("top-k modes kept (by τ_μ)")
    ax.set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@torch.no_grad()
def firing_stats(learner, x: torch.Tensor) -> dict[str, Any]:
    """Per-neuron firing rates (Hz) over inputs ``x``: mean, median, max, silent fraction, histogram."""
    pr = mode_projections(learner, x)
    s = pr["spikes"]
    if s is None:
        return {}
    T = s.shape[0]
    rates = s.sum((0,)).mean(0).cpu() / (T * learner.net.dt * 1e-3)
    hist = torch.histc(rates, bins=20, min=0, max=float(rates.max()) + 1e-6)
    return {"rate_hz_mean": float(rates.mean()), "rate_hz_median": float(rates.median()),
            "rate_hz_max": float(rates.max()), "silent_fraction": float((rates == 0).float().mean()),
            "rate_hist_counts": hist.tolist(), "rate_hist_max_hz": float(rates.max())}


def plot_raster(learner, x: torch.Tensor, path: str | Path) -> None:
    """Spike raster of the first sample of ``x`` and the histogram of per-neuron firing rates."""
    plt = _plt()
    pr = mode_projections(learner, x)
    s = pr["spikes"]
    if s is None:
        return
    T = s.shape[0]
    dt = learner.net.dt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    t_idx, n_idx = s[:, 0].cpu().nonzero(as_tuple=True)
    a1.scatter(t_idx.float() * dt, n_idx, s=1, color="k")
    a1.set_xlabel("time (ms)")
    a1.set_ylabel("neuron")
    a1.set_title("spike raster, one input")
    rates = s.sum(0).mean(0).cpu() / (T * dt * 1e-3)
    a2.hist(rates.numpy(), bins=30)
    a2.set_xlabel("firing rate (Hz)")
    a2.set_ylabel("neurons")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(model: str | Path, out_dir: str | Path, trials: int = 200, limit: int = 2000,
           device: str = "cpu") -> dict[str, Any]:
    """All plots and a ``summary.json`` for a saved model; returns the summary."""
    learner, bundle, cfg = load_model(model, device)
    return write_figures(learner, bundle, out_dir, trials, limit,
                         {"model": str(model), "dataset": cfg["dataset"], "params": cfg["params"]})


def write_figures(learner, bundle, out_dir: str | Path, trials: int = 200, limit: int = 2000,
                  summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rasters, mode trajectories (by context and choice), |λ| spectrum, pruning curve and a
    ``summary.json`` (energy proxy, firing statistics, mode importance) of a trained learner."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test = bundle.test
    x, y = test.x[:trials], test.y[:trials]
    summary = {"learner": learner.name, **(summary or {})}
    fm = learner.final_metrics(type(bundle)(bundle.name, bundle.train, None,
                                            type(test)(test.x[:limit], test.y[:limit], test.name),
                                            bundle.n_classes, bundle.task))
    summary.update({k: v for k, v in fm.items()})
    if learner.net.neuron == "lif":
        summary["firing"] = firing_stats(learner, x)
        plot_raster(learner, x[:50], out / "raster.png")
    if learner.net.rank == "mode":
        plot_trajectories(learner, x, y, out / "trajectories.png", "in")
        plot_trajectories(learner, x, y, out / "trajectories_out.png", "out")
        plot_spectrum(learner, out / "spectrum.png")
        plot_pruning({int(k): v for k, v in fm["prune_curve"].items()}, out / "pruning.png", fm["final_eval_acc"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="neuroplastic analyze spiking",
                                 description="Plots and statistics of a trained spiking mode network")
    ap.add_argument("model", help="a run folder (the --out folder of `neuroplastic train`, or results/runs/<hash> "
                    "of a bench run: config + model.pt), or a .pt file {config, state_dict}")
    ap.add_argument("--out", required=True, help="output folder for the PNGs and summary.json")
    ap.add_argument("--trials", type=int, default=200, help="test samples for trajectories and rasters")
    ap.add_argument("--limit", type=int, default=2000, help="test samples for accuracy/pruning/energy")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    s = report(a.model, a.out, a.trials, a.limit, a.device)
    print(json.dumps({k: v for k, v in s.items() if not isinstance(v, (list, dict))}, indent=1, default=str))


if __name__ == "__main__":
    main()
