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

``--bias`` measures that bias directly (:func:`bias_study`): the drift of a phase at ``B = W`` from two phases with
independent spikes, the pull from one phase started off ``W``, and the angle of the noise-free fixed point
(:func:`~neuroplastic.sal.rule.fixed_point_bias`)::

    neuroplastic analyze sal RUN_FOLDER --out OUT --phases 0 --bias --nets 32 128

``--bias-at trained`` measures it from ``B = rW``, ``r`` the trained ``B``'s norm over ``W``'s per layer: where a run
that held ``B`` at its initial norm (``sal_bnorm="initial"``) learns.

Whatever is asked, the summary also gives the run's own bound: from the estimate noise each of its training phases
logged (``sal_noise/i`` / ``sal_pull/i`` of its ``history.json``), the smallest angle any schedule of SAL rates could
have reached with those phases had ``W`` stood still (:func:`~neuroplastic.sal.rule.averaging_bound`;
``run_bound_deg/<layer>``), and how many phases' worth of such samples a 10° angle needs
(``phases_for_10deg/<layer>``): more than the run had means no rate schedule reaches 10° with its phases. With
``--phases 0`` and no ``--bias`` that, and what held its angles where they ended (:func:`run_movement`: the angle
right after each phase, against the angle at the end of its epoch and against the phase's noise floor at the norm
the run kept ``B`` at), is all it does (no simulation)::

    neuroplastic analyze sal RUN_FOLDER --out OUT --phases 0

``--refractory N`` runs the phases with neurons silent for ``N`` steps after a spike instead of the run's setting
(``τ_ref − 1``: Buesing et al.'s neural sampling, which SAL records made before the option existed used; ``τ_ref``:
the default), to compare the two on the same trained weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .neurons import check_refractory
from .rule import averaging_bound, fixed_point_bias, noise_floor, relaxation_floor

__all__ = ["bias_study", "floor_study", "main", "report", "run_bound", "run_movement"]

STARTS = ("trained", "transpose")
BIAS_AT = ("w", "trained")


@contextlib.contextmanager
def _restored(learner: Any) -> Iterator[list[torch.Tensor]]:
    """Extra phases on ``learner`` inside: its dense layers' ``B`` (yielded: the trained ones), its phase settings
    and its phase log are as before on exit. Inside, every phase runs at the rate the run's next phase would have
    had (``sal_lr_decay`` held there), whatever the phase log then holds."""
    dense = learner._dense()
    trained = [m.B.clone() for m in dense]
    saved_cfg, saved_log = dict(learner.sal_cfg), learner.phase_log
    learner.sal_cfg = {**saved_cfg, "lr": learner.phase_rates(len(saved_log) + 1), "lr_decay": 0.0}
    try:
        yield trained
    finally:
        for m, b in zip(dense, trained):
            m.B.copy_(b)
        learner.sal_cfg, learner.phase_log = saved_cfg, saved_log


@torch.no_grad()
def floor_study(learner: Any, phases: int, nets: list[int], starts: list[str], seed: int = 0,
                progress: bool = False) -> list[dict[str, Any]]:
    """Per ``(start, nets)`` the angle(B, W) of every dense layer before and after each of ``phases`` phases at
    fixed ``W``, with each phase's ``sal_noise``/``sal_pull``/``sal_floor_deg``/``sal_estimate`` keys and
    ``sal_bound_deg``, the bound of the row's phases so far. The learner's ``B`` and phase settings are restored
    afterwards. One row per ``(start, nets)``: ``{"start", "nets", "layers", "phases": [...]}``
    (``phases[0]`` is the start)."""
    if phases < 1:
        raise ValueError(f"phases must be >= 1, got {phases}")
    if not nets or any(n < 1 for n in nets):
        raise ValueError(f"nets must be positive integers, got {nets}")
    if bad := [s for s in starts if s not in STARTS]:
        raise ValueError(f"unknown start {bad[0]!r}; allowed: {', '.join(STARTS)}")
    dense = learner._dense()
    layers = learner.dense_index()
    rows = []
    with _restored(learner) as trained:
        for start in starts:
            for r in nets:
                for m, b in zip(dense, trained):
                    m.B.copy_(b if start == "trained" else m.weight)
                learner.sal_cfg["nets"] = int(r)
                learner.sal_gen.manual_seed(seed)
                learner.phase_log = learner.phase_log[:0]  # the row's own phases (restored on exit)
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
    return rows


@torch.no_grad()
def bias_study(learner: Any, nets: list[int], seed: int = 0, offset: float = 0.5,
               at: str = "w") -> list[dict[str, Any]]:
    r"""Per network count, three phases at fixed ``W``: two from ``B = rW`` (independent spikes: seeds ``seed`` and
    ``seed + 1``) and one from ``B = r(W + E)`` (``E`` Gaussian with :math:`\lVert E\rVert` = ``offset``
    :math:`\lVert W\rVert`, seeded), then per dense layer :func:`~neuroplastic.sal.rule.fixed_point_bias` of the
    first two with the third's pull (:func:`~neuroplastic.sal.rule.noise_floor`). ``at``: ``"w"``, :math:`r = 1`;
    ``"trained"``, per layer :math:`r = \lVert B\rVert / \lVert W\rVert` of the trained ``B`` (a run that held
    ``B`` at its initial norm, ``sal_bnorm="initial"``, learns at that scale, where the phase's bias may differ).
    The phases' raw SAL updates are measured: ``B``'s norm is not held during them. The learner's ``B`` and phase
    settings are restored afterwards. One row per count: ``{"nets", "at", "layers", "ratio", "bias":
    {"<key>/<layer>": value}}``."""
    if not nets or any(n < 2 for n in nets):
        raise ValueError(f"nets must be integers >= 2, got {nets}")
    if not offset > 0:
        raise ValueError(f"offset must be > 0, got {offset}")
    if at not in BIAS_AT:
        raise ValueError(f"unknown bias start {at!r}; allowed: {', '.join(BIAS_AT)}")
    dense = learner._dense()
    layers = learner.dense_index()
    weights = [m.weight.detach().clone() for m in dense]
    ratios = [float(m.B.detach().norm()) / float(w.norm()) if at == "trained" else 1.0
              for m, w in zip(dense, weights)]
    if any(not r > 0 for r in ratios):
        raise ValueError("bias at the trained B needs a non-zero B and W in every dense layer")
    g = torch.Generator().manual_seed(seed + 0xB1A5)
    starts, away = [w * r for w, r in zip(weights, ratios)], []
    for w, r in zip(weights, ratios):
        e = torch.randn(w.shape, generator=g, dtype=w.dtype).to(w.device)
        away.append(r * (w + e * (offset * float(w.norm()) / float(e.norm()))))

    def phase(start: list[torch.Tensor], phase_seed: int) -> list[torch.Tensor]:
        for m, b in zip(dense, start):
            m.B.copy_(b)
        learner.sal_gen.manual_seed(phase_seed)
        learner.sal_phase()
        return [m.B.detach() - b for m, b in zip(dense, start)]

    rows = []
    with _restored(learner):
        learner.sal_cfg["bnorm"] = "free"  # the raw update (restored on exit)
        for r in nets:
            learner.sal_cfg["nets"] = int(r)
            u_a, u_b, u_c = phase(starts, seed), phase(starts, seed + 1), phase(away, seed + 2)
            bias = {}
            for i, w, a, b, c, s, ratio in zip(layers, weights, u_a, u_b, u_c, away, ratios):
                pull = noise_floor(s, s + c, w, 0.0)["pull"]
                bias.update({f"{k}/{i}": v for k, v in
                             {**fixed_point_bias(w, a, b, pull, ratio), "pull": pull}.items()})
            rows.append({"nets": int(r), "at": at, "layers": layers, "ratio": ratios, "bias": bias})
    return rows


def run_bound(history: list[dict[str, Any]], layers: list[int]) -> dict[str, float]:
    r"""From a run's logged epochs (``sal_noise/i`` and ``sal_pull/i`` of every phase), per dense layer ``i`` of
    ``layers``: ``run_bound_deg/i``, :func:`~neuroplastic.sal.rule.averaging_bound` of the phases' estimate noises
    (noise / pull; phases without a positive pull left out), ``run_phases/i`` the phases counted, and
    ``phases_for_10deg/i``, the phases of their mean information a 10° angle needs,
    :math:`1 / (\tan^2\theta^* \cdot \overline{s^{-2}})`. Empty for a run that logged no phase noise."""
    out: dict[str, float] = {}
    for i in layers:
        est = [row[f"sal_noise/{i}"] / row[f"sal_pull/{i}"] for row in history
               if row.get(f"sal_pull/{i}", 0) > 0 and row.get(f"sal_noise/{i}", 0) > 0]
        if est:
            info = sum(e ** -2 for e in est) / len(est)
            out.update({f"run_bound_deg/{i}": averaging_bound(est), f"run_phases/{i}": float(len(est)),
                        f"phases_for_10deg/{i}": 1 / (math.tan(math.radians(10)) ** 2 * info)})
    return out


def run_movement(history: list[dict[str, Any]], phase_angles: list[list[float]], layers: list[int],
                 last: int = 5, held: bool = False) -> dict[str, float]:
    r"""What held a run's angles where they ended: per dense layer ``i`` of ``layers`` (``j``-th, the column of
    ``phase_angles``, the angle(B, W) right after each epoch's phase: :attr:`SALNet.phase_log`), means over the last
    ``last`` epochs of

    - ``after_phase_deg/i``, the angle right after the phase;
    - ``movement_deg/i``, (angle at the end of the epoch, ``angle_deg/i`` of ``history``) − (angle after its
      phase): what SGD's change of ``W`` in the epoch added, :math:`\theta(B_k, W_{k+1}) - \theta(B_k, W_k)`;
    - ``floor_deg/i``, the phase's noise floor from its logged ``sal_noise/i`` and ``sal_pull/i``
      (:func:`~neuroplastic.sal.rule.relaxation_floor`; ``held``: the run rescaled ``B`` to its initial norm after
      every phase, ``sal_bnorm="initial"``, so at the ratio :math:`\lVert B\rVert/\lVert W\rVert` the phase
      started from, ``norm_ratio/i`` of the epoch before), and ``excess_deg/i`` = after-phase angle − floor.

    An angle above its floor with a small movement is held there by the phase itself (a bias), not by ``W`` moving
    away between phases. Empty when the log and the history do not cover the same epochs (a log from before it
    existed)."""
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    if not phase_angles or len(phase_angles) != len(history):
        return {}
    out: dict[str, float] = {}
    first = max(len(history) - last, 0)
    for j, i in enumerate(layers):
        pairs = [(history[k][f"angle_deg/{i}"], phase_angles[k][j]) for k in range(first, len(history))
                 if f"angle_deg/{i}" in history[k] and phase_angles[k][j] >= 0]
        if not pairs:
            continue
        out[f"after_phase_deg/{i}"] = sum(a for _, a in pairs) / len(pairs)
        out[f"movement_deg/{i}"] = sum(e - a for e, a in pairs) / len(pairs)
        floors = []
        for k in range(first, len(history)):
            noise, pull = history[k].get(f"sal_noise/{i}"), history[k].get(f"sal_pull/{i}")
            ratio = history[k - 1].get(f"norm_ratio/{i}") if held and k > 0 else (None if held else 1.0)
            if noise is not None and pull is not None and 0 < pull < 1 and ratio is not None and ratio > 0:
                floors.append(relaxation_floor(noise, pull, ratio))
        if floors:
            out[f"floor_deg/{i}"] = sum(floors) / len(floors)
            out[f"excess_deg/{i}"] = out[f"after_phase_deg/{i}"] - out[f"floor_deg/{i}"]
    return out


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
           starts: list[str] | None = None, seed: int = 0, device: str = "cpu", progress: bool = True,
           bias: bool = False, refractory: int | None = None, bias_at: str = "w") -> dict[str, Any]:
    """Load a trained ``sal`` run folder, run :func:`floor_study` (unless ``phases`` is 0) and, with ``bias``,
    :func:`bias_study`; write ``sal_floor.png`` (with the floor study) and ``summary.json`` to ``out_dir``; returns
    the summary (the rows; per row and layer the last angle and floor; ``bias/<nets>/<key>/<layer>``; the run's own
    bound from its ``history.json``, :func:`run_bound`).
    ``refractory``: the phases' neurons stay silent this many steps after a spike instead of the run's setting
    (:class:`~neuroplastic.sal.neurons.SpikingNet`), to compare the two conventions on the same trained weights.
    ``bias_at``: :func:`bias_study`'s ``at``, where the bias is measured."""
    from ..experiment import ConfigError, load_trained, write_json_atomic

    if phases < 0:
        raise ValueError(f"phases must be >= 0, got {phases}")
    learner, _, cfg = load_trained(model, device)
    if cfg.get("learner") != "sal":
        raise ConfigError(f"{str(model)!r} is a {cfg.get('learner')!r} run; `analyze sal` needs a sal run")
    if refractory is not None:
        try:
            learner.sal_cfg["refractory"] = check_refractory(refractory, learner.sal_cfg["tau_ref"])
        except ValueError as e:
            raise ConfigError(f"--{e}") from None
    nets = nets or [learner.sal_cfg["nets"]]
    rows = floor_study(learner, phases, nets, starts or list(STARTS), seed, progress) if phases else []
    bias_rows = bias_study(learner, nets, seed, at=bias_at) if bias else []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if rows:
        figure(rows, out / "sal_floor.png")
    last = {f"{row['start']}/{row['nets']}/{key}": v for row in rows for key, v in row["phases"][-1].items()}
    last.update({f"bias/{row['nets']}/{key}": v for row in bias_rows for key, v in row["bias"].items()})
    history_file = Path(model) / "history.json"
    if history_file.is_file():
        history = json.loads(history_file.read_text())
        layers = learner.dense_index()
        last.update(run_bound(history, layers))
        last.update(run_movement(history, learner.phase_log[:, :len(layers)].tolist(), layers,
                                 held=learner.sal_cfg["bnorm"] == "initial"))
    summary = {"model": str(model), "phases": phases, "seed": seed, "refractory": learner.sal_cfg["refractory"],
               "bias_at": bias_at if bias else None, "last": last, "rows": rows, "bias": bias_rows}
    write_json_atomic(summary, out / "summary.json")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="neuroplastic analyze sal",
                                 description="More SAL phases on a trained sal run with W fixed: the alignment's "
                                 "noise floor against the networks per phase; with --bias, the angle of the phase's "
                                 "noise-free fixed point from W")
    ap.add_argument("model", help="a run folder of learner sal (the --out folder of `neuroplastic train`, or "
                    "results/runs/<hash> of a bench run)")
    ap.add_argument("--out", required=True, help="output folder for sal_floor.png and summary.json")
    ap.add_argument("--phases", type=int, default=6, help="extra phases per start and network count (0: none; "
                    "then only the run's own bound and movement, and with --bias the bias)")
    ap.add_argument("--nets", type=int, nargs="+", help="networks per phase (default: the run's)")
    ap.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS),
                    help="trained: from the run's B; transpose: from B = W")
    ap.add_argument("--seed", type=int, default=0, help="seed of the phases' spikes")
    ap.add_argument("--bias", action="store_true", help="also measure the drift at B = W (or see --bias-at) and "
                    "the angle of the phase's noise-free fixed point (three phases per network count)")
    ap.add_argument("--bias-at", choices=BIAS_AT, default="w", help="with --bias: measure it at B = W (w) or at "
                    "B = r W with r the trained B's norm ratio per layer (trained: where a run that held B's norm "
                    "learns)")
    ap.add_argument("--refractory", type=int, help="steps without a spike after one in the phases' neurons (default: "
                    "the run's, tau_ref unless it set another)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    s = report(a.model, a.out, a.phases, a.nets, a.starts, a.seed, a.device, bias=a.bias, refractory=a.refractory,
               bias_at=a.bias_at)
    print(json.dumps(s["last"], indent=1))
