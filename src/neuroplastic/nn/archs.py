"""Architectures shared by every rule: one definition, converted to FA/DFA/KP/... by ``convert``.

All builders take ``in_shape`` (one sample, e.g. ``(1, 28, 28)``) and ``n_classes`` and return a plain
``nn.Sequential`` of ``Linear``/``Conv2d``/activation/pooling modules, so any feedback mode can swap the
weight layers in place.
"""

from __future__ import annotations

import inspect
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
    if not channels or not all(isinstance(ch, int) and 1 <= ch <= 4096 for ch in channels):
        raise ValueError(f"channels must be a non-empty list of channel counts (1 to 4096), got {channels!r}")
    if min(h, w) >> len(channels) < 1:
        raise ValueError(f"channels: {len(channels)} pooling stages need inputs of at least {2 ** len(channels)} "
                         f"pixels a side, got {in_shape}")
    layers: list[nn.Module] = []
    for ch in channels:
        layers += [nn.Conv2d(c, ch, 3, padding=1), activation(act), nn.MaxPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, n_classes)]
    return nn.Sequential(*layers)


def _out(size: int, k: int, pad: int = 0) -> int:
    """Output size of a stride-1 convolution with kernel ``k`` and padding ``pad``."""
    return size + 2 * pad - k + 1


def lv_cnn_mnist(in_shape: tuple[int, ...], n_classes: int, act: str = "tanh") -> nn.Sequential:
    """Lv et al. 2025 MNIST CNN: ``conv32 k5 → maxpool2 → conv64 k3 → maxpool2 → conv16 k3 → FC200 → FC``.

    No padding (the paper gives none): 28 → 24 → 12 → 10 → 5 → 3, so the FC layer reads 16·3·3 = 144.
    """
    c, h, w = in_shape
    h1, w1 = _out(h, 5) // 2, _out(w, 5) // 2
    h2, w2 = _out(h1, 3) // 2, _out(w1, 3) // 2
    h3, w3 = _out(h2, 3), _out(w2, 3)
    if min(h3, w3) < 1:
        raise ValueError(f"lv_cnn_mnist needs inputs of at least 22×22, got {in_shape}")
    return nn.Sequential(
        nn.Conv2d(c, 32, 5), activation(act), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), activation(act), nn.MaxPool2d(2),
        nn.Conv2d(64, 16, 3), activation(act), nn.Flatten(),
        nn.Linear(16 * h3 * w3, 200), activation(act), nn.Linear(200, n_classes))


def lv_cnn_cifar(in_shape: tuple[int, ...], n_classes: int, act: str = "tanh") -> nn.Sequential:
    """Lv et al. 2025 CIFAR-10 CNN: ``conv64 → maxpool2 → conv128 → maxpool2 → conv64 → avgpool2 → FC256 → FC``.

    All convs 3×3 padding 1 (the paper states k3 p1 for the first; we keep it for all). The average pool
    is 2×2 (the paper does not give its size), so 32 → 16 → 8 → 4 and the FC layer reads 64·4·4 = 1024.
    """
    c, h, w = in_shape
    if h % 8 or w % 8:
        raise ValueError(f"lv_cnn_cifar needs height and width divisible by 8, got {in_shape}")
    return nn.Sequential(
        nn.Conv2d(c, 64, 3, padding=1), activation(act), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), activation(act), nn.MaxPool2d(2),
        nn.Conv2d(128, 64, 3, padding=1), activation(act), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(64 * (h // 8) * (w // 8), 256), activation(act), nn.Linear(256, n_classes))


def sal_cnn(in_shape: tuple[int, ...], n_classes: int, act: str = "relu") -> nn.Sequential:
    """Gierlich et al. 2025's deep network: ``[conv5×5(64) → act → BN → maxpool2] × 2 → FC384 → act → FC192 → act
    → FC(n_classes)``, no padding (CIFAR-10: 32 → 28 → 14 → 10 → 5, so the first FC layer reads 64·5·5 = 1,600
    units; MNIST: 1,024)."""
    c, h, w = in_shape
    h2, w2 = (h - 4) // 2, (w - 4) // 2
    h3, w3 = (h2 - 4) // 2, (w2 - 4) // 2
    if h3 < 1 or w3 < 1:
        raise ValueError(f"sal_cnn needs inputs of at least 16×16, got {in_shape}")
    return nn.Sequential(
        nn.Conv2d(c, 64, 5), activation(act), nn.BatchNorm2d(64), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 5), activation(act), nn.BatchNorm2d(64), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * h3 * w3, 384), activation(act), nn.Linear(384, 192), activation(act),
        nn.Linear(192, n_classes))


ARCHS: dict[str, Callable[..., nn.Sequential]] = {"mlp": mlp, "lenet5": lenet5, "small_cnn": small_cnn,
                                               "lv_cnn_mnist": lv_cnn_mnist, "lv_cnn_cifar": lv_cnn_cifar,
                                               "sal_cnn": sal_cnn}


def _arguments(name: str, kwargs: dict) -> dict:
    """Every shaping argument of network ``name``: the builder's defaults, updated by ``kwargs``; an unknown
    network or argument is an error naming it."""
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHS)}")
    args = {k: p.default for k, p in inspect.signature(ARCHS[name]).parameters.items()
            if k not in ("in_shape", "n_classes")}
    extra = [k for k in kwargs if k not in args]
    if extra:
        raise ValueError(f"arch {name!r} takes no {', '.join(map(repr, extra))} (it takes: {', '.join(args)})")
    return {**args, **kwargs}


def signature(name: str, **kwargs) -> str:
    """The identity of network ``name`` for comparisons across learners: its name and every argument that shapes
    it, the builder's defaults filled in, e.g. ``mlp(act=tanh, hidden=1024-512-256)``. Two configurations train
    the same network exactly when their signatures are equal, whichever learner or preset names it (DLL's preset
    ``cnn-cifar`` and backprop's ``arch: lv_cnn_cifar`` are one net). Arguments set to None take the default."""
    args = _arguments(name, {k: v for k, v in kwargs.items() if v is not None})
    text = lambda v: "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return f"{name}({', '.join(f'{k}={text(v)}' for k, v in sorted(args.items()))})"


def build(name: str, in_shape: tuple[int, ...], n_classes: int, **kwargs) -> nn.Sequential:
    """Build architecture ``name`` (one of :data:`ARCHS`) for ``in_shape``/``n_classes``."""
    _arguments(name, kwargs)
    if name != "mlp" and len(in_shape) != 3:
        raise ValueError(f"arch {name!r} needs image inputs [C, H, W], got samples of shape {tuple(in_shape)}")
    return ARCHS[name](tuple(in_shape), n_classes, **kwargs)
