r"""Boltzmann machines trained by the local correlation rule, with RBMs and fully connected machines.

Energy of binary units :math:`x \in \{0,1\}^n`: :math:`E(x) = -\sum_i b_i x_i - \sum_{i<j} w_{ij} x_i x_j`,
:math:`p(x) = e^{-E(x)}/Z`. The log-likelihood gradient is local and Hebbian-like (Ackley, Hinton &
Sejnowski 1985):

.. math::
    \frac{\partial \log p(v)}{\partial w_{ij}} = \langle x_i x_j\rangle_\text{data} - \langle x_i x_j\rangle_\text{model},
    \qquad \frac{\partial \log p(v)}{\partial b_i} = \langle x_i\rangle_\text{data} - \langle x_i\rangle_\text{model}.

:func:`correlation_rule` is that rule, written once; the RBM (bipartite, CD-k / PCD, Hinton 2002;
Tieleman 2008) and the fully connected machine with loops (:class:`FullBM`, persistent Gibbs chains)
both call it and write :math:`-\Delta` into ``.grad`` so a ``torch.optim`` optimizer applies it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def correlation_rule(x_data: torch.Tensor, y_data: torch.Tensor, x_model: torch.Tensor, y_model: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The Boltzmann learning rule for a weight matrix between unit groups ``x`` and ``y``.

    .. math::
        \Delta W = \langle x y^\top\rangle_\text{data} - \langle x y^\top\rangle_\text{model},\quad
        \Delta b_x = \langle x\rangle_\text{data} - \langle x\rangle_\text{model},\quad
        \Delta b_y = \langle y\rangle_\text{data} - \langle y\rangle_\text{model}.

    Args: ``x_*`` ``[B, n_x]``, ``y_*`` ``[B', n_y]`` (samples or mean-field probabilities; data and model
    batches may differ in size). Returns ``(ΔW [n_x, n_y], Δb_x [n_x], Δb_y [n_y])`` — the ascent
    direction of the log-likelihood.
    """
    if x_data.dim() != 2 or y_data.dim() != 2 or x_model.dim() != 2 or y_model.dim() != 2:
        raise ValueError("correlation_rule expects 2-D [batch, units] tensors")
    dw = x_data.T @ y_data / len(x_data) - x_model.T @ y_model / len(x_model)
    return dw, x_data.mean(0) - x_model.mean(0), y_data.mean(0) - y_model.mean(0)


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(p.shape, generator=generator, device=generator.device if generator is not None else p.device)
    return (u.to(p.device) < p).to(p.dtype)


class RBM(nn.Module):
    r"""Bernoulli–Bernoulli restricted Boltzmann machine (Smolensky 1986; Hinton 2002).

    .. math::
        E(v, h) = -b^\top v - c^\top h - v^\top W h,\qquad
        F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:j}),

    :math:`p(h_j=1|v) = \sigma(c_j + v^\top W_{:j})`, :math:`p(v_i=1|h) = \sigma(b_i + W_{i:} h)`.
    Shapes: ``W [n_visible, n_hidden]``; inputs ``[N, n_visible]`` in {0, 1} (or probabilities).
    """

    def __init__(self, n_visible: int, n_hidden: int, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if n_visible < 1 or n_hidden < 1:
            raise ValueError(f"RBM needs n_visible, n_hidden >= 1, got {n_visible}, {n_hidden}")
        self.W = nn.Parameter(torch.randn(n_visible, n_hidden, generator=generator) * init_std)
        self.b = nn.Parameter(torch.zeros(n_visible))
        self.c = nn.Parameter(torch.zeros(n_hidden))

    def p_h(self, v: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """:math:`p(h=1|v) = \\sigma(\\beta (c + v W))`."""
        return torch.sigmoid(beta * (v @ self.W + self.c))

    def p_v(self, h: torch.Tensor, beta: float = 1.0, base_bias: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`p(v=1|h) = \\sigma(\\beta (b + W h) + (1-\\beta) b_A)` (``b_A``: AIS base-rate biases)."""
        a = beta * (h @ self.W.T + self.b)
        if base_bias is not None:
            a = a + (1.0 - beta) * base_bias
        return torch.sigmoid(a)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`F(v) = -b^\\top v - \\sum_j \\operatorname{softplus}(c_j + v^\\top W_{:j})`, shape ``[N]``."""
        return -(v @ self.b) - F.softplus(v @ self.W + self.c).sum(1)

    def gibbs(self, v: torch.Tensor, k: int, generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` steps of block Gibbs sampling from ``v``; returns the last ``(v, p(h|v))``."""
        for _ in range(k):
            h = _bernoulli(self.p_h(v), generator)
            v = _bernoulli(self.p_v(h), generator)
        return v, self.p_h(v)

    @torch.no_grad()
    def accumulate_grad(self, v_data: torch.Tensor, v_model: torch.Tensor) -> None:
        """Write ``-Δ`` of :func:`correlation_rule` (data vs model statistics) into ``.grad``.

        Hidden statistics use :math:`p(h|v)` (Rao-Blackwellised, Hinton's practical guide 2010).
        """
        dw, db, dc = correlation_rule(v_data, self.p_h(v_data), v_model, self.p_h(v_model))
        for p, d in ((self.W, dw), (self.b, db), (self.c, dc)):
            p.grad = -d


class FullBM(nn.Module):
    r"""Fully connected Boltzmann machine with loops: visible and hidden units all interconnected
    (Ackley, Hinton & Sejnowski 1985). Symmetric ``W`` with zero diagonal over ``n = n_v + n_h`` units.

    Conditionals: :math:`p(x_i = 1 | x_{-i}) = \sigma(b_i + \sum_j w_{ij} x_j)`; sampled by sequential
    (systematic-scan) Gibbs sweeps, since every unit depends on every other.
    """

    def __init__(self, n_visible: int, n_hidden: int = 0, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        n = n_visible + n_hidden
        self.n_visible, self.n_hidden = n_visible, n_hidden
        w = torch.randn(n, n, generator=generator) * init_std
        self.W = nn.Parameter(torch.triu(w, 1) + torch.triu(w, 1).T)
        self.b = nn.Parameter(torch.zeros(n))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`E(x) = -b^\\top x - \\tfrac12 x^\\top W x` (``W`` symmetric, zero diagonal), ``[N]``."""
        return -(x @ self.b) - 0.5 * ((x @ self.W) * x).sum(1)

    def sweep(self, x: torch.Tensor, generator: torch.Generator | None, clamp_visible: bool = False,
              ) -> torch.Tensor:
        """One systematic Gibbs sweep over the free units (hidden only if ``clamp_visible``)."""
        x = x.clone()
        start = self.n_visible if clamp_visible else 0
        for i in range(start, x.shape[1]):
            p = torch.sigmoid(x @ self.W[:, i] + self.b[i])
            x[:, i] = _bernoulli(p, generator)
        return x

    @torch.no_grad()
    def accumulate_grad(self, x_data: torch.Tensor, x_model: torch.Tensor) -> None:
        """Write ``-Δ`` of :func:`correlation_rule` (with ``y = x``) into ``.grad``, symmetric, zero diagonal."""
        dw, db, _ = correlation_rule(x_data, x_data, x_model, x_model)
        dw.fill_diagonal_(0.0)
        self.W.grad = -dw
        self.b.grad = -db


def enumerate_states(n: int, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All ``2**n`` binary vectors of length ``n`` as a tensor ``[2**n, n]`` (for exact computations)."""
    if n > 22:
        raise ValueError(f"enumerating 2**{n} states is too large")
    idx = torch.arange(2**n, device=device)
    return ((idx.unsqueeze(1) >> torch.arange(n, device=device)) & 1).to(dtype)


def exact_log_z_rbm(rbm: RBM) -> torch.Tensor:
    """:math:`\\log Z = \\operatorname{logsumexp}_v(-F(v))` by enumerating the visible states (small RBMs)."""
    v = enumerate_states(rbm.W.shape[0], rbm.W.device, rbm.W.dtype)
    return torch.logsumexp(-rbm.free_energy(v), 0)


def exact_log_z_full(bm: FullBM) -> torch.Tensor:
    """:math:`\\log Z = \\operatorname{logsumexp}_x(-E(x))` by enumeration (small machines)."""
    x = enumerate_states(bm.W.shape[0], bm.W.device, bm.W.dtype)
    return torch.logsumexp(-bm.energy(x), 0)


def exact_log_marginal_full(bm: FullBM, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(v) = \\log\\sum_h e^{-E(v,h)} - \\log Z` by enumeration of the hidden states."""
    h = (enumerate_states(bm.n_hidden, v.device, v.dtype) if bm.n_hidden
         else torch.zeros(1, 0, device=v.device, dtype=v.dtype))
    x = torch.cat([v.unsqueeze(1).expand(-1, len(h), -1), h.unsqueeze(0).expand(len(v), -1, -1)], 2)
    e = bm.energy(x.reshape(-1, x.shape[-1])).reshape(len(v), len(h))
    return torch.logsumexp(-e, 1) - exact_log_z_full(bm)


def base_rate_biases(v_train: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Visible biases of the AIS base-rate model, :math:`b_A = \\log\\frac{p}{1-p}` from training pixel
    frequencies :math:`p` (clipped to ``[eps, 1-eps]``; Salakhutdinov & Murray 2008)."""
    p = v_train.float().mean(0).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def ais_schedule(kind: str = "paper") -> torch.Tensor:
    """Inverse temperatures β for AIS: ``paper`` — 0:1e-3:0.5, 0.5:1e-4:0.9, 0.9:1e-5:1 (≈14,500 values,
    Salakhutdinov & Murray 2008); ``fast`` — 1,000 values with the same shape (for tests/quick runs)."""
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


@torch.no_grad()
def ais_log_z(rbm: RBM, base_bias: torch.Tensor, betas: torch.Tensor | None = None, n_chains: int = 100,
              generator: torch.Generator | None = None) -> tuple[float, float]:
    r"""Annealed importance sampling estimate of :math:`\log Z` of an RBM (Neal 2001; Salakhutdinov &
    Murray 2008), from the base-rate model :math:`p_A(v) \propto e^{b_A^\top v}` (no weights).

    Intermediate unnormalised marginals
    :math:`p^*_\beta(v) = e^{(1-\beta) b_A^\top v + \beta b^\top v}\prod_j (1 + e^{\beta(c_j + v^\top W_{:j})})`,
    so :math:`Z_0 = 2^{n_h}\prod_i(1+e^{b_{A,i}})`. Each chain accumulates
    :math:`\log w = \sum_k \log p^*_{\beta_k}(v_k) - \log p^*_{\beta_{k-1}}(v_k)` and moves by one Gibbs step
    at :math:`\beta_k`. Returns ``(log Ẑ, standard error of the log-mean-weight estimate)``: the log of the
    mean of the weights is a stochastic *lower bound* on :math:`\log Z` in expectation (Jensen).
    """
    betas = (ais_schedule("paper") if betas is None else betas).to(rbm.W.device)
    dev = rbm.W.device
    bA = base_bias.to(dev, rbm.W.dtype)
    n_v, n_h = rbm.W.shape

    def log_p_star(v: torch.Tensor, beta: float) -> torch.Tensor:
        return (1 - beta) * (v @ bA) + beta * (v @ rbm.b) + F.softplus(beta * (v @ rbm.W + rbm.c)).sum(1)

    v = _bernoulli(torch.sigmoid(bA).expand(n_chains, n_v), generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=dev)
    prev = 0.0
    for beta in betas[1:].tolist():
        log_w += (log_p_star(v, beta) - log_p_star(v, prev)).double()
        h = _bernoulli(rbm.p_h(v, beta), generator)
        v = _bernoulli(rbm.p_v(h, beta, bA), generator)
        prev = beta
    log_z0 = n_h * math.log(2.0) + float(F.softplus(bA).sum())
    log_mean_w = torch.logsumexp(log_w, 0) - math.log(n_chains)
    w = torch.exp(log_w - log_w.max())
    se = float(w.std() / (w.mean() * math.sqrt(n_chains))) if n_chains > 1 else float("nan")
    return log_z0 + float(log_mean_w), se
