"""Backprop baseline of the Hebbian CNN (same preset, same widths, trained end to end) and its label-efficiency
curve (benchmark script, not a test).

For each labels-per-class count (``all`` and ``--counts``) the ``hebbian-cnn-bp`` learner is trained on only
those labels (Adam 1e-3, batch 64, dropout 0.5 head; ``--epochs`` epochs, at least ``--min-steps`` updates
for tiny label sets) and its final-epoch test accuracy is recorded. ``--eval-every N`` also records the
validation/test curve every N epochs; ``--ckpt-dir`` checkpoints every epoch and resumes an interrupted run
(a CPU budget of a few hour-long CIFAR-10 epochs can then span sessions).

    python benchmarks/hebbian_bp.py --dataset mnist --preset softhebb --device cuda \
        --out benchmarks/results/hebbian_bp_mnist.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hebbian_common as hc

from neuroplastic.hebbian.learners import HebbianCNNBP
from neuroplastic.trainer import fit, seed_everything


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="softhebb")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--root", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--counts", default="all,1,10,100,1000")
    ap.add_argument("--min-steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-train", type=int, default=None, help="first N training images only (dry runs)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="evaluate validation and test every N epochs (0: only after the last) and record the curve")
    ap.add_argument("--ckpt-dir", default=None,
                    help="checkpoint after every epoch under DIR/<dataset>_<preset>_s<seed>_<count>/ and resume from it")
    ap.add_argument("--progress", action="store_true", help="progress bar over each epoch's steps")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    records: list[dict] = []
    for seed in (int(s) for s in a.seeds.split(",")):
        bundle = hc.prepare(a.dataset, a.root, seed, a.device, limit_train=a.limit_train)
        for c in a.counts.split(","):
            n = None if c == "all" else int(c)
            b = bundle
            if n is not None:
                b = dataclasses.replace(bundle, train=bundle.train.subset(
                    hc.per_class_subset(bundle.train.y.cpu(), n, seed).to(bundle.train.y.device)))
            steps = -(-len(b.train) // a.batch_size)
            epochs = a.epochs if n is None else max(a.epochs, -(-a.min_steps // steps))
            seed_everything(seed)
            params = {"preset": a.preset, "width": a.width}
            m = HebbianCNNBP(in_shape=b.in_shape, n_classes=b.n_classes, seed=seed,
                             **params).to(a.device)
            t0 = time.perf_counter()
            # the record is the final epoch's accuracy: evaluate only then (tiny label sets run hundreds of
            # 1-2-step epochs, and one CIFAR-10 evaluation costs more than such an epoch)
            ckpt = None if a.ckpt_dir is None else Path(a.ckpt_dir) / f"{a.dataset}_{a.preset}_s{seed}_{c}"
            res = fit(m, b, epochs=epochs, batch_size=a.batch_size, seed=seed, progress=a.progress,
                      eval_every=a.eval_every or epochs, checkpoint_dir=ckpt, resume=ckpt is not None)
            rec = hc.base_record("hebbian-cnn-bp", a.dataset, a.preset, seed, a.batch_size, params, a.device)
            rec.update(epochs=epochs, test_acc=res.final.get("test_acc"), val_acc=res.final.get("val_acc"),
                       labels_per_class=n if n is not None else "all", n_labels=len(b.train),
                       train_seconds=round(res.train_seconds, 1), wall_seconds=round(time.perf_counter() - t0, 1),
                       n_params=m.n_params())
            if a.eval_every:
                rec["history"] = [{k: h[k] for k in ("epoch", "seconds", "train_loss", "val_acc", "test_acc") if k in h}
                                  for h in res.history]
            print(f"[{time.strftime('%H:%M:%S')}] bp {a.dataset} {a.preset} s{seed} labels/class={rec['labels_per_class']}"
                  f" epochs={epochs}: test {rec['test_acc']:.4f} ({rec['train_seconds']}s)", flush=True)
            records.append(rec)
            hc.write(records, a.out)


if __name__ == "__main__":
    main()
