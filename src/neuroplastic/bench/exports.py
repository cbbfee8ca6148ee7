"""Exports of the results store to the tools researchers already use: TensorBoard event files and MLflow runs.

Both carry the same content as the report: per finished run, its configuration, its per-epoch history (training,
evaluation and probe epochs as steps) and its final metrics; runs are named ``learner-dataset-preset-s<seed>`` and
tagged with their config hash, suite, commit and CPU. Neither tool is a dependency of the library: TensorBoard files
are written by the ``torch.utils.tensorboard`` writer that ships with torch (it needs the ``tensorboard`` package), and
MLflow through its client (``pip install mlflow``). Exports are idempotent: a run already exported (same hash) is
skipped.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..experiment import _flat
from .report import open_store, preset_of


def _finished(db_path: str | os.PathLike, suite: str | None) -> list[dict[str, Any]]:
    db = open_store(db_path, suite)
    try:
        return [r for r in db.runs(suite) if r["status"] == "done"]
    finally:
        db.close()


def run_name(row: dict[str, Any]) -> str:
    """``learner-dataset-preset-s<seed>`` of a stored run."""
    c = row["config"]
    return f"{c['learner']}-{c['dataset']}-{preset_of(c)}-s{c['seed']}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def scalars(row: dict[str, Any]) -> tuple[list[tuple[str, int, float]], dict[str, float]]:
    """A run's curves ``[(tag, step, value)]`` — ``train/<key>`` per epoch, ``probe/<key>`` per probe epoch — and
    its final scalar metrics."""
    curves = []
    for h in row.get("history") or []:
        probe = h.get("stage") == "probe"
        step = h.get("probe_epoch" if probe else "epoch")
        if not _number(step):
            continue
        for k, v in h.items():
            if k not in ("epoch", "probe_epoch", "stage") and _number(v):
                curves.append((f"{'probe' if probe else 'train'}/{k}", int(step), float(v)))
    final = {k: float(v) for k, v in (row.get("metrics") or {}).items() if _number(v)}
    return curves, final


def to_tensorboard(db_path: str | os.PathLike, out: str | os.PathLike, suite: str | None = None) -> int:
    """Write one TensorBoard run folder per finished run under ``out`` (``<name>-<hash>``): the curves as scalars,
    the final metrics under ``final/`` at the last epoch, the config as text. Returns the number of runs written
    (runs whose folder exists are skipped)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise InputError(f"TensorBoard export needs the tensorboard package (pip install tensorboard): {e}") from None
    n = 0
    for row in _finished(db_path, suite):
        folder = Path(out) / f"{run_name(row)}-{row['hash']}"
        if folder.exists():
            continue
        tmp = folder.with_name(folder.name + ".partial")
        curves, final = scalars(row)
        w = SummaryWriter(log_dir=str(tmp))
        try:
            for tag, step, v in curves:
                w.add_scalar(tag, v, step)
            last = max((s for _, s, _ in curves), default=int(row["config"].get("epochs") or 0))
            for k, v in final.items():
                w.add_scalar(f"final/{k}", v, last)
            w.add_text("config", "```\n" + json.dumps(row["config"], indent=1, default=str) + "\n```", 0)
        finally:
            w.close()
        os.replace(tmp, folder)  # a folder is there only once complete
        n += 1
    return n


def to_mlflow(db_path: str | os.PathLike, experiment: str, tracking_uri: str | None = None,
              suite: str | None = None) -> int:
    """Log every finished run to MLflow experiment ``experiment`` (created if absent): params (the flattened config,
    values as strings of at most 500 characters), final metrics, per-epoch curves as metric histories, tags
    ``neuroplastic.hash``/``suite``/``commit``/``cpu``. Runs already in the experiment (same hash) are skipped.
    Returns the number of runs logged."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise InputError(f"MLflow export needs mlflow (pip install mlflow): {e}") from None
    rows = _finished(db_path, suite)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    done = {r.data.tags.get("neuroplastic.hash") for r in client.search_runs([exp_id], max_results=50000)}
    n = 0
    for row in rows:
        if row["hash"] in done:
            continue
        env = row.get("env") or {}
        tags = {"neuroplastic.hash": row["hash"], "neuroplastic.suite": str(suite or ""),
                "neuroplastic.commit": str(env.get("commit") or ""), "neuroplastic.cpu": str(env.get("cpu") or "")}
        run = client.create_run(exp_id, run_name=run_name(row), tags=tags)
        rid = run.info.run_id
        params = [Param(_mlflow_key(k), (v if isinstance(v, str) else json.dumps(v, default=str))[:500])
                  for k, v in _flat(row["config"]).items()]
        curves, final = scalars(row)
        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(tag), v, now, step) for tag, step, v in curves]
        metrics += [Metric(_mlflow_key(f"final/{k}"), v, now, 0) for k, v in final.items()]
        for i in range(0, len(params), 100):  # MLflow caps a batch at 100 params and 1,000 entries
            client.log_batch(rid, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[i:i + 1000])
        client.set_terminated(rid, "FINISHED")
        n += 1
    return n


def _mlflow_key(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", tag)
