"""Render the DLL study (Lv et al. 2025) from its run records into ``benchmarks/results/dll_report.md``.

Reads ``benchmarks/results/dll_*.json`` (lists of records written by ``dll_run.py`` / merged by
``--merge``) and ``dll_cost.json``. Tables: the paper's locality criteria (C1/C2/C3) generated from the
learner registry beside the measured final-epoch test accuracy; angle(Θ, W) and ‖Θ‖ over training;
the learning-rate sweep (selected on validation accuracy only); cost per step relative to BP.

    python benchmarks/dll_report.py --merge <dir with per-run JSON> --into benchmarks/results/dll_mnist.json
    python benchmarks/dll_report.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from neuroplastic import experiment, learners

HERE = Path(__file__).resolve().parent
RES = HERE / "results"
#: Lv et al. 2025, Table 2 (mean of 4 seeds, best-test-epoch protocol of their code).
PAPER = {("bp", "mlp-mnist"): 98.62, ("fa", "mlp-mnist"): 91.87, ("pc", "mlp-mnist"): 98.42,
         ("dll", "mlp-mnist"): 97.57, ("dll-fa", "mlp-mnist"): 97.37,
         ("bp", "cnn-mnist"): 99.56, ("fa", "cnn-mnist"): 97.00, ("pc", "cnn-mnist"): 99.41,
         ("dll", "cnn-mnist"): 98.87,
         ("bp", "mlp-cifar"): 48.74, ("fa", "mlp-cifar"): 48.46, ("pc", "mlp-cifar"): 47.34,
         ("dll", "mlp-cifar"): 45.87,
         ("bp", "cnn-cifar"): 75.10, ("fa", "cnn-cifar"): 59.60, ("pc", "cnn-cifar"): 72.94,
         ("dll", "cnn-cifar"): 70.89, ("dll-fa", "cnn-cifar"): 69.85}
COLS = [("mlp-mnist", "mnist"), ("cnn-mnist", "mnist"), ("mlp-cifar", "cifar-10"), ("cnn-cifar", "cifar-10")]


def load_records() -> list[dict]:
    recs = []
    for p in sorted(RES.glob("dll_*.json")):
        if p.name.startswith("dll_cost") or p.name.endswith(".partial.json"):
            continue
        data = json.loads(p.read_text())
        for r in data if isinstance(data, list) else [data]:
            r.setdefault("_file", p.name)
            recs.append(r)
    return recs


def _fmt(vals: list[float], recs: list[dict] | None = None) -> str:
    v = [100 * x for x in vals]
    if not v:
        return "—"
    s = f"{v[0]:.2f} (1 seed" if len(v) == 1 else f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f} ({len(v)} seeds"
    if recs:
        done = sorted({r.get("epochs_done", r.get("epochs")) for r in recs})
        planned = recs[0].get("epochs")
        s += f"; {'–'.join(str(d) for d in (done[0], done[-1]) if d is not None) if len(done) > 1 else done[0]}/{planned} ep"
        if any(r.get("gpu") for r in recs):
            s += "; GPU"
    return s + ")"


def criteria_table(recs: list[dict]) -> str:
    """The paper's table: each cell is the paper's configuration (preset lr and schedule). Records flagged
    ``cell`` (complete reruns of that configuration) replace the untagged ones of their cell."""
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    flagged: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in recs:
        if r.get("test_acc") is None or r.get("probe") or r.get("sweep") or r.get("variant"):
            continue
        if r.get("cell"):
            flagged[(r["learner"], r.get("dll_preset"))].append(r)
        elif not r.get("rerun"):
            cells[(r["learner"], r.get("dll_preset"))].append(r)
    cells.update(flagged)
    head = "| learner | paper | C1 | C2 | C3 | " + " | ".join(f"{p} (ours / paper)" for p, _ in COLS) + " |"
    lines = [head, "|" + "---|" * (5 + len(COLS))]
    for name in ("bp", "fa", "dfa", "pc", "dll", "dll-fa"):
        try:
            e = learners.entry(name)
        except KeyError:
            continue
        loc = e.locality
        row = [name, e.paper, *("✓" if c else "✘" for c in (loc.c1, loc.c2, loc.c3))]
        for preset, _ in COLS:
            paper = PAPER.get((name, preset))
            rs = cells.get((name, preset), [])
            row.append(f"{_fmt([r['test_acc'] for r in rs], rs)} / {paper if paper is not None else '—'}")
        lines.append("| " + " | ".join(row) + " |")
    others = [e for e in learners.entries() if e.name not in ("bp", "fa", "dfa", "pc", "dll", "dll-fa")]
    lines.append("")
    lines.append("Other registered learners (criteria only): " + "; ".join(
        f"{e.name} {e.locality.marks()}" for e in others))
    return "\n".join(lines)


def status_lines(recs: list[dict]) -> str:
    lines = []
    for r in recs:
        if r.get("status") != "done":
            tag = "sweep " if r.get("sweep") else (f"variant {r['variant']} " if r.get("variant") else "")
            lines.append(f"- {r['_file']}: {tag}{r['learner']} {r.get('dll_preset')} lr {r['params'].get('lr', 'preset')} "
                         f"seed {r.get('seed')}: status "
                         f"{r.get('status')}, {r.get('epochs_done', '?')}/{r.get('epochs')} epochs, "
                         f"test {100 * (r.get('test_acc') or 0):.2f} %")
    return "\n".join(lines) or "- every run finished its planned epochs"


def theta_table(recs: list[dict]) -> str:
    lines = ["| run | epoch | val acc % | test acc % | mean angle(Θ,W) ° | per-layer angle ° | ‖Θ‖ per layer |",
             "|---|---|---|---|---|---|---|"]
    for r in recs:
        if (r["learner"] not in ("dll", "dll-fa") or r.get("seed") != 0 or r.get("sweep") or r.get("probe")
                or not r.get("curve")):
            continue
        curve = r["curve"]
        picks = sorted({0, len(curve) // 2, len(curve) - 1})
        for i in picks:
            row = curve[i]
            ang = [f"{row[k]:.1f}" for k in sorted(row) if k.startswith("theta_angle_") and k != "theta_angle_mean"]
            nrm = [f"{row[k]:.3g}" for k in sorted(row) if k.startswith("theta_norm_")]
            tag = r.get("variant") or r.get("rerun") or ""
            lines.append(f"| {r['learner']} {r.get('dll_preset')} {tag} | {int(row['epoch'])} | "
                         f"{100 * row.get('val_acc', float('nan')):.2f} | {100 * row.get('test_acc', float('nan')):.2f} | "
                         f"{row.get('theta_angle_mean', float('nan')):.1f} | {' '.join(ang)} | {' '.join(nrm)} |")
    return "\n".join(lines)


def sweep_table(recs: list[dict]) -> str:
    rows = [r for r in recs if r.get("sweep")]
    lines = ["| net | learner | epochs | lr | final val acc % | final test acc % (not used to select) | status | device |",
             "|---|---|---|---|---|---|---|---|"]
    best: dict[tuple, dict] = {}
    for r in sorted(rows, key=lambda r: (r.get("dll_preset"), r["learner"], r.get("epochs"), r["params"].get("lr", 0))):
        lines.append(f"| {r.get('dll_preset')} | {r['learner']} | {r.get('epochs')} | {r['params'].get('lr')} | "
                     f"{100 * (r.get('val_acc') or 0):.2f} | {100 * (r.get('test_acc') or 0):.2f} | {r.get('status')} | "
                     f"{r.get('gpu') or r.get('cpu') or '?'} |")
        k = (r.get("dll_preset"), r["learner"], r.get("epochs"))
        if k not in best or (r.get("val_acc") or 0) > (best[k].get("val_acc") or 0):
            best[k] = r
    lines.append("")
    for (net, learner, epochs), r in best.items():
        lines.append(f"- best on validation: {learner} {net}, {epochs} epochs: lr = {r['params'].get('lr')} "
                     f"(val {100 * r['val_acc']:.2f} %)")
    return "\n".join(lines)


def variant_table(recs: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        if r.get("variant") and not r.get("probe"):
            groups[(r["learner"], r.get("dll_preset"), r["variant"])].append(r)
    if not groups:
        return "(no variant runs)"
    lines = ["| learner | net | variant (chosen on validation) | test acc % |", "|---|---|---|---|"]
    for (learner, net, v), vals in sorted(groups.items()):
        lines.append(f"| {learner} | {net} | {v} | {_fmt([r['test_acc'] for r in vals], vals)} |")
    return "\n".join(lines)


def rerun_table(recs: list[dict]) -> str:
    """Reruns of table cells with a different budget or machine (records tagged ``rerun``), per learner and net."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in recs:
        if r.get("rerun"):
            groups[(r["learner"], r.get("dll_preset"), r["rerun"])].append(r)
    if not groups:
        return "(no reruns)"
    lines = ["| learner | net | rerun | test acc % | per seed (test %) | s/epoch |", "|---|---|---|---|---|---|"]
    for (learner, net, tag), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.get("seed", 0))
        per = ", ".join(f"s{r.get('seed')}: {100 * r['test_acc']:.2f}" for r in rs)
        secs = [c["seconds"] for r in rs for c in r.get("curve", []) if "seconds" in c]
        sec = f"{statistics.median(secs):.0f}" if secs else "—"
        lines.append(f"| {learner} | {net} | {tag} | {_fmt([r['test_acc'] for r in rs], rs)} | {per} | {sec} |")
    return "\n".join(lines)


def probe_table(recs: list[dict]) -> str:
    rows = [r for r in recs if r.get("probe")]
    if not rows:
        return "(not run)"
    r0 = rows[0]
    lines = [(f"`{r0['command']}` — {r0['dataset']}, {r0.get('dll_preset')}, {len(r0['curve'])} epochs, "
              f"seed {r0['seed']}, {r0.get('cpu')}"), "",
             "| variant | test acc % | val acc % | mean angle(Θ,W) ° ep1 → last | ‖Θ‖ per layer ep1 → last |",
             "|---|---|---|---|---|"]
    for r in rows:
        c0, c1 = r["curve"][0], r["curve"][-1]
        n0 = " ".join(f"{c0[k]:.3g}" for k in sorted(c0) if k.startswith("theta_norm_"))
        n1 = " ".join(f"{c1[k]:.3g}" for k in sorted(c1) if k.startswith("theta_norm_"))
        a0, a1 = c0.get("theta_angle_mean"), c1.get("theta_angle_mean")
        ang = f"{a0:.1f} → {a1:.1f}" if a0 is not None else "—"
        lines.append(f"| {r['variant']} | {100 * r['test_acc']:.2f} | {100 * r['val_acc']:.2f} | {ang} | "
                     f"{n0 or '—'} → {n1 or '—'} |")
    return "\n".join(lines)


def rnn_table(recs: list[dict]) -> str:
    rows = [r for r in recs if str(r.get("dll_preset", "")).startswith("rnn")]
    if not rows:
        return "(not run)"
    lines = ["| task | learner | epochs | test acc % (per char for chartext) | test loss (nats) | status |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        c = r["curve"][-1]
        lines.append(f"| {r['dll_preset']} ({r['dataset']}) | {r['learner']} | {len(r['curve'])}/{r['epochs']} | "
                     f"{100 * r['test_acc']:.2f} | {c.get('test_loss', float('nan')):.3f} | {r['status']} |")
    return "\n".join(lines)


def curve_table(recs: list[dict], dataset: str) -> str:
    rows = [r for r in recs if r.get("dataset") == dataset and r.get("curve")]
    if not rows:
        return "(no runs)"
    lines = []
    for r in rows:
        pts = ", ".join(f"{int(c['epoch'])}: {100 * c['val_acc']:.1f}/{100 * c['test_acc']:.1f}" for c in r["curve"])
        lines.append(f"- {r['learner']} {r.get('dll_preset')} seed {r['seed']} ({r['status']}, "
                     f"{r.get('epochs_done', len(r['curve']))}/{r['epochs']} epochs, lr {r['params'].get('lr', 'preset')}, "
                     f"{r.get('gpu') or r.get('cpu')}, "
                     f"threads {r.get('threads')}): epoch: val/test % — {pts}")
    return "\n".join(lines)


def cost_table() -> str:
    files = sorted(RES.glob("dll_cost*.json"))
    if not files:
        return "(not measured)"
    lines = ["| file | net | learner | batch | ms / step | × BP | threads | device |", "|---|---|---|---|---|---|---|---|"]
    for p in files:
        for r in json.loads(p.read_text()):
            lines.append(f"| {p.name} | {r['net']} | {r['learner']} | {r['batch_size']} | {1e3 * r['sec_per_step']:.1f} | "
                         f"{r['ratio_vs_bp']:.2f} | {r['threads']} | {r.get('gpu') or r.get('cpu')} |")
    lines.append("")
    lines.append("Median of interleaved timed blocks in one process, 1 thread, on the shared 2-core machine "
                 "while other jobs ran (load average 5–13): ratios are noisy.")
    return "\n".join(lines)


def merge(src: Path, into: Path, tag: str | None) -> None:
    out = []
    for p in sorted(src.glob("*.json")):
        if p.name.endswith(".partial.json"):
            continue
        for r in json.loads(p.read_text()):
            if p.stem.startswith("sweep_"):
                r["sweep"] = True
            if p.stem.startswith("variant_"):
                r["variant"] = f"lr={r['params'].get('lr')}"
            out.append(r)
    for p in sorted(src.glob("*.partial.json")):  # runs killed at the deadline: keep their curve
        final = p.with_name(p.name.replace(".partial.json", ".json"))
        if final.exists():
            continue
        d = json.loads(p.read_text())
        cfg, curve = d["config"], d["curve"]
        out.append({"learner": cfg["learner"], "dataset": cfg["dataset"], "preset": cfg["preset"],
                    "seed": cfg["seed"], "epochs": cfg["epochs"], "epochs_done": len(curve), "status": "killed",
                    "test_acc": curve[-1].get("test_acc") if curve else None,
                    "val_acc": curve[-1].get("val_acc") if curve else None, "params": cfg["params"],
                    "command": d["command"], "curve": curve, "sweep": p.stem.startswith("sweep_") or None,
                    "dll_preset": _preset_from(d["command"])})
    for r in out:
        if tag:
            r["run_tag"] = tag
    experiment.write_json_atomic(out, into)
    print(f"merged {len(out)} records into {into}")


def _preset_from(command: str) -> str | None:
    parts = command.split()
    return parts[parts.index("--preset") + 1] if "--preset" in parts else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--merge", type=Path)
    ap.add_argument("--into", type=Path)
    ap.add_argument("--tag")
    a = ap.parse_args(argv)
    if a.merge:
        merge(a.merge, a.into, a.tag)
        return 0
    recs = load_records()
    md = ["# DLL study (Lv et al., ICML 2025) — generated by benchmarks/dll_report.py", "",
          ("Final-epoch test accuracy; validation split (10 % of train) for any selection. "
           "Paper numbers are their code's max-test-accuracy over epochs."), "",
          "## Locality criteria (from the registry) and accuracy", "", criteria_table(recs), "",
          "## Runs that did not finish their planned epochs", "", status_lines(recs), "",
          "## angle(Θ, W) and ‖Θ‖ over training (seed 0)", "", theta_table(recs), "",
          "## Learning-rate sweep (seed 0, selection on validation accuracy)", "", sweep_table(recs), "",
          "## Labelled variants", "", variant_table(recs), "",
          "## Reruns (other machine, budget or learning rate; complete reruns of the paper's configuration, flagged `cell`, also fill the table above)", "", rerun_table(recs), "",
          "## What the paper's Θ rule does (probe)", "", probe_table(recs), "",
          "## RNNs (sequential MNIST, next character)", "", rnn_table(recs), "",
          "## CIFAR-10 curves", "", curve_table(recs, "cifar-10"), "",
          "## Cost per training step vs BP (same process)", "", cost_table(), ""]
    (RES / "dll_report.md").write_text("\n".join(md))
    print(f"wrote {RES / 'dll_report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
