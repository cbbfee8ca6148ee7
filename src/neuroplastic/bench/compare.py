r"""``neuroplastic compare A B``: two learners on the same data, architecture, budget and seeds, run as a suite into
the results store, then compared seed by seed.

For seeds :math:`s = 1..n` with final-epoch test accuracies :math:`a_s, b_s` the paired differences
:math:`d_s = b_s - a_s` give :math:`\bar d`, its standard deviation, the paired t statistic
:math:`t = \bar d / (s_d/\sqrt n)` and an exact sign-flip permutation test: under "no difference" every sign pattern of
the :math:`d_s` is equally likely, :math:`p = \#\{\epsilon \in \{\pm1\}^n : |\overline{\epsilon d}| \ge |\bar d|\} / 2^n`
(:math:`n \le 16`; a seeded sample of 20,000 patterns above) — with 3 seeds the smallest possible p is 0.25, which
the table says rather than hides.
"""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from .suite import Suite, expand


def compare_suite(a: str, b: str, *, dataset: str, preset: str | None = None, seeds: list[int] | tuple[int, ...] = (0, 1, 2),
                  epochs: int | None = None, base: dict[str, Any] | None = None, only_a: dict[str, Any] | None = None,
                  only_b: dict[str, Any] | None = None) -> Suite:
    """The suite of a comparison: cells ``{learner: a}`` and ``{learner: b}`` crossed with ``seeds``, everything else
    (dataset, preset, epochs, batch size, protocol...) shared through ``base``; ``only_a`` / ``only_b``: config keys
    of one side only, for learners that name one network differently (DLL's ``preset: cnn-cifar`` is backprop's
    ``params.arch: lv_cnn_cifar``).

    Raises ``ValueError`` naming both networks where the two learners would train different ones
    (:meth:`~neuroplastic.learners.base.Learner.network`, for learners that declare their net): a paired comparison of
    two rules on two networks measures the networks too."""
    from .report import learner_params

    if a == b:
        raise ValueError(f"compare needs two different learners, got {a!r} twice")
    for side, keys in (("--set-a", only_a or {}), ("--set-b", only_b or {})):
        fixed = sorted(set(keys) & {"learner", "dataset", "seed", "epochs"})
        if fixed:
            raise ValueError(f"{side} cannot set {', '.join(fixed)}: a comparison shares its learners' data, seeds "
                             f"and epochs (--dataset, --seeds, --epochs)")
    shared = dict(base or {})
    shared["dataset"] = dataset
    if preset is not None:
        shared["preset"] = preset
    if epochs is not None:
        shared["epochs"] = epochs
    spec = {"name": f"compare-{a}-vs-{b}-{dataset}" + (f"-{preset}" if preset else ""),
            "description": f"{a} vs {b} on {dataset}" + (f" ({preset})" if preset else "") + f", seeds {list(seeds)}",
            "cells": [{**(only_a or {}), "learner": a}, {**(only_b or {}), "learner": b}], "grid": {"seed": list(seeds)},
            "base": shared}
    out = expand(spec, source="compare")
    first = {}
    for _h, cfg in out.runs:
        first.setdefault(cfg["learner"], cfg)
    declared = {}
    for name, cfg in first.items():
        try:
            e, params = learner_params(cfg)
            net = e.cls.network(params)
        except (KeyError, TypeError, ValueError):
            net = None
        if net is not None:
            declared[name] = net
    if len(declared) == 2 and declared[a] != declared[b]:
        raise ValueError(f"{a} would train {declared[a]} and {b} {declared[b]}: give both one network (shared --set "
                         f"params..., or --set-a / --set-b where they name it differently)")
    return out


def run_differences(s: Suite) -> list[str]:
    """The run settings (``epochs``, ``batch_size``, ``protocol``...; not ``learner``, ``preset``, ``params``) in which
    a comparison's two learners differ, as ``key (a: x, b: y)``: a learner's own defaults (e.g. DLL's preset batch
    size) that the shared config did not fix. Empty when the budget is the same."""
    first: dict[str, dict[str, Any]] = {}
    for _h, cfg in s.runs:
        first.setdefault(cfg["learner"], cfg)
    if len(first) != 2:
        return []
    (na, ca), (nb, cb) = first.items()
    return [f"{k} ({na}: {ca.get(k)}, {nb}: {cb.get(k)})" for k in sorted(set(ca) | set(cb))
            if k not in ("learner", "preset", "params", "seed", "recipe") and ca.get(k) != cb.get(k)]


def sign_flip_p(diffs: list[float], samples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip permutation test of the module docstring."""
    n = len(diffs)
    if n == 0:
        return float("nan")
    obs = abs(statistics.fmean(diffs)) - 1e-12
    if n <= 16:
        hits = sum(abs(statistics.fmean([s * d for s, d in zip(signs, diffs)])) >= obs
                   for signs in itertools.product((1, -1), repeat=n))
        return hits / 2**n
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (samples, n), generator=g).double() * 2 - 1
    means = (signs * torch.tensor(diffs, dtype=torch.float64)).mean(1).abs()
    return float((means >= obs).double().mean())


def paired(rows: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """Per-seed accuracies of ``a`` and ``b`` (fractions) from store rows, their differences ``b - a`` and the tests:
    ``{"seeds", "a", "b", "diff", "mean_diff", "std_diff", "t", "p"}`` (only seeds where both finished)."""
    acc: dict[str, dict[int, float]] = {a: {}, b: {}}
    for r in rows:
        learner = r["config"]["learner"]
        if learner in acc and r["status"] == "done" and isinstance((r.get("metrics") or {}).get("test_acc"), (int, float)):
            acc[learner][int(r["config"]["seed"])] = float(r["metrics"]["test_acc"])
    seeds = sorted(set(acc[a]) & set(acc[b]))
    xa, xb = [acc[a][s] for s in seeds], [acc[b][s] for s in seeds]
    diff = [y - x for x, y in zip(xa, xb)]
    out: dict[str, Any] = {"seeds": seeds, "a": xa, "b": xb, "diff": diff, "mean_diff": None, "std_diff": None,
                           "t": None, "p": None}
    if diff:
        out["mean_diff"] = statistics.fmean(diff)
        out["p"] = sign_flip_p(diff)
    if len(diff) >= 2:
        sd = statistics.stdev(diff)
        out["std_diff"] = sd
        out["t"] = out["mean_diff"] / (sd / math.sqrt(len(diff))) if sd > 0 else math.copysign(math.inf, out["mean_diff"]) \
            if out["mean_diff"] else 0.0
    return out


def paired_table(stats: dict[str, Any], a: str, b: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells: one row per seed, then the mean row with the tests (accuracies in %)."""
    head = ["seed", f"{a} %", f"{b} %", f"{b} - {a} (points)"]
    cells = [[str(s), f"{100 * x:.2f}", f"{100 * y:.2f}", f"{100 * d:+.2f}"]
             for s, x, y, d in zip(stats["seeds"], stats["a"], stats["b"], stats["diff"])]
    if stats["diff"]:
        sd = "" if stats["std_diff"] is None else f" ± {100 * stats['std_diff']:.2f}"
        t = "" if stats["t"] is None else f", t = {stats['t']:.2f}"
        cells.append([f"mean (n={len(stats['diff'])})", f"{100 * statistics.fmean(stats['a']):.2f}",
                      f"{100 * statistics.fmean(stats['b']):.2f}",
                      f"{100 * stats['mean_diff']:+.2f}{sd}{t}, sign-flip p = {stats['p']:.3g}"])
    return head, cells


def curves_figure(rows: list[dict[str, Any]], a: str, b: str, path: str | Path) -> Path | None:
    """Validation (else test) accuracy per epoch of both learners, every seed overlaid; None without curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = False
    for learner, colour in ((a, "tab:blue"), (b, "tab:orange")):
        first = True
        for r in rows:
            if r["config"]["learner"] != learner or r["status"] != "done":
                continue
            hist = [h for h in (r.get("history") or []) if h.get("stage") is None]
            key = "val_acc" if any("val_acc" in h for h in hist) else "test_acc"
            pts = [(h["epoch"], 100 * h[key]) for h in hist if key in h]
            if not pts:
                continue
            ax.plot(*zip(*pts), color=colour, alpha=0.8, marker="o", ms=3, label=learner if first else None)
            first, drawn = False, True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy % (validation)")
    ax.set_title(f"{a} vs {b}: every seed", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
