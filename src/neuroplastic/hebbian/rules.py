r"""Unsupervised local learning rules, each a small object with its own state, shared by conv and linear layers.

Every rule here has the same form: for a layer with weights :math:`w_i` (one row per unit ``i``),
pre-synaptic inputs :math:`x_n` (a sample, or an image patch at one position ``n``) and currents
:math:`u_{in} = \langle w_i, x_n\rangle`, the rule chooses a *post-synaptic factor* :math:`p_{in}` and a
*decay* :math:`c_i` and the update is

.. math:: \Delta w_i = \sum_n p_{in}\, x_n \;-\; c_i\, w_i

followed (Journé et al. 2023; Nimmo & Mondragón 2025) by the global normalisation
:math:`\Delta w \leftarrow \Delta w / \max|\Delta w|` and an optional per-unit rate :math:`\eta_i`.
The layer computes :math:`\sum_n p_{in} x_n` (a matrix product for a linear layer, the conv weight-gradient
identity for a conv layer), so each rule is written once, here, and used by both
:class:`~neuroplastic.hebbian.layers.HebbConv2d` and :class:`~neuroplastic.hebbian.layers.HebbLinear`.

Tensors: currents ``u`` are ``[N, C, *spatial]`` (channel/unit dimension 1, every other dimension is a
"position" over which the sums run). Rules are ``nn.Module`` s so their state (BCM threshold θ) is saved in
checkpoints with the layer; they never hold parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "BCM",
    "RULES",
    "HardWTA",
    "HebbRule",
    "KrotovHopfield",
    "Oja",
    "PlainHebb",
    "SoftHebb",
    "channel_sum",
    "dog_kernel",
    "hebbian_delta",
    "make_rule",
    "max_abs",
    "normalize_update",
    "unit_norms",
    "unit_rows",
    "winner_mask",
]


def channel_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension except the channel dimension 1: ``[N, C, ...] -> [C]``."""
    dims = [d for d in range(t.dim()) if d != 1]
    return t.sum(dim=dims)


def winner_mask(u: torch.Tensor, winners: torch.Tensor | None = None) -> torch.Tensor:
    r"""One-hot mask of the winner along channels at each position: :math:`m_{in} = [i = \arg\max_j u_{jn}]`
    (``winners``: that argmax, ``[N, *spatial]``, if the caller already has it)."""
    idx = u.argmax(dim=1, keepdim=True) if winners is None else winners.unsqueeze(1)
    return torch.zeros_like(u).scatter_(1, idx, 1.0)


def hebbian_delta(corr: torch.Tensor, decay: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`\Delta w_i = \mathrm{corr}_i - c_i w_i` with ``corr`` = :math:`\sum_n p_{in} x_n` (shape of ``w``)."""
    return corr - decay.view(-1, *([1] * (w.dim() - 1))) * w


def unit_rows(w: torch.Tensor) -> torch.Tensor:
    """``w [C_out, ...]`` as ``[C_out, rest]`` rows, a view (no copy) when ``w`` is contiguous or a channels-last
    conv weight (each unit's values are then contiguous, in ``(i, j, c)`` order); a copy otherwise."""
    if w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    return w.reshape(w.shape[0], -1)


def unit_norms(w: torch.Tensor) -> torch.Tensor:
    r"""Per-unit norms :math:`\lVert w_i\rVert_2` ``[C_out]`` of a weight ``[C_out, ...]`` (a channels-last conv
    weight is not copied)."""
    return unit_rows(w).norm(dim=1) if w.dim() > 1 else w.abs()


def max_abs(t: torch.Tensor) -> torch.Tensor:
    r""":math:`\max|t|` as a 0-d tensor, without allocating :math:`|t|` (one min/max pass; a channels-last tensor
    is read in its memory order, not copied)."""
    lo, hi = torch.aminmax(unit_rows(t) if t.dim() > 1 else t)
    return torch.maximum(hi, lo.neg())


def normalize_update(dw: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    r""":math:`\Delta w / \max|\Delta w|` over the whole layer (Journé et al. 2023; Nimmo & Mondragón 2025)."""
    return dw / (max_abs(dw) + eps)


class HebbRule(nn.Module):
    r"""Base class: ``factors(u, y, winners=None) -> (p, c)`` gives the post-synaptic factor and the decay; see
    the module. ``winners`` is :math:`\arg\max_i u_{in}` when the layer has computed it already.

    ``u`` is the competition signal (the layer's response), ``y`` the post-synaptic activity the rule correlates
    (``u`` itself, or its surround-filtered copy for a conv layer in ``rule`` surround mode). Subclasses may override
    :meth:`current_weight` (the weights the currents are computed with) and :meth:`rate` (per-unit rate).
    """

    #: whether the rule's competition is among units (a winner per position); used for winner statistics
    competitive = True
    #: whether ``p`` is zero everywhere except at the winner :math:`\arg\max_i u_{in}` of each position; layers
    #: then correlate only the winners' patches (a scatter-add, :math:`C_\mathrm{out}` times cheaper)
    winner_only = False

    def current_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The weights used to compute the currents (identity except for Krotov–Hopfield)."""
        return w

    def factors(self, u: torch.Tensor, y: torch.Tensor,
                winners: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Post-synaptic factor ``p`` (shape of ``u``) and decay ``c`` ``[C]``."""
        raise NotImplementedError

    def rate(self, w: torch.Tensor) -> torch.Tensor | None:
        """Per-unit rate multiplier ``[C]`` applied after normalisation (``None``: 1 for every unit)."""
        return None

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


class HardWTA(HebbRule):
    r"""Hard winner-take-all instar rule (Grossberg 1976; Nimmo & Mondragón 2025 "hard").

    At each position only the unit with the largest current learns, moving its weights toward the input:

    .. math:: y_{in} = [i = \arg\max_j u_{jn}], \qquad \Delta w_i = \sum_n y_{in} x_n - \Big(\sum_n y_{in}\Big) w_i

    >>> p, c = HardWTA().factors(torch.tensor([[1.0, 3.0]]), torch.tensor([[1.0, 3.0]]))
    >>> p.tolist(), c.tolist()
    ([[0.0, 1.0]], [0.0, 1.0])
    """

    winner_only = True

    def factors(self, u, y, winners=None):
        m = winner_mask(u, winners)
        return m, channel_sum(m)


class SoftHebb(HebbRule):
    r"""SoftHebb (Journé, Rodriguez, Guo & Moraitis, ICLR 2023): soft winner-take-all with anti-Hebbian losers.

    .. math::
        s_{in} = \mathrm{softmax}_i(t_{\mathrm{inv}}\, u_{in}), \quad
        y_{in} = \begin{cases} s_{in} & i = \arg\max_j u_{jn} \\ -s_{in} & \text{otherwise}\end{cases}, \quad
        \Delta w_i = \sum_n y_{in} x_n - \Big(\sum_n y_{in} u_{in}\Big) w_i

    and, with ``adaptive``, the per-unit rate :math:`\eta_i = \eta_0\,|\lVert w_i\rVert_2 - 1|^{1/2}` (the
    base rate :math:`\eta_0` is the optimizer's learning rate), so weights settle on the unit sphere.

    Args:
        t_inv: inverse softmax temperature, the factor on :math:`u` (the authors' code: 1, 0.65, 0.25 for the
            three CIFAR layers).
        anti_hebbian: losers get :math:`-s` (True, the paper) or are left out (False: plain soft WTA).
        adaptive: use the norm-dependent rate.
    """

    def __init__(self, t_inv: float = 1.0, anti_hebbian: bool = True, adaptive: bool = True) -> None:
        super().__init__()
        if not t_inv > 0:
            raise ValueError(f"SoftHebb: t_inv must be > 0, got {t_inv}")
        self.t_inv, self.anti_hebbian, self.adaptive = float(t_inv), bool(anti_hebbian), bool(adaptive)

    def factors(self, u, y, winners=None):
        s = torch.softmax(u if self.t_inv == 1.0 else self.t_inv * u, dim=1)
        if self.anti_hebbian:  # -s everywhere, +s at the winner (in place: s is ours)
            idx = u.argmax(dim=1, keepdim=True) if winners is None else winners.unsqueeze(1)
            s_win = s.gather(1, idx)
            s = s.neg_().scatter_(1, idx, s_win)
        return s, channel_sum(s * u)

    def rate(self, w):
        if not self.adaptive:
            return None
        return ((unit_norms(w) - 1.0).abs() + 1e-10).sqrt()


class BCM(HebbRule):
    r"""BCM rule with a sliding threshold and a hard-WTA mask (Bienenstock, Cooper & Munro 1982; Nimmo &
    Mondragón 2025 "bcm" / "optimal").

    With the masked activity :math:`\tilde y_{in} = y_{in}\,[i = \arg\max_j u_{jn}]`:

    .. math:: \theta_i \leftarrow (1-d)\,\theta_i + d\,\langle \tilde y_{in}^2\rangle_n, \qquad
              \Delta w_i = \sum_n x_n\, \tilde y_{in} (\tilde y_{in} - \theta_i)

    (θ is updated with the current batch first, then used). No decay term: with the cosine activation the
    weight norm does not change the response. ``theta_decay`` is :math:`d` (paper 0.3/0.35/0.35).
    """

    def __init__(self, n_units: int, theta_decay: float = 0.3, wta: bool = True) -> None:
        super().__init__()
        if not 0 < theta_decay <= 1:
            raise ValueError(f"BCM: theta_decay must be in (0, 1], got {theta_decay}")
        self.theta_decay, self.wta = float(theta_decay), bool(wta)
        self.winner_only = self.wta
        self.register_buffer("theta", torch.zeros(n_units))

    def factors(self, u, y, winners=None):
        ym = y * winner_mask(u, winners) if self.wta else y
        n_pos = ym.numel() // ym.shape[1]
        mean_sq = channel_sum(ym * ym) / max(n_pos, 1)
        d = self.theta_decay
        self.theta.mul_(1 - d).add_(d * mean_sq.to(self.theta.dtype))
        shape = (1, -1) + (1,) * (ym.dim() - 2)
        p = ym * (ym - self.theta.view(shape).to(ym.dtype))
        return p, torch.zeros(ym.shape[1], dtype=ym.dtype, device=ym.device)


class KrotovHopfield(HebbRule):
    r"""Ranked competition with an anti-Hebbian k-th unit and a Lebesgue-p current (Krotov & Hopfield, PNAS 2019).

    Currents use :math:`\langle w, x\rangle_p = \sum_j \mathrm{sign}(w_j)|w_j|^{p-1} x_j`; at each position
    the strongest unit gets :math:`g=1`, the ``k``-th strongest :math:`g=-\Delta`, the others 0, and

    .. math:: \Delta w_i = \sum_n g_{in}\,\big(x_n - \langle w_i, x_n\rangle_p\, w_i\big)

    (the paper's :math:`R=1`), whose fixed points lie on the unit :math:`p`-sphere.
    """

    def __init__(self, p: float = 3.0, k: int = 2, delta: float = 0.4) -> None:
        super().__init__()
        if p < 2:
            raise ValueError(f"KrotovHopfield: p must be >= 2, got {p}")
        if k < 2:
            raise ValueError(f"KrotovHopfield: k (rank of the anti-Hebbian unit) must be >= 2, got {k}")
        if delta < 0:
            raise ValueError(f"KrotovHopfield: delta must be >= 0, got {delta}")
        self.p, self.k, self.delta = float(p), int(k), float(delta)

    def current_weight(self, w):
        return w.sign() * w.abs().pow(self.p - 1)

    def factors(self, u, y, winners=None):
        c = u.shape[1]
        g = winner_mask(u, winners)
        if c >= self.k and self.delta > 0:
            kth = u.topk(self.k, dim=1).indices.narrow(1, self.k - 1, 1)
            g = g.scatter(1, kth, -self.delta)
        return g, channel_sum(g * u)


class Oja(HebbRule):
    r"""Oja's rule (Oja 1982): linear Hebbian learning with a normalising decay,
    :math:`\Delta w_i = \sum_n y_{in} x_n - (\sum_n y_{in}^2)\, w_i` with :math:`y = u`. No competition."""

    competitive = False

    def factors(self, u, y, winners=None):
        return y, channel_sum(y * y)


class PlainHebb(HebbRule):
    r"""Plain Hebbian learning with weight decay (Hebb 1949): :math:`\Delta w_i = \sum_n y_{in} x_n - \lambda\, n\, w_i`
    where ``n`` is the number of positions summed over (so λ is a per-sample decay)."""

    competitive = False

    def __init__(self, decay: float = 0.1) -> None:
        super().__init__()
        if decay < 0:
            raise ValueError(f"PlainHebb: decay must be >= 0, got {decay}")
        self.decay = float(decay)

    def factors(self, u, y, winners=None):
        n_pos = y.numel() // y.shape[1]
        return y, torch.full((y.shape[1],), self.decay * n_pos, dtype=y.dtype, device=y.device)


RULES = {"hard": HardWTA, "softhebb": SoftHebb, "bcm": BCM, "krotov": KrotovHopfield, "oja": Oja,
         "hebb": PlainHebb}


def make_rule(name: str, n_units: int, **kwargs) -> HebbRule:
    """Build rule ``name`` (``hard``, ``softhebb``, ``bcm``, ``krotov``, ``oja``, ``hebb``) for ``n_units``."""
    if name not in RULES:
        raise ValueError(f"unknown Hebbian rule {name!r}; allowed: {', '.join(RULES)}")
    cls = RULES[name]
    if cls is BCM:
        return cls(n_units, **kwargs)
    return cls(**kwargs)


def dog_kernel(size: int, sigma_e: float, sigma_i: float, normalise: str = "area") -> torch.Tensor:
    r"""Surround-modulation kernel (Nimmo & Mondragón 2025): a difference of Gaussians on a ``size×size`` grid,
    :math:`k(r) = G_{\sigma_e}(r) - G_{\sigma_i}(r)`, scaled so that the centre value is 1.

    ``normalise="area"`` (the authors' ``create_sm_kernel``): :math:`G_\sigma(r) = e^{-r^2/2\sigma^2}/2\pi\sigma^2`.
    On the presets' small grids the wider inhibitory Gaussian loses more of its mass to the truncation, so the
    kernel sums to more than 0 (1.96 for 5×5, σ 1.2/1.3; the 3×3, σ 1.0/1.2 kernel is positive everywhere): a
    centre-weighted blur with a weak surround. ``normalise="sum"``: each Gaussian divided by its sum on the grid,
    so the kernel sums to 0 (a band-pass centre–surround)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"dog_kernel: size must be odd and >= 1, got {size}")
    if not (sigma_e > 0 and sigma_i > 0):
        raise ValueError(f"dog_kernel: sigmas must be > 0, got {sigma_e}, {sigma_i}")
    if normalise not in ("area", "sum"):
        raise ValueError(f"dog_kernel: normalise must be 'area' or 'sum', got {normalise!r}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    r2 = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2

    def g(s: float) -> torch.Tensor:
        k = torch.exp(-r2 / (2 * s * s))
        return k / (2 * math.pi * s * s) if normalise == "area" else k / k.sum()

    d = g(sigma_e) - g(sigma_i)
    centre = d[size // 2, size // 2]
    if abs(float(centre)) < 1e-12:
        raise ValueError(f"dog_kernel: centre is 0 for sigmas {sigma_e}, {sigma_i}")
    return (d / centre).float()
