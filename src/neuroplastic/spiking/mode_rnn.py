r"""Mode-based recurrent networks (Lin & Huang 2024, arXiv 2310.14621; Phys. Rev. E 110:024306).

The recurrent weight is a sum of :math:`P` modes,

.. math:: W = \xi_\text{in}\,\mathrm{diag}(\lambda)\,\xi_\text{out}^\top, \qquad
          \xi_\text{in}, \xi_\text{out} \in \mathbb{R}^{N\times P},\ \lambda\in\mathbb{R}^P,

trained end to end with :math:`W_\text{in}` and :math:`W_\text{out}` by BPTT with surrogate gradients.
The recurrent input is computed in :math:`O(NP)` per sample and step and never materialises :math:`W`:
:math:`R_t = \big((r_{t-1}\xi_\text{out}) \odot \lambda\big)\,\xi_\text{in}^\top`.

Per step (:math:`\Delta t = 2` ms; :math:`\alpha=e^{-\Delta t/\tau_s}`, :math:`\beta=e^{-\Delta t/\tau_m}`,
LIF of :mod:`neuroplastic.spiking.neurons`, double-exponential filter of :mod:`.filters`):

.. math::
    I_t &= \alpha I_{t-1} + W_\text{in} x_t + W r_{t-1}, \quad
    U_t = m_t(\beta U_{t-1} + (1-\beta) I_t)(1-s_{t-1}), \quad s_t = H(U_t-\vartheta) \\
    h_t &= e^{-\Delta t/\tau_r} h_{t-1} + s_t, \quad r_t = e^{-\Delta t/\tau_d} r_{t-1} + (1-e^{-\Delta t/\tau_d}) h_t

Variants (``rank``, ``neuron``): ``rank="full"`` trains a dense :math:`W` (:math:`N^2` parameters) instead;
``neuron="tanh"`` is the rate network with the same decomposition,
:math:`v_t = \beta v_{t-1} + (1-\beta)(W_\text{in}x_t + W r_{t-1})`, :math:`r_t = \tanh v_t`.

Two implementations of the spiking loop give the same numbers (tested): :meth:`ModeRNN.forward_reference`
(plain autograd through :class:`~.neurons.LIF` and :class:`~.filters.DoubleExpFilter` modules) and the
default fast path, :class:`LIFRecurrence`, an autograd Function with a hand-written BPTT (no autograd graph
per step; parameter gradients summed over all steps with one matmul each). The input projection over all
steps is one matmul, :math:`X = x_{1..T} W_\text{in}^\top`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .filters import DoubleExpFilter
from .neurons import LIF
from .surrogate import SURROGATES, pseudo_derivative

__all__ = ["LIFRecurrence", "ModeRNN", "mode_importance"]


class _Threads:
    """Context manager: run a block with ``n`` intra-op threads (CPU), then restore the previous count."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.prev = None

    def __enter__(self):
        if self.n is not None:
            self.prev = torch.get_num_threads()
            if self.prev != self.n:
                torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.prev is not None and self.prev != self.n:
            torch.set_num_threads(self.prev)
        return False


class LIFRecurrence(torch.autograd.Function):
    r"""Spiking recurrent loop with exact BPTT (surrogate :math:`\partial s/\partial U`), fast path.

    ``LIFRecurrence.apply(X, xi_in, lam, xi_out, w_rec, consts)`` with ``X`` ``[T, B, N]`` the input
    currents :math:`W_\text{in}x_t`; mode weights (``w_rec=None``) or a dense ``w_rec`` ``[N, N]``
    (``xi_in = lam = xi_out = None``). ``consts`` = ``(alpha, beta, rise, decay, theta, n_ref, surrogate,
    slope)``. Returns filtered activity ``r`` ``[T, B, N]`` and spikes ``s`` ``[T, B, N]`` (no gradient).

    Backward (adjoints, reset path detached as in :class:`~.neurons.LIF`, :math:`g_t = m_t(1-s_{t-1})`):

    .. math::
        \bar r_t &= \partial L/\partial r_t + e^{-\Delta t/\tau_d}\bar r_{t+1} + \bar R_{t+1} W, \quad
        \bar h_t = (1-e^{-\Delta t/\tau_d})\bar r_t + e^{-\Delta t/\tau_r}\bar h_{t+1} \\
        \bar U_t &= \bar h_t\,\sigma'(U_t-\vartheta) + \beta g_{t+1}\bar U_{t+1}, \quad
        \bar I_t = (1-\beta) g_t \bar U_t + \alpha \bar I_{t+1} = \bar X_t = \bar R_t

    and :math:`\bar\xi_\text{in} = \sum_t \bar R_t^\top q_t`, :math:`\bar\lambda = \sum_t (\bar R_t\xi_\text{in})
    \odot z_t`, :math:`\bar\xi_\text{out} = \sum_t r_{t-1}^\top (\bar R_t\xi_\text{in}\odot\lambda)` with
    :math:`z_t = r_{t-1}\xi_\text{out}`, :math:`q_t = z_t\odot\lambda`.
    """

    #: intra-op threads inside the time loop. The per-step tensors are small ([B, N]); splitting them over
    #: threads costs more than it gains, and on a shared machine a descheduled OpenMP worker stalls every
    #: op (measured here: 20 MNIST batches took 6.8 s with one thread, 44.6 s with two). The big input
    #: projection outside the loop still uses all threads. ``None`` leaves the setting alone.
    loop_threads: int | None = 1

    @staticmethod
    def forward(ctx, X, xi_in, lam, xi_out, w_rec, consts):
        with _Threads(LIFRecurrence.loop_threads):
            return LIFRecurrence._forward(ctx, X, xi_in, lam, xi_out, w_rec, consts)

    @staticmethod
    def backward(ctx, g_r_all, _g_s):
        with _Threads(LIFRecurrence.loop_threads):
            return LIFRecurrence._backward(ctx, g_r_all, _g_s)

    @staticmethod
    def _forward(ctx, X, xi_in, lam, xi_out, w_rec, consts):
        alpha, beta, rise, decay, theta, n_ref, _surrogate, _slope = consts
        T, B, N = X.shape
        dense = w_rec is not None
        # outputs and saved tensors, written in place step by step (working set of one step stays in cache)
        r_all = X.new_empty(T, B, N)
        s_all = X.new_empty(T, B, N)
        U_all = X.new_empty(T, B, N)
        gate_all = X.new_empty(T, B, N)
        z_all = None if dense else X.new_empty(T, B, xi_out.shape[1])
        I = X.new_zeros(B, N)
        U = X.new_zeros(B, N)
        h = X.new_zeros(B, N)
        r = X.new_zeros(B, N)
        s = X.new_zeros(B, N)
        ref = X.new_zeros(B, N)  # refractory counter (steps left, as floats)
        if dense:
            wT = w_rec.t().contiguous()
        else:
            # [N, P] with the P-major layout makes the skinny products cheap
            xi_out_c = xi_out.t().contiguous().t()
            lam_xi_in_T = (xi_in * lam).t().contiguous()  # [P, N]: (z * lam) @ xi_in^T = z @ lam_xi_in_T
        for t in range(T):
            I.mul_(alpha).add_(X[t])
            if dense:
                I.addmm_(r, wT)
            else:
                z = torch.mm(r, xi_out_c, out=z_all[t])
                I.addmm_(z, lam_xi_in_T)
            gate = torch.eq(ref, 0, out=gate_all[t])  # 0/1 floats: not refractory
            if n_ref == 0:
                gate.mul_(1 - s)
            U = torch.mul(U, beta, out=U_all[t]).add_(I, alpha=1 - beta).mul_(gate)
            s = torch.ge(U, theta, out=s_all[t])
            if n_ref > 0:  # a spike can only occur when ref == 0, so max(ref-1, 0) + n_ref*s is exact
                ref.sub_(1).clamp_(min=0).add_(s, alpha=float(n_ref))
            h.mul_(rise).add_(s)
            r = torch.mul(r, decay, out=r_all[t]).add_(h, alpha=1 - decay)
        ctx.consts = consts
        ctx.dense = dense
        empty = X.new_empty(0)
        ctx.save_for_backward(r_all, U_all, gate_all, z_all if z_all is not None else empty,
                              xi_in if xi_in is not None else empty, lam if lam is not None else empty,
                              xi_out if xi_out is not None else empty, w_rec if w_rec is not None else empty)
        ctx.mark_non_differentiable(s_all)
        return r_all, s_all

    @staticmethod
    def _backward(ctx, g_r_all, _g_s):
        alpha, beta, rise, decay, theta, _n_ref, surrogate, slope = ctx.consts
        r_all, U_all, gate_all, z_all, xi_in, lam, xi_out, w_rec = ctx.saved_tensors
        dense = ctx.dense
        T, B, N = r_all.shape
        gI_all = torch.empty_like(r_all)
        gr = r_all.new_zeros(B, N)  # adjoint of r_t (carried from t+1, then + dL/dr_t)
        gh = r_all.new_zeros(B, N)
        gU_carry = r_all.new_zeros(B, N)
        gI = r_all.new_zeros(B, N)
        sig = r_all.new_empty(B, N)
        if dense:
            w = w_rec.contiguous()
        else:
            xi_in_c = xi_in.t().contiguous().t()
            lam_xi_out_T = (xi_out * lam).t().contiguous()  # [P, N]
        for t in range(T - 1, -1, -1):
            if g_r_all is not None:
                gr.add_(g_r_all[t])
            gh.mul_(rise).add_(gr, alpha=1 - decay)
            if surrogate == "fast_sigmoid":  # 1/(1+k|U-theta|)^2, in place on one step
                torch.sub(U_all[t], theta, out=sig).abs_().mul_(slope).add_(1.0).square_().reciprocal_()
            else:
                sig = pseudo_derivative(U_all[t] - theta, surrogate, slope)
            gU = gU_carry.addcmul_(gh, sig)  # gU_t (gU_carry buffer reused)
            gate = gate_all[t]
            gI = torch.mul(gI, alpha, out=gI_all[t]).addcmul_(gU, gate, value=1 - beta)
            # adjoint reaching r_{t-1}: filter decay + recurrent input R_t = W r_{t-1}
            if dense:
                gr = torch.addmm(gr, gI, w, beta=decay)
            else:
                gr = torch.addmm(gr, gI @ xi_in_c, lam_xi_out_T, beta=decay)
            gU_carry = gU.mul_(gate).mul_(beta)
        gI_flat = gI_all.reshape(T * B, N)
        if dense:  # dL/dW = sum_t gI_t^T r_{t-1}
            g_w = (r_all[:-1].reshape(-1, N).t() @ gI_flat[B:]).t()
            return gI_all, None, None, None, g_w, None
        P = xi_in.shape[1]
        z = z_all.reshape(T * B, P)
        gq = gI_flat @ xi_in_c  # [TB, P]
        g_xi_in = ((z * lam).t() @ gI_flat).t()
        g_lam = (gq * z).sum(0)
        g_xi_out = ((gq[B:] * lam).t() @ r_all[:-1].reshape(-1, N)).t()
        return gI_all, g_xi_in, g_lam, g_xi_out, None, None


def mode_importance(xi_in: torch.Tensor, xi_out: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    r"""Mode importance of Lin & Huang (2024):
    :math:`\tau_\mu = \gamma(\|\xi_\text{in}^\mu\| + \|\xi_\text{out}^\mu\|) + |\lambda_\mu|` with
    :math:`\gamma = \sum_\mu|\lambda_\mu| / \sum_\mu(\|\xi_\text{in}^\mu\| + \|\xi_\text{out}^\mu\|)`.
    Returns ``[P]``."""
    norms = xi_in.norm(dim=0) + xi_out.norm(dim=0)
    gamma = lam.abs().sum() / norms.sum().clamp_min(1e-12)
    return gamma * norms + lam.abs()


class ModeRNN(nn.Module):
    r"""Recurrent network with mode-decomposed (or full-rank) recurrent weights; spiking or rate units.

    Args:
        n_in: input dimension :math:`N_\text{in}`. n_hidden: :math:`N` (paper: 200 MNIST, 100 tasks).
        n_modes: :math:`P` (``rank="mode"``). rank: ``mode`` | ``full``. neuron: ``lif`` | ``tanh``.
        dt, tau_syn, tau_mem, threshold, refractory, tau_rise, tau_decay, slope, surrogate: neuron and
            filter constants in ms (defaults: Lin & Huang 2024, see :mod:`.neurons` and :mod:`.filters`).
        fast: use :class:`LIFRecurrence` (else the autograd reference loop).
        generator: CPU generator for the initialisation :math:`W_\text{in}\sim\mathcal N(0,1/N_\text{in})`,
            :math:`\xi\sim\mathcal N(0,1/P)`, :math:`\lambda\sim\mathcal N(0,1/N)` (full rank:
            :math:`W\sim\mathcal N(0,1/N)`) (variances).

    ``forward(x_seq)``: inputs ``[T, B, n_in]`` → filtered activity ``r`` ``[T, B, N]`` and spikes
    ``[T, B, N]`` (``None`` for tanh units). Every call starts from the zero state.

    >>> net = ModeRNN(4, 16, 3, generator=torch.Generator().manual_seed(0))
    >>> r, s = net(torch.rand(10, 2, 4)); r.shape
    torch.Size([10, 2, 16])
    """

    def __init__(self, n_in: int, n_hidden: int = 200, n_modes: int = 3, rank: str = "mode", neuron: str = "lif",
                 dt: float = 2.0, tau_syn: float = 10.0, tau_mem: float = 20.0, threshold: float = 1.0,
                 refractory: float = 10.0, tau_rise: float = 2.0, tau_decay: float = 30.0, slope: float = 25.0,
                 surrogate: str = "fast_sigmoid", fast: bool = True, generator: torch.Generator | None = None,
                 ) -> None:
        super().__init__()
        if rank not in ("mode", "full"):
            raise ValueError(f"rank must be 'mode' or 'full', got {rank!r}")
        if neuron not in ("lif", "tanh"):
            raise ValueError(f"neuron must be 'lif' or 'tanh', got {neuron!r}")
        for k, v in (("n_in", n_in), ("n_hidden", n_hidden), ("n_modes", n_modes)):
            if not (isinstance(v, int) and 1 <= v <= 65536):
                raise ValueError(f"{k} must be an integer from 1 to 65536, got {v!r}")
        if rank == "mode" and n_modes > n_hidden:
            raise ValueError(f"n_modes={n_modes} exceeds n_hidden={n_hidden}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}; allowed: {', '.join(SURROGATES)}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.n_in, self.n_hidden, self.n_modes, self.rank, self.neuron = n_in, n_hidden, n_modes, rank, neuron
        self.fast = bool(fast)
        N, P = n_hidden, n_modes
        self.w_in = nn.Parameter(torch.randn(N, n_in, generator=g) / math.sqrt(n_in))
        if rank == "mode":
            self.xi_in = nn.Parameter(torch.randn(N, P, generator=g) / math.sqrt(P))
            self.xi_out = nn.Parameter(torch.randn(N, P, generator=g) / math.sqrt(P))
            self.lam = nn.Parameter(torch.randn(P, generator=g) / math.sqrt(N))
        else:
            self.w_rec = nn.Parameter(torch.randn(N, N, generator=g) / math.sqrt(N))
        self.lif = LIF(tau_syn, tau_mem, threshold, refractory, dt, "zero", surrogate, slope)
        self.filter = DoubleExpFilter(tau_rise, tau_decay, dt)
        self.dt, self.tau_mem = float(dt), float(tau_mem)

    # ------------------------------------------------------------------------------------------
    def n_recurrent_params(self) -> int:
        """Trainable recurrent parameters: :math:`2NP + P` (modes) or :math:`N^2` (full rank)."""
        N, P = self.n_hidden, self.n_modes
        return 2 * N * P + P if self.rank == "mode" else N * N

    def recurrent_weight(self) -> torch.Tensor:
        r"""The dense :math:`W` ``[N, N]`` (:math:`\xi_\text{in}\mathrm{diag}(\lambda)\xi_\text{out}^\top`);
        for analysis and tests only — the forward pass never builds it."""
        if self.rank == "full":
            return self.w_rec
        return (self.xi_in * self.lam) @ self.xi_out.t()

    def recurrent_input(self, r: torch.Tensor) -> torch.Tensor:
        r""":math:`W r` for a batch ``r`` ``[B, N]`` in :math:`O(NP)`: :math:`((r\xi_\text{out})\odot\lambda)
        \xi_\text{in}^\top` (dense :math:`r W^\top` for full rank)."""
        if self.rank == "full":
            return r @ self.w_rec.t()
        return ((r @ self.xi_out) * self.lam) @ self.xi_in.t()

    def _consts(self):
        lif = self.lif
        return (lif.alpha, lif.beta, self.filter.rise, self.filter.decay, lif.threshold, lif.n_ref,
                lif.surrogate, lif.slope)

    def _check(self, x_seq: torch.Tensor) -> None:
        if x_seq.dim() != 3 or x_seq.shape[2] != self.n_in:
            raise ValueError(f"ModeRNN expects inputs [T, B, {self.n_in}], got {tuple(x_seq.shape)}")

    def forward(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the network on ``x_seq`` ``[T, B, n_in]``; returns ``(r, spikes)``, each ``[T, B, N]``."""
        self._check(x_seq)
        if self.neuron == "tanh":
            return self._forward_rate(x_seq), None
        if not self.fast:
            return self.forward_reference(x_seq)
        X = nn.functional.linear(x_seq, self.w_in)  # one matmul over all steps
        if self.rank == "full":
            return LIFRecurrence.apply(X, None, None, None, self.w_rec, self._consts())
        return LIFRecurrence.apply(X, self.xi_in, self.lam, self.xi_out, None, self._consts())

    def forward_reference(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain autograd loop through the :class:`LIF` and :class:`DoubleExpFilter` modules."""
        self._check(x_seq)
        self.lif.reset()
        self.filter.reset()
        X = nn.functional.linear(x_seq, self.w_in)
        r = X.new_zeros(X.shape[1:])
        rs, ss = [], []
        for t in range(len(X)):
            s = self.lif.step(X[t] + self.recurrent_input(r))
            r = self.filter.step(s)
            rs.append(r)
            ss.append(s)
        self.lif.reset()
        self.filter.reset()
        return torch.stack(rs), torch.stack(ss).detach()

    def _forward_rate(self, x_seq: torch.Tensor) -> torch.Tensor:
        X = nn.functional.linear(x_seq, self.w_in)
        beta = self.lif.beta
        v = X.new_zeros(X.shape[1:])
        r = v
        rs = []
        for t in range(len(X)):
            v = beta * v + (1 - beta) * (X[t] + self.recurrent_input(r))
            r = torch.tanh(v)
            rs.append(r)
        return torch.stack(rs)

    def reset(self) -> None:
        """Clear the state of the reference-path neuron and filter modules."""
        self.lif.reset()
        self.filter.reset()

    # ------------------------------------------------------------------------------------------
    def mode_importance(self) -> torch.Tensor:
        """:func:`mode_importance` of this network's modes ``[P]`` (mode rank only)."""
        if self.rank != "mode":
            raise ValueError("mode importance is defined for rank='mode' only")
        return mode_importance(self.xi_in.detach(), self.xi_out.detach(), self.lam.detach())

    def project(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Projections of activity ``r`` ``[..., N]`` onto the modes: :math:`\xi_\text{in}^\top r` and
        :math:`\xi_\text{out}^\top r`, each ``[..., P]``."""
        if self.rank != "mode":
            raise ValueError("mode projections are defined for rank='mode' only")
        return r @ self.xi_in.detach(), r @ self.xi_out.detach()
