"""Exports to TensorBoard and MLflow carry the store's curves and final metrics, once per run."""

import io
import sys
import types
import typing

import pytest

from neuroplastic.bench import exports, runner, suite
from neuroplastic.bench.db import ResultsDB


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    spec = {"name": "exp", "grid": {"learner": ["bp", "fa"]},
            "base": {"dataset": "digits", "epochs": 2, "batch_size": 64, "params": {"arch": "mlp", "hidden": [8]}}}
    runner.run_suite(suite.expand(spec), db_path=tmp / "r.db", results_dir=tmp / "res", command="test",
                     out=io.StringIO(), threads=1, jobs=1, report=False)
    return tmp / "r.db"


def _rows(db_path):
    db = ResultsDB(db_path)
    rows = db.runs("exp")
    db.close()
    return rows


def test_tensorboard_event_files_hold_the_curves_and_final_metrics(store, tmp_path):
    pytest.importorskip("tensorboard", reason="the TensorBoard export needs the tensorboard package")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert exports.to_tensorboard(store, tmp_path / "tb") == 2
    assert exports.to_tensorboard(store, tmp_path / "tb") == 0  # idempotent
    for row in _rows(store):
        folder = tmp_path / "tb" / f"{exports.run_name(row)}-{row['hash']}"
        acc = EventAccumulator(str(folder))
        acc.Reload()
        test_curve = [(e.step, e.value) for e in acc.Scalars("train/test_acc")]
        assert [s for s, _ in test_curve] == [1, 2]
        assert test_curve[-1][1] == pytest.approx(row["metrics"]["test_acc"], abs=1e-6)
        assert acc.Scalars("final/test_acc")[0].value == pytest.approx(row["metrics"]["test_acc"], abs=1e-6)


class _FakeClient:
    """The part of ``mlflow.tracking.MlflowClient`` the export uses, kept in memory."""

    experiments: typing.ClassVar[dict] = {}
    runs: typing.ClassVar[dict] = {}

    def __init__(self, tracking_uri=None):
        self.uri = tracking_uri

    def get_experiment_by_name(self, name):
        i = self.experiments.get(name)
        return None if i is None else types.SimpleNamespace(experiment_id=i)

    def create_experiment(self, name):
        self.experiments[name] = str(len(self.experiments))
        return self.experiments[name]

    def search_runs(self, ids, max_results=1000):
        return [types.SimpleNamespace(data=types.SimpleNamespace(tags=r["tags"]))
                for r in self.runs.values() if r["exp"] in ids]

    def create_run(self, exp_id, run_name=None, tags=None):
        rid = f"r{len(self.runs)}"
        self.runs[rid] = {"exp": exp_id, "name": run_name, "tags": dict(tags), "metrics": [], "params": {},
                          "status": "RUNNING"}
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=rid))

    def log_batch(self, rid, metrics=(), params=(), tags=()):
        assert len(metrics) + len(params) + len(tags) <= 1000 and len(params) <= 100
        self.runs[rid]["metrics"] += [(m.key, m.step, m.value) for m in metrics]
        self.runs[rid]["params"].update({p.key: p.value for p in params})
        self.runs[rid]["tags"].update({t.key: t.value for t in tags})

    def set_terminated(self, rid, status):
        self.runs[rid]["status"] = status


def test_mlflow_export_logs_params_curves_and_final_metrics_once(store, monkeypatch):
    entity = lambda *names: type("E", (), {"__init__": lambda self, *a: self.__dict__.update(zip(names, a))})
    mlflow = types.ModuleType("mlflow")
    mlflow.entities = types.ModuleType("mlflow.entities")
    mlflow.entities.Metric = entity("key", "value", "timestamp", "step")
    mlflow.entities.Param = entity("key", "value")
    mlflow.entities.RunTag = entity("key", "value")
    mlflow.tracking = types.ModuleType("mlflow.tracking")
    mlflow.tracking.MlflowClient = _FakeClient
    for name, mod in (("mlflow", mlflow), ("mlflow.entities", mlflow.entities), ("mlflow.tracking", mlflow.tracking)):
        monkeypatch.setitem(sys.modules, name, mod)
    _FakeClient.experiments, _FakeClient.runs = {}, {}
    assert exports.to_mlflow(store, "np", tracking_uri="sqlite:///x.db") == 2
    assert exports.to_mlflow(store, "np") == 0  # the same runs are not logged twice
    rows = {r["hash"]: r for r in _rows(store)}
    for run in _FakeClient.runs.values():
        row = rows[run["tags"]["neuroplastic.hash"]]
        assert run["status"] == "FINISHED" and run["name"] == exports.run_name(row)
        assert run["params"]["learner"] == row["config"]["learner"] and run["params"]["params.hidden"] == "[8]"
        curve = [(s, v) for k, s, v in run["metrics"] if k == "train/test_acc"]
        assert [s for s, _ in curve] == [1, 2] and curve[-1][1] == row["metrics"]["test_acc"]
        assert ("final/test_acc", 0, row["metrics"]["test_acc"]) in run["metrics"]


def test_exports_name_what_is_missing(store, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    monkeypatch.setitem(sys.modules, "mlflow.entities", None)
    with pytest.raises(Exception, match="pip install mlflow"):
        exports.to_mlflow(store, "np")
    with pytest.raises(Exception, match="not in"):
        exports.to_tensorboard(store, tmp_path / "tb", suite="nope")
