"""The results database: one SQLite file, safe for several worker processes at once.

Table ``runs`` holds one row per config hash: its config, status (``pending``, ``running``, ``done``,
``failed``), the claiming process (pid, host), start/finish times, attempts, error text, final metrics,
per-epoch history, environment, timings, command and the standard results record
(:func:`neuroplastic.experiment.record`). Table ``suite_runs`` says which suites contain which runs (a
run shared by two suites is trained once).

Concurrency: WAL journal, a busy timeout and short transactions (``BEGIN IMMEDIATE`` … ``COMMIT``) so
writers queue instead of failing. Claiming a run is one atomic ``UPDATE`` whose ``WHERE`` accepts only a
pending run, a failed run (when retrying), or a running run whose claim is void: its process is dead on this
host, or its lease expired (a claim holds a lease of :data:`LEASE_SECONDS` that the worker renews while it
trains: a PID reused by another process, or a host that changed its name, cannot keep a dead run claimed).
``attempts`` counts claims that were not resumptions: a run resumed after a crash does not use one up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError

DEFAULT_PATH = Path("results") / "neuroplastic.db"
STATUSES = ("pending", "running", "done", "failed")
BUSY_TIMEOUT_MS = 60_000
#: How long a claim holds without a heartbeat; workers renew it every :data:`HEARTBEAT_SECONDS`.
LEASE_SECONDS = 300.0
HEARTBEAT_SECONDS = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    hash TEXT PRIMARY KEY,
    suite TEXT,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    pid INTEGER,
    host TEXT,
    created REAL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    metrics TEXT,
    history TEXT,
    env TEXT,
    train_seconds REAL,
    wall_seconds REAL,
    command TEXT,
    record TEXT,
    records TEXT,
    lease REAL
);
CREATE TABLE IF NOT EXISTS suite_runs (
    suite TEXT NOT NULL,
    hash TEXT NOT NULL REFERENCES runs(hash),
    position INTEGER,
    PRIMARY KEY (suite, hash)
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS sections (
    name TEXT PRIMARY KEY,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS imported (
    section TEXT NOT NULL,
    position INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (section, position)
);
"""
_JSON_COLS = ("config", "metrics", "history", "env", "record", "records")


def pid_alive(pid: int | None) -> bool:
    """True if process ``pid`` exists on this host (``kill(pid, 0)``); zombies count as dead."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _alive_sql(pid: Any) -> int:
    return int(pid_alive(int(pid)) if pid is not None else False)


def _is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite database, asked through SQLite itself (read-only, nothing written). Never read
    the file with a plain ``open()``: closing any other descriptor of a database file drops every POSIX lock this
    process holds on it (its live connections' included), after which another process may delete the write-ahead log
    under them and their next commits are lost."""
    if Path(path).stat().st_size < 512:  # the smallest database is one 512-byte page; SQLite would overwrite this
        return False
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return "not a database" not in str(e) and "encrypted" not in str(e)
    return True


class ResultsDB:
    """Handle on a results database file (created with its schema on first use).

    Every method opens its own short transaction; a handle may be used from one process only (open a
    new one in each worker).
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"results database {str(self.path)!r} is a directory; choose a file with --db")
        if self.path.is_file() and self.path.stat().st_size > 0 and not _is_sqlite(self.path):
            raise InputError(f"results database {str(self.path)!r} is not an SQLite file; refusing to touch it "
                             f"(choose another with --db)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InputError(f"results database {str(self.path)!r}: its folder is a file") from None
        self.host = socket.gethostname()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        conn = self._connect()
        have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"runs", "suite_runs", "sections", "imported"} <= have:
            conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        if "records" not in cols:  # a store written before label-count records existed
            conn.execute("ALTER TABLE runs ADD COLUMN records TEXT")
        if "lease" not in cols:  # a store written before leases existed
            conn.execute("ALTER TABLE runs ADD COLUMN lease REAL")

    # ----------------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as e:
                raise InputError(f"results database {str(self.path)!r} cannot be opened ({e}); "
                                 f"move it away or choose another with --db") from None
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = DELETE")
            conn.row_factory = sqlite3.Row
            conn.create_function("pid_alive", 1, _alive_sql)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction (``BEGIN IMMEDIATE`` takes the write lock at once, waits if busy)."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection of this process."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # ----------------------------------------------------------------------------------------------
    def add_runs(self, suite: str, runs: list[tuple[str, dict[str, Any]]], command: str = "") -> int:
        """Insert runs that are not in the database yet (status ``pending``); return how many were new.

        Existing rows (same hash) are left untouched; every run is linked to ``suite``.
        """
        now = time.time()
        new = 0
        with self._tx() as c:
            for pos, (h, cfg) in enumerate(runs):
                cur = c.execute("INSERT OR IGNORE INTO runs (hash, suite, config, status, created, command) "
                                "VALUES (?, ?, ?, 'pending', ?, ?)",
                                (h, suite, json.dumps(cfg, sort_keys=True, default=str), now, command))
                new += cur.rowcount
                c.execute("INSERT OR REPLACE INTO suite_runs (suite, hash, position) VALUES (?, ?, ?)",
                          (suite, h, pos))
        return new

    def claim(self, h: str, *, retry_failed: bool = True, max_attempts: int | None = None,
              pid: int | None = None, lease_seconds: float = LEASE_SECONDS) -> bool:
        """Atomically mark run ``h`` as running by this process with a lease; False if it is not claimable.

        Claimable: ``pending``; ``running`` whose claim is void (process dead on this host, or lease expired:
        an interrupted run, resumed without counting an attempt); ``failed`` when ``retry_failed`` and
        (``max_attempts`` is None or attempts < ``max_attempts``).
        """
        pid = os.getpid() if pid is None else pid
        cap = -1 if max_attempts is None else int(max_attempts)
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "UPDATE runs SET attempts=attempts + (CASE WHEN status='running' THEN 0 ELSE 1 END), "
                "status='running', pid=?, host=?, started=?, finished=NULL, error=NULL, lease=? WHERE hash=? AND ("
                " status='pending'"
                " OR (status='running' AND ((host=? AND NOT pid_alive(pid)) OR (lease IS NOT NULL AND lease < ?)))"
                " OR (status='failed' AND ? AND (? < 0 OR attempts < ?)))",
                (pid, self.host, now, now + lease_seconds, h, self.host, now, int(retry_failed), cap, cap))
            return cur.rowcount == 1

    def heartbeat(self, h: str, pid: int | None = None, lease_seconds: float = LEASE_SECONDS) -> bool:
        """Renew this process's lease on run ``h``; False if the claim is no longer its own."""
        pid = os.getpid() if pid is None else pid
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET lease=? WHERE hash=? AND status='running' AND pid=? AND host=?",
                            (time.time() + lease_seconds, h, pid, self.host))
            return cur.rowcount == 1

    def finish(self, h: str, *, metrics: dict, history: list, env: dict, train_seconds: float,
               wall_seconds: float, record: dict, command: str = "", pid: int | None = None,
               records: list[dict] | None = None) -> bool:
        """Store a finished run (status ``done``); only the process that claimed it may; returns success.
        ``records``: every record of the run (one per label count; default ``[record]``)."""
        pid = os.getpid() if pid is None else pid
        with self._tx() as c:
            cur = c.execute(
                "UPDATE runs SET status='done', finished=?, metrics=?, history=?, env=?, train_seconds=?, "
                "wall_seconds=?, record=?, records=?, command=?, error=NULL, lease=NULL "
                "WHERE hash=? AND status='running' AND pid=? AND host=?",
                (time.time(), json.dumps(metrics, default=str), json.dumps(history, default=str),
                 json.dumps(env, default=str), train_seconds, wall_seconds, json.dumps(record, default=str),
                 json.dumps(records if records is not None else [record], default=str), command, h, pid, self.host))
            return cur.rowcount == 1

    def add_metrics(self, h: str, extra: dict[str, Any]) -> bool:
        """Merge ``extra`` (metrics measured after the run, e.g. robustness of its saved model) into a finished run's
        metrics, its record and its main record; returns whether the run was found done."""
        with self._tx() as c:
            row = c.execute("SELECT metrics, record, records FROM runs WHERE hash=? AND status='done'", (h,)).fetchone()
            if row is None:
                return False
            metrics = dict(json.loads(row[0] or "{}"), **extra)
            record = dict(json.loads(row[1] or "{}"), **extra)
            recs = json.loads(row[2] or "[]") or [record]
            recs[0] = dict(recs[0], **extra)
            c.execute("UPDATE runs SET metrics=?, record=?, records=? WHERE hash=?",
                      (json.dumps(metrics, default=str), json.dumps(record, default=str),
                       json.dumps(recs, default=str), h))
            return True

    def put_done(self, suite: str, h: str, cfg: dict, **finish: Any) -> None:
        """Store a run trained outside ``bench`` (``neuroplastic train``) as done under ``suite``: the same row
        and records as a bench run (``finish`` takes :meth:`finish`'s keywords)."""
        self.add_runs(suite, [(h, cfg)], finish.get("command", ""))
        with self._tx() as c:
            c.execute("UPDATE runs SET status='running', pid=?, host=?, started=?, attempts=attempts+1 WHERE hash=?",
                      (os.getpid(), self.host, time.time(), h))
        self.finish(h, **finish)

    # ----------------------------------------------------------------------------------------------
    def set_section(self, name: str, meta: dict[str, Any]) -> None:
        """Store a section's metadata (title, note, targets, sources, headline rows) for the generated results."""
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO sections (name, meta) VALUES (?, ?)",
                      (name, json.dumps(meta, sort_keys=True, default=str)))

    def sections(self) -> dict[str, dict[str, Any]]:
        """Every section's metadata by name."""
        rows = self._connect().execute("SELECT name, meta FROM sections ORDER BY name").fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def import_records(self, section: str, records: list[dict[str, Any]]) -> int:
        """Replace the imported records of ``section`` (records recorded before the store existed, kept with
        their provenance); returns how many."""
        with self._tx() as c:
            c.execute("DELETE FROM imported WHERE section=?", (section,))
            c.executemany("INSERT INTO imported (section, position, record) VALUES (?, ?, ?)",
                          [(section, i, json.dumps(r, sort_keys=True, default=str)) for i, r in enumerate(records)])
        return len(records)

    def imported(self, section: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Imported records by section, in their recorded order."""
        sql, args = "SELECT section, record FROM imported", []
        if section is not None:
            sql, args = sql + " WHERE section=?", [section]
        out: dict[str, list[dict[str, Any]]] = {}
        for sec, rec in self._connect().execute(sql + " ORDER BY section, position", args):
            out.setdefault(sec, []).append(json.loads(rec))
        return out

    def published(self, hashes: list[str]) -> dict[str, list[str]]:
        """The sections whose imported records carry each of ``hashes`` (a run's config hash, which a suite's record
        keeps): which of a suite's runs already have a published record, and where."""
        want, out = set(hashes), {}
        for sec, recs in self.imported().items():
            for r in recs:
                if r.get("hash") in want:
                    out.setdefault(r["hash"], set()).add(sec)
        return {h: sorted(secs) for h, secs in out.items()}

    def fail(self, h: str, error: str, *, env: dict | None = None, command: str = "",
             pid: int | None = None, history: list | None = None) -> bool:
        """Mark a claimed run ``failed`` with its error text and the ``history`` of the epochs it finished (a run
        that diverged keeps its curve)."""
        pid = os.getpid() if pid is None else pid
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET status='failed', finished=?, error=?, env=?, command=?, history=?, "
                            "lease=NULL WHERE hash=? AND status='running' AND pid=? AND host=?",
                            (time.time(), error, json.dumps(env or {}, default=str), command,
                             json.dumps(history or [], default=str), h, pid, self.host))
            return cur.rowcount == 1

    def release(self, h: str, reason: str = "interrupted", pid: int | None = None) -> bool:
        """Give a claimed run back (status ``pending``, e.g. on Ctrl-C); its checkpoint stays for resume."""
        pid = os.getpid() if pid is None else pid
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET status='pending', pid=NULL, error=?, lease=NULL "
                            "WHERE hash=? AND status='running' AND pid=? AND host=?", (reason, h, pid, self.host))
            return cur.rowcount == 1

    # ----------------------------------------------------------------------------------------------
    def runs(self, suite: str | None = None, status: str | tuple[str, ...] | None = None,
             hashes: list[str] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (JSON columns decoded), in suite order when ``suite`` is given."""
        sql = "SELECT r.* FROM runs r"
        args: list[Any] = []
        where = []
        if suite is not None:
            sql += " JOIN suite_runs s ON s.hash = r.hash AND s.suite = ?"
            args.append(suite)
        if status is not None:
            st = (status,) if isinstance(status, str) else tuple(status)
            where.append(f"r.status IN ({', '.join('?' * len(st))})")
            args.extend(st)
        if hashes is not None:
            where.append(f"r.hash IN ({', '.join('?' * len(hashes))})")
            args.extend(hashes)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.position" if suite is not None else " ORDER BY r.created, r.hash"
        rows = self._connect().execute(sql, args).fetchall()
        return [_decode(r) for r in rows]

    def get(self, h: str) -> dict[str, Any] | None:
        """One run by hash (None if absent)."""
        r = self._connect().execute("SELECT * FROM runs WHERE hash=?", (h,)).fetchone()
        return _decode(r) if r is not None else None

    def counts(self, suite: str | None = None, hashes: list[str] | None = None) -> dict[str, int]:
        """Number of runs per status."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.runs(suite, hashes=hashes):
            out[r["status"]] += 1
        return out

    def suites(self) -> list[str]:
        """Suite names present in the database."""
        return [r[0] for r in self._connect().execute("SELECT DISTINCT suite FROM suite_runs ORDER BY suite")]


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for k in _JSON_COLS:
        if d.get(k) is not None:
            d[k] = json.loads(d[k])
    return d
