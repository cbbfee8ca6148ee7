"""SoftHebb ablation (benchmark script, not a test): the softmax factors ``t_inv`` of the three layers and the
probe's input standardisation, on one dataset at a chosen width.

For each ``t_inv`` setting one unsupervised epoch is run (same seed, same data order), features are cached
once, and the linear probe is fitted on raw and on z-scored features. ``code`` is (1, 0.65, 0.25), the
values of the SoftHebb authors' code (``softmax(t_invert * u)``); ``inverse`` is (1, 1/0.65, 1/0.25), which
our preset used before. Final-epoch test accuracy; validation accuracy for any choice.

    python benchmarks/hebbian_ablation.py --dataset mnist --width 0.25 --threads 1 \
        --out benchmarks/results/hebbian_ablation_mnist_w025.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hebbian_common as hc

from neuroplastic.hebbian.learners import HebbianCNN
from neuroplastic.probe import train_probe

T_INV = {"code": (1.0, 0.65, 0.25), "inverse": (1.0, 1 / 0.65, 1 / 0.25)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--root", default=None)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default="code,inverse")
    ap.add_argument("--probe-epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    records: list[dict] = []
    bundle = hc.prepare(a.dataset, a.root, a.seed, "cpu")
    for name in a.settings.split(","):
        t_inv = T_INV[name]
        learner = HebbianCNN(in_shape=bundle.in_shape, n_classes=bundle.n_classes, preset="softhebb",
                             width=a.width, seed=a.seed)
        layers = [m for _, m, _ in learner.net.hebb_layers()]
        if len(layers) != len(t_inv):
            raise ValueError(f"expected {len(t_inv)} Hebbian layers, got {len(layers)}")
        for m, t in zip(layers, t_inv):
            m.rule.t_inv = float(t)
        hebb_s = hc.hebbian_epoch(learner, bundle, 10, a.seed, None, log=lambda m: None)
        t0 = time.perf_counter()
        feats = {s: hc.cache(learner, getattr(bundle, s).x) for s in ("train", "val", "test")}
        cache_s = time.perf_counter() - t0
        evals = {s: (feats[s], getattr(bundle, s).y) for s in ("val", "test")}
        for standardize in (False, True):
            t0 = time.perf_counter()
            _, hist = train_probe(feats["train"], bundle.train.y, bundle.n_classes, epochs=a.probe_epochs,
                                  seed=a.seed, evals=evals, standardize=standardize, eval_every=10)
            rec = hc.base_record("hebbian-cnn", a.dataset, "softhebb", a.seed, 10,
                                 {"width": a.width, "t_inv": list(t_inv), "t_inv_setting": name,
                                  "probe_standardize": standardize, "probe_epochs": a.probe_epochs}, "cpu")
            rec.update(test_acc=hist[-1]["test_acc"], val_acc=hist[-1]["val_acc"], hebbian_seconds=round(hebb_s, 1),
                       cache_seconds=round(cache_s, 1), probe_seconds=round(time.perf_counter() - t0, 1),
                       feature_dim=int(feats["train"].shape[1]), variant=f"t_inv {name}, probe "
                       f"{'z-scored' if standardize else 'raw'}")
            print(f"[{time.strftime('%H:%M:%S')}] {rec['variant']}: test {rec['test_acc']:.4f} val {rec['val_acc']:.4f}",
                  flush=True)
            records.append(rec)
            hc.write(records, a.out)


if __name__ == "__main__":
    main()
