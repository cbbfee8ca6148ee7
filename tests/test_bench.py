"""Bench harness: suite expansion/validation, the results database under concurrency, kill-and-rerun,
resume of an interrupted run, failing runs, and the report (md/html/json)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from neuroplastic import experiment, learners
from neuroplastic.bench import report, runner, suite
from neuroplastic.bench.db import ResultsDB
from neuroplastic.errors import InputError

REQUIRED = ("learner", "dataset", "preset", "seed", "epochs", "status", "test_acc", "train_seconds", "commit",
            "cpu", "torch", "native", "command")
TINY = {"learner": "bp", "dataset": "digits", "preset": "mlp", "params": {"hidden": [16]}, "epochs": 1,
        "batch_size": 64}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test process: these tiny models gain nothing from more, and a shared loaded
    machine loses a lot."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------------------------------
# suites
def test_suite_expands_grid_with_base_overrides_and_dotted_keys(tmp_path):
    spec = {"name": "t", "grid": {"learner": ["bp"], "seed": [0, 1], "params.lr": [0.01, 0.001]},
            "base": {"dataset": "digits", "preset": "mlp", "epochs": 1, "batch_size": 32},
            "overrides": {"bp": {"batch_size": 16, "params": {"hidden": [8]}, "seed": 7}}}
    s = suite.load(_write(tmp_path / "s.yaml", spec))
    assert s.name == "t" and len(s) == 4
    cfgs = [c for _, c in s.runs]
    assert {(c["seed"], c["params"]["lr"]) for c in cfgs} == {(0, 0.01), (0, 0.001), (1, 0.01), (1, 0.001)}
    for h, c in s.runs:
        assert c["batch_size"] == 16 and c["params"]["hidden"] == [8]  # override merged over base
        assert c["epochs"] == 1 and h == experiment.config_hash(c)
    assert len({h for h, _ in s.runs}) == 4
    assert spec["overrides"]["bp"]["seed"] == 7  # the caller's mapping is not mutated


def test_suite_dedups_identical_configs():
    s = suite.expand({"name": "d", "grid": {"learner": ["bp", "bp"], "seed": [0]}, "base": TINY})
    assert len(s) == 1


@pytest.mark.parametrize("spec, names", [
    ({"name": "x", "grids": {}}, ["'grids'", "grid"]),
    ({"name": "x", "grid": {"learner": ["bp"], "epoch": [1]}}, ["'epoch'", "epochs"]),
    ({"name": "x", "grid": {"learner": ["bp"]}, "overrides": {"nope": {"epochs": 1}}}, ["'nope'", "bp"]),
    ({"name": "x", "grid": {"learner": ["nope"]}}, ["'nope'", "bp"]),
    ({"name": "x", "grid": {"learner": ["bp"]}, "base": {"epochs": "many"}}, ["'epochs'", "many"]),
    ({"name": "x", "grid": {"learner": ["bp"], "seed": []}}, ["'seed'", "empty"]),
    ({"name": "x", "registry": "all"}, ["'registry'", "quick"]),
])
def test_suite_validation_names_the_problem(spec, names):
    with pytest.raises(suite.SuiteError) as e:
        suite.expand(spec)
    for n in names:
        assert n in str(e.value)


def test_suite_not_found_and_bad_yaml(tmp_path):
    with pytest.raises(suite.SuiteError, match="no-such-suite.*quick"):
        suite.load("no-such-suite")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(suite.SuiteError, match="not valid YAML"):
        suite.load(bad)


def test_quick_suite_is_every_registered_learner_with_a_quick_entry():
    from neuroplastic.learners.backprop import SupervisedNet

    class _QuickProbe(SupervisedNet):
        """Test-only learner."""

    learners.register("zz-quick-probe", _QuickProbe, quick={"dataset": "digits", "epochs": 1}, mode="bp")
    try:
        s = suite.load("quick")
        got = {c["learner"] for _, c in s.runs}
        want = {e.name for e in learners.entries() if e.quick is not None}
        assert got == want and "bp" in got and "zz-quick-probe" in got
        cfg = next(c for _, c in s.runs if c["learner"] == "zz-quick-probe")
        assert cfg["epochs"] == 1 and cfg["dataset"] == "digits"
    finally:
        learners._REGISTRY.pop("zz-quick-probe")


def test_builtin_suites_are_valid():
    assert "quick" in suite.builtin_names()
    for name in suite.builtin_names():
        assert len(suite.load(name)) >= 1


# --------------------------------------------------------------------------------------------------
# database
_CHILD = textwrap.dedent("""
    import json, sys, time
    from neuroplastic.bench.db import ResultsDB
    path, n = sys.argv[1], int(sys.argv[2])
    db = ResultsDB(path)
    runs = [(f"h{i:03d}", {"learner": "bp", "seed": i}) for i in range(n)]
    db.add_runs("conc", runs)
    mine = []
    for h, _ in runs:
        if db.claim(h):
            db.finish(h, metrics={"test_acc": 0.5}, history=[{"epoch": 1}], env={}, train_seconds=0.0,
                      wall_seconds=0.0, record={"hash": h})
            mine.append(h)
    print(json.dumps(mine))
""")


def test_db_concurrent_workers_claim_each_run_once(tmp_path):
    path, n = tmp_path / "c.db", 60
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(n)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=900) for p in procs]  # a guard against a hang only: a starved host is slow
    assert all(p.returncode == 0 for p in procs), outs
    claimed = [h for out, _ in outs for h in json.loads(out)]
    assert sorted(claimed) == [f"h{i:03d}" for i in range(n)]  # every run exactly once
    db = ResultsDB(path)
    rows = db.runs("conc")
    assert len(rows) == n and all(r["status"] == "done" and r["attempts"] == 1 for r in rows)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_db_claim_rules(tmp_path):
    db = ResultsDB(tmp_path / "r.db")
    db.add_runs("s", [("a", {"x": 1}), ("b", {"x": 2})])
    assert db.add_runs("s", [("a", {"x": 1})]) == 0  # existing runs are left alone
    assert db.claim("a") and not db.claim("a")  # running by a live process (us)
    assert db.fail("a", "boom")
    assert not db.claim("a", retry_failed=False)
    assert not db.claim("a", max_attempts=1)  # attempts == 1
    assert db.claim("a", max_attempts=2) and db.get("a")["attempts"] == 2
    assert db.finish("a", metrics={}, history=[], env={}, train_seconds=0, wall_seconds=0, record={})
    assert not db.claim("a") and not db.claim("a", retry_failed=True)  # done is never redone
    dead = _dead_pid()
    assert db.claim("b", pid=dead)
    assert db.claim("b")  # running, but its process is dead: interrupted, claimable
    # resuming an interrupted run uses up no attempt (a crash is not a failure of the run)
    assert db.get("b")["attempts"] == 1 and db.get("b")["pid"] == os.getpid()
    assert not db.finish("b", metrics={}, history=[], env={}, train_seconds=0, wall_seconds=0, record={}, pid=dead)


def test_db_corrupt_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.db"
    p.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match="not an SQLite file; refusing to touch it"):
        ResultsDB(p)
    p.write_bytes(b"x")  # a one-byte file SQLite would have turned into a database, overwriting the user's file
    with pytest.raises(ValueError, match="not an SQLite file"):
        ResultsDB(p)
    assert p.read_bytes() == b"x"
    for size in (200, 4000):  # the header of a database, then garbage
        p.write_bytes(b"SQLite format 3\x00" + b"\xff" * size)
        with pytest.raises(ValueError, match="not an SQLite file|cannot be opened"):
            ResultsDB(p)
        assert p.read_bytes() == b"SQLite format 3\x00" + b"\xff" * size


# --------------------------------------------------------------------------------------------------
# runner
def _bench(tmp_path: Path, spec: dict, **kw) -> dict:
    s = suite.expand(spec)
    kw.setdefault("jobs", 1)
    return runner.run_suite(s, db_path=tmp_path / "r.db", results_dir=tmp_path / "res", command="test",
                            out=io.StringIO(), threads=1, **kw)


def test_kill_and_rerun_skips_finished_runs(tmp_path):
    spec = {"name": "killme", "grid": {"learner": ["bp"], "seed": list(range(6))},
            "base": {**TINY, "epochs": 3, "batch_size": 32, "params": {"hidden": [32]}}}
    path = _write(tmp_path / "k.yaml", spec)
    db_path = tmp_path / "r.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "neuroplastic.cli", "bench", str(path), "--db", str(db_path),
           "--results-dir", str(tmp_path / "res"), "--jobs", "1", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    done_before: dict[str, tuple] = {}
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if db_path.exists():
                try:
                    with sqlite3.connect(db_path, timeout=5) as con:
                        if con.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0] >= 2:
                            break
                except sqlite3.OperationalError:  # tables not created yet
                    pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the bench and its workers die at once, as in a crash
        proc.wait()
    db = ResultsDB(db_path)
    rows = db.runs("killme")
    done_before = {r["hash"]: (r["started"], r["attempts"]) for r in rows if r["status"] == "done"}
    assert 2 <= len(done_before) < 6, (len(done_before), proc.stderr.read().decode()[-2000:])
    time.sleep(0.2)  # let the killed workers' pids disappear
    counts = _bench(tmp_path, spec, jobs=1, report=False)
    assert counts["done"] == 6 and counts["failed"] == 0
    after = {r["hash"]: r for r in db.runs("killme")}
    for h, (started, attempts) in done_before.items():
        assert (after[h]["started"], after[h]["attempts"]) == (started, attempts)  # not redone
    for h, r in after.items():
        assert len(r["history"]) == 3 and r["record"]["status"] == "done"
        assert (tmp_path / "res" / "runs" / h / "records.json").exists()


def test_ctrl_c_stops_workers_cleanly_and_leaves_runs_resumable(tmp_path):
    spec = {"name": "ctrlc", "grid": {"learner": ["bp"], "seed": list(range(4))},  # long runs: Ctrl-C lands mid-run
            "base": {**TINY, "epochs": 400, "batch_size": 32, "params": {"hidden": [32]}}}
    path = _write(tmp_path / "c.yaml", spec)
    db_path = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "neuroplastic.cli", "bench", str(path), "--db", str(db_path),
           "--results-dir", str(tmp_path / "res"), "--jobs", "2"]
    # as from a terminal, Ctrl-C must act: a shell that starts `make test` in the background leaves SIGINT ignored, and
    # a child inherits an ignored signal (a handled one is reset to the default when the child starts)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, old)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:  # wait until both workers are training
            time.sleep(0.05)
            if (tmp_path / "res" / "runs").is_dir() and len(list((tmp_path / "res" / "runs").glob("*/checkpoint.pt"))) >= 2:
                break
        assert proc.poll() is None, "the bench ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "resume" in err.decode() and "Traceback" not in err.decode()
    rows = ResultsDB(db_path).runs("ctrlc")
    assert not [r for r in rows if r["status"] == "running"]  # given back, not left claimed
    released = [r for r in rows if r["status"] == "pending" and r["error"] == "interrupted"]
    assert len(released) >= 1
    for r in released:  # their checkpoints stay for the next bench to resume
        assert (tmp_path / "res" / "runs" / r["hash"] / "checkpoint.pt").exists()


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    spec = {"name": "resume", "grid": {"learner": ["bp"], "seed": [3]}, "base": {**TINY, "epochs": 3}}
    s = suite.expand(spec)
    (h, cfg), = s.runs
    db = ResultsDB(tmp_path / "r.db")
    db.add_runs("resume", s.runs)

    class Stop(Exception):
        pass

    def stop_after_two(row):  # crash while epoch 2 ends (whether or not its checkpoint was written)
        if row["epoch"] == 2:
            raise Stop

    ckdir = tmp_path / "res" / "runs" / h
    assert db.claim(h, pid=_dead_pid())  # a worker claimed it, then died during epoch 2
    with pytest.raises(Stop):
        experiment.run(cfg, checkpoint_dir=ckdir, progress=False, log=stop_after_two)
    ck = torch.load(ckdir / "checkpoint.pt", weights_only=False)
    k = ck["epoch"]
    assert 1 <= k < 3
    counts = _bench(tmp_path, spec, report=False)
    assert counts["done"] == 1
    row = db.get(h)
    assert row["attempts"] == 1  # the resumption of a crashed claim uses up no attempt
    assert [r["epoch"] for r in row["history"]] == [1, 2, 3]
    assert row["history"][:k] == ck["history"]  # the checkpointed epochs were not retrained
    log = (ckdir / runner.PROGRESS_LOG).read_text().splitlines()  # a line per epoch the bench trained, timestamped
    assert [line.split("  ")[1] for line in log] == [f"epoch {e}/3" for e in range(k + 1, 4)]
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  epoch .*test_acc \d+\.\d\d%", line) for line in log)
    full = experiment.run(cfg, progress=False)
    assert row["metrics"]["test_acc"] == full.metrics["test_acc"]  # exact resume


def test_a_value_a_learner_refuses_stops_the_suite_before_any_run_starts(tmp_path):
    """A range the constructor checks (``hidden: [0]``) in the suite's last cell is found before the first cell
    trains: a one-line error naming the run and the key, nothing stored, no run folder."""
    spec = {"name": "late-bad", "cells": [{"seed": 0}, {"seed": 1}, {"seed": 2, "params": {"hidden": [0]}}],
            "base": TINY}
    s = suite.expand(spec)  # the types are right: expansion accepts it
    bad = s.runs[2][0]
    with pytest.raises(suite.SuiteError, match=rf"late-bad.*run {bad} \(bp digits/mlp seed 2\).*hidden") as e:
        runner.run_suite(s, db_path=tmp_path / "r.db", results_dir=tmp_path / "res", command="test",
                         out=io.StringIO(), jobs=1, threads=1)
    assert "\n" not in str(e.value)
    assert ResultsDB(tmp_path / "r.db").runs() == [] and not (tmp_path / "res").exists()
    runner.check_runs(s, skip={bad})  # a finished run is not checked again


def test_failing_run_is_recorded_and_the_suite_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPLASTIC_DATA", str(tmp_path / "empty-root"))
    spec = {"name": "fails", "grid": {"learner": ["bp"], "dataset": ["mnist", "digits"]}, "base": TINY}
    counts = _bench(tmp_path, spec)
    assert counts["done"] == 1 and counts["failed"] == 1
    db = ResultsDB(tmp_path / "r.db")
    bad = next(r for r in db.runs("fails") if r["status"] == "failed")
    assert bad["config"]["dataset"] == "mnist" and "mnist" in bad["error"] and bad["attempts"] == 1
    _bench(tmp_path, spec, report=False)  # failed with attempts < max_attempts (2): retried once
    assert db.get(bad["hash"])["attempts"] == 2
    _bench(tmp_path, spec, report=False)  # now at the cap: left alone
    assert db.get(bad["hash"])["attempts"] == 2
    _bench(tmp_path, spec, report=False, retry_failed=True)
    assert db.get(bad["hash"])["attempts"] == 3

    # the report shows both, and the JSON export carries the standard keys
    files = report.write_report(tmp_path / "r.db", tmp_path / "rep", ("md", "html", "json"), suite="fails")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| bp | digits | mlp |" in md and "Failed runs" in md and "C1" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="figures' not in html  # self-contained
    assert (tmp_path / "rep" / "figures" / "curves-digits.png").read_bytes()[:4] == b"\x89PNG"
    recs = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert {r["status"] for r in recs} == {"done", "failed"}
    for r in recs:
        assert set(REQUIRED) <= set(r)
    done = next(r for r in recs if r["status"] == "done")
    assert 0.0 <= done["test_acc"] <= 1.0 and done["command"] == "test"
    assert len(files) >= 4 and not list((tmp_path / "rep").glob("*.tmp*"))


def test_diverged_run_keeps_its_finished_epochs_in_the_store_and_in_results(tmp_path, diverging_learner):
    from neuroplastic.bench import store

    diverging_learner("zz-diverges", epoch=3)
    spec = {"name": "diverges", "grid": {"learner": ["zz-diverges", "bp"]}, "base": {**TINY, "epochs": 4}}
    counts = _bench(tmp_path, spec, report=False, max_attempts=1)
    assert counts["done"] == 1 and counts["failed"] == 1
    db = ResultsDB(tmp_path / "r.db")
    bad = next(r for r in db.runs("diverges") if r["status"] == "failed")
    assert "loss is inf at epoch 3 step 1" in bad["error"]
    assert [h["epoch"] for h in bad["history"]] == [1, 2]  # the curve up to the divergence
    saved = json.loads((tmp_path / "res" / "runs" / bad["hash"] / "history.json").read_text())
    assert saved == bad["history"]
    recs = store.suite_records(db, "diverges")
    assert [r["status"] for r in recs] == ["done", "failed"]
    rec = recs[1]
    assert rec["epochs_done"] == 2 and rec["last_epoch"]["epoch"] == 2
    assert rec["last_epoch"]["test_acc"] == bad["history"][-1]["test_acc"] and rec["test_acc"] is None
    assert rec["error"].startswith("NonFiniteError: ") and "\n" not in rec["error"]
    md = store.render(store.sections(db))
    assert "Failed runs:" in md and "| zz-diverges | digits |" in md and "| 2/4 |" in md
    assert f"| {100 * rec['last_epoch']['test_acc']:.2f} |" in md
    # the finished run's tables ignore the failed one
    assert store.measured(recs, {"learner": "zz-diverges"}) == "not recorded"
    # the report draws the diverged run's curve, labelled
    groups = report.summarize(db.runs("diverges"))
    figs = {slug: png for slug, _, png in report.learning_curve_figures(groups)}
    assert figs["curves-digits"][:4] == b"\x89PNG"
    assert [r["hash"] for g in groups for r in report._diverged(g)] == [bad["hash"]]
    report.write_report(tmp_path / "r.db", tmp_path / "rep", ("md",), suite="diverges")
    rep_md = (tmp_path / "rep" / "report.md").read_text()
    assert f"| {bad['hash']} | zz-diverges | digits | 0 | 1 | 2/4 | {rec['error']} |" in rep_md  # RESULTS.md's line
    # an export keeps both runs' curves: a fresh checkout's store gives them back to the report
    store.export(db, tmp_path / "pub")
    fresh = ResultsDB(tmp_path / "fresh.db")
    store.import_files(fresh, [tmp_path / "pub" / "results" / "diverges.json"])
    rows = {r["hash"]: r for r in report.imported_rows(fresh)}
    for r in db.runs("diverges"):
        got = rows[r["hash"]]["history"]
        assert [h["epoch"] for h in got] == [h["epoch"] for h in r["history"]] and got
        assert got[-1]["test_acc"] == pytest.approx(r["history"][-1]["test_acc"], rel=1e-5)
    assert [r["hash"] for g in report.summarize(list(rows.values())) for r in report._diverged(g)] == [bad["hash"]]
    # `report --suite` takes a published suite imported into a store with no runs of it, and draws its curves
    report.write_report(tmp_path / "fresh.db", tmp_path / "rep2", ("md",), suite="diverges")
    assert (tmp_path / "rep2" / "figures" / "curves-digits.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(InputError, match="not in"):
        report.write_report(tmp_path / "fresh.db", tmp_path / "rep3", ("md",), suite="nothing-like-it")


def test_per_layer_angle_figure_draws_each_layer_for_a_few_groups_only():
    """A panel per ``angle_deg/i`` with a line per group (SAL's targets are per layer); none when the runs log no
    per-layer angle or when more groups than ``max_groups`` would crowd it."""
    def row(lr, layers):
        cfg = experiment.validate({**TINY, "params": {"hidden": [16], "lr": lr}})
        hist = [{"epoch": e, **{f"angle_deg/{i}": 90.0 / e for i in layers}, "angle_deg_mean": 45.0}
                for e in (1, 2, 3)]
        return {"config": cfg, "status": "done", "metrics": {"test_acc": 0.5}, "train_seconds": 1.0,
                "hash": f"{lr}", "history": hist}

    groups = report.summarize([row(0.1, (0, 1)), row(0.01, (1, 2))])
    (slug, title, png), = report.layer_angle_figures(groups)
    assert slug == "angles-layers-digits" and png[:4] == b"\x89PNG" and "per layer" in title
    assert report.layer_angle_figures(groups, max_groups=1) == []
    assert report.layer_angle_figures(report.summarize([row(0.1, ())])) == []


def test_summary_mean_std_over_seeds_and_variants():
    def row(seed, acc, lr=0.1):
        cfg = experiment.validate({**TINY, "seed": seed, "params": {"hidden": [16], "lr": lr}})
        return {"config": cfg, "status": "done", "metrics": {"test_acc": acc}, "train_seconds": 1.0, "hash": str(seed)}

    groups = report.summarize([row(0, 0.5), row(1, 0.7), row(2, 0.9), row(0, 0.2, lr=0.01)])
    assert len(groups) == 2
    g = groups[0]
    assert g["n_done"] == 3 and g["acc_mean"] == pytest.approx(0.7) and g["acc_std"] == pytest.approx(0.2)
    assert groups[1]["acc_std"] is None and "params.lr=0.01" in groups[1]["variant"]
    assert report.fmt_acc(g["acc_mean"], g["acc_std"]) == "70.00 ± 20.00"


def test_a_learner_with_several_quick_entries_gets_several_quick_runs():
    from neuroplastic import learners

    s = suite.load("quick")
    snn = [c for _, c in s.runs if c["learner"] == "snn-mode"]
    assert len(learners.entry("snn-mode").quick) == 2
    assert sorted(c["dataset"] for c in snn) == ["context-mini", "digits"]


def test_report_shows_pictures_written_by_learners(tmp_path):
    from neuroplastic.bench import report, runner  # noqa: F401

    spec = tmp_path / "pics.yaml"
    spec.write_text("name: pics\ngrid: {learner: [snn-mode], dataset: [context-mini], seed: [0]}\n"
                    "base: {epochs: 1, batch_size: 32, limit_train: 64, limit_test: 32, "
                    "params: {n_hidden: 24, n_modes: 3}}\n")
    from neuroplastic.cli import main

    db = tmp_path / "r" / "neuroplastic.db"
    assert main(["bench", str(spec), "--db", str(db), "--results-dir", str(tmp_path / "r"), "--jobs", "1"]) == 0
    md = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "Pictures of trained learners" in md and "spectrum" in md
    html_doc = (tmp_path / "r" / "report" / "report.html").read_text()
    assert html_doc.count("data:image/png;base64") >= 3


def test_a_second_handle_in_one_process_keeps_the_first_ones_commits_safe_from_other_processes(tmp_path):
    """Regression: ResultsDB used to read the file's header with a plain open()/close(); the close dropped the POSIX
    locks of this process's live connection, so another process closing the database deleted the write-ahead log
    under it and its later commits were lost (seen: a finished run read back as running)."""
    import subprocess
    import sys

    p = tmp_path / "s.db"
    a = ResultsDB(p)
    a.add_runs("s", [("h1", {"learner": "bp"})])
    assert a.claim("h1")
    b = ResultsDB(p)  # e.g. the run's heartbeat thread
    b.heartbeat("h1")
    reader = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
              "c.execute('select count(*) from runs').fetchone(); c.close()")
    subprocess.run([sys.executable, "-c", reader, str(p)], check=True, timeout=60)
    assert (tmp_path / "s.db-wal").exists()  # the reader did not take the log away from the live connections
    assert a.finish("h1", metrics={"test_acc": 0.5}, history=[], env={}, train_seconds=1, wall_seconds=1, record={})
    import sqlite3

    fresh = sqlite3.connect(p)  # another reader sees the commit (before: "disk I/O error", the commit lost)
    assert fresh.execute("select status from runs where hash='h1'").fetchone()[0] == "done"
    fresh.close()
    a.close()
    b.close()


def test_report_finds_pictures_of_runs_stored_elsewhere_and_lists_only_learners_that_ran(tmp_path):
    from neuroplastic.bench import report, runner, suite

    s = suite.expand({"name": "pics", "cells": [{"learner": "dbn"}], "grid": {"seed": [0]},
                      "base": {"dataset": "digits", "epochs": 1, "params": {"layers": [16]},
                               "protocol": {"probe": {"epochs": 1}}}})
    db_path = tmp_path / "store" / "elsewhere.db"
    runner.run_suite(s, db_path=db_path, jobs=1, results_dir=tmp_path / "results", report=False, threads=1)
    files = report.write_report(db_path, tmp_path / "report", ("md",))
    md = (tmp_path / "report" / "report.md").read_text()
    pics = [f for f in files if "samples" in f.name]
    assert pics and all(f.suffix == ".png" and f.is_file() for f in pics)
    assert "## Pictures of trained learners" in md
    loc = md.split("## Locality criteria")[1]
    assert "| dbn |" in loc and "| bp |" not in loc and "| hebbian-cnn |" not in loc


def test_a_run_records_the_commit_it_started_at(monkeypatch):
    """A commit made while a run trains is not the code it ran: the record names the commit at the start."""
    monkeypatch.setenv("NEUROPLASTIC_COMMIT", "startcommit")

    def commit_meanwhile(row):
        monkeypatch.setenv("NEUROPLASTIC_COMMIT", "latercommit")

    cfg = {"learner": "bp", "dataset": "digits", "epochs": 2, "params": {"arch": "mlp", "hidden": [8]},
           "protocol": {"energy": False}}
    out = experiment.run(cfg, progress=False, log=commit_meanwhile)
    assert out.env["commit"] == "startcommit"


def test_a_suite_role_is_validated_carried_to_its_section_and_matches_the_published_file():
    """``role`` is ``study`` unless the suite says ``exploration``; any other value is a one-line error naming the
    key; the role travels in the section's metadata and ``bench --list``; every published section of a built-in
    suite carries the role its suite file declares (the README's tables sort sections by it)."""
    spec = {"name": "r", "cells": [{"learner": "bp", "dataset": "digits"}]}
    assert suite.expand(spec).role == "study" and suite.expand(spec).meta()["role"] == "study"
    assert suite.expand({**spec, "role": "exploration"}).meta()["role"] == "exploration"
    with pytest.raises(suite.SuiteError, match="'role' must be one of study, exploration"):
        suite.expand({**spec, "role": "explore"})
    roles = {r["name"]: r["role"] for r in suite.listing()}
    assert roles["quick"] == "study" and roles["sal-mnist-100"] == "exploration"
    folder = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
    checked = 0
    for name, role in roles.items():
        f = folder / f"{name}.json"
        if f.is_file():
            assert json.loads(f.read_text())["meta"].get("role", "study") == role, name
            checked += 1
    assert checked >= 40
