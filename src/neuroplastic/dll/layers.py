"""Dendritic Localized Learning (DLL) layers — Lv et al., ICML 2025 (arXiv 2501.09976).

A DLL neuron has three compartments: the **basal** dendrite holds the bottom-up activity ``u``, the
**apical** dendrite the top-down target ``x`` and the **soma** the local error ``ξ = x − u``. For a
weight layer ``i`` with input ``u_i`` and pre-activation ``a_i = W_i u_i`` (``u_{i+1} = f(a_i)``):

.. math::

    ξ_L &= -∇_{u_L} L(u_L, x_L)                                   \\text{(top: the target clamps } x_L)\\\\
    δ_i &= ξ_{i+1} ⊙ f'(W_i u_i)                                  \\\\
    ξ_i &= Θ_i^T δ_i                         \\text{(one top-down sweep; } Θ_i \\text{ replaces } W_i^T)\\\\
    ΔW_i &= η_W\\, δ_i u_i^T                                       \\\\
    ΔΘ_i &= η_Θ\\, (−ξ_i δ_i^T)^T = −η_Θ\\, δ_i ξ_i^T             \\text{(the paper's sign)}

``Θ_i`` is stored in ``W_i``'s shape ``[out, in]`` so that "Θ = W" means "Θᵀ plays Wᵀ".

**Sign convention.** ``ξ_L = −∇L``, so ``ΔW = η δ uᵀ`` is gradient *descent* on ``L``. Local rules here
write ``−Δ`` into ``.grad`` and an optimizer steps: ``W.grad = −δ uᵀ``, ``Θ.grad = +δ ξᵀ``. Since
``ξ_i = Θ_iᵀ δ_i``, the paper's Θ rule is ``ΔΘ = −η δ δᵀ Θ``: gradient descent on ``½‖ξ_i‖²`` (the
somatic error energy of the layer below). Its fixed point is ``Θ δ = 0``, i.e. Θ shrinks in the subspace
the errors ``δ`` span; it does **not** pull Θ towards W (see ``diagnostics``: angle(Θ, W) and ‖Θ‖).
The reference code uses the opposite sign (``+δ ξᵀ``: growth) — not copied here.

**One feedback family.** DLL's layers are layers of :mod:`neuroplastic.nn.feedback` in mode ``dll``: ``B``
(Θ) is a parameter whose gradient is the local rule's, computed in the layer's backward pass. Autograd hands
the layer ``g = −δ_i`` (per mean-loss sample); the layer returns ``g Θ`` (= ``−ξ_i``) instead of ``g W``; the
weight gradient ``gᵀ u = −ΔW`` is unchanged, and Θ's gradient is ``n · gᵀ (g Θ) = δ ξᵀ · (1/n)`` summed over
the batch (``n`` rows: the per-sample errors of a mean loss carry ``1/n``, restored once so Θ's update is a
batch mean like W's). Pooling and flattening are parameter-free, local routing and pass the error through
their own backward. DLL-FA (``feedback="fixed"``) is mode ``fa`` with DLL's Θ draw. :func:`dll_mlp_sweep` is
the naive per-layer reference the layers are tested against.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.feedback import FeedbackContext, FeedbackConv2d, FeedbackLinear, angle_deg  # angle: FA's definition


def _copy_params(layer: nn.Module, m: nn.Module) -> nn.Module:
    """Copy ``m``'s weight (and bias) into ``layer`` so DLL and BP start from the same network."""
    with torch.no_grad():
        layer.weight.copy_(m.weight)
        if m.bias is not None:
            layer.bias.copy_(m.bias)
    return layer


__all__ = ["FEEDBACK_MODES", "DLLConv2d", "DLLLinear", "angle_deg", "dll_mlp_sweep"]

#: ``learned``: Θ trained by the paper's rule (DLL; family mode ``dll``); ``fixed``: Θ a fixed random matrix
#: (DLL-FA ablation; mode ``fa``); ``bp``: exact transport Wᵀ (backprop; for tests and cost baselines).
FEEDBACK_MODES = ("learned", "fixed", "bp")
_FAMILY_MODE = {"learned": "dll", "fixed": "fa"}


class _DLLWeightLayer:
    """Θ of :class:`DLLLinear` and :class:`DLLConv2d`: drawn here (its own scale), kept as the family's ``B``."""

    weight: nn.Parameter

    def _init_theta(self, feedback: str, theta_std: float | None, generator: torch.Generator | None,
                    has_theta: bool) -> None:
        if feedback not in FEEDBACK_MODES:
            raise ValueError(f"unknown feedback {feedback!r}; allowed: {', '.join(FEEDBACK_MODES)}")
        if theta_std is not None and not theta_std > 0:
            raise ValueError(f"theta_std must be > 0 (or None for W's init scale), got {theta_std!r}")
        self.feedback = feedback
        self.has_theta = has_theta and feedback != "bp"
        mode = _FAMILY_MODE.get(feedback, "dll")
        t = None
        if self.has_theta:
            if theta_std is None:  # the same U(±1/sqrt(fan_in)) scale as W's default init
                bound = 1.0 / math.sqrt(self.weight[0].numel())
                t = (torch.rand(self.weight.shape, generator=generator) * 2 - 1) * bound
            else:
                t = torch.randn(self.weight.shape, generator=generator) * theta_std
        self._init_feedback(mode, FeedbackContext(mode), 1.0, None, initial=t, has_B=self.has_theta)
        self.bias_sum = True  # the bias-gradient summation order DLL's records were made with

    @property
    def theta(self) -> torch.Tensor | None:
        """Θ: the family's ``B`` of this layer (None: no Θ)."""
        return self.B

    @property
    def theta_sign(self) -> float:
        """+1: the paper's rule ΔΘ = −η δ ξᵀ; −1: the reference code's flipped sign (a labelled variant only)."""
        return self.rule_sign

    @theta_sign.setter
    def theta_sign(self, value: float) -> None:
        self.rule_sign = float(value)

    def set_theta(self, value: torch.Tensor) -> None:
        """Overwrite Θ in place (e.g. ``Θ = W`` to check that DLL then equals backprop)."""
        if self.B is None:
            raise RuntimeError("this layer has no Θ (first layer or feedback='bp')")
        with torch.no_grad():
            self.B.copy_(value)


class DLLLinear(_DLLWeightLayer, FeedbackLinear):
    """Fully connected DLL layer ``a = W u + b`` whose error sweep uses Θ (Lv et al. 2025, Eq. for ξ_i).

    Shapes: ``[..., in] -> [..., out]``. ``has_theta=False`` for the first layer (ξ₀ would be an error on
    the input pixels, which nothing reads). ``feedback``: ``learned`` (DLL), ``fixed`` (DLL-FA), ``bp``.

    >>> layer = DLLLinear(4, 3, generator=torch.Generator().manual_seed(0))
    >>> layer(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, feedback: str = "learned",
                 has_theta: bool = True, theta_std: float | None = None,
                 generator: torch.Generator | None = None) -> None:
        if in_features < 1 or out_features < 1:
            raise ValueError(f"DLLLinear needs positive sizes, got {in_features}×{out_features}")
        FeedbackLinear.__init__(self, in_features, out_features, bias, device="meta")
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter((torch.rand(out_features, in_features, generator=generator) * 2 - 1)
                                   * bound)
        self.bias = (nn.Parameter((torch.rand(out_features, generator=generator) * 2 - 1) * bound)
                     if bias else None)
        self._init_theta(feedback, theta_std, generator, has_theta)

    @classmethod
    def from_linear(cls, m: nn.Linear, **kw) -> DLLLinear:
        """A DLL layer with ``m``'s weights (copied), so DLL and BP start from the same network."""
        layer = cls(m.in_features, m.out_features, m.bias is not None, **kw)
        return _copy_params(layer, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feedback == "bp":
            return F.linear(x, self.weight, self.bias)
        return FeedbackLinear.forward(self, x)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, "
                f"feedback={self.feedback}, theta={'yes' if self.has_theta else 'no'}")


class DLLConv2d(_DLLWeightLayer, FeedbackConv2d):
    """Convolutional DLL layer: ``a = W ⋆ u + b``; the error sweep is the transposed convolution with Θ.

    Shapes ``[N, C_in, H, W] -> [N, C_out, H', W']``. Θ has W's shape ``[C_out, C_in, k, k]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, feedback: str = "learned", has_theta: bool = True,
                 theta_std: float | None = None, generator: torch.Generator | None = None) -> None:
        if min(in_channels, out_channels, kernel_size, stride) < 1 or padding < 0:
            raise ValueError(f"DLLConv2d: bad sizes in={in_channels} out={out_channels} k={kernel_size} "
                             f"stride={stride} padding={padding}")
        FeedbackConv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, bias=bias,
                                device="meta")
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter((torch.rand(shape, generator=generator) * 2 - 1) * bound)
        self.bias = (nn.Parameter((torch.rand(out_channels, generator=generator) * 2 - 1) * bound)
                     if bias else None)
        self._init_theta(feedback, theta_std, generator, has_theta)

    @classmethod
    def from_conv(cls, m: nn.Conv2d, **kw) -> DLLConv2d:
        """A DLL layer with ``m``'s weights (square kernel, int stride/padding, no groups/dilation)."""
        k, s, p = m.kernel_size[0], m.stride[0], m.padding
        if (m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] or m.groups != 1
                or m.dilation != (1, 1) or isinstance(p, str) or p[0] != p[1]):
            raise ValueError(f"DLLConv2d.from_conv supports square, ungrouped, undilated convs; got {m}")
        layer = cls(m.in_channels, m.out_channels, k, s, p[0], m.bias is not None, **kw)
        return _copy_params(layer, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.feedback == "bp":
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return FeedbackConv2d.forward(self, x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, feedback={self.feedback}, theta={'yes' if self.has_theta else 'no'}")


def dll_mlp_sweep(weights: list[torch.Tensor], biases: list[torch.Tensor | None],
                  thetas: list[torch.Tensor | None], x: torch.Tensor, xi_top_fn, f, df,
                  ) -> dict[str, list]:
    """Naive per-layer DLL reference for an MLP ``u_{i+1} = f(W_i u_i + b_i)`` (identity on the last layer).

    Follows the paper's equations literally, per sample then averaged over the batch::

        u_{i+1} = f(W_i u_i + b_i);   ξ_L = xi_top_fn(u_L)  (= −∇_{u_L} L per sample)
        δ_i = ξ_{i+1} ⊙ f'(W_i u_i + b_i);   ξ_i = Θ_iᵀ δ_i
        ΔW_i = mean_n δ_i u_iᵀ;   Δb_i = mean_n δ_i;   ΔΘ_i = mean_n (−ξ_i δ_iᵀ)ᵀ

    ``thetas[0]`` may be None (ξ₀ is not needed). Returns ``{"u", "xi", "dW", "db", "dTheta"}`` (lists
    indexed by layer; ``xi[i]`` is the error at layer ``i``'s *input*, ``xi[L]`` the top error).
    """
    n_layers = len(weights)
    us, pres = [x], []
    for i, (w, b) in enumerate(zip(weights, biases)):
        a = us[-1] @ w.t() + (b if b is not None else 0)
        pres.append(a)
        us.append(f(a) if i < n_layers - 1 else a)
    xis: list = [None] * (n_layers + 1)
    xis[n_layers] = xi_top_fn(us[-1])
    dws, dbs, dthetas = [None] * n_layers, [None] * n_layers, [None] * n_layers
    nb = x.shape[0]
    for i in reversed(range(n_layers)):
        deriv = df(pres[i]) if i < n_layers - 1 else torch.ones_like(pres[i])
        delta = xis[i + 1] * deriv
        dws[i] = sum(torch.outer(delta[n], us[i][n]) for n in range(nb)) / nb
        dbs[i] = delta.mean(0)
        if thetas[i] is not None:
            xis[i] = torch.stack([thetas[i].t() @ delta[n] for n in range(nb)])
            dthetas[i] = sum((-torch.outer(xis[i][n], delta[n])).t() for n in range(nb)) / nb
    return {"u": us, "xi": xis, "dW": dws, "db": dbs, "dTheta": dthetas}

