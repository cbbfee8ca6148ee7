"""Cost of the Hebbian update against a plain forward pass, measured in one process (benchmark, not a test).

The unsupervised step (forward + local rule + weight update) and a plain forward pass (no plasticity,
eval-mode BN) run on the same real images at the same batch size, in alternating blocks of ``--block``
steps so that any change of machine load hits both equally. Reports seconds per step of each, their ratio
(the issue's target: Hebbian epoch ≤ 2× forward), and the Hebbian epoch extrapolated to the training set.

    python benchmarks/hebbian_cost.py --dataset cifar-10 --presets softhebb,optimal --root /work/shared/data \
        --threads 2 --out benchmarks/results/hebbian_cost.json
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
from neuroplastic.hebbian.models import preset_info


def measure(preset: str, bundle, rounds: int, block: int, width: float, seed: int = 0) -> dict:
    """Alternate ``rounds`` blocks of ``block`` Hebbian steps and ``block`` forward steps; seconds per step."""
    bs = preset_info(preset).batch_size
    learner = HebbianCNN(in_shape=bundle.in_shape, n_classes=bundle.n_classes, seed=seed, preset=preset,
                         width=width)
    n = len(bundle.train)
    learner.configure(1, (n + bs - 1) // bs)
    x = bundle.train.x
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if learner.use_zca:  # fit the whitening first (it is part of the epoch, but not per-step cost)
        learner.train()
        while not bool(learner.zca_fitted):
            learner.train_step(x[order[:bs]], None)
            learner._flush_zca()
    hebb = fwd = 0.0
    s = 0
    for _ in range(rounds):
        learner.train()
        t0 = time.perf_counter()
        for i in range(block):
            learner.train_step(x[order[(s + i) * bs:(s + i + 1) * bs]], None)
        hebb += time.perf_counter() - t0
        learner.eval()
        learner.net.set_plastic(False)
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(block):
                learner.net(learner.whiten(x[order[(s + i) * bs:(s + i + 1) * bs]]))
        fwd += time.perf_counter() - t0
        s += block
    steps = rounds * block
    h, f = hebb / steps, fwd / steps
    return {"preset": preset, "batch_size": bs, "width": width, "steps_timed": steps,
            "hebbian_step_s": round(h, 4), "forward_step_s": round(f, 4), "hebb_over_forward": round(h / f, 3),
            "hebbian_epoch_s_est": round(h * n / bs, 1), "n_train": n}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar-10")
    ap.add_argument("--presets", default="softhebb,optimal")
    ap.add_argument("--root", default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--block", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = hc.prepare(a.dataset, a.root, 0, "cpu")
    records = []
    for preset in a.presets.split(","):
        m = measure(preset, bundle, a.rounds, a.block, a.width)
        rec = hc.base_record("hebbian-cnn", a.dataset, preset, 0, m["batch_size"], {"preset": preset,
                                                                                   "width": a.width})
        rec.update(m, status="timing", table_keys=["batch_size", "steps_timed", "hebbian_step_s", "forward_step_s",
                                                   "hebb_over_forward", "hebbian_epoch_s_est"])
        print(f"[{time.strftime('%H:%M:%S')}] {preset}: Hebbian step {m['hebbian_step_s']:.3f}s, forward "
              f"{m['forward_step_s']:.3f}s, ratio {m['hebb_over_forward']:.2f}", flush=True)
        records.append(rec)
        hc.write(records, a.out)


if __name__ == "__main__":
    main()
