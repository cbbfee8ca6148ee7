"""One benchmark run of the DLL study (DLL, DLL-FA, PC, or the foundation's BP/FA/DFA on the same nets).

Writes a JSON list with one standard record (``experiment.record``: final-epoch ``test_acc``,
``val_acc``, ...) plus the per-epoch ``curve`` (val/test accuracy, loss, angle(Θ, W), ‖Θ‖). The curve is
rewritten atomically after every epoch to ``<out>.partial.json``; ``--max-minutes`` stops a run that
would exceed its budget after the current epoch, and the record then says ``status: "budget"`` with
the epochs reached (the learning-rate schedule still spans ``--epochs``).

    python benchmarks/dll_run.py --learner dll --dataset mnist --preset mlp-mnist --epochs 10 \
        --out benchmarks/results/dll_mlp_mnist_s0.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from neuroplastic import experiment, learners
from neuroplastic.dll.learners import PRESETS


class _Budget(Exception):
    pass


def config(a) -> dict:
    p = PRESETS[a.preset]
    params: dict = dict(json.loads(a.params)) if a.params else {}
    if a.lr is not None:
        params["lr"] = a.lr
    if a.learner in ("dll", "dll-fa", "pc"):
        preset = a.preset
    else:  # foundation learners: the same net through nn/archs
        preset = {"mlp": "mlp", "cnn_mnist": "lv_cnn_mnist", "cnn_cifar": "lv_cnn_cifar"}[p["net"]]
        params.setdefault("act", p["act"])
        params.setdefault("lr", p["lr"])
        params.setdefault("schedule", "linear")
        if p["net"] == "mlp":
            params.setdefault("hidden", list(p["hidden"]))
    return {"learner": a.learner, "dataset": a.dataset, "preset": preset, "params": params,
            "epochs": a.epochs, "batch_size": a.batch_size or p["batch_size"], "seed": a.seed,
            "val": a.val, "normalize": a.normalize, "device": a.device, "deterministic": False,
            "limit_train": a.limit_train}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learner", required=True)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="mlp-mnist", choices=sorted(PRESETS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--params", default="", help="extra learner params as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=float, default=0.1)
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--normalize", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    learners.names()  # load every learner module (registers lv_cnn_* archs)
    cfg = config(a)
    command = "python " + " ".join(sys.argv)
    out = Path(a.out)
    partial = out.with_name(out.stem + ".partial.json")
    rows: list[dict] = []
    t0 = time.perf_counter()

    def log(row: dict) -> None:
        rows.append({k: v for k, v in row.items() if isinstance(v, (int, float))})
        experiment.write_json_atomic({"config": cfg, "command": command, "curve": rows}, partial)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()
                          if k in ("epoch", "seconds", "train_loss", "val_acc", "test_acc", "theta_angle_mean")}),
              flush=True)
        if a.max_minutes is not None and len(rows) < a.epochs:
            per_epoch = (time.perf_counter() - t0) / len(rows)
            if time.perf_counter() - t0 + per_epoch > 60 * a.max_minutes:
                raise _Budget

    try:
        res = experiment.run(cfg, progress=False, log=log)
        rec = experiment.record(res, command=command)
    except _Budget:
        last = rows[-1]
        rec = {"learner": cfg["learner"], "dataset": cfg["dataset"], "preset": cfg["preset"], "seed": cfg["seed"],
               "epochs": cfg["epochs"], "epochs_done": len(rows), "status": "budget",
               "test_acc": last.get("test_acc"), "val_acc": last.get("val_acc"),
               "train_seconds": sum(r["seconds"] for r in rows), "command": command, "params": cfg["params"],
               "batch_size": cfg["batch_size"], "device": cfg["device"], **experiment.environment(cfg["device"])}
    rec["curve"] = rows
    rec["dll_preset"] = a.preset
    rec["max_minutes"] = a.max_minutes
    rec["threads"] = a.threads
    rec["pid"] = os.getpid()
    experiment.write_json_atomic([rec], out)
    print(json.dumps({"wrote": str(out), "test_acc": rec.get("test_acc"), "status": rec["status"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
