"""The results store's published form: one SQLite store (:mod:`neuroplastic.bench.db`) in, the committed
``benchmarks/results/*.json``, ``benchmarks/RESULTS.md`` and the README's results table out.

``neuroplastic results import FILE...`` loads records into the store once (earlier records, kept with their
provenance: command, commit, hardware, date; absolute paths of the machine they ran on are made portable), or
reloads the exported section files on a fresh checkout. ``neuroplastic results export`` writes, from the store
alone:

- ``<out>/results/<section>.json`` — one file per section: ``{"section", "meta", "records"}``; a section is a
  suite (its done runs' records, one per label count) or an imported set of records;
- ``<out>/RESULTS.md`` — per section its title, sources, targets against what was measured, a table of final-epoch
  test accuracy (mean ± std over seeds) and the commands, commits and hardware; first, the records that a suite
  reproduced, side by side with the earlier record of the same configuration;
- the README's results table, between the ``<!-- results:begin -->`` and ``<!-- results:end -->`` markers: one row
  per headline (a suite's targets, an imported section's ``headline`` entries), each with its verdict (met or not,
  computed from the records by :func:`verdict`) and a count of the verdicts above it.
"""

from __future__ import annotations

import inspect
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .db import ResultsDB
from .report import write_atomic
from .suite import get_dotted

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: Sections that are not studies (the offline demo, single ``train`` runs); exported only when asked for.
PRIVATE = ("quick", "train")
_ABS = re.compile(r"(?<![\w.>~}])/(?:[\w.+-]+/)*[\w.+-]+")


def portable_command(cmd: str, data_roots: tuple[str, ...] = ("/work/shared/data",),
                     checkouts: tuple[str, ...] = ("/work/main/",)) -> str:
    """``cmd`` runnable from any checkout: a checkout prefix is dropped (``/work/main/benchmarks/x.py`` →
    ``benchmarks/x.py``), a data root becomes ``$NEUROPLASTIC_DATA`` and any other absolute path (an output or
    scratch folder of the machine it ran on) becomes ``<out>/<name>``."""
    for c in checkouts:
        cmd = cmd.replace(c, "")
    for d in data_roots:
        cmd = cmd.replace(d, "$NEUROPLASTIC_DATA")

    def repl(m: re.Match) -> str:
        path = m.group(0)
        if path.startswith(("/usr/bin/", "/bin/")):
            return path.rsplit("/", 1)[1]
        return "<out>/" + path.rstrip("/").rsplit("/", 1)[-1]

    return _ABS.sub(repl, cmd)


# --------------------------------------------------------------------------------------------------
# import
def _read_section_file(path: Path) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    data = json.loads(path.read_text())
    if isinstance(data, list):  # the records format of the retired benchmark scripts
        return path.stem, {}, data
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        return str(data.get("section") or path.stem), dict(data.get("meta") or {}), data["records"]
    raise InputError(f"{path}: expected a list of records or a section file {{section, meta, records}}")


def import_files(db: ResultsDB, paths: list[Path], *, notes: Path | None = None,
                 meta: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """Import record files into the store, one section per file (the file's stem or its ``section``). Commands
    are made :func:`portable_command`; the original text stays as ``recorded_command`` where it changed.
    ``notes``: a folder of ``<section>.md`` prose; ``meta``: extra metadata per section (title, headline rows).
    ``<name>_report.md`` files become prose-only sections. Returns the records imported per section."""
    counts: dict[str, int] = {}
    files: list[Path] = []
    for p in paths:
        files += sorted(p.glob("*.json")) + sorted(p.glob("*_report.md")) if p.is_dir() else [p]
    for f in files:
        if f.name.endswith(".partial.json"):
            continue
        if f.suffix == ".md":
            name, smeta, recs = f.stem, {"note": portable_command(f.read_text().strip()), "prose_only": True}, []
        else:
            name, smeta, recs = _read_section_file(f)
        out = []
        for r in recs:
            r = dict(r)
            if isinstance(r.get("command"), str):
                fixed = portable_command(r["command"])
                if fixed != r["command"]:
                    r.setdefault("recorded_command", r["command"])
                    r["command"] = fixed
            out.append(r)
        smeta.setdefault("source_file", f.name)  # an exported section keeps the file it first came from
        # records of the retired scripts are "earlier"; an exported suite section (it names its suite) stays one
        smeta.setdefault("kind", "suite" if smeta.get("suite") else "earlier")
        if notes is not None and (notes / f"{name}.md").is_file():
            smeta["note"] = portable_command((notes / f"{name}.md").read_text().strip())
        smeta.update((meta or {}).get(name, {}))
        if smeta["kind"] == "suite":  # runs of one suite from several stores: merge by run and label count
            key = lambda r: (r.get("hash"), str(r.get("labels_per_class")))
            fresh = {key(r) for r in out}
            out = [r for r in db.imported(name).get(name, []) if key(r) not in fresh] + out
        db.set_section(name, smeta)
        counts[name] = db.import_records(name, out)
    return counts


# --------------------------------------------------------------------------------------------------
# sections
def suite_records(db: ResultsDB, suite: str) -> list[dict[str, Any]]:
    """Every record of a suite's finished runs (one per label count), then one per failed run (status ``failed``,
    its error's first line, and for a run that diverged the epochs it finished and its last finished epoch:
    :func:`~neuroplastic.bench.report.to_record`), in suite order. A run's main record carries its epochs as
    ``curve`` (:func:`~neuroplastic.bench.report.curve_of`), so an export keeps the curves. A main record made
    before ``last5_test_acc`` existed gets it from the run's stored history
    (:func:`~neuroplastic.experiment.last_epochs_mean`)."""
    from ..experiment import last_epochs_mean
    from .report import curve_of, error_line, to_record

    failed = []
    for r in db.runs(suite, status="failed"):
        rec = dict(to_record(r), suite=suite)
        rec["error"] = error_line(rec.get("error"))
        if r.get("history"):
            rec["curve"] = curve_of(r)
        failed.append(rec)
    out = []
    for r in db.runs(suite, status="done"):
        recs = [dict(x, suite=suite) for x in r.get("records") or ([r["record"]] if r.get("record") else [])]
        if recs and "last5_test_acc" not in recs[0]:
            last = last_epochs_mean(r.get("history") or [], "test_acc")
            if last is not None:
                recs[0]["last5_test_acc"] = last
        if recs and r.get("history"):
            recs[0]["curve"] = curve_of(r)
        out += recs
    return out + failed


def sections(db: ResultsDB, include: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every section of the store as ``{"section", "meta", "records"}``: suites (not the :data:`PRIVATE` ones
    unless in ``include``) with the records of their finished runs plus those of an imported export of the suite
    (a fresh checkout's store) that no current run replaces; then the earlier sections (kind ``earlier``)."""
    meta = db.sections()
    imported = db.imported()
    names = list(dict.fromkeys(db.suites() + [n for n, m in meta.items() if m.get("kind") == "suite"]))
    out = []
    for s in names:
        if s in PRIVATE and s not in include:
            continue
        cur = suite_records(db, s)
        have = {(r.get("hash"), str(r.get("labels_per_class"))) for r in cur}
        old = [r for r in imported.get(s, []) if (r.get("hash"), str(r.get("labels_per_class"))) not in have]
        if old or cur:
            out.append({"section": s, "meta": meta.get(s, {"suite": s, "kind": "suite"}), "records": old + cur})
    for name, m in sorted(meta.items(), key=lambda kv: _order(kv[0])):
        if m.get("kind") in ("earlier", "campaign"):
            out.append({"section": name, "meta": m, "records": imported.get(name, [])})
    return out


#: Order of imported sections in RESULTS.md: the foundation (FA family), Hebbian, spiking, DLL, then the rest.
_ORDER = ("mnist_fa.json", "mnist_bp_adam", "mnist_fa_sweep", "mnist_fa_cpu", "hebbian", "spiking", "dll")


def _order(name: str) -> tuple[int, str]:
    for i, prefix in enumerate(_ORDER):
        if (name + ".json").startswith(prefix):
            return i, name
    return len(_ORDER), name


# --------------------------------------------------------------------------------------------------
# matching records to a filter, and tables
def matches(rec: dict[str, Any], where: dict[str, Any]) -> bool:
    """True if every dotted key of ``where`` has that value in ``rec`` (``labels_per_class: all`` also matches a
    record without label counts; ``protocol.x`` keys read the record's non-default protocol)."""
    for k, want in where.items():
        v = get_dotted(rec, k)
        if k == "labels_per_class" and want == "all" and v is None:
            continue
        if k.startswith("protocol.") and v is None and want in (False, None):
            continue
        if v != want and str(v) != str(want):
            return False
    return True


def _pct(values: list[float]) -> str:
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.2f}"
    return f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f}"


def _num(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def measured(records: list[dict[str, Any]], where: dict[str, Any], metric: str = "test_acc") -> str:
    """``mean ± std (n)`` of ``metric`` over the finished records matching ``where`` (accuracy in %)."""
    vals = [v for vs in _finished_values(records, where, metric).values() for v in vs]
    if not vals:
        return _missing(records, where)
    cell = _pct(vals) if metric.endswith("_acc") else _num(vals)
    return f"{cell} (n={len(vals)})"


def _missing(records: list[dict[str, Any]], where: dict[str, Any]) -> str:
    """What a target cell says when it has no value: "not recorded" if runs match but lack it, else "not run"."""
    return "not recorded" if any(matches(r, where) for r in records) else "not run"


def _finished_records(records: list[dict[str, Any]], where: dict[str, Any],
                      metric: str = "test_acc") -> dict[Any, list[dict[str, Any]]]:
    """The finished records matching ``where`` that have a number for ``metric``, by seed."""
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        v = r.get(metric)
        if r.get("status", "done") in ("done", "budget", "timing") and isinstance(v, (int, float)) \
                and not isinstance(v, bool) and matches(r, where):
            out[r.get("seed")].append(r)
    return out


def _finished_values(records: list[dict[str, Any]], where: dict[str, Any], metric: str) -> dict[Any, list[float]]:
    """``metric`` of the finished records matching ``where``, by seed."""
    return {seed: [float(r[metric]) for r in rs] for seed, rs in _finished_records(records, where, metric).items()}


def gap_closure(records: list[dict[str, Any]], where: dict[str, Any], low: dict[str, Any], high: dict[str, Any],
                metric: str = "test_acc") -> dict[str, Any] | None:
    """How much of the gap from the runs ``low`` to the runs ``high`` the runs ``where`` close in ``metric``:

    .. math::  c = \\frac{\\bar x - \\bar x_\\text{low}}{\\bar x_\\text{high} - \\bar x_\\text{low}}

    with each mean over the seeds that all three have (Gierlich et al. 2025: SAL against FA and "BP in FC + FA in
    conv", target c ≥ 0.8). Returns ``{"closure", "seeds", "x", "low", "high"}`` (the three means), or None when
    no seed has all three or the two ends are equal."""
    groups = [_finished_values(records, w, metric) for w in (where, low, high)]
    seeds = sorted(set(groups[0]) & set(groups[1]) & set(groups[2]), key=str)
    if not seeds:
        return None
    x, lo, hi = (statistics.fmean(v for s in seeds for v in g[s]) for g in groups)
    if hi == lo:
        return None
    return {"closure": (x - lo) / (hi - lo), "seeds": seeds, "x": x, "low": lo, "high": hi}


def differing_params(records: list[dict[str, Any]]) -> list[str]:
    """The parameter names whose values differ between ``records`` (sorted): what tells their configurations
    apart."""
    keys = set().union(*(set(r.get("params") or {}) for r in records)) if records else set()
    return sorted(k for k in keys if len({json.dumps((r.get("params") or {}).get(k), sort_keys=True, default=str)
                                          for r in records}) > 1)


def target_cells(records: list[dict[str, Any]], t: dict[str, Any]) -> list[dict[str, Any]]:
    """The suite target ``t`` once per cell it covers: when the finished runs matching its ``where`` differ in
    parameters (two SAL rates, say), one copy per set of values, its ``where`` narrowed by ``params.KEY: value``,
    so that runs of other configurations are never averaged into one value; else ``[t]``. Runs of one
    configuration over seeds stay one cell (their mean ± std)."""
    where = dict(t.get("where") or {})
    rs = [r for vs in _finished_records(records, where, t.get("metric", "test_acc")).values() for r in vs]
    keys = differing_params(rs)
    if not keys:
        return [t]
    cells: dict[str, dict[str, Any]] = {}
    for r in rs:
        narrow = {f"params.{k}": (r.get("params") or {}).get(k) for k in keys}
        cells.setdefault(json.dumps(narrow, sort_keys=True, default=str), {**t, "where": {**where, **narrow}})
    return list(cells.values())


def target_metric(t: dict[str, Any]) -> str:
    """A target's metric as its table names it: ``metric``, or ``gap closure of metric`` (``closes``)."""
    metric = t.get("metric", "test_acc")
    return f"gap closure of {metric}" if t.get("closes") else metric


def measured_target(records: list[dict[str, Any]], t: dict[str, Any]) -> str:
    """What ``records`` measured for the suite target ``t``: :func:`measured`, or for a target with ``closes:
    {from: WHERE, to: WHERE}`` the :func:`gap_closure` of its runs between those runs, with the seeds and means."""
    where, metric = dict(t.get("where") or {}), t.get("metric", "test_acc")
    if not t.get("closes"):
        return measured(records, where, metric)
    c = gap_closure(records, where, t["closes"]["from"], t["closes"]["to"], metric)
    if c is None:
        return _missing(records, where)
    scale, unit = (100, " %") if metric.endswith("_acc") else (1, "")
    ends = f"{scale * c['x']:.2f} from {scale * c['low']:.2f} to {scale * c['high']:.2f}{unit}"
    seeds = ", ".join(str(s) for s in c["seeds"])
    return f"{100 * c['closure']:.0f} % ({ends}; seed{'s' if len(c['seeds']) > 1 else ''} {seeds})"


_TARGET = re.compile(r"^\s*(\|\.\|\s*)?(<=|>=|<|>|=)\s*(-?\d+(?:\.\d+)?)")


def target_values(records: list[dict[str, Any]], t: dict[str, Any]) -> list[float]:
    """The numbers the target ``t`` is judged on, in the unit its text uses: the gap closure in % (``closes``),
    else every finished value of its metric (accuracies in %); [] when nothing was measured."""
    where, metric = dict(t.get("where") or {}), t.get("metric", "test_acc")
    if t.get("closes"):
        c = gap_closure(records, where, t["closes"]["from"], t["closes"]["to"], metric)
        return [] if c is None else [100 * c["closure"]]
    scale = 100 if metric.endswith("_acc") else 1
    return [scale * v for vs in _finished_values(records, where, metric).values() for v in vs]


def verdict(records: list[dict[str, Any]], t: dict[str, Any]) -> str:
    """Whether what ``records`` measured meets the suite target ``t``: ``"met"``, ``"not met"``, or ``""`` where
    the target has no number to compare with (``recorded``, ``far from aligned``) or nothing was measured.

    The target's text starts with a comparison and a number (``>= 45.9``, ``< 10 (fc1)``, ``>= 80 %``, ``= 1``,
    ``|.| < 0.5``; ``|.|`` compares magnitudes). It is judged on the mean over seeds of
    :func:`target_values`, or on every value when the text says ``every`` (``|.| < 0.5 nats on every model``).
    Nothing is rounded: 75.40 is not ``>= 75.5``."""
    m = _TARGET.match(str(t.get("target", "")))
    vals = target_values(records, t)
    if m is None or not vals:
        return ""
    absolute, op, bound = bool(m.group(1)), m.group(2), float(m.group(3))
    compare = {"<": lambda v: v < bound, "<=": lambda v: v <= bound, ">": lambda v: v > bound,
               ">=": lambda v: v >= bound, "=": lambda v: v == bound}[op]
    check = (lambda v: compare(abs(v))) if absolute else compare
    every = re.search(r"\bevery\b", str(t["target"]))
    ok = all(check(v) for v in vals) if every else check(statistics.fmean(vals))
    return "met" if ok else "not met"


def _counts(verdicts: list[str]) -> tuple[int, int, int]:
    """How many of ``verdicts`` are met, not met, and without a verdict."""
    met, not_met = verdicts.count("met"), verdicts.count("not met")
    return met, not_met, len(verdicts) - met - not_met


def _summary(what: str, met: int, not_met: int, without: int) -> str:
    return (f"{what} with a number: {met} met, {not_met} not met. Without a verdict: {without} (a recorded "
            f"value, or not run). A verdict compares the mean over seeds with the target, unrounded.")


def verdict_summary(rows: list[list[str]], column: int) -> str:
    """One line counting the verdicts in ``column`` of table ``rows``: targets met, not met, and without one."""
    return _summary("Targets", *_counts([r[column] for r in rows]))


def is_exploration(sec: dict[str, Any]) -> bool:
    """Whether a section is an exploratory suite's (``role: exploration``, :data:`~neuroplastic.bench.suite.ROLES`):
    it repeats its study's targets under a varied protocol, so the headlines list it apart."""
    return sec["meta"].get("role") == "exploration"


def exploration_rows(secs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per exploratory section, ``[section, title, met, not met, without a verdict]``: the counts of its
    :func:`headlines` rows."""
    return [[f"`{s['section']}`", str(s["meta"].get("title", "")),
             *map(str, _counts([r[4] for r in headlines([s])]))] for s in secs if is_exploration(s)]


EXPLORATION_HEAD = ["exploration", "what it varies", "met", "not met", "without a verdict"]
EXPLORATION_TEXT = ("Exploratory suites (`role: exploration` in the suite file) vary a study's protocol to find out why "
                    "a target is missed or what meets it, and repeat the study's targets; each row counts the verdicts "
                    "of one suite's targets, and its section has every row, command and note.")


def results_tables(secs: list[dict[str, Any]]) -> str:
    """The headline tables of RESULTS.md and the README: the studies' target rows (:func:`headlines`) with their
    verdict count, then one row per exploratory suite (:func:`exploration_rows`) with theirs."""
    hl = headlines([s for s in secs if not is_exploration(s)])
    out = [verdict_summary(hl, 4), "", _md_table(HEADLINE_HEAD, hl)]
    ex = exploration_rows(secs)
    if ex:  # their count line: the sums of the rows' counts
        out += ["", EXPLORATION_TEXT, "", _summary("Their targets", *(sum(int(r[i]) for r in ex) for i in (2, 3, 4))),
                "", _md_table(EXPLORATION_HEAD, ex)]
    return "\n".join(out)


def device(r: dict[str, Any]) -> str:
    """The machine of a record: the GPU, else the CPU with its vector instruction set where recorded."""
    if r.get("gpu"):
        return str(r["gpu"])
    cpu = r.get("cpu") or "?"
    return f"{cpu} ({r['cpu_isa']})" if r.get("cpu_isa") else str(cpu)


def _variant(r: dict[str, Any]) -> str:
    parts = [str(t) for t in (r.get("variant"), r.get("rerun")) if t]
    if r.get("recipe"):
        parts.append(f"recipe {r['recipe']}")
    proto = r.get("protocol") or {}
    for k in ("hflip", "zca"):
        if proto.get(k) not in (None, False):
            parts.append(f"{k}={proto[k]}" if not isinstance(proto[k], bool) else k)
    if (proto.get("probe") or {}):
        parts.append("probe " + ",".join(f"{k}={v}" for k, v in sorted(proto["probe"].items())
                                         if k != "eval_every"))
    params = r.get("params") or {}
    for k in ("lr", "n_modes", "n_hidden", "update_dtype"):
        if k in params and k not in ("n_hidden",):
            parts.append(f"{k}={params[k]}")
    if r.get("status") == "budget":
        parts.append(f"stopped by budget after {r.get('epochs_done', '?')}/{r.get('epochs')} ep")
    if r.get("sweep"):
        parts.append(f"sweep {r.get('epochs')}ep")
    lpc = r.get("labels_per_class")
    if lpc not in (None, "all"):
        parts.append(f"{lpc} labels/class")
    return " ".join(parts)


def accuracy_table(records: list[dict[str, Any]]) -> str:
    """Markdown table by (learner, dataset, preset, variant): mean ± std of final-epoch test accuracy over seeds,
    seeds, epochs, training seconds per run, machines. Runs of other configurations never share a row."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    ok = [r for r in records if r.get("status", "done") in ("done", "budget") and isinstance(r.get("test_acc"),
                                                                                             (int, float))]
    # parameters that differ between runs of one learner on one dataset and preset name their variant (e.g.
    # conv_mode: BP everywhere vs BP in the dense layers only), whatever the parameter is
    def base(r: dict[str, Any]) -> tuple:
        return r.get("learner"), r.get("dataset"), str(r.get("preset"))

    by_base: dict[tuple, list[dict]] = defaultdict(list)
    for r in ok:
        by_base[base(r)].append(r)
    differ = {b: [k for k in differing_params(rs) if k not in ("lr", "n_modes", "update_dtype")]
              for b, rs in by_base.items()}
    for r in ok:  # runs of other lengths are other configurations too (the epochs column tells them apart)
        v = " ".join([_variant(r)] + [f"{k}={(r.get('params') or {}).get(k)}" for k in differ[base(r)]]).strip()
        groups[(r.get("learner", "?"), r.get("dataset", "?"), str(r.get("preset")) + (f" [{v}]" if v else ""),
                str(r.get("epochs", "")))].append(r)
    if not groups:
        return ""
    extra = sorted({k for r in records for k in r.get("table_extra", [])})
    head = ["learner", "dataset", "preset", "test acc % (final epoch)", "seeds", "epochs", "train s/run",
            "device"] + extra
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (learner, dataset, preset, _epochs), rs in groups.items():
        devs = " + ".join(dict.fromkeys(device(r) for r in rs))
        row = [learner, dataset, preset, _pct([r["test_acc"] for r in rs]), str(len(rs)), str(rs[0].get("epochs", "")),
               f"{statistics.mean(r.get('train_seconds') or 0 for r in rs):.0f}", devs]
        for k in extra:
            vals = [r[k] for r in rs if isinstance(r.get(k), (int, float))]
            row.append(f"{statistics.mean(vals):.4g}" if vals else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def failed_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of the failed runs among ``records``: configuration, the epochs finished before the failure
    with the test accuracy of the last of them (a run that diverged), the error and the machine."""
    rs = [r for r in records if r.get("status") == "failed"]
    if not rs:
        return ""
    rows = []
    for r in rs:
        last = r.get("last_epoch") or {}
        params = ", ".join(f"{k}={v}" for k, v in sorted((r.get("params") or {}).items()))
        acc = last.get("test_acc")
        rows.append([str(r.get("learner")), str(r.get("dataset")), params, str(r.get("seed")),
                     f"{r.get('epochs_done', 0)}/{r.get('epochs')}",
                     f"{100 * acc:.2f}" if isinstance(acc, (int, float)) else "—",
                     (r.get("error") or "").strip()[:200], device(r)])
    return "Failed runs:\n\n" + _md_table(["learner", "dataset", "parameters", "seed", "epochs finished",
                                            "test % at the last finished epoch", "error", "device"], rows)


def timing_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of timing records (``status: "timing"``, columns from their ``table_keys``), and of the
    cost metrics a suite's runs report (``train_over_forward``, ``forward_epoch_seconds``, ``samples_per_s``)."""
    rs = [r for r in records if r.get("status") == "timing"]
    if rs:
        keys = list(dict.fromkeys(k for r in rs for k in r.get("table_keys", [])))
    else:
        rs = [r for r in records if isinstance(r.get("train_over_forward"), (int, float))
              or (r.get("suite", "").endswith("-cost") and isinstance(r.get("samples_per_s"), (int, float)))]
        keys = [k for k in ("train_seconds", "samples_per_s", "forward_epoch_seconds", "train_over_forward")
                if any(isinstance(r.get(k), (int, float)) for r in rs)]
    if not rs:
        return ""
    head = ["learner", "dataset", "preset", "variant", *keys, "threads", "device"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rs:
        cells = [str(r.get("learner", "")), str(r.get("dataset", "")), str(r.get("preset", "")), _variant(r)]
        cells += [f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        cells += [str(r.get("threads", "")), device(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# reproduction: a suite's record beside the earlier record of the same configuration
def _norm_params(r: dict[str, Any]) -> dict[str, Any]:
    from .. import learners

    p = {k: v for k, v in (r.get("params") or {}).items() if k not in ("preset", "arch")}
    try:
        sig = inspect.signature(learners.entry(r["learner"]).cls.__init__).parameters
    except (KeyError, ValueError):
        return p
    out = {}
    for k, v in p.items():
        d = sig[k].default if k in sig else inspect.Parameter.empty
        if d is inspect.Parameter.empty or (v != d and not (isinstance(d, tuple) and list(d) == v)):
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


#: Protocol entries that change what a run trains or measures (the rest - budgets, checkpoints, how often it
#: evaluates, the label counts, what it saves or counts afterwards - do not change a record's accuracy).
_MEASURING_PROTOCOL = ("hflip", "zca", "binarize", "min_steps", "probe")


def _norm_protocol(r: dict[str, Any]) -> dict[str, Any]:
    """The entries of a record's ``protocol`` that change its accuracy, without those that are off or left to
    the defaults (false, null, empty, :data:`~neuroplastic.experiment.PROTOCOL_DEFAULTS`): what an earlier record,
    which has no protocol, ran. The probe's ``eval_every`` only says when it is evaluated."""
    from ..experiment import PROTOCOL_DEFAULTS

    out = {}
    for k, v in (r.get("protocol") or {}).items():
        if k == "probe" and isinstance(v, dict):
            v = {pk: pv for pk, pv in v.items() if pk != "eval_every" and pv not in (None, False)}
        if k in _MEASURING_PROTOCOL and v not in (None, False, {}) and v != PROTOCOL_DEFAULTS.get(k):
            out[k] = v
    return out


def _key(r: dict[str, Any]) -> tuple:
    """A record's configuration. An earlier record's ``rerun`` tag names the campaign it came from
    ("gpu-45ep lr=0.00015"), not what it ran, so it is not part of the key; a labelled ``variant`` is."""
    return (r.get("learner"), r.get("dataset"), str(r.get("preset")), r.get("seed"), r.get("epochs"),
            r.get("batch_size"), str(r.get("labels_per_class") or "all"), r.get("variant"),
            r.get("limit_train"), r.get("limit_test"), json.dumps(_norm_params(r), sort_keys=True, default=str),
            json.dumps(_norm_protocol(r), sort_keys=True, default=str))


def _finished(r: dict[str, Any]) -> bool:
    """A run with an accuracy that trained all its epochs (a budget-stopped run reproduces nothing)."""
    return isinstance(r.get("test_acc"), (int, float)) and r.get("status", "done") == "done"


def reproductions(secs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every finished suite record whose configuration (learner, dataset, preset, seed, epochs, batch size, label
    count, labelled variant, data limits, non-default parameters and protocol entries that change what is measured:
    flips, whitening, binarisation, the probe) was recorded before by a finished run, with both accuracies; a run
    on part of the data, or one a budget stopped, is not the reproduction of a full run; sections whose code
    defaults have since changed (meta ``superseded``) are not compared. One earlier result on one machine kept
    in several records or sections (a run imported twice) is one row, naming them all (``earlier_sections``,
    ``earlier_commits``)."""
    earlier: dict[tuple, list[tuple[str, dict]]] = defaultdict(list)
    for s in secs:
        if s["meta"].get("kind") == "earlier" and not s["meta"].get("superseded"):
            for r in filter(_finished, s["records"]):
                earlier[_key(r)].append((s["section"], r))
    out = []
    for s in secs:
        if s["meta"].get("kind") == "earlier":
            continue
        for r in s["records"]:
            if not _finished(r):
                continue
            same: dict[tuple, dict[str, Any]] = {}
            for sec, old in earlier.get(_key(r), []):
                row = same.setdefault((device(old), old["test_acc"]), {
                    "suite": s["section"], "record": r, "earlier_section": sec, "earlier": old,
                    "earlier_sections": [], "earlier_commits": []})
                for k, v in (("earlier_sections", sec), ("earlier_commits", str(old.get("commit"))[:12])):
                    if v not in row[k]:
                        row[k].append(v)
            out += same.values()
    return out


def reproduction_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`reproductions`."""
    if not rows:
        return ""
    head = ["suite", "run", "earlier record (section, machine, commit)", "earlier test %", "through the suite %",
            "difference (points)", "machine, commit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for x in rows:
        r, o = x["record"], x["earlier"]
        lpc = r.get("labels_per_class")
        run = f"{r['learner']} {r['dataset']}/{r['preset']} seed {r['seed']}" + (
            f", {lpc} labels/class" if lpc not in (None, "all") else "")
        diff = 100 * (r["test_acc"] - o["test_acc"])
        lines.append("| " + " | ".join([
            x["suite"], run, f"{' + '.join(x['earlier_sections'])}, {device(o)}, {', '.join(x['earlier_commits'])}",
            f"{100 * o['test_acc']:.2f}", f"{100 * r['test_acc']:.2f}",
            "0 (equal)" if r["test_acc"] == o["test_acc"] else f"{diff:+.2f}",
            f"{device(r)}, {str(r.get('commit'))[:12]}"]) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# export
def headlines(secs: list[dict[str, Any]]) -> list[list[str]]:
    """README rows ``[system, benchmark, measured, target / paper, met, hardware, section]``: a suite's targets,
    and the ``headline`` entries of imported sections (``{system, benchmark, where, target, paper, metric}``);
    ``met`` is the :func:`verdict`. A section's title is written on its first row only; the rows after it name
    what tells them apart (``… — learner=sal``)."""
    rows = []
    for s in secs:
        m, recs = s["meta"], s["records"]
        items = m.get("headline") or [{"system": m.get("system", s["section"]), "benchmark": m.get("title", ""),
                                       **t} for t in m.get("targets") or []]
        shown: set[str] = set()
        for h in [c for i in items for c in target_cells(recs, i)]:
            where = dict(h.get("where") or {})
            metric = target_metric(h)
            # the machines of the runs the value rests on (a gap closure: its two ends' runs too)
            wheres = [where] + ([h["closes"]["from"], h["closes"]["to"]] if h.get("closes") else [])
            hit = [r for r in recs if any(matches(r, w) for w in wheres)]
            hw = " + ".join(dict.fromkeys(device(r) for r in hit)) or "—"
            target = str(h.get("target", "—")) + (f" (paper {h['paper']})" if h.get("paper") else "")
            title = h.get("benchmark", "")
            label = "…" if title in shown and (h.get("label") or (where and not m.get("headline"))) else title
            shown.add(title)
            if h.get("label"):
                label = f"{label}: {h['label']}" if label else h["label"]
            elif where and not m.get("headline"):
                label += " — " + ", ".join(f"{k}={v}" for k, v in where.items())
            value = measured_target(recs, h)
            if metric != "test_acc" and value != "not run":  # the column is test %; name any other metric
                value = f"{metric} {value}"
            rows.append([str(h.get("system", "")), label, value, target, verdict(recs, h), hw, f"`{s['section']}`"])
    return rows


HEADLINE_HEAD = ["system", "benchmark", "measured (final-epoch test %)", "target / paper", "met", "hardware",
                 "section"]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in esc])


def reliability_table(records: list[dict[str, Any]]) -> str:
    """The reliability campaign's rows (records with a ``category``) as a Markdown table; '' if none."""
    from .report import md_escape

    rows = [r for r in records if "category" in r and "cases" in r]
    if not rows:
        return ""
    keys = ("cases", "accepted", "clear_errors", "tracebacks", "silent_wrong", "data_lost", "code_executed")
    body = [[md_escape(str(r["category"])), *(f"{int(r.get(k, 0)):,}" for k in keys), f"{r.get('seconds', 0):.0f}"]
            for r in rows]
    total = ["**all**", *(f"{sum(int(r.get(k, 0)) for r in rows):,}" for k in keys),
             f"{sum(r.get('seconds', 0) for r in rows):.0f}"]
    hw = sorted({f"{r.get('cpu', '')} ({r.get('cpu_isa', '')})" for r in rows})
    notes = [f"`kills`: {r['kills']} SIGKILLs of a running `bench` (two workers; the dead claims' PIDs then reused "
             f"by a live process), then one bench to finish; its cases are the runs checked afterwards against "
             f"uninterrupted runs" for r in rows if r.get("kills")]
    return (_md_table(["category", "cases", "accepted", "clear errors", "tracebacks", "silent wrong", "data lost",
                       "code executed", "seconds"], body + [total])
            + "".join(f"\n\n{n}" for n in notes) + f"\n\nHardware: {', '.join(hw)}")


def render(secs: list[dict[str, Any]]) -> str:
    """RESULTS.md from the sections alone."""
    out = ["# Benchmark results", "",
           "Generated by `neuroplastic results export` from the results store (`neuroplastic bench` runs and the",
           "records imported from earlier sessions, each with its exact command, commit, hardware and date).",
           "Accuracies are final-epoch test accuracies; any model selection used a validation split carved from",
           "the training set. Earlier records that name `benchmarks/*.py` came from the retired benchmark scripts;",
           "their studies are now shipped suites (`neuroplastic bench --list`).", ""]
    rep = reproduction_table(reproductions(secs))
    if rep:
        out += ["## Reproduced through the suites", "",
                "Cells of the shipped suites re-run with `neuroplastic bench SUITE --where ...`, beside the earlier",
                "record of the same configuration (learner, data, preset, seed, epochs, batch size, label count,",
                "data limits, parameters). CPU runs are deterministic: a difference on the same kind of machine",
                "means the code's arithmetic changed since the earlier record; runs first recorded on a GPU differ",
                "by seed noise. Only runs that trained all their epochs are listed (a budget-stopped cell reproduces",
                "nothing); one earlier result kept in several sections is one row naming them all.", "",
                rep, ""]
    if headlines(secs):
        out += ["## Headlines", "", results_tables(secs), ""]
    for s in secs:
        m, recs = s["meta"], s["records"]
        if m.get("prose_only"):
            text = m.get("note", "").splitlines()
            out += [("#" + line) if line.startswith("#") else line for line in text]
            out += ["", f"(Imported from `{m.get('source_file')}`.)", ""]
            continue
        acc, tim, fail = accuracy_table(recs), timing_table(recs), failed_table(recs)
        rel = reliability_table(recs)
        if rel:
            acc, tim = rel, ""
        if not (acc or tim or fail or m.get("targets") or m.get("note")):  # a study's section: targets or a note, no table
            continue
        title = f"## {s['section']}" + {"earlier": "", "campaign": f" (`neuroplastic {s['section']}`)"}.get(
            m.get("kind"), " (suite `neuroplastic bench " + s["section"] + "`)")
        out += [title, ""]
        if m.get("title"):
            out += [m["title"], ""]
        if m.get("note"):
            out += [m["note"], ""]
        if m.get("sources"):
            out += ["Sources: " + "; ".join(m["sources"]), ""]
        if m.get("targets"):
            rows = [[", ".join(f"{k}={v}" for k, v in (t.get("where") or {}).items()) or "all",
                     target_metric(t), measured_target(recs, t),
                     str(t["target"]), verdict(recs, t), str(t.get("paper", ""))]
                    for t in [c for i in m["targets"] for c in target_cells(recs, i)]]
            out += [_md_table(["runs", "metric", "measured", "target", "met", "paper"], rows), ""]
        out += [t + "\n" for t in (acc, tim, fail) if t]
        cmds = sorted({r.get("command", "") for r in recs if r.get("command")})
        commits = sorted({str(r.get("commit", "")) for r in recs})
        torch_v = sorted({str(r.get("torch", "")) for r in recs})
        dates = sorted({str(r.get("date", "")) for r in recs if r.get("date")})
        out += ["Command(s): " + "; ".join(f"`{c}`" for c in cmds),
                f"Commit(s): {', '.join(commits)} · torch {', '.join(torch_v)}"
                + (f" · date {dates[0]}–{dates[-1]}" if dates else ""), ""]
    return "\n".join(out) + "\n"


def export(db: ResultsDB, out: Path, *, readme: Path | None = None, include: tuple[str, ...] = (),
           prune: bool = False) -> list[Path]:
    """Write every section's JSON, RESULTS.md and (``readme``) the README's results table from the store.
    ``prune``: remove section files of ``out/results`` that the store no longer has. Returns the files written."""
    secs = sections(db, include)
    written = []
    names = set()
    for s in secs:
        path = out / "results" / f"{s['section']}.json"
        names.add(path.name)
        write_atomic(path, json.dumps(s, indent=1, default=str) + "\n")
        written.append(path)
    if prune:
        for p in (out / "results").glob("*.json"):
            if p.name not in names:
                p.unlink()
    md = out / "RESULTS.md"
    write_atomic(md, render(secs))
    written.append(md)
    if readme is not None:
        text = readme.read_text()
        if BEGIN not in text or END not in text:
            raise InputError(f"{readme}: no {BEGIN} ... {END} markers for the results table")
        table = results_tables(secs)
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        write_atomic(readme, head + BEGIN + "\n" + table + "\n" + END + tail)
        written.append(readme)
    return written
