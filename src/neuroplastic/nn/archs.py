"""Architectures shared by every rule: one definition, converted to FA/DFA/KP/... by ``convert``.

All builders take ``in_shape`` (one sample, e.g. ``(1, 28, 28)``) and ``n_classes`` and return a plain
``nn.Sequential`` of ``Linear``/``Conv2d``/activation/pooling modules, so any feedback mode can swap the
weight layers in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``tanh``, ``sigmoid``, ``gelu``, ``elu``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_shape: tuple[int, ...], n_classes: int, hidden: tuple[int, ...] = (256,),
        act: str = "relu") -> nn.Sequential:
    """``Flatten → [Linear → act] × len(hidden) → Linear(n_classes)``."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = math.prod(in_shape)
    for h in hidden:
        layers += [nn.Linear(d, h), activation(act)]
        d = h
    layers.append(nn.Linear(d, n_classes))
    return nn.Sequential(*layers)


def lenet5(in_shape: tuple[int, ...], n_classes: int, act: str = "relu") -> nn.Sequential:
    """LeNet-5 style CNN (LeCun 1998; BioTorch's MNIST/CIFAR benchmark net):
    conv6 5×5 pad 2 → pool2 → conv16 5×5 → pool2 → FC120 → FC84 → FC(n_classes)."""
    c, h, w = in_shape
    pad = 2 if h < 32 else 0
    h2, w2 = (h + 2 * pad - 4) // 2, (w + 2 * pad - 4) // 2
    h3, w3 = (h2 - 4) // 2, (w2 - 4) // 2
    if h3 < 1 or w3 < 1:
        raise ValueError(f"lenet5 needs inputs of at least 28×28 (with padding), got {in_shape}")
    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad), activation(act), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), activation(act), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * h3 * w3, 120), activation(act), nn.Linear(120, 84), activation(act),
        nn.Linear(84, n_classes))


def small_cnn(in_shape: tuple[int, ...], n_classes: int, channels: tuple[int, ...] = (16, 32),
              act: str = "relu") -> nn.Sequential:
    """``[conv3×3 pad 1 → act → maxpool2] × len(channels) → Linear`` for small images (e.g. 8×8 digits)."""
    c, h, w = in_shape
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [nn.Conv2d(c, ch, 3, padding=1), activation(act), nn.MaxPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, n_classes)]
    return nn.Sequential(*layers)


ARCHS: dict[str, Callable[..., nn.Sequential]] = {"mlp": mlp, "lenet5": lenet5, "small_cnn": small_cnn}


def build(name: str, in_shape: tuple[int, ...], n_classes: int, **kwargs) -> nn.Sequential:
    """Build architecture ``name`` (``mlp``, ``lenet5``, ``small_cnn``) for ``in_shape``/``n_classes``."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHS)}")
    return ARCHS[name](tuple(in_shape), n_classes, **kwargs)
