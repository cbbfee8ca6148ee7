"""Run a suite: expand it, record its runs in the database, train the open ones with worker processes.

Each run trains through :func:`neuroplastic.experiment.run` with ``checkpoint_dir =
<results>/runs/<hash>/`` and ``resume=True``: a checkpoint is written after every epoch, so a killed run
loses at most the epoch in progress and the next ``bench`` continues it. Workers (``--jobs N``) are
separate processes (``multiprocessing`` *spawn* context), each with ``torch.set_num_threads(max(1,
cores // N))``; they coordinate only through the database, whose atomic claim hands each run to exactly
one of them. A run that raises is marked ``failed`` with its error and the suite goes on. Ctrl-C gives
the runs in progress back (status ``pending``; their checkpoints stay) and stops. Each run folder's
``progress.log`` gets a line per finished epoch (accuracies, seconds, the wall time left), and the terminal the
same line once :data:`EPOCH_LINE_SECONDS` have passed since its last one.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Self

from .db import ResultsDB
from .suite import Suite, SuiteError


def available_cores() -> int:
    """CPU cores this process may use (affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def describe(cfg: dict[str, Any]) -> str:
    """``learner dataset/preset seed N`` for progress lines."""
    from .report import preset_of

    return f"{cfg['learner']} {cfg['dataset']}/{preset_of(cfg)} seed {cfg['seed']}"


PROGRESS_LOG = "progress.log"
"""A run folder's progress log: one line per finished epoch (time, :func:`~neuroplastic.trainer.epoch_line`, wall
time left), appended as the run trains, across resumptions."""
EPOCH_LINE_SECONDS = 20.0
"""A bench run prints an epoch's line to the terminal when at least this much wall time passed since its last
line (every epoch of a long run; few lines from a suite of quick runs); its progress log gets every epoch."""


def _append(path: Path, line: str) -> None:
    """Append ``line`` to a text file (a log: losing its last line to a crash loses nothing the run keeps)."""
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def last_progress(results_dir: Path, h: str) -> str:
    """The last line of run ``h``'s progress log under ``results_dir`` ("" when it has none)."""
    try:
        with open(Path(results_dir) / "runs" / h / PROGRESS_LOG, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return tail[-1].strip() if tail else ""


def execute(h: str, cfg: dict[str, Any], *, results_dir: Path, command: str, progress: bool = False,
            ) -> dict[str, Any]:
    """Train one run in ``results_dir/runs/<hash>`` (resuming its checkpoint) and return its outcome, touching no
    database: ``{"status": "done", "metrics", "history", "env", "train_seconds", "wall_seconds", "records"}`` or
    ``{"status": "failed", "error", "env"}`` (and ``history``, the finished epochs of a run that diverged).
    KeyboardInterrupt propagates. The same function runs in a local worker
    and in a Ray task (:mod:`neuroplastic.bench.ray_backend`), whose outcome the head process stores."""
    from .. import experiment
    from ..trainer import EpochLines

    run_dir = Path(results_dir) / "runs" / h
    experiment.write_json_atomic(cfg, run_dir / "config.json")
    log = run_dir / PROGRESS_LOG
    lines = (EpochLines(lambda line: _append(log, f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {line}")),
             EpochLines(lambda line: print(f"  {h} {describe(cfg)}: {line}", flush=True), EPOCH_LINE_SECONDS))
    try:
        out = experiment.run(cfg, checkpoint_dir=run_dir, resume=True, progress=progress,
                             figures_dir=run_dir / "figures", callbacks=lines)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a failing run is recorded whatever it raised; the suite goes on
        from ..data.core import DatasetError
        from ..errors import InputError

        if isinstance(e, (InputError, DatasetError)):  # bad input (data, a file in the run folder): one line
            error = " ".join(str(e).split())
        else:  # an internal error keeps its traceback in the store and in the run's log
            error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
            with contextlib.suppress(OSError):
                (run_dir / "error.log").write_text(error)
        outcome = {"status": "failed", "error": error, "env": experiment.environment(cfg.get("device", "cpu"))}
        history = getattr(e, "history", None)  # a diverged run (NonFiniteError) keeps its finished epochs
        if history:
            experiment.write_json_atomic(history, run_dir / "history.json")
            outcome["history"] = history
        return outcome
    recs = experiment.records(out, command=command)
    experiment.write_json_atomic(recs, run_dir / "records.json")
    experiment.write_json_atomic(out.history, run_dir / "history.json")
    env = dict(out.env, run_dir=str(run_dir.resolve()))  # where the report finds the run's pictures
    return {"status": "done", "metrics": out.metrics, "history": out.history, "env": env,
            "train_seconds": out.train_seconds, "wall_seconds": out.wall_seconds, "records": recs}


def store_outcome(db: ResultsDB, h: str, outcome: dict[str, Any], *, command: str, pid: int | None = None) -> str:
    """Write :func:`execute`'s outcome of a claimed run into the store; returns ``done`` or ``failed``."""
    if outcome["status"] == "done":
        db.finish(h, metrics=outcome["metrics"], history=outcome["history"], env=outcome["env"],
                  train_seconds=outcome["train_seconds"], wall_seconds=outcome["wall_seconds"],
                  record=outcome["records"][0], records=outcome["records"], command=command, pid=pid)
        return "done"
    db.fail(h, outcome["error"], env=outcome.get("env"), command=command, pid=pid, history=outcome.get("history"))
    return "failed"


def run_one(db: ResultsDB, h: str, cfg: dict[str, Any], *, results_dir: Path, command: str,
            progress: bool = False) -> str:
    """Train one claimed run (lease renewed while it trains) and store its outcome; returns ``done`` or ``failed``.

    KeyboardInterrupt gives the run back (``pending``) and propagates.
    """
    try:
        with _Heartbeat(db.path, h):
            outcome = execute(h, cfg, results_dir=results_dir, command=command, progress=progress)
    except KeyboardInterrupt:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the release
        try:
            db.release(h, "interrupted")
        finally:
            signal.signal(signal.SIGINT, old)
        raise
    return store_outcome(db, h, outcome, command=command)


class _Heartbeat:
    """Renew this process's lease on a claimed run every ``HEARTBEAT_SECONDS`` from a thread (its own database
    connection) while the run trains, so that a live worker's claim never expires and a dead one's does."""

    def __init__(self, db_path: Path, h: str) -> None:
        import threading

        self.db_path, self.h, self.stop = db_path, h, threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"lease-{h}", daemon=True)

    def _beat(self) -> None:
        from .db import HEARTBEAT_SECONDS

        db = ResultsDB(self.db_path)
        try:
            while not self.stop.wait(HEARTBEAT_SECONDS):
                db.heartbeat(self.h)
        finally:
            db.close()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _line(db: ResultsDB, hashes: list[str], h: str, cfg: dict, status: str) -> str:
    c = db.counts(hashes=hashes)
    row = db.get(h) or {}
    if status == "done":
        m = row.get("metrics") or {}
        acc = m.get("test_acc")
        what = f"test acc {100 * acc:.2f}%" if isinstance(acc, (int, float)) else "done"
        what += f"  ({row.get('train_seconds') or 0:.1f} s train)"
    else:
        err = (row.get("error") or "").strip().splitlines()
        what = f"FAILED: {err[0][:160] if err else '?'}"
    return f"[{c['done'] + c['failed']}/{len(hashes)}] {h} {describe(cfg)}: {what}"


def work(db_path: str, hashes: list[str], *, results_dir: str, device: str | None, retry_failed: bool,
         max_attempts: int | None, threads: int | None, command: str, progress: bool = False) -> dict[str, int]:
    """Worker loop: go through ``hashes``, claim each claimable run, train it; returns counts by outcome.

    Used in-process for one job and as the target of each spawned worker process.
    """
    import torch

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    db = ResultsDB(db_path)
    done = {"done": 0, "failed": 0}
    try:
        for h in hashes:
            if not db.claim(h, retry_failed=retry_failed, max_attempts=max_attempts):
                continue
            row = db.get(h)
            cfg = dict(row["config"])
            if device:
                cfg["device"] = device
            status = run_one(db, h, cfg, results_dir=Path(results_dir), command=command, progress=progress)
            done[status] += 1
            print(_line(db, hashes, h, cfg, status), flush=True)
    finally:
        db.close()
        torch.set_num_threads(old_threads)
    return done


def _worker_main(db_path: str, hashes: list[str], kwargs: dict[str, Any]) -> None:
    try:
        work(db_path, hashes, **kwargs)
    except KeyboardInterrupt:
        sys.exit(130)  # run_one has given the run back


class Interrupted(Exception):
    """The bench was stopped by Ctrl-C; runs in progress were given back and can be resumed."""


def check_runs(suite: Suite, skip: set[str] | frozenset[str] = frozenset()) -> None:
    """:func:`~neuroplastic.experiment.preflight` for every run of ``suite`` but those in ``skip`` (the finished
    ones), once per configuration up to its seed, before any of them trains: a value a learner refuses stops the
    suite now with a one-line :class:`SuiteError` naming the run, not when its turn comes hours later."""
    from ..experiment import ConfigError, config_hash, preflight

    seen: set[str] = set()
    for h, cfg in suite.runs:
        key = config_hash({**cfg, "seed": 0})
        if h in skip or key in seen:
            continue
        seen.add(key)
        try:
            preflight(cfg)
        except ConfigError as e:
            raise SuiteError(f"suite {suite.name!r}, run {h} ({describe(cfg)}): {e}") from None


def run_suite(suite: Suite, *, db_path: str | os.PathLike = "results/neuroplastic.db", jobs: int | None = None,
              results_dir: str | os.PathLike = "results", device: str | None = None,
              retry_failed: bool = False, max_attempts: int = 2, command: str = "",
              progress: bool | None = None, report: bool = True, out: Any = None,
              threads: int | None = None, backend: str = "local", address: str | None = None) -> dict[str, int]:
    """Run every open run of ``suite``; print the comparison table and write the report at the end.

    ``jobs``: worker processes (None: one per available core, at most 4, at most one per open run);
    ``threads``: torch threads per worker (None: ``max(1, cores // jobs)``). ``backend="ray"`` runs each open run as a
    Ray task instead (:mod:`neuroplastic.bench.ray_backend`; a new local instance with ``jobs`` CPUs, or the cluster at
    ``address``); the store is written by this process alone.

    Before anything is stored or trained, every open run is checked by :func:`check_runs` (a refused parameter
    raises :class:`~neuroplastic.bench.suite.SuiteError`). Open runs: ``pending``; interrupted (``running`` with a
    dead process on this host); ``failed`` with fewer than ``max_attempts`` attempts, or any failed run with
    ``retry_failed``. Finished runs are never redone. Returns the final status counts of the suite's runs. Raises :class:`Interrupted` on Ctrl-C.
    """
    out = out or sys.stdout
    if jobs is None:
        jobs = min(available_cores(), 4)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend must be local or ray, got {backend!r}")
    results_dir = Path(results_dir)
    db = ResultsDB(db_path)
    hashes = [h for h, _ in suite.runs]
    try:  # every open run's learner is built once before the first run starts
        check_runs(suite, {r["hash"] for r in db.runs(hashes=hashes, status="done")})
    except SuiteError:
        db.close()
        raise
    new = db.add_runs(suite.name, suite.runs, command)
    db.set_section(suite.name, suite.meta())
    before = db.counts(hashes=hashes)
    cap = None if retry_failed else max_attempts
    todo = [r["hash"] for r in db.runs(hashes=hashes) if r["status"] != "done"]
    order = {h: i for i, h in enumerate(hashes)}
    todo.sort(key=order.__getitem__)
    jobs = max(1, min(jobs, len(todo))) if todo and backend == "local" else jobs
    threads = threads or (1 if backend == "ray" else max(1, available_cores() // jobs))
    where = (f"Ray at {address}" if address else f"local Ray, {jobs} CPU(s)") if backend == "ray" else \
        f"{jobs} worker(s)"
    print(f"suite {suite.name}: {len(hashes)} runs ({new} new, {before['done']} done, {before['failed']} failed, "
          f"{len(todo)} open) -> {db_path}; {where} x {threads} thread(s)", file=out, flush=True)
    kwargs = {"results_dir": str(results_dir), "device": device, "retry_failed": True, "max_attempts": cap,
              "threads": threads, "command": command}
    if todo and backend == "ray":
        from .ray_backend import run_ray

        try:
            run_ray(str(db_path), todo, address=address, jobs=jobs, line=_line, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted(_resume_hint(db, hashes, command)) from None
    elif todo:
        if jobs == 1:
            show = sys.stderr.isatty() if progress is None else progress
            try:
                work(str(db_path), todo, progress=show, **kwargs)
            except KeyboardInterrupt:
                raise Interrupted(_resume_hint(db, hashes, command)) from None
        else:
            _run_pool(str(db_path), todo, jobs, kwargs, db, hashes, command)
    _reap_dead(db, hashes)
    counts = db.counts(hashes=hashes)
    db.close()
    print(file=out)
    from . import report as rep

    print(rep.print_table(db_path, suite.name), file=out)
    if report:
        files = rep.write_report(db_path, results_dir / "report", ("md", "html"), suite=suite.name)
        print(f"\nreport: {', '.join(str(f) for f in files if f.suffix in ('.md', '.html'))}", file=out)
    print(f"{counts['done']} done, {counts['failed']} failed, {counts['pending'] + counts['running']} open",
          file=out, flush=True)
    return counts


def _run_pool(db_path: str, todo: list[str], jobs: int, kwargs: dict, db: ResultsDB, hashes: list[str],
              command: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(db_path, todo, kwargs), name=f"bench-worker-{i}")
             for i in range(jobs)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            while p.is_alive():
                p.join(0.5)
    except KeyboardInterrupt:
        # Workers in the terminal's process group got the same SIGINT and are giving their runs back;
        # wait for them briefly, then interrupt the others (e.g. when only this process was signalled).
        deadline = time.time() + 3
        for p in procs:
            p.join(max(0.0, deadline - time.time()))
        for p in procs:
            if p.is_alive() and p.pid:
                try:
                    os.kill(p.pid, signal.SIGINT)
                except OSError:
                    pass
        deadline = time.time() + 30
        for p in procs:
            p.join(max(0.1, deadline - time.time()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        raise Interrupted(_resume_hint(db, hashes, command)) from None


def _reap_dead(db: ResultsDB, hashes: list[str]) -> None:
    """Mark runs left ``running`` by a worker that died (killed, out of memory) as failed."""
    for r in db.runs(hashes=hashes, status="running"):
        if r["host"] == db.host and r["pid"] and not _alive(r["pid"]):
            db.fail(r["hash"], f"worker process {r['pid']} died during the run (killed or out of memory)",
                    pid=r["pid"])


def _alive(pid: int) -> bool:
    from .db import pid_alive

    return pid_alive(pid)


def _resume_hint(db: ResultsDB, hashes: list[str], command: str) -> str:
    c = db.counts(hashes=hashes)
    return (f"interrupted: {c['done']} of {len(hashes)} runs done; run the same command again to resume"
            + (f" ({command})" if command else ""))
