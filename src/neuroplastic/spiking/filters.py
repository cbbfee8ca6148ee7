r"""Synaptic filters of spike trains (stateful modules with ``reset()``).

Lin & Huang (2024, arXiv 2310.14621, Phys. Rev. E 110:024306) read out and feed back *filtered* spikes
:math:`r_t`, with :math:`\Delta t = 2` ms:

* single exponential (decay :math:`\tau_d`): :math:`r_t = e^{-\Delta t/\tau_d} r_{t-1} + (\Delta t/\tau_d)\,s_t`
* double exponential (rise :math:`\tau_r = 2` ms, decay :math:`\tau_d = 30` ms):
  :math:`h_t = e^{-\Delta t/\tau_r} h_{t-1} + s_t`, :math:`r_t = e^{-\Delta t/\tau_d} r_{t-1} +
  (1-e^{-\Delta t/\tau_d})\,h_t`.

Both accept one step ``[N, ...]`` via :meth:`step` or a sequence ``[T, N, ...]`` via ``forward``.
State is a non-persistent registered buffer (moves with ``.to()``, not saved), cleared by :meth:`reset`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["DoubleExpFilter", "SingleExpFilter", "reset_net"]


def _check_pos(**kw: float) -> None:
    for k, v in kw.items():
        if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
            raise ValueError(f"{k} must be a positive finite number, got {v!r}")


def reset_net(net: nn.Module) -> None:
    """Call ``reset()`` on every submodule of ``net`` that has one (SpikingJelly's ``reset_net``)."""
    for m in net.modules():
        if m is not net and callable(getattr(m, "reset", None)):
            m.reset()


class SingleExpFilter(nn.Module):
    r""":math:`r_t = e^{-\Delta t/\tau_d} r_{t-1} + (\Delta t/\tau_d)\,s_t` (Lin & Huang 2024).

    >>> f = SingleExpFilter(tau_d=30.0, dt=2.0)
    >>> f(torch.tensor([[1.0], [0.0]])).squeeze(1)
    tensor([0.0667, 0.0624])
    """

    def __init__(self, tau_d: float = 30.0, dt: float = 2.0) -> None:
        super().__init__()
        _check_pos(tau_d=tau_d, dt=dt)
        self.tau_d, self.dt = float(tau_d), float(dt)
        self.decay = math.exp(-dt / tau_d)
        self.register_buffer("r", None, persistent=False)

    def reset(self) -> None:
        """Forget the filter state."""
        self.r = None

    def step(self, s: torch.Tensor) -> torch.Tensor:
        """One step: returns :math:`r_t` for spikes ``s`` ``[N, ...]``."""
        r = torch.zeros_like(s) if self.r is None else self.r
        self.r = self.decay * r + (self.dt / self.tau_d) * s
        return self.r

    def forward(self, s_seq: torch.Tensor) -> torch.Tensor:
        """Filter a sequence ``[T, N, ...]`` (continuing from the current state); returns ``[T, N, ...]``."""
        return torch.stack([self.step(s) for s in s_seq])


class DoubleExpFilter(nn.Module):
    r""":math:`h_t = e^{-\Delta t/\tau_r} h_{t-1} + s_t`,
    :math:`r_t = e^{-\Delta t/\tau_d} r_{t-1} + (1-e^{-\Delta t/\tau_d})\,h_t`
    (Lin & Huang 2024: :math:`\tau_r = 2` ms, :math:`\tau_d = 30` ms, :math:`\Delta t = 2` ms).

    >>> f = DoubleExpFilter()
    >>> round(float(f(torch.tensor([[1.0]]))[0, 0]), 4)
    0.0645
    """

    def __init__(self, tau_r: float = 2.0, tau_d: float = 30.0, dt: float = 2.0) -> None:
        super().__init__()
        _check_pos(tau_r=tau_r, tau_d=tau_d, dt=dt)
        self.tau_r, self.tau_d, self.dt = float(tau_r), float(tau_d), float(dt)
        self.rise = math.exp(-dt / tau_r)
        self.decay = math.exp(-dt / tau_d)
        self.register_buffer("h", None, persistent=False)
        self.register_buffer("r", None, persistent=False)

    def reset(self) -> None:
        """Forget the filter state."""
        self.h = None
        self.r = None

    def step(self, s: torch.Tensor) -> torch.Tensor:
        """One step: returns :math:`r_t` for spikes ``s`` ``[N, ...]``."""
        h = torch.zeros_like(s) if self.h is None else self.h
        r = torch.zeros_like(s) if self.r is None else self.r
        self.h = self.rise * h + s
        self.r = self.decay * r + (1.0 - self.decay) * self.h
        return self.r

    def forward(self, s_seq: torch.Tensor) -> torch.Tensor:
        """Filter a sequence ``[T, N, ...]`` (continuing from the current state); returns ``[T, N, ...]``."""
        return torch.stack([self.step(s) for s in s_seq])
