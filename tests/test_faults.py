"""Fault injection into ``neuroplastic bench`` (issue #19): workers and whole benches are killed at random
points — inside a checkpoint write, mid-epoch, between runs — and a dead claim's PID is reused by a live
process. Afterwards nothing is lost (every run finishes with exactly the metrics of an uninterrupted run),
nothing is duplicated (one row and one record per run), nothing is stuck (no run left running or pending) and
no temporary file is left behind.

The kill inside a checkpoint write is deterministic: a ``sitecustomize`` module (on ``PYTHONPATH`` of the bench
and of its spawned workers) replaces ``torch.save`` once a run's temporary checkpoint file is opened, so that
the Nth write puts half of its bytes on disk and then SIGKILLs its own process.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

from neuroplastic import experiment
from neuroplastic.bench import suite
from neuroplastic.bench.db import ResultsDB

SITE = textwrap.dedent('''
    import io, os, re, signal, sys

    _n = int(os.environ.get("NP_FAULT_SAVE_N", "0"))
    _seen = [0]

    def _half_then_die(orig):
        def save(obj, f, *args, **kwargs):
            buf = io.BytesIO()
            orig(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return save

    def _hook(event, args):
        if event != "open" or not _n or not isinstance(args[0], str) or not re.search(r"\\.tmp\\d+$", args[0]):
            return
        _seen[0] += 1
        if _seen[0] == _n and "torch" in sys.modules:
            torch = sys.modules["torch"]
            torch.save = _half_then_die(torch.save)

    sys.addaudithook(_hook)
''')

SPEC = {"name": "faults", "grid": {"learner": ["bp"], "seed": [0, 1, 2, 3]},
        "base": {"learner": "bp", "dataset": "digits", "preset": "mlp", "params": {"hidden": [256]}, "epochs": 4,
                 "batch_size": 8, "protocol": {"checkpoint_every": 50}}}


def _bench(tmp_path: Path, fault_save: int = 0, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
           "NP_FAULT_SAVE_N": str(fault_save)}
    cmd = [sys.executable, "-m", "neuroplastic.cli", "bench", str(tmp_path / "faults.yaml"), "--db",
           str(tmp_path / "r.db"), "--results-dir", str(tmp_path / "res"), "--jobs", "2", "--threads", "1",
           "--no-report", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _rows(tmp_path: Path) -> list[dict]:
    try:
        with sqlite3.connect(tmp_path / "r.db", timeout=10) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT hash, status, pid, attempts FROM runs")]
    except sqlite3.OperationalError:  # not created yet
        return []


def test_random_kills_lose_nothing_duplicate_nothing_and_leave_nothing_behind(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    (tmp_path / "faults.yaml").write_text(yaml.safe_dump(SPEC))
    rng = random.Random(19)
    hit = False
    runs = suite.expand(SPEC).runs
    kills = {"inside a checkpoint write": 0, "whole bench at a random time": 0, "reused pid": 0}

    # 1. a worker dies inside its 3rd checkpoint write: half a temporary file on disk, the run marked failed
    proc = _bench(tmp_path, fault_save=3)
    _, err = proc.communicate(timeout=300)
    assert any(r["status"] == "failed" for r in _rows(tmp_path)), err.decode()[-2000:]
    half = [p for p in (tmp_path / "res").rglob("*.tmp*")]
    assert half, "the kill inside the checkpoint write left no temporary file: it did not happen mid-write"
    kills["inside a checkpoint write"] += 1

    # 2. (at least) three times: the whole bench (and its workers) killed at a random moment while training
    for _ in range(6):
        if kills["whole bench at a random time"] >= 3 and hit:
            break
        hit = False
        proc = _bench(tmp_path, extra=("--retry-failed", "--max-attempts", "100"))
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not any(r["status"] == "running"
                                                                          for r in _rows(tmp_path)):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills["whole bench at a random time"] += 1
            hit = True
        proc.wait()

    # 3. the dead claims' PIDs are reused by a live process (this one): they stay claimed until the lease
    #    runs out (here: set to the past, as LEASE_SECONDS later), then the next bench takes them over
    with sqlite3.connect(tmp_path / "r.db") as con:
        con.execute("UPDATE runs SET pid=? WHERE status='running'", (os.getpid(),))
        reused = con.execute("SELECT count(*) FROM runs WHERE status='running'").fetchone()[0]
    assert reused or not hit  # the last kill left claims behind
    if reused:
        kills["reused pid"] += reused
        with sqlite3.connect(tmp_path / "r.db") as con:
            con.execute("UPDATE runs SET lease=? WHERE status='running'", (time.time() - 1,))

    # 4. a plain rerun finishes everything
    proc = _bench(tmp_path, extra=("--retry-failed", "--max-attempts", "100"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]

    rows = _rows(tmp_path)
    assert len(rows) == len(runs) and {r["hash"] for r in rows} == {h for h, _ in runs}  # nothing duplicated
    assert all(r["status"] == "done" for r in rows), rows  # nothing stuck, nothing lost
    db = ResultsDB(tmp_path / "r.db")
    for h, cfg in runs:
        row = db.get(h)
        assert len(row["records"]) == 1 and row["record"]["status"] == "done"
        assert [e["epoch"] for e in row["history"]] == [1, 2, 3, 4]
        clean = experiment.run(cfg, progress=False)  # the uninterrupted run: equal to the last digit
        assert row["metrics"]["test_acc"] == clean.metrics["test_acc"], h
        assert [e["val_acc"] for e in row["history"]] == [e["val_acc"] for e in clean.history], h
    db.close()
    left = [p for p in (tmp_path / "res").rglob("*") if ".tmp" in p.name]
    assert not left, left  # no temporary file left behind
    assert kills["whole bench at a random time"] >= 2 and kills["reused pid"] >= 1, kills
