"""Cost per training step of DLL (and DLL-FA, PC, FA) relative to backprop on the same net, same process.

Interleaves timed blocks of ``--steps`` training steps of each learner on random data of the right shape
(cost does not depend on the pixel values), repeats ``--reps`` times and reports the median per-step time
and the ratio to ``bp``. Lv et al. 2025 report DLL at 1.4–1.7× BP on CPU.

    python benchmarks/dll_cost.py --nets mlp-mnist cnn-mnist cnn-cifar --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from neuroplastic import experiment, learners
from neuroplastic.dll.learners import PRESETS

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}


def make(name: str, preset: str, in_shape):
    cfg = PRESETS[preset]
    if name in ("dll", "dll-fa", "pc"):
        kw = {"preset": preset}
        if name == "pc":
            kw["n_steps"] = 20
        return learners.get(name, in_shape=in_shape, n_classes=10, **kw)
    arch = {"mlp": "mlp", "cnn_mnist": "lv_cnn_mnist", "cnn_cifar": "lv_cnn_cifar"}[cfg["net"]]
    kw = {"arch": arch, "act": cfg["act"], "lr": cfg["lr"]}
    if arch == "mlp":
        kw["hidden"] = cfg["hidden"]
    return learners.get(name, in_shape=in_shape, n_classes=10, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="+", default=["mlp-mnist", "cnn-mnist", "cnn-cifar"])
    ap.add_argument("--learners", nargs="+", default=["bp", "dll", "dll-fa", "fa"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/dll_cost.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    records = []
    for preset in a.nets:
        shape = SHAPES["cifar" if "cifar" in preset else "mnist"]
        bs = PRESETS[preset]["batch_size"]
        x = torch.rand(bs, *shape, device=a.device)
        y = torch.randint(0, 10, (bs,), device=a.device)
        models = {n: make(n, preset, shape).to(a.device) for n in a.learners}
        for m in models.values():
            m.configure(1, a.steps)
            m.train_step(x, y)  # warm-up
        times: dict[str, list[float]] = {n: [] for n in models}
        for _ in range(a.reps):
            for n, m in models.items():
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    m.train_step(x, y)
                if a.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[n].append((time.perf_counter() - t0) / a.steps)
        base = statistics.median(times["bp"]) if "bp" in times else float("nan")
        for n, ts in times.items():
            med = statistics.median(ts)
            rec = {"net": preset, "learner": n, "batch_size": bs, "sec_per_step": med,
                   "ratio_vs_bp": med / base, "threads": a.threads, "device": a.device,
                   "command": "python " + " ".join(sys.argv), **experiment.environment(a.device)}
            records.append(rec)
            print(f"{preset:10s} {n:7s} {med * 1e3:8.2f} ms/step  ×{med / base:.2f} vs bp", flush=True)
    experiment.write_json_atomic(records, Path(a.out))
    print(json.dumps({"wrote": a.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
