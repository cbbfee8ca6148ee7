"""What the paper's Θ rule does: ‖Θ‖ and angle(Θ, W) over training for DLL variants on one net.

The paper's rule ΔΘ = −η δ ξᵀ with ξ = Θᵀδ is gradient descent on ½‖ξ‖²: its fixed point is Θδ = 0
(Θ decays in the span of the errors), not Θ = W. With the reference code's init (Θ ~ N(0, 1)) and
η_Θ = η_W/10, Θ barely moves in a short run, so DLL ≈ DLL-FA. This probe makes the effect visible:
Θ at W's scale and η_Θ = η_W (where the decay has room to act), the flipped sign (the reference code's),
and FA on the same net. Final-epoch test accuracy; the curves carry ‖Θ‖ and the angles per epoch.

    python benchmarks/dll_theta_probe.py --dataset mnist --limit-train 10000 --epochs 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from neuroplastic import experiment, learners

VARIANTS = [
    ("dll (paper defaults)", "dll", {}),
    ("dll-fa (paper defaults)", "dll-fa", {}),
    ("dll, η_Θ = η_W", "dll", {"theta_lr_scale": 1.0}),
    ("dll, Θ at W scale, η_Θ = η_W", "dll", {"theta_std": "w", "theta_lr_scale": 1.0}),
    ("dll-fa, Θ at W scale", "dll-fa", {"theta_std": "w"}),
    ("dll flipped sign (reference code), Θ at W scale, η_Θ = η_W", "dll",
     {"theta_std": "w", "theta_lr_scale": 1.0, "theta_rule": "flipped"}),
    ("fa (foundation), same net", "fa", None),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--preset", default="mlp-mnist")
    ap.add_argument("--limit-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/dll_theta_probe.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from neuroplastic.dll.learners import PRESETS

    p = PRESETS[a.preset]
    records = []
    for label, learner, params in VARIANTS:
        if params is None:  # foundation learner on the same net
            if p["net"] != "mlp":
                continue
            preset, params = "mlp", {"hidden": list(p["hidden"]), "act": p["act"], "lr": p["lr"],
                                     "schedule": "linear"}
        else:
            preset = a.preset
        cfg = {"learner": learner, "dataset": a.dataset, "preset": preset, "params": params,
               "epochs": a.epochs, "batch_size": p["batch_size"], "seed": a.seed, "limit_train": a.limit_train,
               "deterministic": False}
        out = experiment.run(cfg, progress=False)
        rec = experiment.record(out, command="python " + " ".join(sys.argv))
        rec.update({"variant": label, "dll_preset": a.preset, "probe": True, "curve": out.history})
        records.append(rec)
        last = out.history[-1]
        norms = [f"{last[k]:.3g}" for k in sorted(last) if k.startswith("theta_norm_")]
        first = out.history[0]
        norms0 = [f"{first[k]:.3g}" for k in sorted(first) if k.startswith("theta_norm_")]
        print(f"{label:60s} test {100 * rec['test_acc']:.2f}  angle {last.get('theta_angle_mean', float('nan')):.1f}"
              f"  |Θ| ep1 {norms0} -> {norms}", flush=True)
        experiment.write_json_atomic(records, Path(a.out))
    learners.names()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
