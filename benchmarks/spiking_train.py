"""Train the spiking mode-based learners (Lin & Huang 2024) on MNIST or the context tasks and record results.

Each run is one ``neuroplastic.experiment.run`` config; the records (final-epoch test accuracy, train
time, trainable recurrent parameters, energy proxy, firing statistics, pruning curve) go to a JSON list
(``--out``), and the trained weights to ``--save-dir`` (for ``python -m neuroplastic.spiking.analysis``).

Examples::

    # MNIST, N = 200, P = 3, full training set, full 10k test set, cosine schedule
    python benchmarks/spiking_train.py --learner snn-mode --dataset mnist --modes 3 --epochs 15 \
        --lr 2e-3 --schedule cosine --out benchmarks/results/spiking_mnist.json
    # context-dependent integration, N = 100, P = 3
    python benchmarks/spiking_train.py --learner snn-mode --dataset context --hidden 100 --modes 3 \
        --epochs 10 --batch-size 100 --out benchmarks/results/spiking_context.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroplastic import experiment


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--learner", default="snn-mode", choices=["snn-mode", "snn-fullrank", "rnn-mode"])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--modes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="none")
    ap.add_argument("--grad-clip", type=float, default=20.0)
    ap.add_argument("--val", type=float, default=0.0, help="validation split (0: train on all; no model selection)")
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--limit-test", type=int, default=None)
    ap.add_argument("--eval-limit", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--save-dir", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    params = {"n_hidden": a.hidden, "lr": a.lr, "schedule": a.schedule, "grad_clip": a.grad_clip,
              "eval_limit": a.eval_limit}
    if a.learner != "snn-fullrank":
        params["n_modes"] = a.modes
    if a.dataset not in ("context", "context-switch", "context-mini"):
        params["steps"] = a.steps
    cfg = {"learner": a.learner, "dataset": a.dataset, "params": params, "epochs": a.epochs,
           "batch_size": a.batch_size, "seed": a.seed, "val": a.val, "limit_train": a.limit_train,
           "limit_test": a.limit_test, "device": a.device, "eval_batch_size": 1000}
    cmd = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    t0 = time.time()

    def log(row):
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)

    from neuroplastic.trainer import fit

    cfg, bundle, learner = experiment.build(cfg)
    res = fit(learner, bundle, epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"],
              progress=False, eval_batch_size=cfg["eval_batch_size"], log=log)
    metrics = dict(res.final)
    metrics.update(learner.final_metrics(bundle))
    out = experiment.RunOutput(cfg, experiment.config_hash(cfg), metrics, res.history,
                               experiment.environment(cfg["device"]), res.train_seconds, time.time() - t0,
                               res.peak_memory_mb, learner.n_params())
    rec = experiment.record(out, command=cmd)
    rec["threads"] = a.threads
    rec["history"] = out.history
    for k in ("prune_curve", "mode_importance_sorted", "lambda_abs_sorted"):
        if k in out.metrics:
            rec[k] = out.metrics[k]
    path = Path(a.out)
    records = json.loads(path.read_text()) if path.exists() else []
    records.append(rec)
    experiment.write_json_atomic(records, path)
    if a.save_dir:
        Path(a.save_dir).mkdir(parents=True, exist_ok=True)
        name = f"{a.learner}_{a.dataset}_N{a.hidden}_P{a.modes}_s{a.seed}.pt"
        torch.save({"config": cfg, "state_dict": learner.state_dict()}, Path(a.save_dir) / name)
    print(f"done in {time.time() - t0:.1f}s: test_acc={rec['test_acc']}", flush=True)


if __name__ == "__main__":
    main()
