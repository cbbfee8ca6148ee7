r"""Architecture presets of the Hebbian CNNs, built once and shared by the Hebbian learner and its backprop baseline.

A preset is a list of stages; each stage is ``BN(affine=False) → Hebbian conv(s) → Triangle(p) → pool``
(Journé et al., ICLR 2023; Nimmo & Mondragón 2025). Presets:

``softhebb``
    96-384-1536 channels, kernels 5/3/3, Triangle 0.7/1.4/1.0, MaxPool(4,2,1) ×2 then AvgPool(2,2),
    SoftHebb rule with :math:`t_{\mathrm{inv}} = 1, 0.65, 0.25` (the factor multiplying :math:`u` inside the
    softmax, i.e. temperatures 1, 1/0.65, 1/0.25: the values of the authors' code, ``softmax(t_invert * u)``),
    :math:`\eta_0 = 0.08, 0.005, 0.01`, :math:`w \sim \mathcal N(0,1)\,25/\sqrt{\mathrm{fan\_in}}`, reflect
    padding; batch 10; 50 probe epochs on the raw (unstandardised) features, as in the authors' readout.
``soft``
    Nimmo & Mondragón's SoftHebb reproduction: the ``softhebb`` network and rule with their protocol
    (20 probe epochs, batch 64 in their runs).
``hard`` / ``bcm``
    the same network with the hard-WTA instar rule / BCM with WTA mask (θ decay 0.3/0.35/0.35),
    Kaiming-uniform init, per-layer rate 0.1/0.08/0.05, ZCA-whitened input; 20 probe epochs.
``optimal``
    BCM + cosine activation + difference-of-Gaussians surround (kernel 5/3/3, σe/σi 1.2/1.3, 1.0/1.2,
    0.8/1.1) — Nimmo & Mondragón's best configuration. The surround filters the activity the rule correlates
    (``surround="rule"``, zero-sum kernel); the competition and the next stage see the plain currents. Chosen
    on validation over ``optimal-ref`` (CIFAR-10, seed 0: 74.18 % vs 72.66 %; ``benchmarks/RESULTS.md``).
    With the authors' flips (``protocol: {hflip: true, probe: {flip: true, epochs: 50}}``), selected
    on validation, it reaches 75.75 % on CIFAR-10 (mean of seeds 0–2; section ``hebbian_cifar10_optimal_hflip``).
``optimal-ref``
    ``optimal`` with the surround as in the authors' code (``surround="response"``): the kernel's Gaussians are
    normalised by 2πσ² (it sums to 1.7–2.8) and it filters each layer's response, which the competition, the
    rule and the next stage all see. 1×1 layers get no surround in any preset.
``depthwise``
    ``optimal-ref`` with stages 2 and 3 depthwise-separable: depthwise 3×3 → ``BN(affine=False)`` → pointwise
    1×1, both Hebbian, no activation between them (as the authors' ``model_depthwise``).
``residual``
    ``optimal`` with stages 2 and 3 inverted bottlenecks (1×1 expand ×4 → depthwise 3×3 → 1×1 project,
    plus the channel-tiled input as a skip connection).
``stl10``
    ``softhebb`` plus a fourth stage of 6144 channels (:math:`t_{\mathrm{inv}} = 0.25`) for 96×96 STL-10.
``krotov``
    one :class:`~neuroplastic.hebbian.layers.HebbLinear` layer of 2000 units with the Krotov–Hopfield rule
    (p = 3, k = 2, Δ = 0.4) and ReLU^4.5 features (Krotov & Hopfield 2019).

``width`` multiplies every channel count (tiny widths for 8×8 digits in the quick suite). Pools that do
not fit a small input (e.g. 8×8) are dropped, so every preset runs on 1×8×8, 1×28×28 and 3×32×32.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from .layers import HebbConv2d, HebbLinear, Triangle
from .rules import make_rule

__all__ = ["PRESETS", "HebbNet", "PresetInfo", "StageSpec", "build", "preset_info"]


@dataclasses.dataclass
class StageSpec:
    """One stage: ``kind`` (``conv``, ``sep``, ``res``, ``linear``), output channels, kernel, padding,
    Triangle power, pool ``(kind, k, s, p)`` or ``None``, rule name and arguments, base rate, DoG and where it
    acts (``surround``, see :class:`~neuroplastic.hebbian.layers.HebbConv2d`)."""

    out: int
    kernel: int = 3
    padding: int = 1
    power: float = 1.0
    pool: tuple | None = ("max", 4, 2, 1)
    rule: str = "softhebb"
    rule_kw: dict = dataclasses.field(default_factory=dict)
    lr: float = 0.01
    dog: tuple | None = None
    kind: str = "conv"
    surround: str = "response"


@dataclasses.dataclass
class PresetInfo:
    """A preset: stages plus network-wide options and protocol facts (probe epochs, batch size, ZCA)."""

    stages: list[StageSpec]
    init: str = "softhebb"
    cosine: bool = False
    zca: bool = False
    probe_epochs: int = 20
    batch_size: int = 64
    summary: str = ""
    out_norm: bool = False  # standardise the output features per channel (running BN statistics)
    probe_standardize: bool = True  # the probe z-scores its inputs (False: raw features, SoftHebb's readout)


def _softhebb_stages() -> list[StageSpec]:
    return [
        StageSpec(96, 5, 2, 0.7, ("max", 4, 2, 1), "softhebb", {"t_inv": 1.0}, 0.08),
        StageSpec(384, 3, 1, 1.4, ("max", 4, 2, 1), "softhebb", {"t_inv": 0.65}, 0.005),
        StageSpec(1536, 3, 1, 1.0, ("avg", 2, 2, 0), "softhebb", {"t_inv": 0.25}, 0.01),
    ]


def _nimmo_stages(rule: str, dog: bool, surround: str = "rule") -> list[StageSpec]:
    decays = (0.3, 0.35, 0.35)
    dogs = ((5, 1.2, 1.3), (3, 1.0, 1.2), (3, 0.8, 1.1))
    out = []
    for i, (s, lr) in enumerate(zip(_softhebb_stages(), (0.1, 0.08, 0.05))):
        kw = {"theta_decay": decays[i]} if rule == "bcm" else {}
        out.append(dataclasses.replace(s, rule=rule, rule_kw=kw, lr=lr, dog=dogs[i] if dog else None,
                                       surround=surround))
    return out


def _presets() -> dict[str, PresetInfo]:
    opt = _nimmo_stages("bcm", dog=True)
    ref = _nimmo_stages("bcm", dog=True, surround="response")
    sep = [ref[0]] + [dataclasses.replace(s, kind="sep") for s in ref[1:]]
    res = [opt[0]] + [dataclasses.replace(s, kind="res") for s in opt[1:]]
    stl = _softhebb_stages()
    stl[2] = dataclasses.replace(stl[2], pool=("max", 4, 2, 1))
    stl.append(StageSpec(6144, 3, 1, 1.0, ("avg", 2, 2, 0), "softhebb", {"t_inv": 0.25}, 0.01))
    return {
        "softhebb": PresetInfo(_softhebb_stages(), "softhebb", False, False, 50, 10,
                               "SoftHebb 96-384-1536 (Journé et al. 2023)", probe_standardize=False),
        "soft": PresetInfo(_softhebb_stages(), "softhebb", False, False, 20, 64,
                           "SoftHebb rule, Nimmo & Mondragón protocol", probe_standardize=False),
        "hard": PresetInfo(_nimmo_stages("hard", False), "kaiming", False, True, 20, 64, "hard-WTA instar", out_norm=True),
        "bcm": PresetInfo(_nimmo_stages("bcm", False), "kaiming", False, True, 20, 64, "BCM + WTA mask", out_norm=True),
        "optimal": PresetInfo(opt, "kaiming", True, True, 20, 64, "BCM + cosine + DoG (Nimmo & Mondragón)", out_norm=True),
        "optimal-ref": PresetInfo(ref, "kaiming", True, True, 20, 64, "optimal, surround as in the authors' code",
                                  out_norm=True),
        "depthwise": PresetInfo(sep, "kaiming", True, True, 20, 64, "optimal-ref, depthwise-separable stages", out_norm=True),
        "residual": PresetInfo(res, "kaiming", True, True, 20, 64, "optimal, inverted-bottleneck stages", out_norm=True),
        "stl10": PresetInfo(stl, "softhebb", False, False, 50, 10, "SoftHebb with a 4th 6144 stage", probe_standardize=False),
        "krotov": PresetInfo([StageSpec(2000, pool=None, power=4.5, rule="krotov",
                                        rule_kw={"p": 3.0, "k": 2, "delta": 0.4}, lr=0.02, kind="linear")],
                             "normal", False, False, 20, 100, "Krotov–Hopfield 2000-unit layer"),
    }


PRESETS: dict[str, PresetInfo] = _presets()


def preset_info(name: str) -> PresetInfo:
    """A deep copy of preset ``name``; unknown names raise ``ValueError`` listing the allowed ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown Hebbian preset {name!r}; allowed: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def _pool(spec: tuple | None, h: int, w: int) -> tuple[nn.Module, int, int]:
    if spec is None:
        return nn.Identity(), h, w
    kind, k, s, p = spec
    if h + 2 * p < k or w + 2 * p < k or (kind == "avg" and min(h, w) < k):
        return nn.Identity(), h, w  # the input is too small for this pool: skip it
    mod = nn.MaxPool2d(k, s, p) if kind == "max" else nn.AvgPool2d(k, s, p)
    return mod, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


class _Stage(nn.Module):
    """``BN(affine=False) → Hebbian layer(s) → Triangle → pool`` (see :mod:`neuroplastic.hebbian.models`)."""

    def __init__(self, kind: str, cin: int, cout: int, spec: StageSpec, make, pool: nn.Module) -> None:
        super().__init__()
        self.kind = kind
        self.bn = nn.BatchNorm2d(cin, affine=False) if kind != "linear" else nn.BatchNorm1d(cin, affine=False)
        self.act = Triangle(spec.power) if kind != "linear" else _PowerReLU(spec.power)
        self.pool = pool
        if kind == "conv":
            self.conv = make(cin, cout, spec.kernel, spec.padding, 1, spec.dog)
        elif kind == "sep":
            self.dw = make(cin, cin, spec.kernel, spec.padding, cin, spec.dog)
            self.bn_pw = nn.BatchNorm2d(cin, affine=False)  # the authors' depthwise net: BN, no activation
            self.pw = make(cin, cout, 1, 0, 1, None)  # no surround on 1×1 layers (as the authors' code)
        elif kind == "res":
            mid = 4 * cin
            self.expand = make(cin, mid, 1, 0, 1, None)
            self.act_e = Triangle(1.0)
            self.dw = make(mid, mid, spec.kernel, spec.padding, mid, spec.dog)
            self.act_dw = Triangle(1.0)
            self.project = make(mid, cout, 1, 0, 1, None)
            if cout % cin:
                raise ValueError(f"residual stage needs out channels ({cout}) to be a multiple of in ({cin})")
        elif kind == "linear":
            self.fc = make(cin, cout)
        else:
            raise ValueError(f"unknown stage kind {kind!r}; allowed: conv, sep, res, linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x.flatten(1) if self.kind == "linear" else x)
        if self.kind == "conv":
            u = self.conv(z)
        elif self.kind == "sep":
            u = self.pw(self.bn_pw(self.dw(z)))
        elif self.kind == "res":
            h = self.act_dw(self.dw(self.act_e(self.expand(z))))
            u = self.project(h) + z.repeat(1, self.project.out_channels // z.shape[1], 1, 1)  # tiled skip
        else:
            u = self.fc(z)
        if isinstance(self.pool, nn.MaxPool2d) and isinstance(self.act, Triangle):
            # Triangle's rectification is monotone, so it commutes with the max-pool: pool first, rectify fewer values
            return self.act.rectify(self.pool(self.act.center(u)))
        return self.pool(self.act(u))


class _PowerReLU(nn.Module):
    r""":math:`y = \mathrm{ReLU}(u)^n` (Krotov & Hopfield 2019 use n = 4.5 for the classifier's input)."""

    def __init__(self, power: float) -> None:
        super().__init__()
        self.power = float(power)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.where(u > 0, u.clamp_min(1e-12).pow(self.power), torch.zeros_like(u))


class HebbNet(nn.Module):
    """A stack of Hebbian stages (:func:`build`); ``forward`` returns the last stage's pooled output."""

    def __init__(self, stages: list[nn.Module], lrs: list[float], out_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_shape = out_shape
        self._lrs = lrs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for s in self.stages:
            x = s(x)
        return x

    def hebb_layers(self) -> list[tuple[str, nn.Module, float]]:
        """``(name, layer, base rate)`` of every Hebbian layer, in forward order."""
        out = []
        for i, s in enumerate(self.stages):
            for name, m in s.named_children():
                if isinstance(m, (HebbConv2d, HebbLinear)):
                    out.append((f"stages.{i}.{name}", m, self._lrs[i]))
        return out

    def set_plastic(self, flag: bool) -> None:
        """Switch the local rule of every Hebbian layer on or off."""
        for _, m, _ in self.hebb_layers():
            m.plastic = bool(flag)

    @property
    def out_features(self) -> int:
        n = 1
        for d in self.out_shape:
            n *= d
        return n


def build(preset: str | PresetInfo, in_shape: tuple[int, ...], *, width: float = 1.0, rule: str | None = None,
          rule_kw: dict[str, Any] | None = None, cosine: bool | None = None, dog: bool | None = None,
          dale: float | None = None, init: str | None = None, update_dtype: str | None = None,
          seed: int = 0) -> HebbNet:
    """Build preset ``preset`` for one input of shape ``in_shape`` (``[C, H, W]``; ``[D]`` for ``krotov``).

    Overrides: ``width`` (channel multiplier), ``rule`` (+ ``rule_kw``) for every layer, ``cosine``,
    ``dog`` (False drops the surround kernels), ``dale`` (fraction of excitatory inputs), ``init``,
    ``update_dtype`` (precision of every layer's update product, :func:`~neuroplastic.hebbian.layers.update_dtype`).
    """
    info = preset_info(preset) if isinstance(preset, str) else copy.deepcopy(preset)
    if not 0 < width <= 64:
        raise ValueError(f"width (channel multiplier) must be in (0, 64], got {width}")
    gen = torch.Generator().manual_seed(seed)
    init = init or info.init
    cos = info.cosine if cosine is None else bool(cosine)
    in_shape = tuple(int(d) for d in in_shape)
    linear = info.stages[0].kind == "linear"
    if linear:
        c, h, w = int(torch.tensor(in_shape).prod()), 1, 1
    else:
        if len(in_shape) != 3:
            label = repr(preset) if isinstance(preset, str) else f"({info.summary})"
            raise ValueError(f"preset {label} needs image inputs [C, H, W], got in_shape={in_shape}")
        c, h, w = in_shape
    stages, lrs = [], []
    for spec in info.stages:
        if rule is not None:
            spec.rule, spec.rule_kw = rule, {}
        if rule_kw:
            spec.rule_kw = {**spec.rule_kw, **rule_kw}
        if dog is False:
            spec.dog = None
        cout = max(1, round(spec.out * width))

        def make(ci, co, k=None, p=None, g=1, dg=None, _spec=spec):
            r = make_rule(_spec.rule, co, **_spec.rule_kw)
            if _spec.kind == "linear":
                return HebbLinear(ci, co, r, cosine=cos, init=init, dale=dale, generator=gen,
                                  update_dtype=update_dtype)
            return HebbConv2d(ci, co, k, r, padding=p, groups=g, cosine=cos, dog=dg, surround=_spec.surround,
                              init=init, dale=dale if g == 1 else None, generator=gen, update_dtype=update_dtype)

        if spec.kind == "res" and cout % c:
            cout = c * max(1, round(cout / c))
        pool, h2, w2 = _pool(spec.pool, h, w)
        stages.append(_Stage(spec.kind, c, cout, spec, make, pool))
        lrs.append(spec.lr)
        c, h, w = cout, h2, w2
    out_shape = (c,) if linear else (c, h, w)
    return HebbNet(stages, lrs, out_shape)
