"""Reports from the results database: comparison tables, learning curves, alignment angles, JSON records.

- :func:`summarize` groups finished runs by learner × dataset × preset (× any other differing config
  keys) and gives test accuracy (final epoch) as mean ± sample standard deviation over seeds.
- :func:`sweeps` finds one-parameter sweeps (a noise grid, a learning-rate series) among the groups;
  :func:`sweep_figures` draws accuracy and alignment against the swept value.
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
import textwrap
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
    learner/dataset/preset and that this group sets, as ``k=v``; a key it lacks is not named), ``n`` (runs),
    ``n_done``, ``n_failed``, ``seeds``, ``acc_mean``, ``acc_std`` (fractions; std over seeds with ``n - 1`` in the
    denominator, None below 2 runs), ``train_seconds`` (mean), ``rows``.
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
            # what the group sets: a key it lacks (None) is left out, and groups still differ in what they name
            g["variant"] = ", ".join(f"{k}={_short(g['flat'][k])}" for k in differ if g["flat"].get(k) is not None)
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
    """Header and cells of the comparison table (one row per group, named by :func:`method_of`)."""
    show_variant = any(g["variant"] for g in groups)
    head = ["learner", "dataset", "preset"] + (["variant"] if show_variant else []) + \
        ["test acc % (mean ± std)", "n", "C1", "C2", "C3", "train s"]
    cells = []
    for g in groups:
        c1, c2, c3, _ = _marks(g["learner"])
        n = f"{g['n_done']}" + (f" ({g['n_failed']} failed)" if g["n_failed"] else "") + \
            (f" ({g['n'] - g['n_done'] - g['n_failed']} open)" if g["n"] - g["n_done"] - g["n_failed"] else "")
        cells.append([method_of(g["rows"][0]["config"]), g["dataset"], g["preset"]]
                     + ([g["variant"]] if show_variant else []) + [fmt_acc(g["acc_mean"], g["acc_std"]), n, c1, c2, c3,
                      f"{g['train_seconds']:.1f}" if g["train_seconds"] is not None else "—"])
    return head, cells


def architecture_of(cfg: dict[str, Any]) -> str:
    """The architecture a run trained: its preset, or the preset/arch its registered learner fixes."""
    name = preset_of(cfg)
    if name != "default":
        return name
    from .. import learners

    try:
        d = learners.entry(cfg["learner"]).defaults
    except KeyError:
        return name
    return str(d.get("preset") or d.get("arch") or name)


def learner_params(cfg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The registry entry of a run's learner and the keyword arguments it was built with (the entry's fixed ones and
    :func:`neuroplastic.experiment.learner_kwargs`); raises ``KeyError`` for an unknown learner."""
    from .. import learners
    from ..experiment import learner_kwargs

    e = learners.entry(cfg["learner"])
    return e, {**e.defaults, **learner_kwargs({**cfg, "params": cfg.get("params") or {}})}


def network_of(cfg: dict[str, Any]) -> str:
    """The network a run trained, for matching it with the backprop reference of the same net: its learner's
    :meth:`~neuroplastic.learners.base.Learner.network` signature (name and shaping arguments, defaults filled in, so
    DLL's preset ``cnn-cifar`` and backprop's ``arch: lv_cnn_cifar`` match and MLPs of other widths do not), else
    :func:`architecture_of`."""
    try:
        e, params = learner_params(cfg)
        sig = e.cls.network(params)
    except (KeyError, TypeError, ValueError):  # an unknown learner, or a record too old to resolve: its preset name
        sig = None
    return sig or architecture_of(cfg)


def is_reference(cfg: dict[str, Any]) -> bool:
    """Whether a run is a backprop reference: its learner is a registered ``baseline`` and the configuration keeps
    exact gradients (:meth:`~neuroplastic.learners.base.Learner.exact`; backprop with fixed random feedback in its
    convolutions is not one)."""
    try:
        e, params = learner_params(cfg)
        return bool(e.baseline and e.cls.exact(params))
    except (KeyError, TypeError, ValueError):
        return False


def method_of(cfg: dict[str, Any]) -> str:
    """What the decision table ranks a run as: its learner's name, or the name of the other method the
    configuration trains by (:meth:`~neuroplastic.learners.base.Learner.method`; "bp + fa in conv" for backprop
    with fixed random feedback in its convolutions), so that a hybrid is neither shown as its learner nor hides
    the learner's own runs."""
    try:
        e, params = learner_params(cfg)
        return e.cls.method(params) or cfg["learner"]
    except (KeyError, TypeError, ValueError):
        return cfg["learner"]


def metric_values(rows: list[dict], key: str) -> list[float]:
    """The finite numeric values of ``key`` in ``rows``' metrics (else their stored record)."""
    vals = []
    for r in rows:
        v = (r.get("metrics") or {}).get(key)
        if v is None:
            v = (r.get("record") or {}).get(key)
        if _number(v):
            vals.append(float(v))
    return vals


def _number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _mean_of(rows: list[dict], key: str) -> float | None:
    vals = metric_values(rows, key)
    return statistics.fmean(vals) if vals else None


def _energy_of(rows: list[dict], what: str, model: Any) -> float | None:
    """Mean energy (pJ) per inference or per training sample over ``rows`` under ``model``, from the stored
    operation counts (so other per-operation figures need no rerun)."""
    from ..energy import energy_pj

    counts = [_mean_of(rows, f"ops_{what}_{k}") for k in ("mac", "ac", "reads")]
    if any(c is None for c in counts):
        return None
    return energy_pj(*counts, model)


def _val_or_test(g: dict[str, Any]) -> float:
    v = _mean_of([r for r in g["rows"] if r["status"] == "done"], "val_acc")
    return v if v is not None else (g["acc_mean"] if g["acc_mean"] is not None else -1.0)


def decision_picks(groups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The groups the decision table shows, per dataset, ranked by mean test accuracy: for each method
    (:func:`method_of`) that finished a run there, its configuration with the best mean *validation* accuracy (test
    accuracy only where no validation split was kept). Never selected on the test set."""
    method = {id(g): method_of(g["rows"][0]["config"]) for g in groups}
    best: dict[str, dict[str, dict]] = defaultdict(dict)
    for g in groups:
        if g["acc_mean"] is None:
            continue
        cur = best[g["dataset"]].get(method[id(g)])
        if cur is None or _val_or_test(g) > _val_or_test(cur):
            best[g["dataset"]][method[id(g)]] = g
    return {ds: sorted(b.values(), key=lambda g: -g["acc_mean"]) for ds, b in best.items()}


def decision_rows(groups: list[dict[str, Any]], energy: Any = None,
                  picks: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The comparison that decides, one table per dataset (datasets with the most learners first): every learner that
    ran, ranked by mean test accuracy.

    A learner with several configurations on a dataset is shown by the one with the best mean *validation* accuracy
    (test accuracy only where no validation split was kept); a configuration that trains by another method
    (:func:`method_of`: "bp + fa in conv") is ranked apart under that name; a learner whose runs all failed is
    listed as failed, last. Columns: accuracy (mean ± std, n), the gap to the backprop reference of the same network on the same
    dataset (:func:`_gap_to_reference`: a registered ``baseline`` learner's best exact-gradient configuration of
    the net :func:`network_of` names, at the same epochs where there is one) where the store has it, what is read
    out (end to end, or a linear probe on frozen features), trainable parameters, training time, samples/s, per-run peak memory, energy per
    inference and per training sample (:mod:`neuroplastic.energy`, figures of ``energy``) and C1/C2/C3.
    Cells are strings, or ``(text, anchor)`` pairs linking to a run's pictures. ``picks``: :func:`decision_picks` of
    ``groups``, where the caller has them.
    """
    from .. import learners
    from ..energy import DEFAULT_ENERGY

    model = energy or DEFAULT_ENERGY
    head = ["#", "learner", "architecture / setup", "test acc % (mean ± std)", "n", "vs backprop (pp)", "read out",
            "params", "train s", "samples/s", "peak MB", "nJ / inference", "nJ / train sample", "C1 C2 C3"]
    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    learners_on = defaultdict(set)
    method = {id(g): method_of(g["rows"][0]["config"]) for g in groups}
    for g in groups:
        learners_on[g["dataset"]].add(method[id(g)])
    picks = decision_picks(groups) if picks is None else picks
    for ds in sorted(learners_on, key=lambda d: (-len(learners_on[d]), d)):  # the widest comparisons first
        gs = [g for g in groups if g["dataset"] == ds]
        refs: dict[str, list[dict]] = defaultdict(list)  # per network, the groups that are backprop references
        for g in gs:
            if is_reference(g["rows"][0]["config"]) and g["acc_mean"] is not None:
                refs[network_of(g["rows"][0]["config"])].append(g)
        ranked = picks.get(ds, [])
        failed = sorted({method[id(g)] for g in gs if g["n_failed"]} - {method[id(g)] for g in ranked})
        cells: list[list[Any]] = []
        for i, g in enumerate(ranked, 1):
            done = [r for r in g["rows"] if r["status"] == "done"]
            arch, net = architecture_of(done[0]["config"]), network_of(done[0]["config"])
            try:
                e = learners.entry(g["learner"])
                readout, marks = ("end to end" if e.supervised else "linear probe"), e.locality.marks()
            except KeyError:
                readout, marks = "?", "? ? ?"
            gap = _gap_to_reference(g, refs.get(net, []))
            setup = arch + (f" ({g['variant']})" if g["variant"] else "")
            setup = setup if len(setup) <= 110 else setup[:109] + "…"  # the full variant is in "Every configuration"
            fmt = lambda v, f: "—" if v is None else format(v, f)
            e_inf, e_train = _energy_of(done, "inference", model), _energy_of(done, "train", model)
            n_params = _mean_of(done, "n_params")
            n = f"{g['n_done']}" + (f" ({g['n_failed']} failed)" if g["n_failed"] else "")
            cells.append([str(i), (method[id(g)], f"run-{done[0]['hash']}"), setup, fmt_acc(g["acc_mean"], g["acc_std"]),
                          n, gap, readout, "—" if n_params is None else f"{int(n_params):,}",
                          fmt(g["train_seconds"], ".1f"), fmt(_mean_of(done, "samples_per_s"), ",.0f"),
                          fmt(_mean_of(done, "peak_memory_mb"), ",.0f"),
                          fmt(None if e_inf is None else e_inf / 1e3, ",.1f"),
                          fmt(None if e_train is None else e_train / 1e3, ",.1f"), marks])
        for name in failed:
            n_f = sum(g["n_failed"] for g in gs if method[id(g)] == name)
            cells.append(["—", name, "", "failed", f"0 ({n_f} failed)", "—", "", "", "", "", "", "", "", ""])
        if cells:
            out[ds] = (head, cells)
    return out


def decision_figures(ranked: list[dict[str, Any]]) -> tuple[list[tuple[str, str, bytes]], str]:
    """The pictures under one dataset's decision table: the learning curves of the configurations it ranks
    (``ranked``, :func:`decision_picks`) and, per network, their alignment angle per layer where they log it
    (:func:`learning_curve_figures`, :func:`layer_angle_figures`), drawn from every run's stored per-epoch history
    (an imported record's ``curve``). Returns the figures and a sentence naming the ranked methods whose records keep
    no test accuracy per epoch, not even a probe's ("" when every one does)."""
    what = " of the configurations ranked above"
    ranked = [{**g, "label": f"{i}. {method_of(g['rows'][0]['config'])} ({architecture_of(g['rows'][0]['config'])})"}
              for i, g in enumerate(ranked, 1)]  # the table's rank and name: its row holds the configuration
    figs = learning_curve_figures(ranked, "decision-", what) + layer_angle_figures(ranked, prefix="decision-", what=what)
    bare = []
    for g in ranked:
        done = [r for r in g["rows"] if r["status"] == "done"]
        if not (_series(done, "test_acc", None) or _series(done, "test_acc", "probe")):
            bare.append(g["label"])
    missing = f"Not drawn (their records keep no accuracy per epoch): {'; '.join(bare)}." if bare else ""
    return figs, missing


def _epochs_of(g: dict[str, Any]) -> Any:
    return g["rows"][0]["config"].get("epochs")


def _gap_to_reference(g: dict[str, Any], refs: list[dict[str, Any]]) -> str:
    """The decision table's 'vs backprop' cell of group ``g``: percentage points against the backprop reference group
    of its network (``refs``) trained for as many epochs as ``g``, else against one of any budget, whose epochs the
    cell then names; of several, the one with the best mean *validation* accuracy (test accuracy only where none kept
    a validation split), as the table picks its rows, so backprop's own row reads ``reference`` and no reference is
    chosen on the test set; ``—`` without one."""
    if not refs:
        return "—"
    same = [r for r in refs if _epochs_of(r) == _epochs_of(g)]
    ref = max(same or refs, key=_val_or_test)
    if ref is g:
        return "reference"
    gap = f"{100 * (g['acc_mean'] - ref['acc_mean']):+.2f}"
    return gap if same or _epochs_of(ref) is None else f"{gap} (reference: {_epochs_of(ref)} epochs)"


def label_efficiency_figures(rows: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    """One figure per dataset: test accuracy against labels per class (log axis; ``all`` at the right) for every
    learner with label-count records (``protocol.labels_per_class``), mean over its runs per architecture (seeds and
    studies together), the backprop references on
    the same labels drawn dashed. Returns ``(slug, title, png bytes)``."""
    from matplotlib.figure import Figure

    series: dict[str, dict[tuple, dict[Any, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r["status"] != "done":
            continue
        recs = r.get("records") or []
        if not any(x.get("labels_per_class") not in (None, "all") for x in recs):
            continue
        cfg = r["config"]
        line = (cfg["learner"], architecture_of(cfg), is_reference(cfg))
        for x in recs:
            lpc, acc = x.get("labels_per_class"), x.get("test_acc")
            if lpc is not None and isinstance(acc, (int, float)):
                series[cfg["dataset"]][line][lpc].append(float(acc))
    out = []
    for ds in sorted(series):
        lines = series[ds]
        counts = sorted({c for s in lines.values() for c in s if c != "all"})
        if not counts:
            continue
        x_all = max(counts) * 10
        fig = Figure(figsize=(10, 4.2))
        ax = fig.subplots()
        for i, ((learner, arch, ref), s) in enumerate(sorted(lines.items())):
            xs = sorted(c for c in s if c != "all") + (["all"] if "all" in s else [])
            ax.plot([x_all if c == "all" else c for c in xs], [100 * statistics.fmean(s[c]) for c in xs],
                    marker="o", ms=4, label=f"{learner} {arch}", color=_style(i)["color"],
                    linestyle="--" if ref else "-")
        ax.set_xscale("log")
        ax.set_xticks(counts + [x_all], [str(c) for c in counts] + ["all"])
        out.append(_finish(fig, ax, f"labels-{ds}", "labels per class", "test accuracy %",
                           f"Label efficiency on {ds} (mean over the runs of each learner and architecture; dashed: backprop references)"))
    return out


def robustness_rows(groups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the robustness table: mean test accuracy (%) over a group's finished runs at each
    measured level (``robust_*`` metrics of :mod:`neuroplastic.robustness`); only groups that measured them, each
    named by :func:`method_of`."""
    keys: list[str] = []
    for g in groups:
        for r in g["rows"]:
            for k in (r.get("metrics") or {}):
                if k.startswith("robust_") and k not in keys:
                    keys.append(k)
    if not keys:
        return [], []
    names = {"robust_mismatch": "mismatch σ", "robust_noise": "input noise", "robust_bits": "bits"}
    measured = []
    for g in groups:
        done = [r["metrics"] for r in g["rows"] if r["status"] == "done" and r.get("metrics")]
        if any(k in m for m in done for k in keys):
            measured.append((g, done))
    show_variant = any(g["variant"] for g, _ in measured)  # what tells apart groups of one learner and net
    head = ["learner", "dataset", "preset"] + (["variant"] if show_variant else []) + \
        [f"{names.get(k.split('/')[0], k)} {k.split('/')[1]}" for k in keys]
    cells = []
    for g, done in measured:
        row = [method_of(g["rows"][0]["config"]), g["dataset"], g["preset"]] + ([g["variant"]] if show_variant else [])
        for k in keys:
            vals = [float(m[k]) for m in done if isinstance(m.get(k), (int, float))]
            row.append(f"{100 * statistics.fmean(vals):.2f}" if vals else "—")
        cells.append(row)
    return head, cells


def locality_rows(groups: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Locality criteria of the learners that ran (those in ``groups``; registered studies, which are not learners,
    are left out) beside a measured test accuracy: the group the decision table shows for the learner's own method
    on the widest comparison it took part in (best mean validation accuracy, :func:`decision_rows`; never the best
    test accuracy), with its dataset/preset. A hybrid configuration (:func:`method_of`) is not the learner's
    method and is not shown."""
    from .. import learners, studies

    method = {id(g): method_of(g["rows"][0]["config"]) for g in groups}
    own = [g for g in groups if method[id(g)] == g["learner"] and g["acc_mean"] is not None]
    width: dict[str, set] = defaultdict(set)
    for g in groups:
        width[g["dataset"]].add(method[id(g)])
    best: dict[str, dict] = {}
    for g in sorted(own, key=lambda g: (-len(width[g["dataset"]]), g["dataset"])):
        cur = best.get(g["learner"])
        if cur is None or (cur["dataset"] == g["dataset"] and _val_or_test(g) > _val_or_test(cur)):
            best[g["learner"]] = g
    names = sorted({g["learner"] for g in groups} - set(studies.names()))
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


def text_table(head: list[str], cells: list[list[Any]]) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(_text(x)) for x in col) for col in zip(head, *cells)]
    line = lambda row: "  ".join(_text(x).ljust(w) for x, w in zip(row, widths)).rstrip()
    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in cells])


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: Any) -> str:
    """``text`` as literal Markdown: HTML's ``& < >`` as entities (no raw HTML reaches the report) and Markdown's
    markup characters backslash-escaped (no links, images or emphasis from a name, a commit or an error text);
    newlines become spaces."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def md_table(head: list[str], cells: list[list[Any]]) -> str:
    """A GitHub-flavoured Markdown table, every cell :func:`md_escape`-d (a ``(text, anchor)`` cell as its text)."""
    out = ["| " + " | ".join(map(md_escape, head)) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(md_escape(_text(x)) for x in r) + " |" for r in cells]
    return "\n".join(out)


def _text(cell: Any) -> str:
    return str(cell[0]) if isinstance(cell, tuple) else str(cell)


def html_table(head: list[str], cells: list[list[Any]], anchors: set[str] | frozenset = frozenset()) -> str:
    """An HTML table (cells escaped); a ``(text, anchor)`` cell links to ``#anchor`` when ``anchor`` is in
    ``anchors`` (the sections the page has)."""
    def td(x: Any) -> str:
        if isinstance(x, tuple) and x[1] in anchors:
            return f'<td><a href="#{html.escape(x[1])}">{html.escape(str(x[0]))}</a></td>'
        return f"<td>{html.escape(_text(x))}</td>"

    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(td(x) for x in r) + "</tr>" for r in cells)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------------------------------
# records
def error_line(text: str | None) -> str:
    """A failed run's error in one line, as the tables show it: the first line of the stored text (the exception and
    its message; the traceback below it stays in the store and the run's log)."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def to_record(row: dict[str, Any]) -> dict[str, Any]:
    """The standard run record of a DB row: the stored one for finished runs, else one built from the
    config with ``test_acc`` None and the error text; a failed run that finished epochs before it failed (a
    divergence) adds ``epochs_done`` and ``last_epoch``, the finite numbers of its last finished epoch."""
    if row["status"] == "done" and row.get("record"):
        return dict(row["record"])
    cfg, env = row["config"], row.get("env") or {}
    rec = {"learner": cfg["learner"], "dataset": cfg["dataset"], "preset": preset_of(cfg), "seed": cfg["seed"],
           "epochs": cfg["epochs"], "status": row["status"], "test_acc": None, "val_acc": None,
           "train_seconds": row.get("train_seconds"), "commit": env.get("commit"), "cpu": env.get("cpu"),
           "cpu_isa": env.get("cpu_isa"), "gpu": env.get("gpu"), "torch": env.get("torch"),
           "native": env.get("native"), "device": cfg.get("device"), "command": row.get("command") or "",
           "hash": row["hash"], "params": cfg.get("params", {}), "batch_size": cfg.get("batch_size"),
           "error": row.get("error")}
    epochs = _epochs(row)
    if row["status"] == "failed" and epochs:
        rec["epochs_done"] = len(epochs)
        rec["last_epoch"] = _finite(epochs[-1])
    return rec


def _finite(h: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a history row (no flags, no text, no NaN or infinity)."""
    return {k: v for k, v in h.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def curve_of(row: dict[str, Any]) -> list[dict[str, float]]:
    """A run's training epochs as an exported record carries them (``curve``, the form the retired benchmark
    scripts' records already had), so that a fresh checkout's store can draw the run's learning and alignment
    curves: one row per epoch (:func:`_epochs`), its finite numbers to 6 significant digits."""
    return [{k: float(f"{v:.6g}") for k, v in _finite(h).items()} for h in _epochs(row)]


def imported_rows(db: ResultsDB, known: set[str] = frozenset(), section: str | None = None) -> list[dict[str, Any]]:
    """The store's imported records (recorded before the store existed, or exported from another store) as run rows
    the report can group: one row per run, its label-count records attached as ``records`` and its history the
    main record's ``curve`` (:func:`curve_of`; none for records exported without one). Records without learner
    or dataset (cost tables, campaigns) and runs whose hash is in ``known`` (already a run of the store) are left
    out. ``section``: that section's records only."""
    out: dict[tuple, dict[str, Any]] = {}
    for sec, recs in db.imported(section).items():
        for i, rec in enumerate(recs):
            if not rec.get("learner") or not rec.get("dataset"):
                continue
            h = rec.get("hash")
            if h in known:
                continue
            key = (sec, h or (rec["learner"], rec["dataset"], rec.get("preset"), rec.get("seed"), rec.get("epochs"),
                              json.dumps(rec.get("params"), sort_keys=True, default=str), i if not h else None))
            lpc = rec.get("labels_per_class")
            if lpc not in (None, "all") and not h:  # a label-count record of the run listed just before it
                key = next((k for k in reversed(out) if k[0] == sec and k[1][:4] == key[1][:4]), key)
            row = out.get(key)
            if row is None:
                cfg = {"learner": rec["learner"], "dataset": rec["dataset"], "preset": rec.get("preset"),
                       "seed": rec.get("seed", 0), "epochs": rec.get("epochs"), "params": rec.get("params") or {},
                       "batch_size": rec.get("batch_size"), "section": sec}
                row = out[key] = {"hash": h or f"{sec}-{i}", "status": "failed" if rec.get("status") == "failed"
                                  else "done", "config": cfg, "metrics": {}, "record": None, "records": [],
                                  "history": [], "env": {k: rec.get(k) for k in ("commit", "cpu", "gpu", "torch")},
                                  "train_seconds": rec.get("train_seconds"), "attempts": 1, "error": rec.get("error")}
            row["records"].append(rec)
            if lpc in (None, "all"):
                row["record"], row["metrics"] = rec, {k: v for k, v in rec.items()
                                                     if isinstance(v, (int, float)) and not isinstance(v, bool)}
                row["history"] = [h for h in rec.get("curve") or [] if isinstance(h, dict)]
    return list(out.values())


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
    """A group's name in a figure's legend: the ``label`` a caller gave it, else its method as the tables name it
    (:func:`method_of`), preset and variant."""
    if g.get("label"):
        return g["label"]
    return f"{method_of(g['rows'][0]['config'])} {g['preset']}" + (f" ({g['variant']})" if g["variant"] else "")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # no "tight" box: it draws every figure twice
    return buf.getvalue()


def learning_curve_figures(groups: list[dict[str, Any]], prefix: str = "",
                           what: str = "") -> list[tuple[str, str, bytes]]:
    """One figure per dataset: validation and test accuracy per epoch (mean over seeds) per group.

    Unsupervised learners have no per-epoch accuracy of their own; their linear-probe epochs are drawn
    instead (label ``(probe)``). ``prefix`` starts each slug, ``what`` (e.g. " of the configurations ranked above")
    follows the dataset in each title. Returns ``(slug, title, png bytes)``.
    """
    from matplotlib.figure import Figure

    out = []
    for ds in sorted({g["dataset"] for g in groups}):
        gs = [g for g in groups if g["dataset"] == ds and (g["n_done"] or _diverged(g))]
        n_lines = sum(len(_curve_sets(g)) for g in gs)
        fig = Figure(figsize=(14, max(4.2, 0.16 * n_lines + 1.0)))  # tall enough for the legend's lines
        axes = fig.subplots(1, 2)
        drawn = 0
        for i, g in enumerate(gs):
            for rows_, label, style in _curve_sets(g):
                for ax, key in zip(axes, ("val_acc", "test_acc")):
                    stage, series = None, _series(rows_, key, None)
                    if not series:
                        stage, series = "probe", _series(rows_, key, "probe")
                    if not series:
                        continue
                    xs = sorted(series)
                    ys = [100 * statistics.fmean(series[x]) for x in xs]
                    ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, ms=3, **{**_style(i), **style},
                            label=label + (" (probe)" if stage == "probe" else ""))
                    drawn += 1
        if not drawn:
            continue
        for ax, name in zip(axes, ("validation", "test")):
            ax.set_xlabel("epoch (probe epoch for unsupervised learners)")
            ax.set_ylabel(f"{name} accuracy %")
            ax.grid(alpha=0.3)
        _legend(fig, axes[1])
        title = f"Learning curves on {ds}{what} (mean over seeds)"
        fig.suptitle(title)
        out.append((f"{prefix}curves-{ds}", title, _png(fig)))
    return out


def _epochs(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The training epochs of a run's history (not its probe epochs)."""
    return [h for h in row.get("history") or [] if h.get("stage") != "probe"]


def _diverged(g: dict[str, Any]) -> list[dict[str, Any]]:
    """The failed runs of a group that finished epochs before failing (a divergence: their curve is kept)."""
    return [r for r in g["rows"] if r["status"] == "failed" and _epochs(r)]


def _curve_sets(g: dict[str, Any]) -> list[tuple[list[dict[str, Any]], str, dict[str, Any]]]:
    """What a group's curves are drawn from: its finished runs (one line, mean over seeds), then each run that
    diverged on its own, dotted and labelled with the epochs it finished; ``(rows, label, line style)``."""
    done = [r for r in g["rows"] if r["status"] == "done"]
    return ([(done, _label(g), {})] if done else []) + [
        ([r], f"{_label(g)} (failed after epoch {len(_epochs(r))})", {"linestyle": ":"}) for r in _diverged(g)]


def _style(i: int) -> dict[str, Any]:
    """Distinct colour and line style for the ``i``-th line (10 colours × 3 styles: tab20's neighbours are two shades
    of one hue, too alike for lines side by side)."""
    from matplotlib import colormaps

    return {"color": colormaps["tab10"](i % 10), "linestyle": ("-", "--", ":")[(i // 10) % 3]}


def _finish(fig, ax, slug: str, xlabel: str, ylabel: str, title: str) -> tuple[str, str, bytes]:
    """Label, grid, legend and title one-axis figure ``fig``; ``(slug, title, png bytes)``."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    fig.suptitle(title)
    return slug, title, _png(fig)


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    w = fig.get_figwidth()
    fig.subplots_adjust(left=0.7 / w, right=1 - 3.2 / w, bottom=0.13, top=0.88, wspace=0.25)  # 3.2 in for the legend


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
            for rows_, name, style in _curve_sets(g):
                keys = sorted({k for r in rows_ for h in r.get("history") or [] for k in h
                               if k.startswith("angle_deg") and h.get("stage") is None})
                if "angle_deg_mean" in keys:  # the per-layer angles would crowd the plot
                    keys = ["angle_deg_mean"]
                for k in keys:
                    s = _series(rows_, k, None)
                    if s:
                        lines.append((f"{name}: {k}", s, style))
        if not lines:
            continue
        fig = Figure(figsize=(11, 4.2))
        ax = fig.subplots()
        for i, (label, s, style) in enumerate(lines):
            xs = sorted(s)
            ax.plot(xs, [statistics.fmean(s[x]) for x in xs], label=label, **{**_style(i), **style})
        ax.axhline(90, color="gray", lw=0.8, ls="--")
        ax.set_ylim(bottom=0)
        out.append(_finish(fig, ax, f"angles-{ds}", "epoch", "angle to the backprop gradient (°)",
                           f"Alignment angles on {ds} (mean over seeds; angle_deg_mean when reported)"))
    return out


def layer_angle_figures(groups: list[dict[str, Any]], max_groups: int = 8, prefix: str = "",
                        what: str = "") -> list[tuple[str, str, bytes]]:
    """One figure per dataset and network (:func:`network_of`: layer ``i`` of one net is not layer ``i`` of another)
    with a panel per layer ``i``: the angle ``angle_deg/i`` between the feedback the layer sends and ``Wᵀ`` per group
    over training (mean over seeds; a diverged run dotted), where a target is per layer (Gierlich et al. 2025: every
    FC layer below 10°, dashed). Networks whose runs log no per-layer angle, or whose figure would hold more than
    ``max_groups`` groups, get none (:func:`angle_figures` draws their mean). ``prefix`` starts each slug, ``what``
    follows the dataset in each title."""
    out = []
    for ds in sorted({g["dataset"] for g in groups}):
        nets: dict[str, list[dict]] = defaultdict(list)
        for g in groups:
            if g["dataset"] == ds:
                nets[network_of(g["rows"][0]["config"])].append(g)
        figs = [(net, fig) for net, gs in nets.items() if (fig := _layer_angle_figure(gs, max_groups))]
        for k, (net, fig) in enumerate(figs):
            title = f"Alignment angle per layer on {ds}{what}" + (f", {net}" if len(figs) > 1 else "") + \
                " (mean over seeds; dashed: 10°)"
            fig.suptitle(title)
            out.append((f"{prefix}angles-layers-{ds}" + (f"-{k}" if len(figs) > 1 else ""), title, _png(fig)))
    return out


def _layer_of(key: str) -> int | None:
    """The layer index ``i`` of a history key ``angle_deg/i``; None for any other key."""
    head, _, idx = key.partition("/")
    return int(idx) if head == "angle_deg" and idx.isdigit() else None


def _layer_angle_figure(gs: list[dict[str, Any]], max_groups: int) -> Any:
    """:func:`layer_angle_figures`' figure of one dataset's groups ``gs`` of one network, untitled; None where no
    group logs a per-layer angle or more than ``max_groups`` do."""
    from matplotlib.figure import Figure

    sets = [(i, cs) for i, g in enumerate(gs) for cs in _curve_sets(g)]
    logged: dict[int, set[int]] = defaultdict(set)  # per group, the layers its runs log
    for i, (rows_, _, _) in sets:
        logged[i] |= {_layer_of(k) for r in rows_ for h in _epochs(r) for k in h} - {None}
    layers = sorted(set().union(*logged.values()))
    if not layers or sum(bool(v) for v in logged.values()) > max_groups:
        return None
    cols = min(len(layers), 3)
    n_rows = -(-len(layers) // cols)
    fig = Figure(figsize=(4.2 * cols + 3.2, 3.2 * n_rows))
    axes = fig.subplots(n_rows, cols, squeeze=False).ravel()
    for ax, li in zip(axes, layers):
        for i, (rows_, label, style) in sets:
            series = _series(rows_, f"angle_deg/{li}", None)
            if series:
                xs = sorted(series)
                ax.plot(xs, [statistics.fmean(series[x]) for x in xs], label=label, **{**_style(i), **style})
        ax.axhline(10, color="gray", lw=0.8, ls="--")
        ax.set_ylim(0, 95)
        ax.set_title(f"layer {li}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("angle(B, Wᵀ) (°)")
        ax.grid(alpha=0.3)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    legend: dict[str, Any] = {}  # every group once, from whichever panels it is in
    for ax in axes[:len(layers)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), fontsize=7, loc="upper left",
               bbox_to_anchor=(1 - 3.1 / fig.get_figwidth(), 0.9))
    w = fig.get_figwidth()
    fig.subplots_adjust(left=0.6 / w, right=1 - 3.3 / w, hspace=0.45, wspace=0.3, top=0.86)
    return fig


def sweeps(groups: list[dict[str, Any]], min_points: int = 3) -> list[dict[str, Any]]:
    """One-parameter sweeps among ``groups`` (of :func:`summarize`): groups of one learner, dataset and preset whose
    configs differ in a single numeric key that takes at least ``min_points`` values, every other key equal (a
    ``params.`` key a config leaves out counts at the learner's default, so a noise-free cell joins its noise grid).
    Each sweep: ``learner, dataset, preset, key, fixed`` (the other differing keys' values, as ``k=v``), ``label``
    (those of them not at the learner's default: the figure's title) and ``points`` ``{value: [finished runs' metrics dicts]}``."""
    buckets: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for g in groups:
        done = [r["metrics"] for r in g["rows"] if r["status"] == "done" and r.get("metrics")]
        if done:
            buckets[(g["learner"], g["dataset"], g["preset"])].append((_flat(g["rows"][0]["config"]), done))
    from .. import learners

    out = []
    for (learner, ds, preset), members in buckets.items():
        if len(members) < min_points:
            continue
        try:
            defaults = {f"params.{k}": v for k, v in learners.param_defaults(learner).items()}
        except KeyError:  # an imported record of a learner this version no longer has
            defaults = {}
        keys = sorted({k for flat, _ in members for k in flat})
        flats = [{k: flat.get(k, defaults.get(k)) for k in keys} for flat, _ in members]
        differ = [k for k in keys if len({_key(f[k]) for f in flats}) > 1]
        for k in differ:
            rest = [o for o in differ if o != k]
            lines: dict[str, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
            labels: dict[str, str] = {}
            for f, (_, done) in zip(flats, members):
                if _number(f[k]):
                    fixed = ", ".join(f"{o}={_short(f[o])}" for o in rest)
                    lines[fixed][f[k]].extend(done)
                    labels[fixed] = ", ".join(f"{o}={_short(f[o])}" for o in rest
                                              if o not in defaults or _key(f[o]) != _key(defaults[o]))
            for fixed, pts in lines.items():
                if len(pts) >= min_points:
                    out.append({"learner": learner, "dataset": ds, "preset": preset, "key": k, "fixed": fixed,
                                "label": labels[fixed], "points": dict(sorted(pts.items()))})
    return out


def sweep_figures(groups: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    """One figure per sweep of :func:`sweeps`: final test accuracy (left) and every final ``angle_deg*`` metric
    (right, when the runs report alignment) against the swept value; mean over seeds, bars ± one standard
    deviation where there are several. Returns ``(slug, title, png bytes)``."""
    from matplotlib.figure import Figure

    out = []
    for i, sw in enumerate(sweeps(groups)):
        xs = list(sw["points"])
        angle_keys = sorted({k for ms in sw["points"].values() for m in ms for k in m
                             if k.startswith("angle_deg") and _number(m[k])})
        fig = Figure(figsize=(12 if angle_keys else 7, 4.2))
        axes = fig.subplots(1, 2 if angle_keys else 1, squeeze=False)[0]
        for ax, keys, scale, ylabel in ((axes[0], ["test_acc"], 100.0, "test accuracy % (final epoch)"),
                                        (axes[-1], angle_keys, 1.0, "angle to the backprop gradient (°)"))[
                                            :len(axes)]:
            for j, key in enumerate(keys):
                pts = [(x, [scale * m[key] for m in sw["points"][x] if _number(m.get(key))]) for x in xs]
                pts = [(x, v) for x, v in pts if v]
                if not pts:
                    continue
                ax.errorbar([x for x, _ in pts], [statistics.fmean(v) for _, v in pts],
                            yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in pts],
                            marker="o", ms=4, capsize=3, label=key, **_style(j))
            if xs[0] > 0 and xs[-1] >= 20 * xs[0]:  # a series over decades (learning rates)
                ax.set_xscale("log")
            ax.set_xlabel(sw["key"])
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if len(keys) > 1:
                ax.legend(fontsize=7)
        label = sw["label"] if len(sw["label"]) <= 130 else sw["label"][:130].rsplit(", ", 1)[0] + ", …"
        title = (f"{sw['learner']} {sw['preset']} on {sw['dataset']}: sweep of {sw['key']}"
                 + (f" ({label})" if label else "") + " - mean over seeds")
        fig.suptitle(textwrap.fill(title, 110 if angle_keys else 70), fontsize=10)
        fig.subplots_adjust(left=0.09, right=0.97, bottom=0.13, top=0.85, wspace=0.25)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"sweep-{sw['dataset']}-{sw['learner']}-{sw['key']}-{i}")
        out.append((slug, title, _png(fig)))
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


def _meta(rows: list[dict], suite: str | None, db_path: Path, extra: list[dict] = ()) -> list[tuple[str, str]]:
    """The report's header: the store, the runs it holds by status, the imported runs beside them, and the
    commits, torch versions and machines of every finished run shown (a long list is given as its count)."""
    envs = [r.get("env") or {} for r in [*rows, *extra] if r["status"] == "done"]

    def pick(k: str) -> str:
        seen = sorted({str(e.get(k)) for e in envs if e.get(k)})
        return ", ".join(seen) if len(seen) <= 4 else f"{len(seen)} different (each run's in its section)"

    counts = defaultdict(int)
    for r in rows:
        counts[r["status"]] += 1
    runs = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"
    if extra:
        runs += f" in this store; {len(extra)} imported ({sum(len(r['records']) for r in extra)} records)"
    return [("database", str(db_path)), ("suite", suite or "all"), ("runs", runs),
            ("commit", pick("commit")), ("torch", pick("torch")), ("cpu", pick("cpu")), ("gpu", pick("gpu")),
            ("generated", time.strftime("%Y-%m-%d %H:%M:%S %Z"))]


_NOTES = ("Test accuracy is the final-epoch accuracy on the test split (percent), mean ± sample standard "
          "deviation over seeds; n counts finished runs. Locality criteria (Lv et al., ICML 2025): C1 no "
          "weight symmetry, C2 local error signal, C3 single phase.")


def run_pictures(rows: list[dict[str, Any]], runs_dir: Path) -> list[tuple[str, str, list[tuple[str, bytes]]]]:
    """PNGs written by learners' ``figures()`` in each finished run's folder (recorded in its environment as
    ``run_dir``; else ``runs_dir/<hash>``), per run: ``(hash, title, [(name, png)])``."""
    out = []
    for r in rows:
        recorded = (r.get("env") or {}).get("run_dir")
        fig_dir = (Path(recorded) if recorded and Path(recorded).is_dir() else runs_dir / r["hash"]) / "figures"
        if r["status"] != "done" or not fig_dir.is_dir():
            continue
        pngs = [(p.stem, p.read_bytes()) for p in sorted(fig_dir.glob("*.png"))]
        if pngs:
            c = r["config"]
            out.append((r["hash"], f"{c['learner']} · {c['dataset']} · {preset_of(c)} · seed {c['seed']}", pngs))
    return out


_DECISION_NOTES = (
    "Per dataset, every learner that ran, ranked by mean test accuracy (final epoch, percent; ± sample standard "
    "deviation over seeds, n finished runs). A learner with several configurations is shown by the one with the best "
    "mean validation accuracy; a hybrid (e.g. 'bp + fa in conv': backprop in the dense layers, fixed random feedback "
    "in the convolutions) is ranked apart. 'vs backprop': percentage points against the best backprop configuration of the same "
    "network (layers, widths and activation, whichever preset names it) on the same dataset, where the store has one, "
    "trained for as many epochs, else of any budget (its epochs named in the cell). 'read out': end to end, or a linear probe on frozen "
    "features (the learner itself never sees a label). Peak memory is per run. Energy is counted from the run's own "
    "operations (neuroplastic.energy): {source}; the probe's fitting is not counted. C1 no weight symmetry, C2 "
    "local error, C3 single phase (Lv et al., ICML 2025).")


def open_store(db_path: str | os.PathLike, suite: str | None = None) -> ResultsDB:
    """The results store at ``db_path`` for reading, checked first: a missing file or a suite it holds neither runs
    nor imported records of (a published suite imported by ``neuroplastic results import``) is an error naming
    them."""
    db_path = Path(db_path)
    if not db_path.exists():
        raise FileNotFoundError(f"results database {str(db_path)!r} not found; run `neuroplastic bench` first "
                                f"or pass --db")
    db = ResultsDB(db_path)
    if suite is not None and suite not in db.suites() and not db.imported(suite):
        names = ", ".join(db.suites()) or "none"
        db.close()
        raise InputError(f"suite {suite!r} is not in {str(db_path)!r}; suites there: {names} (and the sections "
                         f"imported by `neuroplastic results import`)")
    return db


def write_report(db_path: str | os.PathLike, out: str | os.PathLike = "results/report",
                 formats: tuple[str, ...] | list[str] = ("md", "html"), suite: str | None = None,
                 energy: Any = None, imported: bool | None = None) -> list[Path]:
    """Render the database (optionally one suite) into ``out``; return the files written.

    ``md`` → ``out/report.md`` + ``out/figures/*.png``; ``html`` → ``out/report.html`` (self-contained);
    ``json`` → ``out/results.json``, or ``out`` itself when it ends in ``.json``. The headline comes first: the
    decision tables (:func:`decision_rows`), label efficiency, robustness and the reproduction table; then every
    configuration, locality, curves and the pictures of each run (linked from the decision rows). ``energy``: an
    :class:`~neuroplastic.energy.EnergyModel` (default: the 45 nm figures). ``imported``: also the store's imported
    records (default: when no suite is chosen). A chosen ``suite`` covers its runs and its imported records (a fresh
    checkout's store: ``neuroplastic results import benchmarks/results/*.json``), whose curves it draws.
    """
    from ..energy import DEFAULT_ENERGY
    from .papers import reproduction_rows

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InputError(f"unknown report format(s) {', '.join(map(repr, bad))}; allowed: {', '.join(FORMATS)}")
    db_path = Path(db_path)
    db = open_store(db_path, suite)
    rows = db.runs(suite)
    if suite is not None:  # a published suite imported into this store: its records are its runs, curves and all
        rows += imported_rows(db, {r["hash"] for r in rows}, section=suite)
    extra = imported_rows(db, {r["hash"] for r in rows}) if (suite is None if imported is None else imported) else []
    db.close()
    out = Path(out)
    written: list[Path] = []
    if "json" in formats:
        dest = out if out.suffix == ".json" else out / "results.json"
        write_atomic(dest, json.dumps(records(rows), indent=1, default=str) + "\n")
        written.append(dest)
    if not ({"md", "html"} & set(formats)):
        return written
    model = energy or DEFAULT_ENERGY
    all_rows = rows + extra
    groups = summarize(all_rows)
    picks = decision_picks(groups)
    decision = decision_rows(groups, model, picks)
    comp, loc, rob = comparison_rows(groups), locality_rows(groups), robustness_rows(groups)
    repro = reproduction_rows(groups)
    label_figs = label_efficiency_figures(all_rows)
    decision_figs = {ds: decision_figures(picks.get(ds, [])) for ds in decision}
    run_groups = summarize(rows)
    figs = (learning_curve_figures(run_groups) + angle_figures(run_groups) + layer_angle_figures(run_groups)
            + sweep_figures(groups))
    failed = [r for r in all_rows if r["status"] == "failed"]
    fail_rows = (["hash", "learner", "dataset", "seed", "attempts", "epochs finished", "error"],
                 [[r["hash"], r["config"]["learner"], r["config"]["dataset"], str(r["config"]["seed"]),
                   str(r.get("attempts")), f"{len(_epochs(r))}/{r['config'].get('epochs')}",
                   error_line(r.get("error"))[:200]]
                  for r in failed])
    meta = _meta(rows, suite, db_path, extra)
    pictures = run_pictures(rows, db_path.parent / "runs")
    anchors = {f"run-{h}" for h, _, _ in pictures}
    title = "neuroplastic results" + (f": suite {suite}" if suite else "")
    notes = _DECISION_NOTES.format(source=model.source)
    rob_title = "Robustness (test accuracy %, trained models perturbed at inference, no retraining)"
    if "md" in formats:
        parts = [f"# {md_escape(title)}", "", *(f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in meta), "",
                 "## Which rule for which data: the comparison that decides", "", md_escape(notes), ""]
        for ds, (head, cells) in decision.items():
            parts += [f"### {md_escape(ds)}", "", md_table(head, cells), ""]
            figs_, missing = decision_figs[ds]
            for slug, ftitle, png in figs_:
                written.append(write_atomic(out / "figures" / f"{slug}.png", png))
                parts += [f"![{md_escape(ftitle)}](figures/{slug}.png)", ""]
            if figs_ and missing:
                parts += [md_escape(missing), ""]
        for slug, ftitle, png in label_figs:
            written.append(write_atomic(out / "figures" / f"{slug}.png", png))
            parts += [f"### {md_escape(ftitle)}", "", f"![{md_escape(ftitle)}](figures/{slug}.png)", ""]
        if rob[1]:
            parts += [f"## {rob_title}", "", md_table(*rob), ""]
        if repro[1]:
            parts += ["## Reproduction of the papers' headline numbers", "", md_table(*repro), ""]
        parts += ["## Every configuration", "", _NOTES, "", md_table(*comp), "",
                  "## Locality criteria and measured accuracy", "", md_table(*loc), ""]
        if failed:
            parts += ["## Failed runs", "", md_table(*fail_rows), ""]
        if figs:
            parts += ["## Figures", ""]
            for slug, ftitle, png in figs:
                written.append(write_atomic(out / "figures" / f"{slug}.png", png))
                parts += [f"### {ftitle}", "", f"![{ftitle}](figures/{slug}.png)", ""]
        if pictures:
            parts += ["## Pictures of trained learners", ""]
            for h, title_, pngs in pictures:
                parts += [f'### {md_escape(title_)} <a id="run-{h}"></a>', ""]
                for name, png in pngs:
                    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{title_}-{name}") + ".png"
                    written.append(write_atomic(out / "figures" / slug, png))
                    parts += [f"![{md_escape(name)}](figures/{slug})", ""]
        written.append(write_atomic(out / "report.md", "\n".join(parts)))
    if "html" in formats:
        style = ("body{font-family:system-ui,sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}"
                 "table{border-collapse:collapse;margin:0.5em 0 1em;font-size:13px}"
                 "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}p.note{font-size:12px;color:#444;max-width:1100px}h3{margin:0.6em 0 0}")
        img = lambda title_, png, extra_="": (f'<img alt="{html.escape(title_)}" title="{html.escape(title_)}"{extra_} '
                                              f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
        body = [f"<h1>{html.escape(title)}</h1>",
                "<h2>Which rule for which data: the comparison that decides</h2>"]
        for ds, (head, cells) in decision.items():
            body += [f"<h3>{html.escape(ds)}</h3>", html_table(head, cells, anchors)]
            figs_, missing = decision_figs[ds]
            body += [img(ftitle, png, ' style="max-width:1100px"') for _, ftitle, png in figs_]
            if figs_ and missing:
                body.append(f'<p class="note">{html.escape(missing)}</p>')
        body.append(f'<p class="note">{html.escape(notes)}</p>')
        for _, ftitle, png in label_figs:
            body += [f"<h3>{html.escape(ftitle)}</h3>", img(ftitle, png, ' style="max-width:800px"')]
        if rob[1]:
            body += [f"<h2>{html.escape(rob_title)}</h2>", html_table(*rob)]
        if repro[1]:
            body += ["<h2>Reproduction of the papers' headline numbers</h2>", html_table(*repro)]
        body += ["<h2>About these results</h2>", "<ul>" + "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in meta) + "</ul>",
            "<h2>Every configuration</h2>", f"<p class=\"note\">{html.escape(_NOTES)}</p>", html_table(*comp),
            "<h2>Locality criteria and measured accuracy</h2>", html_table(*loc)]
        if failed:
            body += ["<h2>Failed runs</h2>", html_table(*fail_rows)]
        if figs:
            body.append("<h2>Figures</h2>")
            for _, ftitle, png in figs:
                body += [f"<h3>{html.escape(ftitle)}</h3>", img(ftitle, png)]
        if pictures:
            body.append("<h2>Pictures of trained learners</h2>")
            for h, title_, pngs in pictures:
                body.append(f'<h3 id="run-{html.escape(h)}">{html.escape(title_)}</h3>')
                body += [img(name, png, ' style="max-width:48%"') for name, png in pngs]
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
