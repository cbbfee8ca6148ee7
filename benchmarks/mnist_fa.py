"""Benchmark: backprop and the feedback-alignment family on MNIST with LeNet-5 (recorded, not a test).

Reads the grid from ``benchmarks/suites/mnist_fa.yaml`` (learners × seeds, base config, per-learner
overrides), runs every config through :func:`neuroplastic.experiment.run` in ``--jobs`` parallel processes
and writes the standard records (:func:`neuroplastic.experiment.record`, final-epoch ``test_acc``) to
``benchmarks/results/mnist_fa.json``, rewriting the file after every finished run so a killed job keeps
what it finished.

``--sweep`` instead runs the per-mode settings candidates (optimizer, lr; schedule cosine) for
``--sweep-epochs`` on seed 0 and reports the **validation** accuracy of each, the model selection the
suite's overrides come from (test accuracy is recorded but not used to choose).

    PYTHONPATH=src python benchmarks/mnist_fa.py --device cuda --jobs 7 --data-root .data
    PYTHONPATH=src python benchmarks/mnist_fa.py --sweep --device cuda --jobs 12 --data-root .data
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import copy
import itertools
import multiprocessing as mp
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = HERE / "suites" / "mnist_fa.yaml"
RESULTS = HERE / "results"

#: Settings candidates of the validation sweep (cosine schedule, momentum 0.9 for SGD).
SWEEP = [
    {"optimizer": "sgd", "lr": 0.01},
    {"optimizer": "sgd", "lr": 0.03},
    {"optimizer": "sgd", "lr": 0.1},
    {"optimizer": "adam", "lr": 3e-4},
    {"optimizer": "adam", "lr": 1e-3},
]


def load_suite(path: Path) -> dict:
    """The suite mapping (``name, description, grid, base, overrides``) from YAML, checked."""
    import yaml

    suite = yaml.safe_load(path.read_text())
    for key in ("name", "grid", "base"):
        if key not in suite:
            raise SystemExit(f"{path}: missing key {key!r}")
    bad = [k for k in suite["grid"] if k not in ("learner", "dataset", "preset", "seed")]
    if bad:
        raise SystemExit(f"{path}: unknown grid key(s) {bad}; allowed: learner, dataset, preset, seed")
    return suite


def expand(suite: dict) -> list[dict]:
    """Every config of the suite: the grid's product over ``base``, learner overrides merged in
    (``params`` merged key by key)."""
    grid = suite["grid"]
    keys = list(grid)
    cfgs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = copy.deepcopy(suite["base"])
        cfg.update(dict(zip(keys, values)))
        over = copy.deepcopy((suite.get("overrides") or {}).get(cfg["learner"], {}))
        params = dict(cfg.get("params", {}))
        params.update(over.pop("params", {}))
        cfg.update(over)
        cfg["params"] = params
        cfgs.append(cfg)
    return cfgs


def _ensure_registry() -> None:
    """Load the learner registry; if another system's module fails to import, keep going with the
    backprop family (all this benchmark needs) and say so."""
    from neuroplastic import learners

    try:
        learners.names()
    except Exception as e:  # noqa: BLE001 - another system's module under construction
        import neuroplastic.learners.backprop  # noqa: F401  (registers bp, fa, dfa, usf, brsf, frsf, kp)

        print(f"warning: learner registry incomplete ({e}); using the backprop family only", file=sys.stderr)
        learners._loaded = True


def _worker(cfg: dict, command: str, threads: int, data_root: str | None) -> dict:
    import torch

    torch.set_num_threads(threads)
    if data_root:
        os.environ["NEUROPLASTIC_DATA"] = data_root
    from neuroplastic import experiment

    _ensure_registry()
    try:
        out = experiment.run(cfg, progress=False)
    except Exception as e:  # noqa: BLE001 - recorded as a failed run, the grid goes on
        return {"learner": cfg["learner"], "dataset": cfg["dataset"], "preset": cfg.get("preset"),
                "seed": cfg["seed"], "epochs": cfg["epochs"], "status": "failed", "test_acc": None,
                "params": cfg.get("params"), "command": command,
                "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    rec = experiment.record(out, command=command)
    rec["test_acc_by_epoch"] = [round(h["test_acc"], 5) for h in out.history if "test_acc" in h]
    rec["val_acc_by_epoch"] = [round(h["val_acc"], 5) for h in out.history if "val_acc" in h]
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=str(SUITE))
    ap.add_argument("--device", default=None, help="cpu | cuda[:N] (default: cuda if available)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes")
    ap.add_argument("--data-root", default=None, help="data root holding mnist/ (else $NEUROPLASTIC_DATA)")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/<suite>.json)")
    ap.add_argument("--learners", default=None, help="comma-separated subset of the grid's learners")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the grid's)")
    ap.add_argument("--epochs", type=int, default=None, help="override the suite's epochs (reduced runs)")
    ap.add_argument("--limit-train", type=int, default=None, help="train on a seeded subset (reduced runs)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per job (default cores // jobs)")
    ap.add_argument("--sweep", action="store_true", help="validation sweep of the settings candidates")
    ap.add_argument("--sweep-epochs", type=int, default=10)
    args = ap.parse_args(argv)

    import torch

    from neuroplastic import experiment

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    suite = load_suite(Path(args.suite))
    cfgs = expand(suite)
    if args.learners:
        keep = args.learners.split(",")
        cfgs = [c for c in cfgs if c["learner"] in keep]
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
        cfgs = [c for c in cfgs if c["seed"] in seeds]
    if args.sweep:
        seen, swept = set(), []
        for c in cfgs:
            if c["learner"] in seen:
                continue
            seen.add(c["learner"])
            for cand in SWEEP:
                s = copy.deepcopy(c)
                s["seed"], s["epochs"] = 0, args.sweep_epochs
                s["params"].update(cand)
                swept.append(s)
        cfgs = swept
    for c in cfgs:
        c["device"] = device
        if args.epochs is not None:
            c["epochs"] = args.epochs
        if args.limit_train is not None:
            c["limit_train"] = args.limit_train
            c["val"] = 0.1  # a fraction of the subset (the suite's count may exceed it)
    name = suite["name"] + ("_sweep" if args.sweep else "")
    out_path = Path(args.out) if args.out else RESULTS / f"{name}.json"
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(args.jobs, 1))
    print(f"{len(cfgs)} runs on {device}, {args.jobs} jobs × {threads} threads -> {out_path}", flush=True)

    records: list[dict] = []
    t0 = time.time()
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=max(args.jobs, 1), mp_context=ctx) as pool:
        futs = {pool.submit(_worker, c, command, threads, args.data_root): c for c in cfgs}
        for fut in cf.as_completed(futs):
            rec = fut.result()
            records.append(rec)
            records.sort(key=lambda r: (r["learner"], str(r.get("params")), r["seed"]))
            experiment.write_json_atomic(records, out_path)
            acc = rec.get("test_acc")
            print(f"[{time.time() - t0:6.0f}s] {rec['learner']:5s} seed {rec['seed']} {rec['status']} "
                  f"val {rec.get('val_acc') or float('nan'):.4f} test {acc if acc is not None else float('nan'):.4f} "
                  f"params {rec.get('params')} {rec.get('error', '')}", flush=True)
    summarize(records, sweep=args.sweep)
    return 0


def summarize(records: list[dict], sweep: bool = False) -> None:
    """Print mean ± std of final-epoch test accuracy per learner (sweep: validation accuracy per setting)."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["status"] != "done":
            continue
        key = (r["learner"], str(r["params"])) if sweep else (r["learner"],)
        groups.setdefault(key, []).append(r)
    for key, rs in sorted(groups.items()):
        metric = "val_acc" if sweep else "test_acc"
        vals = [100 * r[metric] for r in rs]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{' '.join(key):60s} {metric} {statistics.mean(vals):6.2f} ± {sd:.2f} % (n={len(vals)})")


if __name__ == "__main__":
    sys.exit(main())
