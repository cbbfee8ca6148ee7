r"""Surrogate spike functions: Heaviside forward, smooth pseudo-derivative backward.

A spiking neuron emits :math:`s = H(v)` with :math:`v = U - \vartheta`. :math:`H` has zero derivative almost
everywhere, so training by backpropagation through time replaces :math:`H'` by the derivative of a smooth
*primitive* :math:`f` in the backward pass (Neftci, Mostafa & Zenke 2019, "Surrogate gradient learning in
spiking neural networks", IEEE Signal Process. Mag. 36:51). Each surrogate here is a
:class:`torch.autograd.Function` and ships its primitive so the pseudo-derivative can be checked against
autograd of the primitive (see ``tests/test_spiking.py``).

* fast sigmoid (SuperSpike, Zenke & Ganguli 2018): :math:`f(v) = v/(1+k|v|)`, :math:`f'(v)=1/(1+k|v|)^2`.
  Lin & Huang (2024) use :math:`k = 25`.
* ATan (Fang et al. 2021, SpikingJelly): :math:`f(v) = \tfrac1\pi\arctan(\tfrac\pi2\alpha v)+\tfrac12`,
  :math:`f'(v) = \tfrac{\alpha/2}{1+(\pi\alpha v/2)^2}`.
* triangle (Bellec et al. 2018): :math:`f'(v) = \gamma\max(0, 1-|v|/w)/w`.

>>> v = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
>>> s = spike(v, "fast_sigmoid", 25.0); s.tolist()
[0.0, 1.0, 1.0]
"""

from __future__ import annotations

import math

import torch

__all__ = ["SURROGATES", "ATan", "FastSigmoid", "Triangle", "primitive", "pseudo_derivative", "spike"]


def _heaviside(v: torch.Tensor) -> torch.Tensor:
    """:math:`H(v) = [v \\ge 0]` (a neuron fires when its membrane reaches the threshold)."""
    return (v >= 0).to(v.dtype)


class FastSigmoid(torch.autograd.Function):
    r"""Heaviside with the fast-sigmoid pseudo-derivative :math:`\partial s/\partial v = 1/(1+k|v|)^2`
    (Zenke & Ganguli 2018; slope :math:`k=25` in Lin & Huang 2024). ``FastSigmoid.apply(v, k)``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.slope = float(slope)
        return _heaviside(v)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        return grad / (1.0 + ctx.slope * v.abs()).square(), None

    @staticmethod
    def primitive(v: torch.Tensor, slope: float) -> torch.Tensor:
        """:math:`f(v) = v/(1+k|v|)`, whose derivative is the pseudo-derivative."""
        return v / (1.0 + slope * v.abs())


class ATan(torch.autograd.Function):
    r"""Heaviside with the arctan pseudo-derivative
    :math:`\partial s/\partial v = (\alpha/2)/(1+(\pi\alpha v/2)^2)` (Fang et al. 2021; default
    :math:`\alpha=2`). ``ATan.apply(v, alpha)``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.alpha = float(alpha)
        return _heaviside(v)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1.0 + (math.pi / 2 * a * v).square()), None

    @staticmethod
    def primitive(v: torch.Tensor, alpha: float) -> torch.Tensor:
        r""":math:`f(v) = \arctan(\pi\alpha v/2)/\pi + 1/2`."""
        return torch.atan(math.pi / 2 * alpha * v) / math.pi + 0.5


class Triangle(torch.autograd.Function):
    r"""Heaviside with the triangular pseudo-derivative :math:`\partial s/\partial v = \max(0, 1-|v|/w)/w`
    (Bellec et al. 2018, width :math:`w`, default 1; unit area). ``Triangle.apply(v, width)``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.width = float(width)
        return _heaviside(v)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        w = ctx.width
        return grad * (1.0 - v.abs() / w).clamp_min(0.0) / w, None

    @staticmethod
    def primitive(v: torch.Tensor, width: float) -> torch.Tensor:
        r""":math:`f(v) = \int_{-w}^{v}\max(0,1-|u|/w)/w\,du` (piecewise quadratic, 0 below :math:`-w`,
        1 above :math:`w`)."""
        u = (v / width).clamp(-1.0, 1.0)
        return 0.5 + u - u * u.abs() / 2


SURROGATES: dict[str, type[torch.autograd.Function]] = {
    "fast_sigmoid": FastSigmoid, "atan": ATan, "triangle": Triangle}
#: the scale parameter each surrogate takes by default (slope k, alpha, width)
DEFAULT_SCALE = {"fast_sigmoid": 25.0, "atan": 2.0, "triangle": 1.0}


def _get(name: str) -> type[torch.autograd.Function]:
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; allowed: {', '.join(SURROGATES)}")
    return SURROGATES[name]


def spike(v: torch.Tensor, surrogate: str = "fast_sigmoid", scale: float | None = None) -> torch.Tensor:
    """:math:`H(v)` with the pseudo-derivative of ``surrogate`` (``fast_sigmoid`` | ``atan`` | ``triangle``)."""
    fn = _get(surrogate)
    return fn.apply(v, DEFAULT_SCALE[surrogate] if scale is None else scale)


def primitive(v: torch.Tensor, surrogate: str = "fast_sigmoid", scale: float | None = None) -> torch.Tensor:
    """The smooth function whose derivative is the pseudo-derivative of ``surrogate``."""
    fn = _get(surrogate)
    return fn.primitive(v, DEFAULT_SCALE[surrogate] if scale is None else scale)


def pseudo_derivative(v: torch.Tensor, surrogate: str = "fast_sigmoid", scale: float | None = None,
                      ) -> torch.Tensor:
    """:math:`\\partial s/\\partial v` of ``surrogate`` evaluated at ``v`` (no autograd; used by the fast
    hand-written BPTT in :mod:`neuroplastic.spiking.mode_rnn`)."""
    _get(surrogate)
    k = DEFAULT_SCALE[surrogate] if scale is None else float(scale)
    if surrogate == "fast_sigmoid":
        return 1.0 / (1.0 + k * v.abs()).square()
    if surrogate == "atan":
        return (k / 2) / (1.0 + (math.pi / 2 * k * v).square())
    return (1.0 - v.abs() / k).clamp_min(0.0) / k
