r"""``neuroplastic analyze sal``: how far SAL's phase can align a trained network's feedback (Gierlich, Baumbach,
Kungl, Max & Petrovici 2025, arXiv 2503.02642).

With the forward weights ``W`` of a trained ``sal`` run held fixed, more SAL phases are run from the trained ``B``
(``trained``) and from ``B = W`` exactly (``transpose``), with the run's number of networks per phase and others.
Each phase is :meth:`~neuroplastic.sal.learners.SALNet.sal_phase` itself, which logs its sampling noise, its pull
towards ``W`` and the stationary angle of that noisy relaxation (:func:`~neuroplastic.sal.rule.noise_floor`). If
the alignment is limited by sampling noise, ``B`` leaves ``W`` from the ``transpose`` start, both starts meet near
the predicted floor, and the floor falls as :math:`1/\sqrt{R}` in the networks ``R``; a bias would hold the
angle above the floor whatever ``R``. Writes ``sal_floor.png`` and ``summary.json``::

    neuroplastic analyze sal RUN_FOLDER --out OUT --phases 6 --nets 32 128 --starts transpose trained
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["floor_study", "main", "report"]

STARTS = ("trained", "transpose")


@torch.no_grad()
def floor_study(learner: Any, phases: int, nets: list[int], starts: list[str], seed: int = 0,
                progress: bool = False) -> list[dict[str, Any]]:
    """Per ``(start, nets)`` the angle(B, W) of every dense layer before and after each of ``phases`` phases at
    fixed ``W``, with each phase's ``sal_noise``/``sal_pull``/``sal_floor_deg`` keys. The learner's ``B`` and phase
    settings are restored afterwards. One row per ``(start, nets)``: ``{"start", "nets", "layers", "phases": [...]}``
    (``phases[0]`` is the start)."""
    if phases < 1:
        raise ValueError(f"phases must be >= 1, got {phases}")
    if not nets or any(n < 1 for n in nets):
        raise ValueError(f"nets must be positive integers, got {nets}")
    if bad := [s for s in starts if s not in STARTS]:
        raise ValueError(f"unknown start {bad[0]!r}; allowed: {', '.join(STARTS)}")
    dense = learner._dense()
    layers = learner.dense_index()
    trained = [m.B.clone() for m in dense]
    saved_nets, saved_log = learner.sal_cfg["nets"], learner.phase_log
    rows = []
    try:
        for start in starts:
            for r in nets:
                for m, b in zip(dense, trained):
                    m.B.copy_(b if start == "trained" else m.weight)
                learner.sal_cfg["nets"] = int(r)
                learner.sal_gen.manual_seed(seed)
                log = [{f"angle_deg/{i}": a for i, a in zip(layers, learner.dense_angles())}]
                for k in range(phases):
                    out = learner.sal_phase()  # its phase log's last row holds the angles after it
                    log.append({**{f"angle_deg/{i}": float(a) for i, a in zip(layers, learner.phase_log[-1])},
                                **{key: v for key, v in out.items() if key.startswith("sal_")}})
                    if progress:
                        print(f"{start}, {r} networks, phase {k + 1}/{phases}: " + ", ".join(
                            f"fc{j + 1} {log[-1][f'angle_deg/{i}']:.1f} deg (floor "
                            f"{log[-1].get(f'sal_floor_deg/{i}', float('nan')):.1f})" for j, i in enumerate(layers)),
                            flush=True)
                rows.append({"start": start, "nets": int(r), "layers": layers, "phases": log})
    finally:
        for m, b in zip(dense, trained):
            m.B.copy_(b)
        learner.sal_cfg["nets"], learner.phase_log = saved_nets, saved_log
    return rows


def figure(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``sal_floor.png``: one panel per dense layer, angle(B, W) over the extra phases per ``(start, nets)``
    (solid) and the floor each phase predicts (dashed, same colour per ``nets``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = rows[0]["layers"]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.6), squeeze=False)
    colours = {r: f"C{k}" for k, r in enumerate(sorted({row["nets"] for row in rows}))}
    for ax, (j, i) in zip(axes[0], enumerate(layers)):
        for row in rows:
            c, log = colours[row["nets"]], row["phases"]
            ax.plot(range(len(log)), [p[f"angle_deg/{i}"] for p in log], color=c, marker="o", ms=3,
                    ls="-" if row["start"] == "trained" else "-.",
                    label=f"from {row['start']}, {row['nets']} networks")
            floor = [p.get(f"sal_floor_deg/{i}", float("nan")) for p in log[1:]]
            ax.plot(range(1, len(log)), floor, color=c, ls="--", lw=0.9)
        ax.set(title=f"dense layer {j + 1}", xlabel="extra SAL phase (W fixed)", ylabel="angle(B, W) (°)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="dashed: predicted noise floor", title_fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(model: str | Path, out_dir: str | Path, phases: int = 6, nets: list[int] | None = None,
           starts: list[str] | None = None, seed: int = 0, device: str = "cpu", progress: bool = True
           ) -> dict[str, Any]:
    """Load a trained ``sal`` run folder, run :func:`floor_study`, write ``sal_floor.png`` and ``summary.json`` to
    ``out_dir``; returns the summary (the rows and, per row and layer, the last angle and floor)."""
    from ..experiment import ConfigError, load_trained, write_json_atomic

    learner, _, cfg = load_trained(model, device)
    if cfg.get("learner") != "sal":
        raise ConfigError(f"{str(model)!r} is a {cfg.get('learner')!r} run; `analyze sal` needs a sal run")
    nets = nets or [learner.sal_cfg["nets"]]
    rows = floor_study(learner, phases, nets, starts or list(STARTS), seed, progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure(rows, out / "sal_floor.png")
    last = {f"{row['start']}/{row['nets']}/{key}": v for row in rows for key, v in row["phases"][-1].items()}
    summary = {"model": str(model), "phases": phases, "seed": seed, "last": last, "rows": rows}
    write_json_atomic(summary, out / "summary.json")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="neuroplastic analyze sal",
                                 description="More SAL phases on a trained sal run with W fixed: the alignment's "
                                 "noise floor against the networks per phase")
    ap.add_argument("model", help="a run folder of learner sal (the --out folder of `neuroplastic train`, or "
                    "results/runs/<hash> of a bench run)")
    ap.add_argument("--out", required=True, help="output folder for sal_floor.png and summary.json")
    ap.add_argument("--phases", type=int, default=6, help="extra phases per start and network count")
    ap.add_argument("--nets", type=int, nargs="+", help="networks per phase (default: the run's)")
    ap.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS),
                    help="trained: from the run's B; transpose: from B = W")
    ap.add_argument("--seed", type=int, default=0, help="seed of the phases' spikes")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    s = report(a.model, a.out, a.phases, a.nets, a.starts, a.seed, a.device)
    print(json.dumps(s["last"], indent=1))
