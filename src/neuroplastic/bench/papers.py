"""The reproduction table: each paper's headline number beside ours, read from one data file (``papers.yaml``).

For each claim the store's groups of runs that match it (learner, dataset, architecture, params) are found; when
several configurations match, the one with the most finished seeds is shown (ties: the best mean validation
accuracy), never the one that happens to score best on the test set. The difference is ours minus the paper's, in the
claim's unit (percentage points or nats).
"""

from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError

#: The packaged data file of claims.
DATA_FILE = "papers.yaml"


def load_claims(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The claims of ``path`` (default: the packaged ``papers.yaml``), each checked for the keys the table needs."""
    text = (Path(path).read_text() if path is not None
            else resources.files("neuroplastic.bench").joinpath(DATA_FILE).read_text())
    data = yaml.safe_load(text) or {}
    claims = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(claims, list):
        raise InputError(f"{path or DATA_FILE}: expected a mapping with a list 'claims'")
    for i, c in enumerate(claims):
        missing = [k for k in ("paper", "claim", "value", "where") if k not in c]
        if missing or not isinstance(c.get("value"), (int, float)) or not isinstance(c.get("where"), dict):
            raise InputError(f"{path or DATA_FILE}: claim {i + 1} needs paper, claim, a numeric value and a where "
                             f"mapping (missing: {', '.join(missing) or 'a valid value/where'})")
    return claims


def _matches(g: dict[str, Any], where: dict[str, Any]) -> bool:
    from .report import architecture_of

    cfg = g["rows"][0]["config"]
    names = where.get("learner")
    if names is not None and cfg["learner"] not in ([names] if isinstance(names, str) else names):
        return False
    if "dataset" in where and cfg["dataset"] != where["dataset"]:
        return False
    if "architecture" in where and architecture_of(cfg) != where["architecture"]:
        return False
    params = cfg.get("params") or {}
    return all(params.get(k) == v for k, v in (where.get("params") or {}).items())


def _values(g: dict[str, Any], metric: str) -> list[float]:
    from .report import metric_values

    return metric_values([r for r in g["rows"] if r["status"] == "done"], metric)


def reproduction_rows(groups: list[dict[str, Any]], claims: list[dict[str, Any]] | None = None,
                      ) -> tuple[list[str], list[list[str]]]:
    """Header and cells: paper, claim, the paper's value, ours (mean ± std over seeds), the difference, seeds, and
    the configuration shown. Claims with no matching runs in the store say ``not run``."""
    from .report import _mean_of

    claims = load_claims() if claims is None else claims
    head = ["paper", "claim", "paper's value", "ours (mean ± std)", "ours − paper", "seeds", "our runs"]
    cells = []
    for c in claims:
        metric = c.get("metric", "test_acc")
        pct = c.get("unit", "%") == "%"
        cands = [(g, _values(g, metric)) for g in groups if _matches(g, c["where"])]
        cands = [(g, v) for g, v in cands if v]
        unit = "%" if pct else f" {c.get('unit')}"
        if not cands:
            cells.append([c["paper"], c["claim"], f"{c['value']:g}{unit}", "not run", "—", "0", "—"])
            continue
        g, vals = max(cands, key=lambda gv: (len(gv[1]), _mean_of(gv[0]["rows"], "val_acc") or 0.0))
        vals = [100 * v for v in vals] if pct else vals
        mean = statistics.fmean(vals)
        ours = f"{mean:.2f}" + (f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else "")
        section = g["rows"][0]["config"].get("section")
        where = f"{g['learner']} {g['preset']}" + (f" ({g['variant']})" if g["variant"] else "") + \
            (f" [{section}]" if section and section not in (g["variant"] or "") else "")
        cells.append([c["paper"], c["claim"], f"{c['value']:g}{unit}", ours + unit, f"{mean - c['value']:+.2f}",
                      str(len(vals)), where[:160]])
    return head, cells
