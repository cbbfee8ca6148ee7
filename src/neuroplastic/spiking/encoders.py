r"""Input encoders for spiking networks: Bernoulli / Poisson rate codes and constant current, seeded.

The rate codes are :func:`neuroplastic.data.transforms.rate_encode` (:math:`s_{t,i}\sim
\mathrm{Bernoulli}(x_i)`, the code of Lin & Huang 2024 for MNIST, T = 50 steps) and
:func:`~neuroplastic.data.transforms.poisson_encode` (:math:`p_i = x_i r_{\max}\Delta t`), re-exported here;
:func:`bernoulli_encode` draws the same code from 16-bit random integers (about 4× cheaper than
``torch.rand`` here; probabilities quantised to :math:`2^{-16}`), and :func:`constant_current` repeats the analog input for ``steps`` steps (the neuron integrates it as a current).
"""

from __future__ import annotations

import torch

from ..data.transforms import as_float, poisson_encode, rate_encode

__all__ = ["bernoulli_encode", "constant_current", "encode", "poisson_encode", "rate_encode"]


def constant_current(x: torch.Tensor, steps: int, gain: float = 1.0) -> torch.Tensor:
    r"""Constant-current code: :math:`c_{t,i} = g\,x_i` for :math:`t = 1..T`; returns ``[T, N, ...]``
    (a broadcast view, no copy).

    >>> constant_current(torch.tensor([[0.5]]), 3).flatten().tolist()
    [0.5, 0.5, 0.5]
    """
    if steps < 1:
        raise ValueError(f"constant_current: steps must be >= 1, got {steps}")
    x = as_float(x) * gain
    return x.unsqueeze(0).expand(steps, *x.shape)


def bernoulli_encode(x: torch.Tensor, steps: int, generator: torch.Generator | None = None,
                     out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""Bernoulli rate code from 16-bit uniform integers: :math:`s_{t,i} = [u_{t,i} < \mathrm{round}(2^{16}
    x_i)]`, :math:`u \sim \mathcal U\{0..2^{16}-1\}`, so :math:`P(s=1) = x_i` up to :math:`2^{-16}`
    (a pixel with :math:`x_i = 1` misses with probability :math:`2^{-16}`; :math:`x_i = 0` never fires).

    Four 16-bit draws come from one 64-bit random integer. ``x`` ``[N, ...]`` in [0, 1]; returns
    ``[T, N, ...]`` 0/1 of ``out_dtype`` on ``x``'s device (``generator`` on the same device).

    >>> bernoulli_encode(torch.tensor([[0.0, 1.0]]), 2, torch.Generator().manual_seed(0)).tolist()
    [[[0.0, 1.0]], [[0.0, 1.0]]]
    """
    if steps < 1:
        raise ValueError(f"bernoulli_encode: steps must be >= 1, got {steps}")
    x = as_float(x)
    if x.numel() and (bool((x < 0).any()) or bool((x > 1).any())):
        raise ValueError(f"bernoulli_encode: values must lie in [0, 1], found range "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")
    shape = (steps, *x.shape)
    n = x.numel() * steps
    n64 = (n + 3) // 4
    dev = generator.device if generator is not None else x.device
    u = torch.empty(n64, dtype=torch.int64, device=dev).random_(-2**63, None, generator=generator)
    u = u.view(torch.int16)[:n].reshape(shape).to(x.device)  # uniform on [-32768, 32767]
    th = (torch.round(x * 65536.0) - 32768.0).clamp_(-32768, 32767).to(torch.int16)
    out = torch.empty(shape, dtype=out_dtype, device=x.device)
    return torch.lt(u, th.unsqueeze(0), out=out) if out_dtype == torch.bool else out.copy_(u < th)


def encode(x: torch.Tensor, steps: int, code: str = "rate", generator: torch.Generator | None = None,
           ) -> torch.Tensor:
    """Encode ``x`` ``[N, ...]`` as ``[T, N, ...]`` with ``code`` = ``rate`` | ``bernoulli16`` | ``poisson`` | ``current``."""
    if code == "rate":
        return rate_encode(x, steps, generator)
    if code == "bernoulli16":
        return bernoulli_encode(x, steps, generator)
    if code == "poisson":
        return poisson_encode(x, steps, generator=generator)
    if code == "current":
        return constant_current(x, steps)
    raise ValueError(f"unknown input code {code!r}; allowed: rate, bernoulli16, poisson, current")
