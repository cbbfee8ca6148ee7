r"""Boltzmann machines trained by the local correlation rule: RBMs (plain or centred; Bernoulli or Gaussian
visible units; CD-k, PCD, parallel tempering), machines with any connectivity (loops allowed), exact
enumeration for small models, and AIS / reverse AIS for large ones.

Energy of binary units :math:`x \in \{0,1\}^n`: :math:`E(x) = -\sum_i b_i x_i - \sum_{i<j} w_{ij} x_i x_j`,
:math:`p(x) = e^{-E(x)}/Z`. The log-likelihood gradient is local and Hebbian-like (Ackley, Hinton &
Sejnowski 1985):

.. math::
    \frac{\partial \log p(v)}{\partial w_{ij}} = \langle x_i x_j\rangle_\text{data} - \langle x_i x_j\rangle_\text{model},
    \qquad \frac{\partial \log p(v)}{\partial b_i} = \langle x_i\rangle_\text{data} - \langle x_i\rangle_\text{model}.

:func:`correlation_rule` is that rule, written once; the RBMs (bipartite, Hinton 2002; Tieleman 2008;
centred after Melchior et al. 2016) and the machine with loops (:class:`BoltzmannMachine`) all call it and
write :math:`-\Delta` into ``.grad`` so a ``torch.optim`` optimizer applies it. The model phase comes from a
sampler (:class:`PCD`, :class:`ParallelTempering`) whose chains are buffers, so they survive checkpoints.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

from . import native


def correlation_rule(x_data: torch.Tensor, y_data: torch.Tensor, x_model: torch.Tensor, y_model: torch.Tensor,
                     x_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The Boltzmann learning rule for a weight matrix between unit groups ``x`` and ``y``.

    .. math::
        \Delta W = \langle x y^\top\rangle_\text{data} - \langle x y^\top\rangle_\text{model},\quad
        \Delta b_x = \langle x\rangle_\text{data} - \langle x\rangle_\text{model},\quad
        \Delta b_y = \langle y\rangle_\text{data} - \langle y\rangle_\text{model}.

    Args: ``x_*`` ``[B, n_x]``, ``y_*`` ``[B', n_y]`` (samples or mean-field probabilities; data and model
    batches may differ in size). Returns ``(ΔW [n_x, n_y], Δb_x [n_x], Δb_y [n_y])`` — the ascent
    direction of the log-likelihood.

    ``x_offset`` :math:`\mu`: the rule on the centred units :math:`x - \mu` (Melchior et al. 2016), computed as
    :math:`\langle x y^\top\rangle_\text{data} - \langle x y^\top\rangle_\text{model} - \mu(\bar y_\text{data} -
    \bar y_\text{model})^\top` so that binary ``x`` stays binary: ``x_*`` given as ``bool`` tensors take
    :func:`binary_matmul`'s route (:math:`\Delta b_x` does not depend on :math:`\mu`).
    """
    if x_data.dim() != 2 or y_data.dim() != 2 or x_model.dim() != 2 or y_model.dim() != 2:
        raise ValueError("correlation_rule expects 2-D [batch, units] tensors")
    # both correlations in one matrix product: [x_d; x_m]^T [y_d / B; -y_m / B']
    y = torch.cat([y_data / len(x_data), y_model / (-len(x_model))])
    dy = y_data.mean(0) - y_model.mean(0)
    if x_data.dtype == torch.bool and x_model.dtype == torch.bool:
        dw = binary_matmul(torch.cat([x_data, x_model]), y, transpose=True)
        dx = x_data.sum(0, dtype=y.dtype) / len(x_data) - x_model.sum(0, dtype=y.dtype) / len(x_model)
    else:
        dw = torch.cat([x_data, x_model]).to(y.dtype).T @ y
        dx = x_data.mean(0, dtype=y.dtype) - x_model.mean(0, dtype=y.dtype)
    if x_offset is not None:
        dw.addr_(x_offset, dy, alpha=-1)
    return dw, dx, dy


# below this fraction of ones a 0/1 operand's product is a gather of rows on the CPU (measured crossover on AVX2
# cores: about 0.2 for [200, 784] x [784, 500])
_GATHER_BELOW = 0.17


def binary_matmul(x: torch.Tensor, w: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    r"""The product :math:`x w` (``transpose``: :math:`x^\top w`) of a 0/1 matrix ``x``, given as a ``bool`` tensor,
    with a real matrix ``w``: row :math:`n` of the result is :math:`\sum_{i: x_{ni}=1} w_i`. On the CPU, when fewer
    than ``_GATHER_BELOW`` of ``x``'s entries are ones (binarised MNIST: about 0.13), those sums are gathered
    (an embedding bag: nnz·H additions in place of N·D·H multiply-adds); otherwise, and on accelerators, it is a
    dense product. Both routes give the same numbers up to float rounding."""
    if x.dtype != torch.bool:
        raise ValueError(f"binary_matmul expects a bool tensor, got {x.dtype}")
    x = x.T if transpose else x
    n, d = x.shape
    counts = x.sum(1) if x.device.type == "cpu" else None
    if counts is not None and int(counts.sum()) < _GATHER_BELOW * n * d:  # decided before any copy
        idx = x.contiguous().view(-1).nonzero().squeeze(1).remainder_(d)
        offsets = torch.zeros(n + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=offsets[1:])
        return F.embedding_bag(idx, w, offsets, mode="sum", include_last_offset=True)
    return x.to(w.dtype) @ w


def binary_mask(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` as a ``bool`` tensor when every entry is 0 or 1 (for :func:`binary_matmul`), else ``None``."""
    return x != 0 if bool((x * (1 - x)).abs_().max() == 0) else None


def bernoulli_mask(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary samples :math:`s \\sim \\mathrm{Bernoulli}(p)` of ``p``'s shape as a ``bool`` tensor, drawn from
    ``generator`` (which may live on another device than ``p``): :math:`s = [u < p]`, :math:`u \\sim U[0, 1)`."""
    dev = generator.device if generator is not None else p.device
    u = torch.rand(p.shape, generator=generator, device=dev, dtype=p.dtype)
    return u.to(p.device) < p


def bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """:func:`bernoulli_mask` in ``p``'s dtype."""
    return bernoulli_mask(p, generator).to(p.dtype)


def _bipartite_parameters(m: nn.Module, kind: str, n_visible: int, n_hidden: int, init_std: float,
                          generator: torch.Generator | None) -> None:
    """The parameters every RBM has: ``W [n_visible, n_hidden] ~ N(0, init_std²)``, biases ``b``, ``c`` at zero."""
    if n_visible < 1 or n_hidden < 1:
        raise ValueError(f"{kind} needs n_visible, n_hidden >= 1, got {n_visible}, {n_hidden}")
    m.W = nn.Parameter(torch.randn(n_visible, n_hidden, generator=generator) * init_std)
    m.b = nn.Parameter(torch.zeros(n_visible))
    m.c = nn.Parameter(torch.zeros(n_hidden))


class RBM(nn.Module):
    r"""Bernoulli–Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002), optionally *centred*
    (Montavon & Müller 2012; Melchior, Fischer & Wiskott, JMLR 2016) by visible and hidden offsets
    :math:`\mu, \lambda`:

    .. math::
        E(v, h) = -(v-\mu)^\top b - (h-\lambda)^\top c - (v-\mu)^\top W (h-\lambda),\\
        p(h_j{=}1|v) = \sigma(c_j + (v-\mu)^\top W_{:j}),\quad p(v_i{=}1|h) = \sigma(b_i + W_{i:}(h-\lambda)),\\
        F(v) = -(v-\mu)^\top b + \lambda^\top a - \textstyle\sum_j \operatorname{softplus}(a_j),\quad
        a = c + W^\top (v-\mu).

    With :math:`\mu = \lambda = 0` (the default) it is the plain RBM. Offsets change the parametrisation, not
    the distribution: :meth:`set_offsets` moves ``b`` and ``c`` so that :math:`p(v, h)` stays the same.
    Shapes: ``W [n_visible, n_hidden]``; inputs ``[N, n_visible]`` in {0, 1} (or probabilities).
    """

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _bipartite_parameters(self, "RBM", n_visible, n_hidden, init_std, generator)
        self.register_buffer("mu", torch.zeros(n_visible))
        self.register_buffer("lam", torch.zeros(n_hidden))

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`a = c + W^\\top (v - \\mu)` for a batch ``[N, n_visible]`` → ``[N, n_hidden]`` (``v`` may be a
        ``bool`` tensor: :func:`binary_matmul`)."""
        c = torch.addmv(self.c, self.W.T, self.mu, alpha=-1)
        return binary_matmul(v, self.W).add_(c) if v.dtype == torch.bool else torch.addmm(c, v, self.W)

    def p_h(self, v: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """:math:`p(h=1|v) = \\sigma(\\beta a)` at inverse temperature ``beta``."""
        a = self.hidden_input(v)
        return torch.sigmoid(a if beta == 1.0 else beta * a)

    def p_v(self, h: torch.Tensor, beta: float = 1.0, base_bias: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`p(v=1|h) = \\sigma(\\beta (b + W(h-\\lambda)) + (1-\\beta) b_A)` (``b_A``: AIS base-rate biases)."""
        a = torch.addmm(self.b - self.W @ self.lam, h, self.W.T)
        if beta != 1.0:
            a = beta * a
        if base_bias is not None:
            a = a + (1.0 - beta) * base_bias
        return torch.sigmoid(a)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -(v-\\mu)^\\top b + \\lambda^\\top a - \\sum_j \\operatorname{softplus}(a_j)`, shape ``[N]``."""
        a = self.hidden_input(v)
        return -((v - self.mu) @ self.b) + a @ self.lam - F.softplus(a).sum(1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Joint energy :math:`E(v, h)` of the docstring, shape ``[N]``."""
        vc, hc = v - self.mu, h - self.lam
        return -(vc @ self.b) - (hc @ self.c) - ((vc @ self.W) * hc).sum(1)

    def uncentred(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The same machine without offsets: ``(W, b', c', K)`` with :math:`b' = b - W\lambda`,
        :math:`c' = c - W^\top\mu` and :math:`E(v,h) = -v^\top b' - h^\top c' - v^\top W h + K`,
        :math:`K = \mu^\top b + \lambda^\top c - \mu^\top W \lambda` (so :math:`\log Z = \log Z' - K`)."""
        W = self.W
        return (W, self.b - W @ self.lam, self.c - W.T @ self.mu,
                self.mu @ self.b + self.lam @ self.c - self.mu @ W @ self.lam)

    @torch.no_grad()
    def set_offsets(self, mu: torch.Tensor | None = None, lam: torch.Tensor | None = None) -> None:
        r"""Move the offsets to ``mu``/``lam`` keeping the distribution: :math:`b \leftarrow b + W(\lambda'-\lambda)`,
        :math:`c \leftarrow c + W^\top(\mu'-\mu)` (Melchior et al. 2016, eq. 28)."""
        if lam is not None:
            self.b += self.W @ (lam - self.lam)
            self.lam.copy_(lam)
        if mu is not None:
            self.c += self.W.T @ (mu - self.mu)
            self.mu.copy_(mu)

    def gibbs(self, v: torch.Tensor, k: int, generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` steps of block Gibbs sampling from ``v``; returns the last ``(v, p(h|v))``."""
        for _ in range(k):
            h = bernoulli(self.p_h(v), generator)
            v = bernoulli(self.p_v(h), generator)
        return v, self.p_h(v)

    @torch.no_grad()
    def accumulate_grad(self, v_data: torch.Tensor, v_model: torch.Tensor, ph_data: torch.Tensor | None = None,
                        ph_model: torch.Tensor | None = None) -> None:
        r"""Write ``-Δ`` of :func:`correlation_rule` on the centred units :math:`(v-\mu, p(h|v)-\lambda)`, data
        against model, into ``.grad`` (the centred gradient of Melchior et al. 2016; the plain CD/PCD rule when
        the offsets are zero). Hidden statistics are :math:`p(h|v)` (Rao-Blackwellised; Hinton 2010);
        ``ph_*`` may be given when already computed."""
        ph_data = self.p_h(v_data) if ph_data is None else ph_data
        ph_model = self.p_h(v_model) if ph_model is None else ph_model
        # -Δ is the rule with the two phases exchanged (no extra pass to negate)
        neg = correlation_rule(v_model, ph_model - self.lam, v_data, ph_data - self.lam, x_offset=self.mu)
        for p, d in zip((self.W, self.b, self.c), neg):
            p.grad = d


class GaussianRBM(nn.Module):
    r"""Gaussian–Bernoulli RBM for real-valued inputs (Hinton & Salakhutdinov 2006; the parametrisation of Cho,
    Ilin & Raiko 2011), visible variances :math:`\sigma_i^2 = e^{z_i}` fixed or learned:

    .. math::
        E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2\sigma_i^2} - c^\top h - \sum_{ij} \frac{v_i}{\sigma_i^2} W_{ij} h_j,\\
        p(h_j{=}1|v) = \sigma\big(c_j + \textstyle\sum_i W_{ij} v_i/\sigma_i^2\big),\quad
        p(v|h) = \mathcal N(b + W h, \operatorname{diag}\sigma^2),\\
        F(v) = \sum_i \frac{(v_i-b_i)^2}{2\sigma_i^2} - \textstyle\sum_j \operatorname{softplus}(c_j + (v/\sigma^2)^\top W_{:j}).

    ``W [n_visible, n_hidden]``, ``log_var [n_visible]`` (a parameter when ``learn_variance``, else a buffer).
    """

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.01, learn_variance: bool = False,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _bipartite_parameters(self, "GaussianRBM", n_visible, n_hidden, init_std, generator)
        self.learn_variance = learn_variance
        if learn_variance:
            self.log_var = nn.Parameter(torch.zeros(n_visible))
        else:
            self.register_buffer("log_var", torch.zeros(n_visible))

    def p_h(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`p(h=1|v)`, ``[N, n_hidden]``."""
        return torch.sigmoid(torch.addmm(self.c, v * torch.exp(-self.log_var), self.W))

    def mean_v(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathbb E[v|h] = b + W h`, ``[N, n_visible]``."""
        return torch.addmm(self.b, h, self.W.T)

    def sample_v(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """:math:`v \\sim \\mathcal N(b + Wh, \\sigma^2)`."""
        mean = self.mean_v(h)
        dev = generator.device if generator is not None else mean.device
        eps = torch.randn(mean.shape, generator=generator, device=dev, dtype=mean.dtype).to(mean.device)
        return mean + eps * torch.exp(0.5 * self.log_var)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v)` of the docstring, shape ``[N]``."""
        inv = torch.exp(-self.log_var)
        a = torch.addmm(self.c, v * inv, self.W)
        return (0.5 * (v - self.b) ** 2 * inv).sum(1) - F.softplus(a).sum(1)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Joint energy :math:`E(v, h)`, shape ``[N]``."""
        inv = torch.exp(-self.log_var)
        return (0.5 * (v - self.b) ** 2 * inv).sum(1) - h @ self.c - (((v * inv) @ self.W) * h).sum(1)

    def gibbs(self, v: torch.Tensor, k: int, generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` block Gibbs steps from ``v``; returns the last ``(v, p(h|v))``."""
        for _ in range(k):
            v = self.sample_v(bernoulli(self.p_h(v), generator), generator)
        return v, self.p_h(v)

    @torch.no_grad()
    def accumulate_grad(self, v_data: torch.Tensor, v_model: torch.Tensor, ph_data: torch.Tensor | None = None,
                        ph_model: torch.Tensor | None = None) -> None:
        r"""Write minus the log-likelihood ascent direction into ``.grad``: :func:`correlation_rule` on
        :math:`(v/\sigma^2, p(h|v))` gives :math:`\Delta W`, :math:`\Delta c` and :math:`\Delta b` (the data-minus-model
        mean of :math:`(v-b)/\sigma^2`); learned variances get
        :math:`\Delta z_i = \langle e^{-z_i}((v_i-b_i)^2/2 - v_i (W p(h|v))_i)\rangle_\text{data} - \langle\cdot\rangle_\text{model}`."""
        ph_data = self.p_h(v_data) if ph_data is None else ph_data
        ph_model = self.p_h(v_model) if ph_model is None else ph_model
        inv = torch.exp(-self.log_var)
        dw, db, dc = correlation_rule(v_data * inv, ph_data, v_model * inv, ph_model)
        for p, d in ((self.W, dw), (self.b, db), (self.c, dc)):
            p.grad = -d
        if self.learn_variance:
            def stat(v: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
                return (inv * (0.5 * (v - self.b) ** 2 - v * (ph @ self.W.T))).mean(0)
            self.log_var.grad = -(stat(v_data, ph_data) - stat(v_model, ph_model))


class PCD(nn.Module):
    r"""Model-phase sampler of an RBM: persistent contrastive divergence (Tieleman 2008) with ``k`` Gibbs steps
    per update on ``n_chains`` chains kept across batches (and checkpoints: they are buffers); with
    ``persistent=False`` it is CD-k (Hinton 2002), chains restarted at the data.

    :meth:`sample` returns model samples ``v`` and :math:`p(h|v)` — the negative statistics of
    :func:`correlation_rule`. Works for :class:`RBM` and :class:`GaussianRBM`.
    """

    def __init__(self, n_visible: int, n_hidden: int, n_chains: int = 100, k: int = 1, persistent: bool = True,
                 ) -> None:
        super().__init__()
        if k < 1 or n_chains < 1:
            raise ValueError(f"PCD needs k >= 1 and n_chains >= 1, got {k}, {n_chains}")
        self.k, self.persistent = k, persistent
        self.register_buffer("v", torch.zeros(n_chains, n_visible))
        self.register_buffer("ph", torch.zeros(n_chains, n_hidden))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def _step(self, rbm: nn.Module, h: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if isinstance(rbm, GaussianRBM):
            return rbm.sample_v(h, generator)
        return bernoulli_mask(rbm.p_v(h), generator)

    @torch.no_grad()
    def advance(self, rbm: nn.Module, v_data: torch.Tensor, ph_data: torch.Tensor | None,
                generator: torch.Generator | None) -> torch.Tensor:
        """``k`` Gibbs steps from the chains (PCD) or from the data (CD, which needs ``ph_data``) up to the last
        visible sample, which it returns (``bool`` for Bernoulli units); :meth:`keep` then stores it with its
        :math:`p(h|v)`. Split from :meth:`sample` so that the caller may compute that last :math:`p(h|v)` in one
        product with the data's."""
        if not self.persistent:
            if ph_data is None:
                raise ValueError("CD chains start at the data: advance needs ph_data")
            ph = ph_data
        else:
            if not bool(self.ready):
                idx = torch.randint(len(v_data), (len(self.v),), generator=generator,
                                    device=generator.device if generator is not None else v_data.device)
                self.v.copy_(v_data[idx.to(v_data.device)])
                self.ph.copy_(rbm.p_h(self.v))
                self.ready.fill_(True)
            ph = self.ph
        v = self._step(rbm, bernoulli(ph, generator), generator)
        for _ in range(self.k - 1):
            v = self._step(rbm, bernoulli(rbm.p_h(v), generator), generator)
        return v

    @torch.no_grad()
    def keep(self, v: torch.Tensor, ph: torch.Tensor) -> None:
        """Store the chains' state after :meth:`advance` (persistent chains only)."""
        if self.persistent:
            self.v.copy_(v)
            self.ph.copy_(ph)

    @torch.no_grad()
    def sample(self, rbm: nn.Module, v_data: torch.Tensor, ph_data: torch.Tensor,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` Gibbs steps from the chains (PCD) or from the data (CD); returns ``(v_model, p(h|v_model))``."""
        v = self.advance(rbm, v_data, ph_data, generator)
        ph = rbm.p_h(v)
        self.keep(v, ph)
        return v, ph


class ParallelTempering(nn.Module):
    r"""Model-phase sampler of a Bernoulli RBM by parallel tempering (Swendsen & Wang 1986; Desjardins et al.
    2010): ``n_temps`` persistent chains per replica at inverse temperatures :math:`1 = \beta_1 > \dots > \beta_T`
    (:math:`p_\beta \propto e^{-\beta E}`), ``k`` Gibbs steps each, then swaps of neighbouring temperatures
    (even pairs, then odd pairs, alternating) accepted with probability
    :math:`\min(1, e^{(\beta_t - \beta_{t+1})(E(x_t) - E(x_{t+1}))})`, which keeps every :math:`p_\beta` invariant
    (detailed balance). The statistics are those of the :math:`\beta = 1` chains.
    """

    def __init__(self, n_visible: int, n_hidden: int, n_chains: int = 100, k: int = 1, n_temps: int = 10,
                 min_beta: float = 0.0) -> None:
        super().__init__()
        if k < 1 or n_chains < 1 or n_temps < 2 or not 0.0 <= min_beta < 1.0:
            raise ValueError(f"ParallelTempering needs k >= 1, n_chains >= 1, n_temps >= 2 and min_beta in [0, 1), "
                             f"got {k}, {n_chains}, {n_temps}, {min_beta}")
        self.k = k
        self.register_buffer("betas", torch.linspace(1.0, min_beta, n_temps))
        self.register_buffer("v", torch.zeros(n_temps, n_chains, n_visible))
        self.register_buffer("h", torch.zeros(n_temps, n_chains, n_hidden))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("parity", torch.zeros((), dtype=torch.long))
        self.register_buffer("swaps", torch.zeros(2))  # accepted, proposed (for the swap rate)

    @torch.no_grad()
    def sample(self, rbm: RBM, v_data: torch.Tensor, ph_data: torch.Tensor,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` Gibbs steps at every temperature, one round of swaps; returns the :math:`\\beta=1` chains'
        ``(v, p(h|v))``."""
        T, C, nv = self.v.shape
        dev = v_data.device
        if not bool(self.ready):
            idx = torch.randint(len(v_data), (T * C,), generator=generator,
                                device=generator.device if generator is not None else dev)
            self.v.copy_(v_data[idx.to(dev)].reshape(T, C, nv))
            self.ready.fill_(True)
        beta = self.betas.view(T, 1, 1)
        v, h = self.v, self.h
        W, b_u, c_u, _ = rbm.uncentred()
        for _ in range(self.k):
            h = bernoulli(torch.sigmoid(beta * (v @ W + c_u)), generator)
            v = bernoulli(torch.sigmoid(beta * (h @ W.T + b_u)), generator)
        e = -(v @ b_u) - (h @ c_u) - ((v @ W) * h).sum(2)  # [T, C], uncentred energy (differs by a constant)
        start = int(self.parity)
        for t in range(start, T - 1, 2):
            log_a = (self.betas[t] - self.betas[t + 1]) * (e[t] - e[t + 1])
            u = torch.rand(C, generator=generator, device=generator.device if generator is not None else dev,
                           dtype=log_a.dtype).to(dev)
            acc = torch.log(u) < log_a
            for s in (v, h):
                a, b_ = s[t].clone(), s[t + 1].clone()
                s[t] = torch.where(acc[:, None], b_, a)
                s[t + 1] = torch.where(acc[:, None], a, b_)
            self.swaps += torch.stack([acc.sum().to(self.swaps.dtype), torch.tensor(float(C), device=dev)])
        self.parity.fill_(1 - start)
        self.v.copy_(v)
        self.h.copy_(h)
        return v[0], rbm.p_h(v[0])


@torch.no_grad()
def init_from_data(rbm: RBM, v: torch.Tensor, centred: bool = True) -> None:
    r"""Data-dependent start of a Bernoulli RBM (Hinton 2010; Melchior et al. 2016): visible biases
    :math:`b = \operatorname{logit}\bar v` (means clipped to [0.001, 0.999]); centred: :math:`\mu = \bar v`,
    :math:`\lambda = 0.5`."""
    rbm.b.copy_(base_rate_biases(v))
    if centred:
        rbm.mu.copy_(v.mean(0))
        rbm.lam.fill_(0.5)


@torch.no_grad()
def sparsity_grad(rbm: RBM | GaussianRBM, v: torch.Tensor, ph: torch.Tensor, q: torch.Tensor, target: float,
                  cost: float, decay: float = 0.9) -> None:
    r"""The sparsity penalty of Lee, Ekanadham & Ng 2008 in the form of Nair & Hinton 2009 (Hinton 2010, §11):
    :math:`q_j \leftarrow \delta q_j + (1-\delta)\,\overline{p(h_j|v)}` (a running mean of each hidden unit's
    activity, the buffer ``q`` updated in place), and the gradient of :math:`\text{cost}\cdot\sum_j
    \text{CE}(\text{target}, q_j)` with respect to each unit's total input, :math:`\text{cost}\,(q_j - \text{target})`,
    added to ``.grad`` of the hidden biases and, through the inputs :math:`\overline{v_i - \mu_i}`, of the weights.
    Local: a unit's own activity and its own synapses' inputs."""
    q.mul_(decay).add_(ph.mean(0), alpha=1 - decay)
    d = cost * (q - target)
    rbm.c.grad += d
    vin = v.mean(0) - rbm.mu if isinstance(rbm, RBM) else (v * torch.exp(-rbm.log_var)).mean(0)
    rbm.W.grad += torch.outer(vin, d)


def rbm_update(rbm: RBM | GaussianRBM, sampler: PCD | ParallelTempering, optimizer: torch.optim.Optimizer, v: torch.Tensor,
               generator: torch.Generator | None, offset_rate: float = 0.0,
               sparsity: tuple[torch.Tensor, float, float] | None = None) -> None:
    r"""One learning step of an RBM — the one used by every RBM-based learner and the estimator: data statistics
    :math:`p(h|v)`, model statistics from ``sampler``, :func:`correlation_rule` on the centred units into
    ``.grad`` (``sparsity`` ``(q, target, cost)``: plus :func:`sparsity_grad`), ``optimizer.step()``; then
    (``offset_rate`` :math:`\nu > 0`) the offsets slide towards the batch means,
    :math:`\mu \leftarrow (1-\nu)\mu + \nu\bar v`, :math:`\lambda \leftarrow (1-\nu)\lambda + \nu\,\overline{p(h|v)}`,
    with the biases moved to keep the distribution (:meth:`RBM.set_offsets`; Melchior et al. 2016, Alg. 1).
    Where :func:`~neuroplastic.boltzmann.native.sgd_rate` allows (plain SGD, PCD-1, 0/1 data on the CPU) the same
    step runs fused in C (:mod:`~neuroplastic.boltzmann.native`)."""
    with torch.no_grad():
        lr = native.sgd_rate(rbm, sampler, optimizer, v, sparsity)
        if lr is not None and native.pcd_step(rbm, sampler, v, lr, offset_rate, generator):
            return
    means = _torch_update(rbm, sampler, optimizer, v, generator, sparsity)
    if offset_rate > 0:
        with torch.no_grad():
            rbm.set_offsets(torch.lerp(rbm.mu, means[0], offset_rate), torch.lerp(rbm.lam, means[1], offset_rate))


def _torch_update(rbm: RBM | GaussianRBM, sampler: PCD | ParallelTempering, optimizer: torch.optim.Optimizer,
                  v: torch.Tensor, generator: torch.Generator | None,
                  sparsity: tuple[torch.Tensor, float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rbm_update` up to the offsets' move, in torch; returns the batch means of ``v`` and of its
    :math:`p(h|v)`."""
    with torch.no_grad():
        # binary data on the CPU take binary_matmul's route (on accelerators the check would cost a sync per step)
        vb = binary_mask(v) if isinstance(rbm, RBM) and v.device.type == "cpu" else None
        vd = v if vb is None else vb
        if isinstance(sampler, PCD) and sampler.persistent and isinstance(rbm, RBM):
            # the chains' steps need no data: their last p(h|v) and the data's come from one product
            v_model = sampler.advance(rbm, vd, None, generator)
            if v_model.dtype != vd.dtype:
                v_model = v_model.to(v.dtype)
            ph, ph_model = rbm.p_h(torch.cat([vd, v_model])).split([len(v), len(v_model)])
            sampler.keep(v_model, ph_model)
        else:
            ph = rbm.p_h(vd)
            v_model, ph_model = sampler.sample(rbm, vd, ph, generator)
        rbm.accumulate_grad(vd, v_model, ph, ph_model)
        if sparsity is not None:
            sparsity_grad(rbm, v, ph, *sparsity)
    optimizer.step()
    return v.mean(0), ph.mean(0)


def graph_colouring(mask: torch.Tensor) -> list[torch.Tensor]:
    """Greedy colouring of an undirected graph given by a symmetric 0/1 ``mask [n, n]`` (zero diagonal): units of
    one colour share no edge, so they are conditionally independent given the rest and can be sampled together.
    Units are taken by decreasing degree (Welsh & Powell 1967). Returns one index tensor per colour."""
    n = mask.shape[0]
    adj = mask.bool().cpu()
    order = sorted(range(n), key=lambda i: -int(adj[i].sum()))
    colour = [-1] * n
    for i in order:
        used = {colour[j] for j in torch.nonzero(adj[i]).flatten().tolist() if colour[j] >= 0}
        colour[i] = next(c for c in range(n + 1) if c not in used)
    return [torch.tensor([i for i in range(n) if colour[i] == c]) for c in range(max(colour) + 1)]


GRAPHS = ("full", "bipartite", "visible")


def make_graph(n_visible: int, n_hidden: int, graph: str | torch.Tensor = "full") -> torch.Tensor:
    """Connectivity ``mask [n, n]`` (symmetric, zero diagonal) of a Boltzmann machine over ``n = n_visible +
    n_hidden`` units: ``full`` (every pair), ``bipartite`` (visible–hidden only: an RBM), ``visible`` (among visible
    units only), or a given 0/1 matrix (checked for symmetry)."""
    n = n_visible + n_hidden
    if isinstance(graph, torch.Tensor):
        m = graph.float()
        if m.shape != (n, n) or not torch.equal(m, m.T) or bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"graph must be a symmetric 0/1 matrix of shape ({n}, {n})")
        return m.fill_diagonal_(0)
    if graph == "full":
        m = torch.ones(n, n)
    elif graph == "bipartite":
        m = torch.zeros(n, n)
        m[:n_visible, n_visible:] = 1
        m[n_visible:, :n_visible] = 1
    elif graph == "visible":
        m = torch.zeros(n, n)
        m[:n_visible, :n_visible] = 1
    else:
        raise ValueError(f"unknown graph {graph!r}; allowed: {', '.join(GRAPHS)} or a 0/1 matrix")
    return m.fill_diagonal_(0)


class BoltzmannMachine(nn.Module):
    r"""Boltzmann machine with any symmetric connectivity, loops allowed (Ackley, Hinton & Sejnowski 1985):
    binary units :math:`x = (v, h)`, :math:`E(x) = -b^\top x - \tfrac12 x^\top W x` with ``W`` symmetric, zero on the
    diagonal and on the pairs the graph leaves out (:func:`make_graph`).

    Conditionals :math:`p(x_i{=}1|x_{-i}) = \sigma(b_i + \sum_j w_{ij} x_j)`. A Gibbs sweep updates the colour
    classes of :func:`graph_colouring` one after another, all units of a class at once (exact: they share no
    edge): a fully connected machine needs ``n`` classes, an RBM two.
    """

    def __init__(self, n_visible: int, n_hidden: int = 0, graph: str | torch.Tensor = "full", init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_visible < 1 or n_hidden < 0:
            raise ValueError(f"BoltzmannMachine needs n_visible >= 1 and n_hidden >= 0, got {n_visible}, {n_hidden}")
        n = n_visible + n_hidden
        self.n_visible, self.n_hidden = n_visible, n_hidden
        self.register_buffer("mask", make_graph(n_visible, n_hidden, graph))
        w = torch.randn(n, n, generator=generator) * init_std
        self.W = nn.Parameter((torch.triu(w, 1) + torch.triu(w, 1).T) * self.mask)
        self.b = nn.Parameter(torch.zeros(n))
        self.colours = graph_colouring(self.mask)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`E(x) = -b^\\top x - \\tfrac12 x^\\top W x`, ``[N]``."""
        return -(x @ self.b) - 0.5 * ((x @ self.W) * x).sum(1)

    def sweep(self, x: torch.Tensor, generator: torch.Generator | None, clamp_visible: bool = False,
              ) -> torch.Tensor:
        """One Gibbs sweep over the free units (hidden only if ``clamp_visible``), colour class by colour class."""
        x = x.clone()
        for idx in self.colours:
            idx = idx.to(x.device)
            if clamp_visible:
                idx = idx[idx >= self.n_visible]
                if not len(idx):
                    continue
            p = torch.sigmoid(x @ self.W[:, idx] + self.b[idx])
            x[:, idx] = bernoulli(p, generator)
        return x

    @torch.no_grad()
    def accumulate_grad(self, x_data: torch.Tensor, x_model: torch.Tensor) -> None:
        """Write ``-Δ`` of :func:`correlation_rule` (with ``y = x``) into ``.grad``, symmetric, zero off the graph."""
        dw, db, _ = correlation_rule(x_data, x_data, x_model, x_model)
        self.W.grad = -dw * self.mask
        self.b.grad = -db


def enumerate_states(n: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All ``2**n`` binary vectors of length ``n`` as a tensor ``[2**n, n]`` (for exact computations)."""
    if n > 22:
        raise ValueError(f"enumerating 2**{n} states is too large")
    idx = torch.arange(2**n, device=device)
    return ((idx.unsqueeze(1) >> torch.arange(n, device=device)) & 1).to(dtype)


def state_codes(v: torch.Tensor) -> torch.Tensor:
    """The index of each binary row of ``v`` ``[N, n]`` among :func:`enumerate_states` (its inverse): ``[N]``."""
    return (v.round().long() << torch.arange(v.shape[1], device=v.device)).sum(1)


def empirical_distribution(v: torch.Tensor) -> torch.Tensor:
    """Frequencies of the binary rows of ``v`` ``[N, n]`` over all ``2**n`` states (float64, ``[2**n]``)."""
    return torch.bincount(state_codes(v), minlength=2 ** v.shape[1]).double() / len(v)


def _chunked_logsumexp(fn, n: int, device, dtype, chunk: int = 4096) -> torch.Tensor:
    """:math:`\\operatorname{logsumexp}` of ``fn(states)`` over all ``2**n`` binary states, in chunks."""
    states = enumerate_states(n, device, dtype)
    parts = [torch.logsumexp(fn(states[i:i + chunk]), 0) for i in range(0, len(states), chunk)]
    return torch.logsumexp(torch.stack(parts), 0)


def exact_log_z_rbm(rbm: RBM) -> torch.Tensor:
    r""":math:`\log Z` exactly, enumerating the smaller layer: the visible states,
    :math:`\operatorname{logsumexp}_v(-F(v))`, or the hidden states,
    :math:`\operatorname{logsumexp}_h(c'^\top h + \sum_i \operatorname{softplus}(b'_i + W_{i:} h)) - K` (uncentred form of
    :meth:`RBM.uncentred`); either side must have at most 22 units."""
    n_v, n_h = rbm.W.shape
    dev, dt = rbm.W.device, rbm.W.dtype
    if n_v <= n_h:
        return _chunked_logsumexp(lambda v: -rbm.free_energy(v), n_v, dev, dt)
    W, b, c, K = rbm.uncentred()
    return _chunked_logsumexp(lambda h: h @ c + F.softplus(h @ W.T + b).sum(1), n_h, dev, dt) - K


def exact_log_z_grbm(rbm: GaussianRBM) -> torch.Tensor:
    r""":math:`\log Z` of a Gaussian–Bernoulli RBM by enumerating the hidden states (the visible integral is
    Gaussian): :math:`\log Z = \tfrac{n_v}{2}\log 2\pi + \tfrac12\sum_i z_i + \operatorname{logsumexp}_h\big(c^\top h +
    \sum_i \frac{(b_i + W_{i:}h)^2 - b_i^2}{2\sigma_i^2}\big)`."""
    n_v, n_h = rbm.W.shape
    inv = torch.exp(-rbm.log_var)

    def fn(h: torch.Tensor) -> torch.Tensor:
        m = h @ rbm.W.T + rbm.b
        return h @ rbm.c + (0.5 * (m**2 - rbm.b**2) * inv).sum(1)

    const = 0.5 * n_v * math.log(2 * math.pi) + 0.5 * rbm.log_var.sum()
    return const + _chunked_logsumexp(fn, n_h, rbm.W.device, rbm.W.dtype)


def exact_log_z_bm(bm: BoltzmannMachine) -> torch.Tensor:
    """:math:`\\log Z = \\operatorname{logsumexp}_x(-E(x))` by enumeration (at most 22 units)."""
    return _chunked_logsumexp(lambda x: -bm.energy(x), bm.W.shape[0], bm.W.device, bm.W.dtype)


def exact_log_marginal_bm(bm: BoltzmannMachine, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(v) = \\log\\sum_h e^{-E(v,h)} - \\log Z` by enumeration of the hidden states, ``[N]``."""
    h = (enumerate_states(bm.n_hidden, v.device, v.dtype) if bm.n_hidden
         else torch.zeros(1, 0, device=v.device, dtype=v.dtype))
    x = torch.cat([v.unsqueeze(1).expand(-1, len(h), -1), h.unsqueeze(0).expand(len(v), -1, -1)], 2)
    e = bm.energy(x.reshape(-1, x.shape[-1])).reshape(len(v), len(h))
    return torch.logsumexp(-e, 1) - exact_log_z_bm(bm)


def kl_divergence(p_data: torch.Tensor, log_p_model: torch.Tensor) -> torch.Tensor:
    r""":math:`D_{KL}(p_\text{data} \,\|\, p_\text{model}) = \sum_v p_\text{data}(v)\,(\log p_\text{data}(v) -
    \log p_\text{model}(v))` over the last axis, the states where :math:`p_\text{data} = 0` contributing nothing
    (nats)."""
    terms = p_data * (torch.log(p_data) - log_p_model)
    return torch.where(p_data > 0, terms, torch.zeros((), dtype=terms.dtype, device=terms.device)).sum(-1)


def base_rate_biases(v_train: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Visible biases of the AIS base-rate model, :math:`b_A = \\log\\frac{p}{1-p}` from training pixel
    frequencies :math:`p` (clipped to ``[eps, 1-eps]``; Salakhutdinov & Murray 2008)."""
    p = v_train.float().mean(0).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def ais_schedule(kind: str = "paper") -> torch.Tensor:
    """Inverse temperatures β for AIS: ``paper`` — 0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1 (≈14,500 values,
    Salakhutdinov & Murray 2008); ``fast`` — 1,450 values with the same shape (for tests/quick runs)."""
    if kind == "paper":
        steps = (1e-3, 1e-4, 1e-5)
    elif kind == "fast":
        steps = (1e-2, 1e-3, 1e-4)
    else:
        raise ValueError(f"unknown AIS schedule {kind!r}; allowed: paper, fast")
    parts = [torch.arange(0.0, 0.5, steps[0], dtype=torch.float64),
             torch.arange(0.5, 0.9, steps[1], dtype=torch.float64),
             torch.arange(0.9, 1.0, steps[2], dtype=torch.float64), torch.ones(1, dtype=torch.float64)]
    return torch.cat(parts)


class _Annealing:
    r"""The AIS path of an RBM from the base-rate model (Salakhutdinov & Murray 2008), in the uncentred form
    :math:`(W, b', c')` of :meth:`RBM.uncentred`:
    :math:`\log f_\beta(v) = (1-\beta) b_A^\top v + \beta b'^\top v + \sum_j \operatorname{softplus}(\beta(c'_j + v^\top W_{:j}))`,
    :math:`\log Z_0 = n_h \log 2 + \sum_i \operatorname{softplus}(b_{A,i})`; a transition at β is one Gibbs step of
    :math:`f_\beta`."""

    def __init__(self, rbm: RBM, base_bias: torch.Tensor) -> None:
        self.W, self.b, self.c, k = (t.detach() for t in rbm.uncentred())
        self.K = float(k)
        self.bA = base_bias.to(self.W.device, self.W.dtype)
        self.log_z0 = rbm.W.shape[1] * math.log(2.0) + float(F.softplus(self.bA.double()).sum())

    def log_f(self, v: torch.Tensor, a: torch.Tensor, beta: float) -> torch.Tensor:
        """:math:`\\log f_\\beta(v)` given ``a = v W + c'`` (float64)."""
        return ((1 - beta) * (v @ self.bA) + beta * (v @ self.b)).double() + F.softplus(beta * a).double().sum(1)

    def step(self, a: torch.Tensor, beta: float, generator: torch.Generator | None) -> torch.Tensor:
        """One Gibbs step at ``beta`` from the state whose hidden input is ``a``; returns the new ``v``."""
        h = bernoulli(torch.sigmoid(beta * a), generator)
        return bernoulli(torch.sigmoid(beta * torch.addmm(self.b, h, self.W.T) + (1 - beta) * self.bA), generator)

    def input(self, v: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.c, v, self.W)


def _log_mean_and_se(log_w: torch.Tensor) -> tuple[float, float]:
    """``log mean(w)`` and its delta-method standard error ``std(w) / (mean(w) sqrt(n))`` (nats)."""
    n = len(log_w)
    log_mean = float(torch.logsumexp(log_w, 0)) - math.log(n)
    w = torch.exp(log_w - log_w.max())
    se = float(w.std() / (w.mean() * math.sqrt(n))) if n > 1 else float("nan")
    return log_mean, se


@torch.no_grad()
def ais_log_weights(rbm: RBM, base_bias: torch.Tensor, betas: torch.Tensor | None = None, n_chains: int = 100,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    r"""The chains of forward AIS (see :func:`ais_log_z`): per-chain log importance weights ``[n_chains]`` (float64)
    and the offset :math:`\log Z_0 - K`, so that :math:`\log\hat Z = \text{offset} + \log\overline{w}`."""
    betas = (ais_schedule("paper") if betas is None else betas).tolist()
    path = _Annealing(rbm, base_bias)
    v = bernoulli(torch.sigmoid(path.bA).expand(n_chains, -1).contiguous(), generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=v.device)
    for prev, beta in itertools.pairwise(betas):
        a = path.input(v)
        log_w += path.log_f(v, a, beta) - path.log_f(v, a, prev)
        if beta < 1.0:
            v = path.step(a, beta, generator)
    return log_w, path.log_z0 - path.K


def ais_log_z(rbm: RBM, base_bias: torch.Tensor, betas: torch.Tensor | None = None, n_chains: int = 100,
              generator: torch.Generator | None = None) -> tuple[float, float]:
    r"""Annealed importance sampling estimate of :math:`\log Z` of an RBM (Neal 2001; Salakhutdinov & Murray
    2008), from the base-rate model :math:`p_A(v) \propto e^{b_A^\top v}` (no weights) along the path of
    :class:`_Annealing`: each chain starts from :math:`p_A`, accumulates
    :math:`\log w = \sum_k \log f_{\beta_k}(v_k) - \log f_{\beta_{k-1}}(v_k)` and moves by one Gibbs step at
    :math:`\beta_k`. :math:`\hat Z = Z_0\,\overline{w}`; :math:`\log \hat Z` is a stochastic *lower* bound on
    :math:`\log Z` in expectation (Jensen). Returns ``(log Ẑ, standard error in nats)``.
    """
    log_w, offset = ais_log_weights(rbm, base_bias, betas, n_chains, generator)
    log_mean, se = _log_mean_and_se(log_w)
    return offset + log_mean, se


@torch.no_grad()
def reverse_ais_log_weights(rbm: RBM, base_bias: torch.Tensor, v_start: torch.Tensor,
                            betas: torch.Tensor | None = None, generator: torch.Generator | None = None,
                            ) -> tuple[torch.Tensor, float]:
    r"""The chains of reverse AIS (see :func:`reverse_ais_log_z`): per-chain log weights and the offset
    :math:`\log Z_0 - K`, so that :math:`\log\hat Z = \text{offset} - \log\overline{w}`."""
    betas = (ais_schedule("paper") if betas is None else betas).tolist()[::-1]
    path = _Annealing(rbm, base_bias)
    v = v_start.to(path.W.device, path.W.dtype)
    log_w = torch.zeros(len(v), dtype=torch.float64, device=v.device)
    for beta, lower in itertools.pairwise(betas):
        a = path.input(v)
        log_w += path.log_f(v, a, lower) - path.log_f(v, a, beta)
        if lower > 0.0:
            v = path.step(a, lower, generator)
    return log_w, path.log_z0 - path.K


def reverse_ais_log_z(rbm: RBM, base_bias: torch.Tensor, v_start: torch.Tensor, betas: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> tuple[float, float]:
    r"""Reverse AIS estimate of :math:`\log Z` (Burda, Grosse & Salakhutdinov 2015; PyDeep's
    ``reverse_annealed_importance_sampling``): chains start at ``v_start`` (``[n_chains, n_visible]``, meant as
    samples of the model) and anneal from :math:`\beta = 1` down to the base-rate model, accumulating
    :math:`\log w = \sum_k \log f_{\beta_{k-1}}(v_k) - \log f_{\beta_k}(v_k)`; :math:`\mathbb E[w] = Z_0/Z`, so
    :math:`\log\hat Z = \log Z_0 - \log\overline{w}` is a stochastic *upper* bound on :math:`\log Z` in expectation when
    the starts are exact model samples — a conservative (pessimistic) log-likelihood beside forward AIS.
    Returns ``(log Ẑ, standard error in nats)``."""
    log_w, offset = reverse_ais_log_weights(rbm, base_bias, v_start, betas, generator)
    log_mean, se = _log_mean_and_se(log_w)
    return offset - log_mean, se
