"""Run a suite's independent runs as Ray tasks (``neuroplastic bench SUITE --backend ray [--address ADDR]``).

The head process — the one that called ``bench`` — is the only one that touches the results store: it claims each
open run (so no other bench takes it), submits one task per run (one CPU, or one GPU for a CUDA device), renews the
claims' leases while the tasks run, and stores each outcome as it arrives. Tasks train through the same
:func:`neuroplastic.bench.runner.execute` as the local workers and return their results through Ray's object store,
so no SQLite file is shared over a network file system. Checkpoints and pictures are written under ``results_dir``
on the node that runs the task (shared or local disk); a run that is resubmitted on the same node resumes there.
Ctrl-C cancels the tasks and gives their runs back. A local instance inherits the environment of ``bench`` (data
root, paths); on a cluster each node needs the package and ``NEUROPLASTIC_DATA``. Needs the ``dist`` extra
(``pip install 'neuroplastic[dist]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from .db import HEARTBEAT_SECONDS, ResultsDB


def _task(h: str, cfg: dict[str, Any], results_dir: str, command: str, threads: int) -> dict[str, Any]:
    """One run inside a Ray worker: ``threads`` torch threads, then :func:`~neuroplastic.bench.runner.execute`."""
    import torch

    from .runner import execute

    torch.set_num_threads(threads)
    return execute(h, cfg, results_dir=Path(results_dir), command=command)


def run_ray(db_path: str, todo: list[str], *, address: str | None, jobs: int, threads: int, results_dir: str,
            device: str | None, retry_failed: bool, max_attempts: int | None, command: str,
            line: Any) -> dict[str, int]:
    """Claim and run ``todo`` on Ray (a new local instance with ``jobs`` CPUs, or the cluster at ``address``);
    ``line(db, h, cfg, status)`` prints each finished run. Returns counts by outcome."""
    try:
        import ray
    except ImportError as e:
        raise InputError(f"--backend ray needs Ray (pip install 'neuroplastic[dist]'): {e}") from None
    started = not ray.is_initialized()
    if started:  # a new local instance inherits this process's environment (data root, PYTHONPATH)
        ray.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    from .runner import store_outcome

    gpu = bool(device and device.startswith("cuda"))
    remote = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=0)(_task)
    db = ResultsDB(db_path)
    counts = {"done": 0, "failed": 0}
    pending: dict[Any, tuple[str, dict]] = {}
    try:
        for h in todo:
            if not db.claim(h, retry_failed=retry_failed, max_attempts=max_attempts):
                continue
            cfg = dict(db.get(h)["config"])
            if device:
                cfg["device"] = device
            pending[remote.remote(h, cfg, results_dir, command, threads)] = (h, cfg)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=HEARTBEAT_SECONDS / 2)
            for ref in ready:
                h, cfg = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - the task itself died (worker lost, node down)
                    outcome = {"status": "failed", "error": f"Ray task failed: {type(e).__name__}: {e}"}
                status = store_outcome(db, h, outcome, command=command)
                counts[status] += 1
                print(line(db, todo, h, cfg, status), flush=True)
            for h, _ in pending.values():
                db.heartbeat(h)
    except KeyboardInterrupt:
        for ref, (h, _) in pending.items():
            ray.cancel(ref, force=True)
            db.release(h, "interrupted")
        raise
    finally:
        db.close()
        if started:
            ray.shutdown()
    return counts
