"""Time per simulation step (forward + backward) of the spiking network against N, mode rank vs full rank.

For each N in --sizes the mode network (P = 3, O(NP) recurrence) and the full-rank network (N² weights)
run the same fast BPTT loop on the same inputs in the same process; the time per step is the median
over --repeats of (forward + backward of T steps) / T. The recurrent part is isolated by feeding the
input currents directly (the input projection W_in x is the same for both and excluded).

    python benchmarks/spiking_scaling.py --threads 2 --out benchmarks/results/spiking_scaling.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from neuroplastic import experiment
from neuroplastic.spiking.mode_rnn import LIFRecurrence, ModeRNN


def time_step(net: ModeRNN, X: torch.Tensor, repeats: int) -> float:
    """Median seconds per step of forward + backward through :class:`LIFRecurrence`."""
    ts = []
    for i in range(repeats + 1):
        Xg = X.detach().requires_grad_(True)
        net.zero_grad(set_to_none=True)
        if X.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if net.rank == "full":
            r, _ = LIFRecurrence.apply(Xg, None, None, None, net.w_rec, net._consts())
        else:
            r, _ = LIFRecurrence.apply(Xg, net.xi_in, net.lam, net.xi_out, None, net._consts())
        r.amax(0).sum().backward()
        if X.is_cuda:
            torch.cuda.synchronize()
        if i > 0:  # first call warms up
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / X.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--modes", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for N in a.sizes:
        g = torch.Generator().manual_seed(N)
        X = (torch.randn(a.steps, a.batch, N, generator=g) * 0.5 + 0.3).to(a.device)
        row = {"N": N}
        for rank in ("mode", "full"):
            net = ModeRNN(8, N, a.modes, rank=rank, generator=torch.Generator().manual_seed(0)).to(a.device)
            row[f"{rank}_ms_per_step"] = round(time_step(net, X, a.repeats) * 1e3, 4)
            row[f"{rank}_recurrent_params"] = net.n_recurrent_params()
        row["full_over_mode"] = round(row["full_ms_per_step"] / row["mode_ms_per_step"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for prev, cur in itertools.pairwise(rows):
        f = cur["N"] / prev["N"]
        cur["mode_growth_vs_prev"] = round(cur["mode_ms_per_step"] / prev["mode_ms_per_step"], 2)
        cur["full_growth_vs_prev"] = round(cur["full_ms_per_step"] / prev["full_ms_per_step"], 2)
        cur["N_ratio_vs_prev"] = f
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    rec = {"benchmark": "spiking_scaling", "batch": a.batch, "steps": a.steps, "modes": a.modes,
           "threads": a.threads, "device": a.device, "rows": rows, "loadavg_at_end": load,
           **experiment.environment(a.device), "command": "python " + " ".join(sys.argv)}
    print(json.dumps(rec, indent=1))
    if a.out:
        experiment.write_json_atomic([rec], a.out)


if __name__ == "__main__":
    main()
