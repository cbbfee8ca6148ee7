"""The networks of Lv et al. (ICML 2025): MLPs, CNNs and an RNN, as plain torch modules converted to DLL.

One architecture, many rules: the CNN builders return a plain ``nn.Sequential`` (``Conv2d``/``Linear``/
activation/pooling) that backprop and the feedback-alignment family train as is; :func:`to_dll` swaps its
weight layers for :class:`~neuroplastic.dll.layers.DLLLinear`/``DLLConv2d`` with the *same* weights.
Every feed-forward network has one name, in the one registry :data:`neuroplastic.nn.archs.ARCHS`: the paper's MLP is
``mlp`` with ``hidden=(1024, 512, 256)`` (MNIST) or ``(4096, 2048, 1024, 256)`` (CIFAR-10) and ``act="tanh"``;
its CNNs are ``lv_cnn_mnist`` and ``lv_cnn_cifar``, so bp/fa/dfa train the very same nets.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DLLConv2d, DLLLinear

__all__ = ["DLLRNN", "to_dll", "weight_layers"]


def weight_layers(net: nn.Module) -> list[nn.Module]:
    """The DLL weight layers of ``net`` in forward order."""
    return [m for m in net.modules() if isinstance(m, (DLLLinear, DLLConv2d))]


def to_dll(net: nn.Sequential, feedback: str = "learned", theta_std: float | None = 1.0,
           generator: torch.Generator | None = None) -> nn.Sequential:
    """Return a copy of ``net`` whose ``Linear``/``Conv2d`` layers are DLL layers with the same weights.

    The first weight layer gets no Θ (ξ₀ is an error on the input, which nothing reads). ``theta_std``:
    Θ ~ N(0, theta_std²) (1.0 as in the reference code; the paper gives no value), or ``None`` for W's
    own U(±1/√fan_in) scale. ``feedback``: ``learned`` | ``fixed`` | ``bp``.
    """
    layers, first = [], True
    for m in net:
        if isinstance(m, nn.Linear):
            layers.append(DLLLinear.from_linear(m, feedback=feedback, has_theta=not first,
                                                theta_std=theta_std, generator=generator))
            first = False
        elif isinstance(m, nn.Conv2d):
            layers.append(DLLConv2d.from_conv(m, feedback=feedback, has_theta=not first,
                                              theta_std=theta_std, generator=generator))
            first = False
        elif isinstance(m, (nn.Sequential, nn.ModuleList)):
            raise TypeError("to_dll expects a flat nn.Sequential (no nested containers)")
        else:
            layers.append(m)
    if first:
        raise ValueError("to_dll: the network has no Linear/Conv2d layer")
    return nn.Sequential(*layers)


class DLLRNN(nn.Module):
    """Elman RNN with DLL layers: ``h_t = tanh(W_x x_t + W_h h_{t−1} + b)``, ``y_t = W_y h_t + b_y``.

    DLL RNN variant of Lv et al. 2025: the output error is ``ξ^y = t − y`` (``−∇`` of the cross-entropy
    of the scores), and the hidden units' somatic error is built top-down with learned ``Θ_y`` (in place of
    ``W_yᵀ``) and, through time, ``Θ_h`` (in place of ``W_hᵀ``); both learn by the paper's Θ rule.
    ``W_x`` reads the input and has no Θ. ``output``: ``last`` (classify the sequence at its last step,
    e.g. sequential MNIST) or ``all`` (a prediction per step, e.g. next character).

    Input ``[N, T, C]`` (an image ``[N, 1, H, W]`` is read as ``T = H`` rows of ``C = W`` pixels).
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, *, output: str = "last",
                 feedback: str = "learned", theta_std: float | None = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if output not in ("last", "all"):
            raise ValueError(f"unknown output {output!r}; allowed: last, all")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.output = output
        kw = {"feedback": feedback, "theta_std": theta_std, "generator": generator}
        self.w_x = DLLLinear(in_features, hidden, True, has_theta=False, **kw)
        self.w_h = DLLLinear(hidden, hidden, False, **kw)
        with torch.no_grad():  # orthogonal-ish recurrent init keeps tanh dynamics stable
            q, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=generator))
            self.w_h.weight.copy_(q)
        self.w_y = DLLLinear(hidden, out_features, True, **kw)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.flatten(1, 2)  # [N, 1, H, W] -> [N, H, W]: rows are time steps
        if x.dim() != 3:
            raise ValueError(f"DLLRNN expects [N, T, C] (or [N, 1, H, W]), got {tuple(x.shape)}")
        ax = self.w_x(x)
        hs = []
        h = None
        for t in range(x.shape[1]):  # h_0 = 0, so the first step has no recurrent term
            h = torch.tanh(ax[:, t] if h is None else ax[:, t] + self.w_h(h))
            if self.output == "all":
                hs.append(h)
        if self.output == "last":
            return self.w_y(h)
        return self.w_y(torch.stack(hs, 1))

