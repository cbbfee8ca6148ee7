"""CPU kernel timings behind two speed leads (benchmark script, not a test).

1. Hebbian correlation: for the three SoftHebb layers at the CIFAR-10 shapes (batch 10), the forward
   convolution (NCHW and channels-last) against the ways :func:`~neuroplastic.hebbian.layers.conv_correlation`
   can form :math:`\\sum p\\,x_{\\mathrm{patch}}`: patches + one GEMM, or oneDNN's weight gradient; and the
   parts of the first: gathering the patches in the weight's ``(c, i, j)`` order from NCHW input (the code
   before commit 23c03bb) or in ``(i, j, c)`` order from channels-last input (:func:`patch_rows` now), and
   the GEMM alone.
2. Lv et al.'s CIFAR-10 CNN (``lv_cnn_cifar``): ``max_pool2d`` on its first activation and a whole backprop step
   (batch 64, Adam), in NCHW and in channels-last memory layout.

    python benchmarks/cpu_kernel_leads.py --threads 1,2 --out benchmarks/results/cpu_kernel_leads.json
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from neuroplastic import experiment
from neuroplastic.hebbian.layers import patch_rows
from neuroplastic.nn.archs import lv_cnn_cifar


def ms(f, *args, n: int = 15) -> float:
    """Mean milliseconds of ``f(*args)`` over ``n`` calls after one warm-up call."""
    f(*args)
    t = time.perf_counter()
    for _ in range(n):
        f(*args)
    return round((time.perf_counter() - t) / n * 1e3, 2)


def gather_cij(x: torch.Tensor, k: int) -> torch.Tensor:
    """Patch rows in the contiguous weight's ``(c, i, j)`` order, from NCHW input (the code before 23c03bb)."""
    return x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * k * k)


def patches_gemm(rows: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The correlation as :func:`conv_correlation` forms it now: channels-last patches, then one GEMM."""
    return rows.t() @ patch_rows(x, k, k)


def cnn_step_ms(channels_last: bool) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = lv_cnn_cifar((3, 32, 32), 10).to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 5e-5)
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (64,))

    def step():
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ms(step, n=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    recs = []
    for th in (int(t) for t in a.threads.split(",")):
        torch.set_num_threads(th)
        base = {**experiment.environment(), "status": "timing", "command": "python benchmarks/cpu_kernel_leads.py "
                f"--threads {a.threads} --out {a.out}"}
        for cin, cout, hw, k in ((3, 96, 32, 5), (96, 384, 16, 3), (384, 1536, 8, 3)):
            x = torch.randn(10, cin, hw + k - 1, hw + k - 1)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            w = torch.randn(cout, cin, k, k)
            w_cl = w.contiguous(memory_format=torch.channels_last)
            p = torch.randn(10, cout, hw, hw)
            rows = p.permute(0, 2, 3, 1).reshape(-1, cout)
            cols = patch_rows(x_cl, k, k)
            recs.append({**base, "learner": "hebbian-cnn", "dataset": "cifar-10", "preset": f"softhebb {cin}->{cout}",
                         "kernel": "correlation", "forward_ms": ms(F.conv2d, x, w),
                         "forward_cl_ms": ms(F.conv2d, x_cl, w_cl),
                         "patches_gemm_ms": ms(patches_gemm, rows, x_cl, k),
                         "onednn_wgrad_ms": ms(torch.nn.grad.conv2d_weight, x, w.shape, p),
                         "gather_cij_nchw_ms": ms(gather_cij, x, k),
                         "gather_ijc_cl_ms": ms(patch_rows, x_cl, k, k),
                         "gemm_ms": ms(torch.mm, rows.t(), cols),
                         "table_keys": ["kernel", "forward_ms", "forward_cl_ms", "patches_gemm_ms", "onednn_wgrad_ms",
                                        "gather_cij_nchw_ms", "gather_ijc_cl_ms", "gemm_ms"]})
        a1 = torch.tanh(torch.randn(64, 64, 32, 32))
        a1_cl = a1.contiguous(memory_format=torch.channels_last)
        recs.append({**base, "learner": "bp", "dataset": "cifar-10", "preset": "lv_cnn_cifar", "kernel": "max_pool2d",
                     "nchw_ms": ms(F.max_pool2d, a1, 2),
                     "channels_last_ms": ms(F.max_pool2d, a1_cl, 2),
                     "table_keys": ["kernel", "nchw_ms", "channels_last_ms"]})
        recs.append({**base, "learner": "bp", "dataset": "cifar-10", "preset": "lv_cnn_cifar", "kernel": "train step",
                     "nchw_ms": cnn_step_ms(False), "channels_last_ms": cnn_step_ms(True),
                     "table_keys": ["kernel", "nchw_ms", "channels_last_ms"]})
        print(recs[-5:], flush=True)
    experiment.write_json_atomic(recs, a.out)


if __name__ == "__main__":
    main()
