r"""Leaky integrate-and-fire neuron with a current-based synapse (stateful module with ``reset()``).

Discrete-time dynamics of Lin & Huang (2024, arXiv 2310.14621, Phys. Rev. E 110:024306), time step
:math:`\Delta t`, with :math:`\alpha = e^{-\Delta t/\tau_s}`, :math:`\beta = e^{-\Delta t/\tau_m}`:

.. math::
    I_t &= \alpha I_{t-1} + x_t \\
    U_t &= m_t\,\big(\beta U_{t-1} + (1-\beta) I_t\big)\,(1 - s_{t-1}) \\
    s_t &= H(U_t - \vartheta)

where :math:`x_t` is the input current (e.g. :math:`W_\text{in}x_t + W r_{t-1}`) and :math:`m_t = 0` during
the absolute refractory period: after a spike at step :math:`t` the membrane is held at 0 for
:math:`n_\text{ref} = \mathrm{round}(t_\text{ref}/\Delta t)` steps (:math:`t+1..t+n_\text{ref}`).
Defaults (the paper's): :math:`\Delta t = 2` ms, :math:`\tau_s = 10` ms, :math:`\tau_m = 20` ms,
:math:`\vartheta = 1`, reset to 0, :math:`t_\text{ref} = 10` ms, fast-sigmoid surrogate with slope 25.
``tau_syn=0`` removes the synaptic filter (:math:`I_t = x_t`). ``reset="subtract"`` replaces the reset to
zero by :math:`U_{t-1} \to U_{t-1} - \vartheta s_{t-1}`.

The reset path is detached by default (``detach_reset``): with a refractory period of at least one step
it carries no gradient anyway, because :math:`m_t = 0` whenever :math:`s_{t-1} = 1`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .surrogate import DEFAULT_SCALE, SURROGATES, spike

__all__ = ["LIF", "lif_first_spike_step"]


class LIF(nn.Module):
    """LIF neuron with current synapse, threshold, reset and absolute refractory period (see module doc).

    ``step(x)`` advances one step with input current ``x`` ``[N, ...]`` and returns spikes; ``forward``
    runs a sequence ``[T, N, ...]``. State (``I``, ``U``, ``s``, refractory counter) lives in
    non-persistent buffers and is cleared by :meth:`reset`.

    >>> lif = LIF(tau_syn=0.0)
    >>> lif(torch.full((12, 1), 2.0)).flatten().tolist()[:8]
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, tau_syn: float = 10.0, tau_mem: float = 20.0, threshold: float = 1.0,
                 refractory: float = 10.0, dt: float = 2.0, reset: str = "zero",
                 surrogate: str = "fast_sigmoid", slope: float | None = None, detach_reset: bool = True) -> None:
        super().__init__()
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be positive, got {dt!r}")
        if not (tau_mem > 0):
            raise ValueError(f"tau_mem must be positive, got {tau_mem!r}")
        if not (tau_syn >= 0):
            raise ValueError(f"tau_syn must be >= 0 (0 = no synaptic filter), got {tau_syn!r}")
        if not (refractory >= 0):
            raise ValueError(f"refractory must be >= 0 ms, got {refractory!r}")
        if not (threshold > 0):
            raise ValueError(f"threshold must be positive, got {threshold!r}")
        if reset not in ("zero", "subtract"):
            raise ValueError(f"reset must be 'zero' or 'subtract', got {reset!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; allowed: {', '.join(SURROGATES)}")
        self.dt, self.tau_syn, self.tau_mem = float(dt), float(tau_syn), float(tau_mem)
        self.threshold, self.reset_mode = float(threshold), reset
        self.alpha = math.exp(-dt / tau_syn) if tau_syn > 0 else 0.0
        self.beta = math.exp(-dt / tau_mem)
        self.n_ref = round(refractory / dt)
        self.surrogate = surrogate
        self.slope = float(DEFAULT_SCALE[surrogate] if slope is None else slope)
        self.detach_reset = bool(detach_reset)
        for name in ("I", "U", "s", "ref"):
            self.register_buffer(name, None, persistent=False)

    def reset(self) -> None:
        """Clear the state (the next step starts from :math:`I=U=s=0`, not refractory)."""
        self.I = self.U = self.s = self.ref = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Advance one step with input current ``x`` ``[N, ...]``; returns spikes ``s_t`` (0/1 floats)."""
        if self.U is None:
            self.I = torch.zeros_like(x)
            self.U = torch.zeros_like(x)
            self.s = torch.zeros_like(x)
            self.ref = torch.zeros_like(x, dtype=torch.int32)
        s_prev = self.s.detach() if self.detach_reset else self.s
        I = self.alpha * self.I + x
        not_ref = (self.ref == 0).to(x.dtype)
        if self.reset_mode == "zero":
            U = not_ref * (self.beta * self.U + (1 - self.beta) * I) * (1 - s_prev)
        else:
            U = not_ref * (self.beta * (self.U - self.threshold * s_prev) + (1 - self.beta) * I)
        s = spike(U - self.threshold, self.surrogate, self.slope)
        fired = s.detach() > 0
        self.ref = torch.where(fired, torch.full_like(self.ref, self.n_ref), (self.ref - 1).clamp_min(0))
        self.I, self.U, self.s = I, U, s
        return s

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Run a sequence of input currents ``[T, N, ...]`` from the current state; returns spikes
        ``[T, N, ...]``."""
        return torch.stack([self.step(x) for x in x_seq])


def lif_first_spike_step(current: float, tau_syn: float = 10.0, tau_mem: float = 20.0, threshold: float = 1.0,
                         dt: float = 2.0, max_steps: int = 100000) -> int | None:
    r"""Closed-form step of the first spike (1-based) of :class:`LIF` driven by a constant current ``X``.

    Without synaptic filter (``tau_syn = 0``): :math:`U_t = X(1-\beta^t)`, so
    :math:`t^* = \lceil \ln(1-\vartheta/X)/\ln\beta \rceil` (no spike if :math:`X \le \vartheta`).
    With it, :math:`I_t = X(1-\alpha^t)/(1-\alpha)` and

    .. math:: U_t = \frac{(1-\beta)X}{1-\alpha}\Big[\frac{1-\beta^t}{1-\beta}
              - \alpha\frac{\alpha^t-\beta^t}{\alpha-\beta}\Big]

    (:math:`\alpha \ne \beta`), increasing in :math:`t`; :math:`t^*` is the first :math:`t` with
    :math:`U_t \ge \vartheta`. Returns ``None`` if the neuron never fires.
    """
    beta = math.exp(-dt / tau_mem)
    if tau_syn == 0:
        if current <= threshold:
            return None
        return max(1, math.ceil(math.log(1 - threshold / current) / math.log(beta) - 1e-9))
    alpha = math.exp(-dt / tau_syn)
    if abs(alpha - beta) < 1e-12:
        raise ValueError("closed form needs tau_syn != tau_mem")
    if current * 1.0 / (1 - alpha) <= threshold:  # U_inf = X/(1-alpha)
        return None
    for t in range(1, max_steps + 1):
        u = (1 - beta) * current / (1 - alpha) * ((1 - beta**t) / (1 - beta) - alpha * (alpha**t - beta**t) / (alpha - beta))
        if u >= threshold:
            return t
    return None
