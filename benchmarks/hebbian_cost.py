"""Cost of the Hebbian update against a plain forward pass, measured in one process (benchmark, not a test).

The unsupervised step (forward + local rule + weight update) and a plain forward pass (no plasticity,
eval-mode BN) run on the same real images at the same batch size, in alternating blocks of ``--block``
steps so that any change of machine load hits both equally. Reports seconds per step of each, their ratio
(the issue's target: Hebbian epoch ≤ 2× forward), and the Hebbian epoch extrapolated to the training set.

    python benchmarks/hebbian_cost.py --dataset cifar-10 --presets softhebb,optimal --root /work/shared/data \
        --threads 2 --out benchmarks/results/hebbian_cost.json

``--update-dtypes float32,bfloat16`` measures each precision of the update's correlation product
(``HebbianCNN(update_dtype=...)``) in turn; every record names the CPU's vector instruction set and whether it
has bfloat16 arithmetic (``cpu_isa``, ``cpu_bf16``), on which the bfloat16 timing depends.

``--profile-steps N`` adds, per preset, the top ops of the Hebbian step by self CPU time per step
(``torch.profiler`` over N steps of each kind), beside the same op's time in the forward step.
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


def setup(preset: str, bundle, width: float, seed: int = 0, update_dtype: str | None = None):
    """A configured learner with its whitening fitted, the batch size, the training images and a shuffled order."""
    bs = preset_info(preset).batch_size
    learner = HebbianCNN(in_shape=bundle.in_shape, n_classes=bundle.n_classes, seed=seed, preset=preset,
                         width=width, update_dtype=update_dtype)
    n = len(bundle.train)
    learner.configure(1, (n + bs - 1) // bs)
    x = bundle.train.x
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if learner.use_zca:  # fit the whitening first (it is part of the epoch, but not per-step cost)
        learner.train()
        while not bool(learner.zca_fitted):
            learner.train_step(x[order[:bs]], None)
            learner._flush_zca()
    return learner, bs, x, order


def hebbian_steps(learner, x, order, bs: int, start: int, steps: int) -> None:
    """``steps`` unsupervised steps on batches ``start, start+1, ...`` of ``order``."""
    learner.train()
    for i in range(start, start + steps):
        learner.train_step(x[order[i * bs:(i + 1) * bs]], None)


def forward_steps(learner, x, order, bs: int, start: int, steps: int) -> None:
    """``steps`` plain forward passes (no plasticity, eval-mode BN) on the same batches."""
    learner.eval()
    learner.net.set_plastic(False)
    with torch.no_grad():
        for i in range(start, start + steps):
            learner.net(learner.whiten(x[order[i * bs:(i + 1) * bs]]))


def measure(preset: str, bundle, rounds: int, block: int, width: float, seed: int = 0,
            update_dtype: str | None = None) -> dict:
    """Alternate ``rounds`` blocks of ``block`` Hebbian steps and ``block`` forward steps; seconds per step."""
    learner, bs, x, order = setup(preset, bundle, width, seed, update_dtype)
    n = len(bundle.train)
    hebb = fwd = 0.0
    for r in range(rounds):
        t0 = time.perf_counter()
        hebbian_steps(learner, x, order, bs, r * block, block)
        hebb += time.perf_counter() - t0
        t0 = time.perf_counter()
        forward_steps(learner, x, order, bs, r * block, block)
        fwd += time.perf_counter() - t0
    steps = rounds * block
    h, f = hebb / steps, fwd / steps
    return {"preset": preset, "batch_size": bs, "width": width, "steps_timed": steps,
            "hebbian_step_s": round(h, 4), "forward_step_s": round(f, 4), "hebb_over_forward": round(h / f, 3),
            "hebbian_epoch_s_est": round(h * n / bs, 1), "n_train": n}


def profile(preset: str, bundle, steps: int, width: float, top: int = 12, seed: int = 0,
            update_dtype: str | None = None) -> list[dict]:
    """Self CPU milliseconds per step of each torch op (``torch.profiler``) over ``steps`` Hebbian steps and the
    same ``steps`` batches as plain forward passes, for the ``top`` ops of the Hebbian step."""
    from torch.profiler import profile as torch_profile

    learner, bs, x, order = setup(preset, bundle, width, seed, update_dtype)
    hebbian_steps(learner, x, order, bs, 0, 3)  # warm-up
    per_step = {}
    for name, run in (("hebbian", hebbian_steps), ("forward", forward_steps)):
        with torch_profile() as prof:
            run(learner, x, order, bs, 3, steps)
        per_step[name] = {e.key: (e.self_cpu_time_total / 1e3 / steps, e.count / steps) for e in prof.key_averages()}
    ops = sorted(per_step["hebbian"].items(), key=lambda kv: -kv[1][0])[:top]
    return [{"op": op, "hebbian_ms_per_step": round(ms, 2), "calls_per_hebbian_step": round(calls, 2),
             "forward_ms_per_step": round(per_step["forward"].get(op, (0.0, 0))[0], 2)} for op, (ms, calls) in ops]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar-10")
    ap.add_argument("--presets", default="softhebb,optimal")
    ap.add_argument("--root", default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--block", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="also profile this many steps of each kind; one record per op (top 12) in the output")
    ap.add_argument("--update-dtypes", default="float32",
                    help="comma-separated precisions of the update's product to measure (float32, bfloat16)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = hc.prepare(a.dataset, a.root, 0, "cpu")
    records = []
    hw = {"cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    for preset in a.presets.split(","):
        for dt in a.update_dtypes.split(","):
            m = measure(preset, bundle, a.rounds, a.block, a.width, update_dtype=dt)
            params = {"preset": preset, "width": a.width, "update_dtype": dt}
            rec = hc.base_record("hebbian-cnn", a.dataset, preset, 0, m["batch_size"], params)
            rec.update(m, **hw, status="timing",
                       table_keys=["update_dtype", "batch_size", "steps_timed", "hebbian_step_s", "forward_step_s",
                                   "hebb_over_forward", "hebbian_epoch_s_est"], update_dtype=dt)
            print(f"[{time.strftime('%H:%M:%S')}] {preset} ({dt} update): Hebbian step {m['hebbian_step_s']:.3f}s, "
                  f"forward {m['forward_step_s']:.3f}s, ratio {m['hebb_over_forward']:.2f}", flush=True)
            records.append(rec)
            rows = profile(preset, bundle, a.profile_steps, a.width, update_dtype=dt) if a.profile_steps else []
            for row in rows:
                prec = hc.base_record("hebbian-cnn", a.dataset, preset, 0, m["batch_size"], params)
                prec.update(row, **hw, status="timing", steps_profiled=a.profile_steps, update_dtype=dt,
                            table_keys=["update_dtype", "op", "hebbian_ms_per_step", "calls_per_hebbian_step",
                                        "forward_ms_per_step"])
                records.append(prec)
            hc.write(records, a.out)


if __name__ == "__main__":
    main()
