"""The DLL MNIST table (Lv et al. 2025, Table 2 rows): many ``dll_run.py`` processes in parallel on one GPU.

Groups of jobs (``--groups``):

- ``table``: DLL, DLL-FA, BP, FA on the paper's MLP (784-1024-512-256-10, tanh, Adam 1e-3, batch 128)
  and CNN (conv32k5-pool-conv64k3-pool-conv16k3-200-10, tanh, Adam 5e-5, batch 64), seeds 0, 1, 2.
- ``pc``: predictive coding on both nets, seeds 0, 1, 2 (the learner's ``n_steps`` unless ``--pc-steps``;
  its own time budget ``--pc-max-minutes``).
- ``sweep``: DLL learning-rate sweep (5 values per net, seed 0) — select on ``val_acc`` only.
- ``variant``: DLL with a given learning rate per net (``--variant-lr-mlp``, ``--variant-lr-cnn``),
  seeds 0, 1, 2 — a clearly labelled variant (``variant: lr=...``), chosen on validation accuracy.

Every job writes its own JSON under ``--out-dir``; ``--deadline-s`` kills whatever still runs then
(its per-epoch curve stays in ``*.partial.json``). ``--order cost`` starts the longest jobs first (PC before
the rest, CNN before MLP), which is what packs a CPU table into its two hours:

    python benchmarks/dll_mnist_table.py --groups table pc --device cpu --parallel 2 --order cost \
        --max-minutes 15 --pc-max-minutes 22 --deadline-s 7200 --epochs 10 --out-dir results/dll_mnist_cpu_table

    python benchmarks/dll_mnist_table.py --groups table sweep --device cuda --out-dir $OUT --epochs 10
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETS = {"mlp": "mlp-mnist", "cnn": "cnn-mnist"}
SWEEP = {"mlp": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "cnn": (5e-5, 1.5e-4, 5e-4, 1.5e-3, 5e-3)}


def jobs(a) -> list[tuple[str, list[str]]]:
    out = []
    base = ["--dataset", "mnist", "--epochs", str(a.epochs), "--device", a.device,
            "--max-minutes", str(a.max_minutes)]
    if a.limit_train:
        base += ["--limit-train", str(a.limit_train)]
    for g in a.groups:
        for net, preset in NETS.items():
            if g == "table":
                for learner in ("dll", "dll-fa", "bp", "fa"):
                    for s in a.seeds:
                        out.append((f"table_{net}_{learner}_s{s}", ["--learner", learner, "--preset", preset,
                                                                      "--seed", str(s)]))
            elif g == "pc":
                steps = [] if a.pc_steps is None else ["--params", f'{{"n_steps": {a.pc_steps}}}']
                budget = [] if a.pc_max_minutes is None else ["--max-minutes", str(a.pc_max_minutes)]
                for s in a.seeds:
                    out.append((f"table_{net}_pc_s{s}", ["--learner", "pc", "--preset", preset, "--seed", str(s),
                                                         *steps, *budget]))
            elif g == "sweep":
                for lr in SWEEP[net]:
                    for learner in a.sweep_learners:
                        out.append((f"sweep_{net}_{learner}_lr{lr:g}", ["--learner", learner, "--preset", preset,
                                                                       "--seed", "0", "--lr", str(lr)]))
            elif g == "variant":
                lr = a.variant_lr_mlp if net == "mlp" else a.variant_lr_cnn
                if lr is None:
                    continue
                for s in a.seeds:
                    out.append((f"variant_{net}_dll_lr{lr:g}_s{s}", ["--learner", "dll", "--preset", preset,
                                                                    "--seed", str(s), "--lr", str(lr)]))
            else:
                raise SystemExit(f"unknown group {g!r}; allowed: table, pc, sweep, variant")
    todo = [(name, base + args) for name, args in out]  # a later --max-minutes overrides the base one
    if a.order == "cost":  # stable: PC first, then CNN before MLP (relative CPU cost, measured 2026-11-24)
        todo.sort(key=lambda j: ("_pc_" not in j[0], "_cnn_" not in j[0]))
    return todo


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", nargs="+", default=["table"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--parallel", type=int, default=40)
    ap.add_argument("--pc-steps", type=int, default=None, help="PC relaxation steps (default: the learner's)")
    ap.add_argument("--pc-max-minutes", type=float, default=None, help="per-run budget of PC jobs")
    ap.add_argument("--order", choices=("given", "cost"), default="given")
    ap.add_argument("--sweep-learners", nargs="+", default=["dll"])
    ap.add_argument("--variant-lr-mlp", type=float, default=None)
    ap.add_argument("--variant-lr-cnn", type=float, default=None)
    ap.add_argument("--max-minutes", type=float, default=4.0)
    ap.add_argument("--deadline-s", type=float, default=285.0)
    ap.add_argument("--limit-train", type=int, default=None)
    a = ap.parse_args(argv)
    outdir = Path(a.out_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    todo = jobs(a)
    t0 = time.time()
    running: list[tuple[str, subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < a.parallel:
            name, args = todo.pop(0)
            cmd = [sys.executable, str(HERE / "dll_run.py"), *args, "--out", str(outdir / f"{name}.json")]
            with open(outdir / f"{name}.log", "w") as log:  # the child keeps its own handle
                running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(1.0)
        running = [(n, p) for n, p in running if p.poll() is None]
        if time.time() - t0 > a.deadline_s:
            for n, p in running:
                print(f"deadline: stopping {n} (pid {p.pid})", flush=True)
                p.kill()
            break
    print(f"done in {time.time() - t0:.0f} s; unstarted jobs: {len(todo)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
