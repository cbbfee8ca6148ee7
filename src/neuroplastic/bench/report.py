"""Reports from the results database: comparison tables, learning curves, alignment angles, JSON records.

- :func:`summarize` groups finished runs by learner × dataset × preset (× any other differing config
  keys) and gives test accuracy (final epoch) as mean ± sample standard deviation over seeds.
- :func:`write_report` writes ``report.md`` (figures as PNG files beside it), ``report.html``
  (self-contained: PNGs embedded as base64) and/or ``results.json`` (the list of standard run records of
  :func:`neuroplastic.experiment.record`, the format of ``benchmarks/results/*.json``). Every file is
  written to a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .db import ResultsDB

FORMATS = ("md", "html", "json")
_SKIP_KEYS = ("seed", "device", "eval_batch_size")


# --------------------------------------------------------------------------------------------------
# grouping
def preset_of(cfg: dict[str, Any]) -> str:
    """The architecture/preset name of a config (``default`` when the learner's own default is used)."""
    p = cfg.get("params") or {}
    return str(cfg.get("preset") or p.get("preset") or p.get("arch") or "default")


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in cfg.items():
        if k in _SKIP_KEYS:
            continue
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        else:
            out[k] = v
    return out


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group DB rows that differ only by seed; return one dict per group in first-seen order.

    Each group: ``learner, dataset, preset, variant`` (the config keys that tell apart groups sharing
    learner/dataset/preset, as ``k=v``), ``n`` (runs), ``n_done``, ``n_failed``, ``seeds``, ``acc_mean``,
    ``acc_std`` (fractions; std over seeds with ``n - 1`` in the denominator, None below 2 runs),
    ``train_seconds`` (mean), ``rows``.
    """
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        cfg = r["config"]
        flat = _flat(cfg)
        g = groups.setdefault(_key(flat), {"learner": cfg["learner"], "dataset": cfg["dataset"],
                                          "preset": preset_of(cfg), "flat": flat, "rows": []})
        g["rows"].append(r)
    by_ldp: dict[tuple, list[dict]] = defaultdict(list)
    for g in groups.values():
        by_ldp[(g["learner"], g["dataset"], g["preset"])].append(g)
    for gs in by_ldp.values():
        keys = sorted({k for g in gs for k in g["flat"]})
        differ = [k for k in keys if len({_key(g["flat"].get(k)) for g in gs}) > 1] if len(gs) > 1 else []
        for g in gs:
            g["variant"] = ", ".join(f"{k}={_short(g['flat'].get(k))}" for k in differ)
    out = []
    for g in groups.values():
        done = [r for r in g["rows"] if r["status"] == "done"]
        accs = [r["metrics"].get("test_acc") for r in done if r.get("metrics")]
        accs = [float(a) for a in accs if isinstance(a, (int, float)) and math.isfinite(a)]
        secs = [r["train_seconds"] for r in done if r.get("train_seconds") is not None]
        g.update(n=len(g["rows"]), n_done=len(done), n_failed=sum(r["status"] == "failed" for r in g["rows"]),
                 seeds=sorted(r["config"]["seed"] for r in done),
                 acc_mean=statistics.fmean(accs) if accs else None,
                 acc_std=statistics.stdev(accs) if len(accs) >= 2 else None,
                 train_seconds=statistics.fmean(secs) if secs else None)
        del g["flat"]
        out.append(g)
    return out


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_short(x) for x in v) + "]"
    return str(v)


def fmt_acc(mean: float | None, std: float | None) -> str:
    """``97.31 ± 0.42`` (percent); ``—`` when nothing finished."""
    if mean is None:
        return "—"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if std is not None else f"{100 * mean:.2f}"


def _marks(learner: str) -> tuple[str, str, str, str]:
    from .. import learners

    try:
        e = learners.entry(learner)
    except KeyError:
        return "?", "?", "?", ""
    loc = e.locality
    return (*("✓" if v else "✘" for v in (loc.c1, loc.c2, loc.c3)), loc.why)


def comparison_rows(groups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the comparison table (one row per group)."""
    show_variant = any(g["variant"] for g in groups)
    head = ["learner", "dataset", "preset"] + (["variant"] if show_variant else []) + \
        ["test acc % (mean ± std)", "n", "C1", "C2", "C3", "train s"]
    cells = []
    for g in groups:
        c1, c2, c3, _ = _marks(g["learner"])
        n = f"{g['n_done']}" + (f" ({g['n_failed']} failed)" if g["n_failed"] else "") + \
            (f" ({g['n'] - g['n_done'] - g['n_failed']} open)" if g["n"] - g["n_done"] - g["n_failed"] else "")
        cells.append([g["learner"], g["dataset"], g["preset"]] + ([g["variant"]] if show_variant else []) +
                     [fmt_acc(g["acc_mean"], g["acc_std"]), n, c1, c2, c3,
                      f"{g['train_seconds']:.1f}" if g["train_seconds"] is not None else "—"])
    return head, cells


def robustness_rows(groups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the robustness table: mean test accuracy (%) over a group's finished runs at each
    measured level (``robust_*`` metrics of :mod:`neuroplastic.robustness`); only groups that measured them."""
    keys: list[str] = []
    for g in groups:
        for r in g["rows"]:
            for k in (r.get("metrics") or {}):
                if k.startswith("robust_") and k not in keys:
                    keys.append(k)
    if not keys:
        return [], []
    names = {"robust_mismatch": "mismatch σ", "robust_noise": "input noise", "robust_bits": "bits"}
    head = ["learner", "dataset", "preset"] + [f"{names.get(k.split('/')[0], k)} {k.split('/')[1]}" for k in keys]
    cells = []
    for g in groups:
        done = [r["metrics"] for r in g["rows"] if r["status"] == "done" and r.get("metrics")]
        if not any(k in m for m in done for k in keys):
            continue
        row = [g["learner"], g["dataset"], g["preset"]]
        for k in keys:
            vals = [float(m[k]) for m in done if isinstance(m.get(k), (int, float))]
            row.append(f"{100 * statistics.fmean(vals):.2f}" if vals else "—")
        cells.append(row)
    return head, cells


def locality_rows(groups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Locality criteria of the learners that ran (those in ``groups``) beside their measured test accuracy: the best
    group mean per learner, with its dataset/preset."""
    from .. import learners

    best: dict[str, dict] = {}
    for g in groups:
        if g["acc_mean"] is not None and (g["learner"] not in best or g["acc_mean"] > best[g["learner"]]["acc_mean"]):
            best[g["learner"]] = g
    names = sorted({g["learner"] for g in groups})
    head = ["learner", "paper", "C1", "C2", "C3", "why", "supervised", "measured test acc %"]
    cells = []
    for name in names:
        try:
            e = learners.entry(name)
            paper, sup = e.paper, "yes" if e.supervised else "no"
        except KeyError:
            paper, sup = "(not registered)", "?"
        c1, c2, c3, why = _marks(name)
        g = best.get(name)
        meas = (f"{fmt_acc(g['acc_mean'], g['acc_std'])} ({g['dataset']}/{g['preset']}, n={len(g['seeds'])})"
                if g else "—")
        cells.append([name, paper, c1, c2, c3, why, sup, meas])
    return head, cells


def text_table(head: list[str], cells: list[list[str]]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *cells)]
    line = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in cells])


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: Any) -> str:
    """``text`` as literal Markdown: HTML's ``& < >`` as entities (no raw HTML reaches the report) and Markdown's
    markup characters backslash-escaped (no links, images or emphasis from a name, a commit or an error text);
    newlines become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def md_table(head: list[str], cells: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, every cell :func:`md_escape`-d."""
    out = ["| " + " | ".join(map(md_escape, head)) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(map(md_escape, r)) + " |" for r in cells]
    return "\n".join(out)


def html_table(head: list[str], cells: list[list[str]]) -> str:
    """An HTML table (cells escaped)."""
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in cells)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------------------------------
# records
def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """The standard run record of a DB row: the stored one for finished runs, else one built from the
    config with ``test_acc`` None and the error text."""
    if row["status"] == "done" and row.get("record"):
        return dict(row["record"])
    cfg, env = row["config"], row.get("env") or {}
    return {"learner": cfg["learner"], "dataset": cfg["dataset"], "preset": preset_of(cfg), "seed": cfg["seed"],
            "epochs": cfg["epochs"], "status": row["status"], "test_acc": None, "val_acc": None,
            "train_seconds": row.get("train_seconds"), "commit": env.get("commit"), "cpu": env.get("cpu"),
            "torch": env.get("torch"), "device": cfg.get("device"), "command": row.get("command") or "",
            "hash": row["hash"], "params": cfg.get("params", {}), "batch_size": cfg.get("batch_size"),
            "error": row.get("error")}


def records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Standard records of the finished and failed runs among ``rows``."""
    return [to_record(r) for r in rows if r["status"] in ("done", "failed")]


# --------------------------------------------------------------------------------------------------
# figures
def _series(rows: list[dict], key: str, stage: str | None) -> dict[int, list[float]]:
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        for h in r.get("history") or []:
            if h.get("stage") != stage or not isinstance(h.get(key), (int, float)):
                continue
            ep = h.get("probe_epoch" if stage == "probe" else "epoch")
            if isinstance(ep, (int, float)):
                by_epoch[int(ep)].append(float(h[key]))
    return by_epoch


def _label(g: dict) -> str:
    return f"{g['learner']} {g['preset']}" + (f" ({g['variant']})" if g["variant"] else "")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def learning_curve_figures(groups: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    """One figure per dataset: validation and test accuracy per epoch (mean over seeds) per group.

    Unsupervised learners have no per-epoch accuracy of their own; their linear-probe epochs are drawn
    instead (label ``(probe)``). Returns ``(slug, title, png bytes)``.
    """
    from matplotlib.figure import Figure

    out = []
    for ds in sorted({g["dataset"] for g in groups}):
        gs = [g for g in groups if g["dataset"] == ds and g["n_done"]]
        fig = Figure(figsize=(12, 4.2))
        axes = fig.subplots(1, 2)
        drawn = 0
        for i, g in enumerate(gs):
            done = [r for r in g["rows"] if r["status"] == "done"]
            for ax, key in zip(axes, ("val_acc", "test_acc")):
                stage, series = None, _series(done, key, None)
                if not series:
                    stage, series = "probe", _series(done, key, "probe")
                if not series:
                    continue
                xs = sorted(series)
                ys = [100 * statistics.fmean(series[x]) for x in xs]
                ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, ms=3, **_style(i),
                        label=_label(g) + (" (probe)" if stage == "probe" else ""))
                drawn += 1
        if not drawn:
            continue
        for ax, name in zip(axes, ("validation", "test")):
            ax.set_xlabel("epoch (probe epoch for unsupervised learners)")
            ax.set_ylabel(f"{name} accuracy %")
            ax.grid(alpha=0.3)
        _legend(fig, axes[1])
        title = f"Learning curves on {ds} (mean over seeds)"
        fig.suptitle(title)
        out.append((f"curves-{ds}", title, _png(fig)))
    return out


def _style(i: int) -> dict[str, Any]:
    """Distinct colour and line style for the ``i``-th line (20 colours × 3 styles)."""
    from matplotlib import colormaps

    return {"color": colormaps["tab20"](i % 20), "linestyle": ("-", "--", ":")[(i // 20) % 3]}


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def angle_figures(groups: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    """One figure per dataset with every ``angle_deg*`` history key (alignment angle between the
    feedback-driven update and the backprop gradient, degrees) per group, mean over seeds."""
    from matplotlib.figure import Figure

    out = []
    for ds in sorted({g["dataset"] for g in groups}):
        lines = []
        for g in groups:
            if g["dataset"] != ds:
                continue
            done = [r for r in g["rows"] if r["status"] == "done"]
            keys = sorted({k for r in done for h in r.get("history") or [] for k in h
                           if k.startswith("angle_deg") and h.get("stage") is None})
            if "angle_deg_mean" in keys:  # the per-layer angles would crowd the plot
                keys = ["angle_deg_mean"]
            for k in keys:
                s = _series(done, k, None)
                if s:
                    lines.append((f"{_label(g)}: {k}", s))
        if not lines:
            continue
        fig = Figure(figsize=(9, 4.2))
        ax = fig.subplots()
        for i, (label, s) in enumerate(lines):
            xs = sorted(s)
            ax.plot(xs, [statistics.fmean(s[x]) for x in xs], label=label, **_style(i))
        ax.axhline(90, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel("angle to the backprop gradient (°)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _legend(fig, ax)
        title = f"Alignment angles on {ds} (mean over seeds; angle_deg_mean when reported)"
        fig.suptitle(title)
        out.append((f"angles-{ds}", title, _png(fig)))
    return out


# --------------------------------------------------------------------------------------------------
# writing
def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` by write-then-rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _meta(rows: list[dict], suite: str | None, db_path: Path) -> list[tuple[str, str]]:
    envs = [r.get("env") or {} for r in rows if r["status"] == "done"]
    pick = lambda k: ", ".join(sorted({str(e.get(k)) for e in envs if e.get(k)})) or "—"
    counts = defaultdict(int)
    for r in rows:
        counts[r["status"]] += 1
    return [("database", str(db_path)), ("suite", suite or "all"),
            ("runs", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"),
            ("commit", pick("commit")), ("torch", pick("torch")), ("cpu", pick("cpu")), ("gpu", pick("gpu")),
            ("generated", time.strftime("%Y-%m-%d %H:%M:%S %Z"))]


_NOTES = ("Test accuracy is the final-epoch accuracy on the test split (percent), mean ± sample standard "
          "deviation over seeds; n counts finished runs. Locality criteria (Lv et al., ICML 2025): C1 no "
          "weight symmetry, C2 local error signal, C3 single phase.")


def run_pictures(rows: list[dict[str, Any]], runs_dir: Path) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """PNGs written by learners' ``figures()`` in each finished run's folder (recorded in its environment as
    ``run_dir``; else ``runs_dir/<hash>``), per run."""
    out = []
    for r in rows:
        recorded = (r.get("env") or {}).get("run_dir")
        fig_dir = (Path(recorded) if recorded and Path(recorded).is_dir() else runs_dir / r["hash"]) / "figures"
        if r["status"] != "done" or not fig_dir.is_dir():
            continue
        pngs = [(p.stem, p.read_bytes()) for p in sorted(fig_dir.glob("*.png"))]
        if pngs:
            c = r["config"]
            out.append((f"{c['learner']} · {c['dataset']} · {preset_of(c)} · seed {c['seed']}", pngs))
    return out


def write_report(db_path: str | os.PathLike, out: str | os.PathLike = "results/report",
                 formats: tuple[str, ...] | list[str] = ("md", "html"), suite: str | None = None,
                 ) -> list[Path]:
    """Render the database (optionally one suite) into ``out``; return the files written.

    ``md`` → ``out/report.md`` + ``out/figures/*.png``; ``html`` → ``out/report.html`` (self-contained);
    ``json`` → ``out/results.json``, or ``out`` itself when it ends in ``.json``.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InputError(f"unknown report format(s) {', '.join(map(repr, bad))}; allowed: {', '.join(FORMATS)}")
    db_path = Path(db_path)
    if not db_path.exists():
        raise FileNotFoundError(f"results database {str(db_path)!r} not found; run `neuroplastic bench` first "
                                f"or pass --db")
    db = ResultsDB(db_path)
    if suite is not None and suite not in db.suites():
        raise InputError(f"suite {suite!r} is not in {str(db_path)!r}; suites there: {', '.join(db.suites()) or 'none'}")
    rows = db.runs(suite)
    db.close()
    out = Path(out)
    written: list[Path] = []
    if "json" in formats:
        dest = out if out.suffix == ".json" else out / "results.json"
        write_atomic(dest, json.dumps(records(rows), indent=1, default=str) + "\n")
        written.append(dest)
    if not ({"md", "html"} & set(formats)):
        return written
    groups = summarize(rows)
    comp, loc, rob = comparison_rows(groups), locality_rows(groups), robustness_rows(groups)
    figs = learning_curve_figures(groups) + angle_figures(groups)
    failed = [r for r in rows if r["status"] == "failed"]
    fail_rows = (["hash", "learner", "dataset", "seed", "attempts", "error"],
                 [[r["hash"], r["config"]["learner"], r["config"]["dataset"], str(r["config"]["seed"]),
                   str(r["attempts"]), (r.get("error") or "").strip().splitlines()[-1][:200] if r.get("error") else ""]
                  for r in failed])
    meta = _meta(rows, suite, db_path)
    pictures = run_pictures(rows, db_path.parent / "runs")
    title = "neuroplastic results" + (f": suite {suite}" if suite else "")
    if "md" in formats:
        parts = [f"# {md_escape(title)}", "", *(f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in meta), "",
                 "## Comparison", "", _NOTES, "",
                 md_table(*comp), ""]
        if rob[1]:
            parts += ["## Robustness (test accuracy %, trained models perturbed at inference, no retraining)", "",
                      md_table(*rob), ""]
        parts += ["## Locality criteria and measured accuracy", "", md_table(*loc), ""]
        if failed:
            parts += ["## Failed runs", "", md_table(*fail_rows), ""]
        if figs:
            parts += ["## Figures", ""]
            for slug, ftitle, png in figs:
                p = write_atomic(out / "figures" / f"{slug}.png", png)
                written.append(p)
                parts += [f"### {ftitle}", "", f"![{ftitle}](figures/{slug}.png)", ""]
        if pictures:
            parts += ["## Pictures of trained learners", ""]
            for title_, pngs in pictures:
                parts += [f"### {md_escape(title_)}", ""]
                for name, png in pngs:
                    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{title_}-{name}") + ".png"
                    written.append(write_atomic(out / "figures" / slug, png))
                    parts += [f"![{md_escape(name)}](figures/{slug})", ""]
        written.append(write_atomic(out / "report.md", "\n".join(parts)))
    if "html" in formats:
        style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:14px}"
                 "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}")
        body = [f"<h1>{html.escape(title)}</h1>", "<ul>" + "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in meta) + "</ul>",
            "<h2>Comparison</h2>", f"<p>{html.escape(_NOTES)}</p>", html_table(*comp)]
        if rob[1]:
            body += ["<h2>Robustness (test accuracy %, trained models perturbed at inference, no retraining)</h2>",
                     html_table(*rob)]
        body += ["<h2>Locality criteria and measured accuracy</h2>", html_table(*loc)]
        if failed:
            body += ["<h2>Failed runs</h2>", html_table(*fail_rows)]
        if figs:
            body.append("<h2>Figures</h2>")
            for _, ftitle, png in figs:
                b64 = base64.b64encode(png).decode()
                body += [f"<h3>{html.escape(ftitle)}</h3>",
                         f'<img alt="{html.escape(ftitle)}" src="data:image/png;base64,{b64}">']
        if pictures:
            body.append("<h2>Pictures of trained learners</h2>")
            for title_, pngs in pictures:
                body.append(f"<h3>{html.escape(title_)}</h3>")
                for name, png in pngs:
                    b64 = base64.b64encode(png).decode()
                    body.append(f'<img alt="{html.escape(name)}" title="{html.escape(name)}" '
                                f'style="max-width:48%" src="data:image/png;base64,{b64}">')
        doc = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
               f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
        written.append(write_atomic(out / "report.html", doc))
    return written


def print_table(db_path: str | os.PathLike, suite: str | None = None, file: Any = None) -> str:
    """The comparison table of a suite as plain text (printed to ``file`` when given)."""
    db = ResultsDB(db_path)
    rows = db.runs(suite)
    db.close()
    text = text_table(*comparison_rows(summarize(rows)))
    if file is not None:
        print(text, file=file)
    return text
