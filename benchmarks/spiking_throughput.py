"""Throughput of one MNIST training epoch of the spiking mode network on CPU (Lin & Huang 2024 setup).

60,000 samples, T = 50 steps, N = 200, P = 3, batch 256, Bernoulli rate code, Adam + clip, fast BPTT
path (and optionally the autograd reference loop for comparison). Reports wall-clock seconds and the
process CPU seconds of the epoch (CPU time / threads approximates the wall time on an idle machine).

    python benchmarks/spiking_throughput.py --threads 2 --out benchmarks/results/spiking_throughput.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroplastic import data, experiment
from neuroplastic.spiking.learners import ModeNetLearner


def keep_freed_memory() -> bool:
    """Ask glibc malloc to keep large freed blocks (no mmap/munmap and page faults per 10-MB buffer)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31 - 1))
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=None, help="time only this many batches (default: a full epoch)")
    ap.add_argument("--reference", action="store_true", help="use the autograd reference loop instead")
    ap.add_argument("--no-mallopt", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[1] / ".data"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    mallopt = False if a.no_mallopt else keep_freed_memory()
    bundle = data.prepare("mnist", root=a.data_root, val=0, seed=0)
    m = ModeNetLearner(bundle.in_shape, 10, n_hidden=200, n_modes=3, steps=50, fast=not a.reference,
                       threads=a.threads)
    steps = (len(bundle.train) + 255) // 256
    m.configure(1, steps)
    m.reset_state()
    g = torch.Generator().manual_seed(0)
    n_done = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for i, (xb, yb) in enumerate(data.batches(bundle.train.x, bundle.train.y, 256, shuffle=True, generator=g)):
        if a.batches is not None and i >= a.batches:
            break
        m.train_step(xb, yb)
        n_done += len(xb)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    rec = {"benchmark": "spiking_throughput", "learner": "snn-mode", "dataset": "mnist", "samples": n_done,
           "batch_size": 256, "steps": 50, "n_hidden": 200, "n_modes": 3, "fast": not a.reference,
           "threads": a.threads, "mallopt": mallopt, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
           "epoch_wall_seconds_extrapolated": round(wall * 60000 / max(n_done, 1), 1),
           "epoch_cpu_seconds_per_thread": round(cpu / a.threads * 60000 / max(n_done, 1), 1),
           "loadavg_at_end": load, **experiment.environment("cpu"),
           "command": "python " + " ".join(sys.argv)}
    print(json.dumps(rec), flush=True)
    if a.out:
        p = Path(a.out)
        recs = json.loads(p.read_text()) if p.exists() else []
        recs.append(rec)
        experiment.write_json_atomic(recs, p)


if __name__ == "__main__":
    main()
