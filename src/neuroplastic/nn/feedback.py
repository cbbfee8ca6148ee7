"""The feedback-alignment family as drop-in layers: the backward pass uses a feedback matrix ``B``, not ``W``.

Convention: ``B`` has the shape of ``W`` (``out × in``; for a convolution ``C_out × C_in/groups × kH × kW``),
so a :class:`FeedbackLinear` computes

.. math::

    y = x W^\\top + b, \\qquad
    \\frac{\\partial L}{\\partial x} := \\delta B, \\qquad
    \\frac{\\partial L}{\\partial W} = \\delta^\\top x, \\qquad
    \\frac{\\partial L}{\\partial b} = \\textstyle\\sum_n \\delta_n

with ``δ = ∂L/∂y`` (``grad_output``), and ``B = W`` is exactly backpropagation. A :class:`FeedbackConv2d`
sends ``δ`` back through the transposed convolution with ``B`` (``conv_transpose2d(δ, B)``) and keeps the
usual weight gradient (the correlation of ``δ`` with the input). The modes differ only in ``B``:

============  ==========================================================================================
``fa``        fixed random ``B`` (Lillicrap, Cownden, Tweed & Akerman 2016, Nat. Commun. 7:13276)
``dfa``       every layer's ``grad_input`` is ``e B_l`` with ``e`` the output layer's ``grad_output`` and
              ``B_l`` fixed random ``n_out × (input size)`` (Nøkland 2016, NeurIPS); ``e`` reaches the
              layers through an explicit :class:`FeedbackContext` shared by the converted layers
``usf``       ``B = s · sign(W)``, ``s = 1 / sqrt(3 fan_in)`` (uniform sign-concordant feedback, Liao, Leibo
              & Poggio 2016, AAAI; scaled to the init's std as Moskovitz et al. 2018 advise)
``brsf``      ``B = |M| ∘ sign(W)``, ``M`` redrawn every training batch (Liao et al. 2016)
``frsf``      ``B = |M₀| ∘ sign(W)``, ``M₀`` fixed (Liao et al. 2016)
``kp``        ``B`` learned with the same update as ``W`` plus weight decay, so ``B → W``
              (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, NeurIPS)
``dll``       ``B`` (DLL's Θ) learned by the layer's local rule ``ΔB = −η δ ξᵀ`` with ``ξ = δ B`` the error
              it sends down: gradient descent on ``½‖ξ‖²`` (Lv et al. 2025, ICML; :mod:`neuroplastic.dll`)
``sal``       ``B`` learned from spike timing in a separate phase of a spiking copy of the network, not by
              autograd (Gierlich et al. 2025; :mod:`neuroplastic.sal`); the backward pass uses the current ``B``
============  ==========================================================================================

Every mode is one :class:`FeedbackMode` of :data:`STRATEGIES`: how ``B`` is made, whether and by which local
rule it learns, what the backward pass uses. A layer may hold no ``B`` (``B is None``: a first layer whose input
error nothing reads, as in DLL); its backward then transports ``W`` exactly.

Random feedback matrices are drawn like PyTorch's default weights, ``U(±1/sqrt(fan_in))``, times ``scale``,
so ``‖B‖ ≈ ‖W₀‖`` at the start (BioTorch draws both Xavier-uniform; with PyTorch's default ``W`` a Xavier
``B`` is about twice as large per layer and made SGD-trained FA diverge on LeNet in our trials). Fixed matrices are registered buffers (in ``state_dict`` and
checkpoints); KP's ``B`` is an ``nn.Parameter`` whose gradient is set to the weight gradient by the
autograd Function itself, so the learner's ordinary ``torch.optim`` optimizer applies ``ΔB = ΔW`` and
decoupled weight decay makes ``W − B`` shrink geometrically.

>>> import torch
>>> from torch import nn
>>> net = convert(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), "fa", seed=0)
>>> type(net[0]).__name__, tuple(net[2].B.shape)
('FeedbackLinear', (2, 3))
>>> sorted(alignment(net))[:2]
['angle_deg/0', 'angle_deg/1']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "MODES",
    "STRATEGIES",
    "FeedbackContext",
    "FeedbackConv2d",
    "FeedbackLinear",
    "FeedbackMode",
    "alignment",
    "angle_deg",
    "convert",
    "feedback_figure",
    "feedback_layers",
    "feedback_stats",
]

#: Added to ``convert``'s seed, so that feedback drawn with seed s differs from weights drawn after
#: ``torch.manual_seed(s)`` (same distribution, same stream: B would equal W otherwise).
_SEED_OFFSET = 0x5EEDFB

@dataclasses.dataclass(frozen=True)
class FeedbackMode:
    """A feedback mode as a strategy: ``make`` — how ``B`` starts (``uniform``: a fixed random draw
    ``U(±scale/sqrt(fan_in))``; ``dfa``: one ``n_out × input`` draw per layer; ``sign``: computed from ``W``;
    ``magnitude``: ``|M| ∘ sign(W)``), ``stored`` — ``buffer`` (fixed or changed outside autograd),
    ``parameter`` (learned through the optimizer) or ``none`` (computed), and ``rule`` — by which local rule a
    learned ``B`` changes: ``kp`` (``∇B = ∇W``), ``dll`` (``∇B = n·δᵀ(δB)``, i.e. ``ΔB = −η δ ξᵀ``), ``sal``
    (spike timing, outside autograd) or ``None`` (fixed)."""

    name: str
    make: str
    stored: str
    rule: str | None = None


#: The feedback modes, by name: one family serves FA, DFA, the sign-symmetry modes, KP, DLL's Θ and SAL.
STRATEGIES: dict[str, FeedbackMode] = {m.name: m for m in (
    FeedbackMode("fa", "uniform", "buffer"),
    FeedbackMode("dfa", "dfa", "buffer"),
    FeedbackMode("usf", "sign", "none"),
    FeedbackMode("brsf", "magnitude", "buffer"),
    FeedbackMode("frsf", "magnitude", "buffer"),
    FeedbackMode("kp", "uniform", "parameter", "kp"),
    FeedbackMode("dll", "uniform", "parameter", "dll"),
    FeedbackMode("sal", "uniform", "buffer", "sal"),
)}

#: Modes of :func:`convert` (``bp`` leaves the model unchanged).
MODES = ("bp", *STRATEGIES)


class FeedbackContext:
    """State shared by the converted layers of one model (one object per :func:`convert` call).

    ``mode``: the feedback mode. ``generator``: CPU ``torch.Generator`` that seeds the feedback draws;
    ``brsf``'s per-batch redraws use a generator on the weights' device, created from it on first use
    (:meth:`device_generator`), so drawing on a GPU needs no host-device copy. ``error``: for ``dfa``, the
    output layer's ``grad_output`` ``e`` of the current backward pass, ``[N, n_out]``; the output layer
    writes it when its backward runs (always first: every other layer's gradient depends on it) and every
    other layer reads it. It is cleared at the output layer's forward and never pickled.
    """

    def __init__(self, mode: str, generator: torch.Generator | None = None) -> None:
        self.mode = mode
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.device_generators: dict[str, torch.Generator] = {}
        self.error: torch.Tensor | None = None

    def device_generator(self, device: torch.device) -> torch.Generator:
        """The generator for draws on ``device`` (the CPU one, or one seeded from it on first use)."""
        if device.type == "cpu":
            return self.generator
        key = str(device)
        if key not in self.device_generators:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
            self.device_generators[key] = torch.Generator(device=device).manual_seed(seed)
        return self.device_generators[key]

    def generators(self) -> dict[str, torch.Generator]:
        """Every generator in use, by name (``feedback``, ``feedback_cuda:0``, ...), for checkpoints."""
        gens = {"feedback": self.generator}
        gens.update({f"feedback_{k}": g for k, g in self.device_generators.items()})
        return gens

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["error"] = None
        state["device_generators"] = {}  # recreated from `generator` on first use
        return state

    def __repr__(self) -> str:
        return f"FeedbackContext(mode={self.mode!r})"


def _init_bound(shape: tuple[int, ...]) -> float:
    """``1 / sqrt(fan_in)``: the bound of PyTorch's default ``Linear``/``Conv2d`` weight init
    (``kaiming_uniform_(a=sqrt(5))``), so a random ``B`` starts with ``‖B‖ ≈ ‖W‖``. DFA's ``B_l``
    (``n_out × input size``) is treated as a weight of that shape: ``1 / sqrt(input size)``."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return 1.0 / math.sqrt(shape[1] * receptive)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    """``U(-bound, bound)`` of ``shape`` drawn on the CPU from ``generator``."""
    return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound


# ------------------------------------------------------------------------------------------------------
# autograd Functions
def _autocast(x: torch.Tensor, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Inside ``torch.autocast`` for ``x``'s device: ``x`` and ``tensors`` (weight, bias, ``B``) in autocast's
    dtype, as ``F.linear``/``F.conv2d`` would compute, so that the backward's products (``δ B``, ``δᵀx``) run in
    that dtype too; the engine casts each gradient back to its parameter's dtype. Outside autocast: unchanged."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return (x, *tensors)
    dt = torch.get_autocast_dtype(dev)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dt) for t in (x, *tensors))


def _dfa_grad_input(ctx_obj: FeedbackContext, is_output: bool, grad_output: torch.Tensor, B: torch.Tensor,
                    x_shape: torch.Size) -> torch.Tensor:
    """DFA: ``grad_input = e B_l`` reshaped to the input's shape; the output layer publishes ``e``."""
    n = grad_output.shape[0]
    if is_output:
        ctx_obj.error = grad_output.detach().reshape(n, -1)
    e = ctx_obj.error
    if e is None:
        raise RuntimeError("dfa: no output error in the feedback context; the output layer's backward must run "
                           "before the hidden layers' (call backward on a loss of the network's output)")
    if e.shape[0] != n:
        raise RuntimeError(f"dfa: output error has batch size {e.shape[0]} but this layer's batch is {n}; "
                           "run one forward and one backward per batch")
    return (e.to(B.dtype) @ B).reshape(x_shape)


class _LinearFn(torch.autograd.Function):
    """``y = x Wᵀ + b`` whose backward returns ``δ B`` (or DFA's ``e B_l``; ``δ W`` when ``B`` is None) for ``x``,
    ``δᵀx`` for ``W``, and for a learned ``B`` the gradient of its rule (``kp``: ``δᵀx``; ``dll``:
    ``sign · n · δᵀ(δB)``, ``n`` the rows of ``δ``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, dfa, redraw, rule, sign):
        x, weight, bias, B = _autocast(x, weight, bias, B)
        ctx.save_for_backward(x, weight, B)
        ctx.has_bias = bias is not None
        ctx.dfa = dfa  # None or (FeedbackContext, is_output)
        ctx.redraw = redraw  # None, or the brSF layer: B is drawn when the gradient is computed
        ctx.rule, ctx.sign = rule, sign
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, B = ctx.saved_tensors
        if ctx.redraw is not None:
            B = ctx.redraw._redraw(weight)
        fb = B if B is not None else weight
        learn_B = ctx.needs_input_grad[3]
        gx = gx2 = gw = gb = gB = None
        g2 = grad_output.reshape(-1, grad_output.shape[-1])
        if ctx.needs_input_grad[0] or (learn_B and ctx.rule == "dll"):
            if ctx.dfa is not None:
                gx = _dfa_grad_input(ctx.dfa[0], ctx.dfa[1], grad_output, fb, x.shape)
            else:
                gx2 = g2 @ fb
                gx = gx2.reshape(x.shape)
        if ctx.needs_input_grad[1] or (learn_B and ctx.rule == "kp"):
            x2 = x.reshape(-1, x.shape[-1])
            gw = g2.t().mm(x2)  # δᵀx, in the form autograd uses for F.linear (bit-identical to BP)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g2.sum(0)
        if learn_B:
            if ctx.rule == "kp":  # ΔB = ΔW
                gB = gw.clone()
            elif ctx.rule == "dll":  # ∇B = n δᵀ ξ with ξ = δB: the batch mean of δ ξᵀ (see neuroplastic.dll)
                gB = (ctx.sign * g2.shape[0]) * (g2.t() @ gx2)
        return (gx if ctx.needs_input_grad[0] else None, gw if ctx.needs_input_grad[1] else None, gb, gB,
                None, None, None, None)


class _Conv2dFn(torch.autograd.Function):
    """``conv2d(x, W, b)`` whose backward sends ``δ`` back through ``conv_transpose2d(δ, B)`` (DFA: ``e B_l``;
    ``W`` when ``B`` is None), keeps backprop's weight gradient, and gives a learned ``B`` its rule's gradient
    (``kp``: ``∇W``; ``dll``: ``sign · n · conv_weight(∂x, δ)``, the convolutional ``δ ξᵀ``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, B, geom, dfa, redraw, rule, sign):
        stride, padding, dilation, groups, _ = geom
        x, weight, bias, B = _autocast(x, weight, bias, B)
        ctx.save_for_backward(x, weight, B)
        ctx.geom = geom
        ctx.has_bias = bias is not None
        ctx.dfa = dfa
        ctx.redraw = redraw
        ctx.rule, ctx.sign = rule, sign
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, B = ctx.saved_tensors
        if ctx.redraw is not None:
            B = ctx.redraw._redraw(weight)
        fb = B if B is not None else weight
        stride, padding, dilation, groups, bias_sum = ctx.geom
        learn_B = ctx.needs_input_grad[3]
        need_x = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1] or (learn_B and ctx.rule == "kp")
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        gx = gw = gb = gB = None
        via_B = (need_x or (learn_B and ctx.rule == "dll")) and ctx.dfa is None
        aten_b = need_b and not bias_sum
        if via_B or need_w or aten_b:
            # grad_weight does not depend on the weight's values, only its shape (B has W's shape outside DFA)
            kernel = fb if via_B else weight
            gx, gw, gb = torch.ops.aten.convolution_backward(
                grad_output, x, kernel, bias_sizes if aten_b else None, list(stride), list(padding), list(dilation),
                False, [0, 0], groups, [via_B, need_w, aten_b])
        if need_b and bias_sum:  # the same sum in another order (the order DLL's records were made with)
            gb = grad_output.sum((0, 2, 3))
        if need_x and ctx.dfa is not None:
            gx = _dfa_grad_input(ctx.dfa[0], ctx.dfa[1], grad_output, fb, x.shape)
        if learn_B:
            if ctx.rule == "kp":
                gB = gw.clone()
            elif ctx.rule == "dll":
                gB = (ctx.sign * grad_output.shape[0]) * torch.ops.aten.convolution_backward(
                    grad_output, gx, fb, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
                    [False, True, False])[1]
        return (gx if need_x else None, gw if ctx.needs_input_grad[1] else None, gb, gB, None, None, None, None,
                None)


# ------------------------------------------------------------------------------------------------------
# layers
class _FeedbackMixin:
    """Feedback state shared by :class:`FeedbackLinear` and :class:`FeedbackConv2d`."""

    mode: str
    context: FeedbackContext
    scale: float
    is_output: bool

    def _init_feedback(self, mode: str, context: FeedbackContext, scale: float, generator: torch.Generator | None,
                       dfa_shape: tuple[int, int] | None = None, is_output: bool = False,
                       initial: torch.Tensor | None = None, has_B: bool = True) -> None:
        """Make this layer's feedback state for ``mode`` (:data:`STRATEGIES`). ``initial``: the starting ``B``
        (a caller's own draw, e.g. DLL's Θ) instead of the mode's; ``has_B=False``: no ``B`` at all (exact
        transport of ``W``; a first layer whose input error nothing reads)."""
        if mode not in STRATEGIES:
            raise ValueError(f"unknown feedback mode {mode!r}; allowed: {', '.join(STRATEGIES)}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"feedback scale must be a positive finite number, got {scale!r}")
        strategy = STRATEGIES[mode]
        self.mode, self.context, self.scale, self.is_output = mode, context, float(scale), bool(is_output)
        self.strategy = strategy
        #: +1: a learned B follows its rule; −1: the opposite sign (DLL's reference-code variant, a labelled ablation)
        self.rule_sign = 1.0
        #: conv layers: sum the bias gradient as ``δ.sum((0, 2, 3))`` rather than in the convolution kernel
        self.bias_sum = False
        w = self.weight
        shape = tuple(w.shape)
        bound = float(scale) * _init_bound(shape)
        if not has_B:
            if strategy.stored == "parameter":
                self.register_parameter("B", None)
            else:
                self.register_buffer("B", None)
            return
        if initial is not None:
            if strategy.stored not in ("buffer", "parameter") or strategy.make not in ("uniform",):
                raise ValueError(f"mode {mode!r} computes B from W; it takes no initial B")
            B0 = initial.to(w.device, w.dtype)
        elif strategy.make == "uniform":
            B0 = _uniform(shape, bound, generator).to(w.device, w.dtype)
        elif strategy.make == "dfa":
            if dfa_shape is None:
                raise ValueError("dfa layers need dfa_shape = (n_out, input size)")
            b = float(scale) * _init_bound(dfa_shape)
            B0 = _uniform(dfa_shape, b, generator).to(w.device, w.dtype)
        elif strategy.make == "magnitude":
            self.register_buffer("M", _uniform(shape, bound, generator).abs_().to(w.device, w.dtype))
            return
        else:  # sign: B = s · sign(W) is computed from the current W; no state
            return
        if strategy.stored == "parameter":
            self.B = nn.Parameter(B0)
        else:
            self.register_buffer("B", B0)

    @property
    def usf_scale(self) -> float:
        """uSF's ``s = scale / sqrt(3 · fan_in)``: the std of the default weight init, so ``‖B‖ ≈ ‖W₀‖``."""
        return self.scale * _init_bound(tuple(self.weight.shape)) / math.sqrt(3.0)

    def _redraw(self, weight: torch.Tensor) -> torch.Tensor:
        """brSF: redraw ``|M| ~ |U(±scale/sqrt(fan_in))|`` on the weights' device and return
        ``B = |M| ∘ sign(W)``. Called by the backward pass, i.e. once per training batch."""
        bound = self.scale * _init_bound(tuple(self.weight.shape))
        gen = self.context.device_generator(self.M.device)
        with torch.no_grad():
            torch.rand(self.M.shape, generator=gen, device=self.M.device, dtype=self.M.dtype, out=self.M)
            self.M.mul_(bound)
        return self.M * torch.sign(weight.detach())

    def feedback_matrix(self) -> torch.Tensor | None:
        """The current ``B`` (a learned one is the parameter itself; for ``brsf`` the one the last backward pass
        used; ``None`` for a layer without feedback state, whose backward transports ``W``)."""
        w = self.weight.detach()
        if self.strategy.make in ("uniform", "dfa"):
            return self.B
        if self.mode == "usf":
            return torch.sign(w) * self.usf_scale
        return self.M * torch.sign(w)  # brsf, frsf

    def _backward_operands(self) -> tuple[torch.Tensor | None, Any, Any, str | None, float]:
        """``(B, dfa, redraw, rule, sign)`` for the autograd Function: brSF draws ``B`` in the backward pass."""
        rule = self.strategy.rule if self.strategy.stored == "parameter" else None
        if self.mode == "brsf":
            return None, None, self, rule, self.rule_sign
        B = self.feedback_matrix()
        dfa = None
        if self.mode == "dfa":
            dfa = (self.context, self.is_output)
            if self.is_output:
                self.context.error = None
        return B, dfa, None, rule, self.rule_sign

    def extra_repr(self) -> str:  # type: ignore[override]
        return super().extra_repr() + f", mode={self.mode}" + (", output" if self.is_output else "")


class FeedbackLinear(_FeedbackMixin, nn.Linear):
    """``nn.Linear`` whose backward uses a feedback matrix ``B`` (see the module docstring).

    Forward: ``y = x Wᵀ + b``. Backward: ``∂x = δ B`` (``dfa``: ``e B_l``), ``∂W = δᵀ x``, ``∂b = Σ δ``.
    Build it with :func:`convert`, which keeps the original ``weight``/``bias`` parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, dfa, redraw, rule, sign = self._backward_operands()
        return _LinearFn.apply(x, self.weight, self.bias, B, dfa, redraw, rule, sign)


class FeedbackConv2d(_FeedbackMixin, nn.Conv2d):
    """``nn.Conv2d`` whose backward sends ``δ`` through ``conv_transpose2d(δ, B)`` (``dfa``: ``e B_l``)
    and keeps backprop's weight gradient. Non-zero ``padding_mode`` pads explicitly first (autograd
    differentiates the padding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, dfa, redraw, rule, sign = self._backward_operands()
        padding = self._int_padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0)
        geom = (tuple(self.stride), tuple(padding), tuple(self.dilation), self.groups, self.bias_sum)
        return _Conv2dFn.apply(x, self.weight, self.bias, B, geom, dfa, redraw, rule, sign)

    @property
    def _int_padding(self) -> tuple[int, int]:
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return (0, 0)
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                if total % 2:
                    raise ValueError(f"padding='same' with kernel {self.kernel_size} and dilation {self.dilation} "
                                     "is asymmetric; FeedbackConv2d supports symmetric padding only")
                pads.append(total // 2)
            return (pads[0], pads[1])
        return (int(self.padding[0]), int(self.padding[1]))


# ------------------------------------------------------------------------------------------------------
# conversion
def _targets(model: nn.Module) -> list[tuple[nn.Module | None, str, nn.Module]]:
    """``(parent, attribute name, layer)`` of every ``nn.Linear``/``nn.Conv2d`` (converted or not) in ``model``, in
    module order."""
    out: list[tuple[nn.Module | None, str, nn.Module]] = []
    if isinstance(model, (nn.Linear, nn.Conv2d)):
        return [(None, "", model)]
    for pname, parent in model.named_modules():
        for cname, child in parent.named_children():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                out.append((parent, cname, child))
    return out


def _probe(model: nn.Module, layers: list[nn.Module], example_input: Any) -> tuple[list[nn.Module], dict, int]:
    """Run ``model`` once on ``example_input`` and return the call order of ``layers``, each layer's input
    size per sample and the output size per sample of the last one called (the output layer)."""
    order: list[nn.Module] = []
    in_size: dict[int, int] = {}
    out_size: dict[int, int] = {}

    def pre(mod, args):
        if id(mod) in in_size:
            raise ValueError(f"dfa: layer {mod} is called more than once per forward pass; DFA needs one "
                             "feedback matrix per call")
        order.append(mod)
        in_size[id(mod)] = math.prod(args[0].shape[1:])

    def post(mod, args, output):
        out_size[id(mod)] = math.prod(output.shape[1:])

    handles = []
    for m in layers:  # temporary shape probe, removed below (no hooks stay on the model)
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not order:
        raise ValueError("dfa: the example input reached none of the model's Linear/Conv2d layers")
    return order, in_size, out_size[id(order[-1])]


def convert(model: nn.Module, mode: str, *, scale: float = 1.0, seed: int | None = None,
            example_input: Any = None, layers: tuple[type, ...] = (nn.Linear, nn.Conv2d)) -> nn.Module:
    """Swap every ``nn.Linear``/``nn.Conv2d`` of ``model`` in place for a feedback layer of ``mode``.

    The new layers keep the original ``weight``/``bias`` parameters (same objects), so a model built and
    initialised once serves every mode. ``mode``: one of :data:`MODES` (``bp`` returns ``model``
    unchanged). ``scale`` multiplies the initial feedback magnitudes. ``seed`` seeds the feedback draws
    (``None``: drawn from torch's global generator, i.e. reproducible under ``torch.manual_seed``).
    ``example_input`` (a batch, or a tuple of arguments) is required for ``dfa``: one forward pass finds
    the output layer (the last layer called) and each layer's input size, so every ``B_l``
    (``n_out × input size``) is a registered buffer from the start. Returns ``model`` (a new layer only
    when ``model`` itself is a ``Linear``/``Conv2d``).

    ``layers``: convert only layers of these types (e.g. ``(nn.Conv2d,)`` then ``(nn.Linear,)`` with another
    mode: fixed random feedback in the convolutions and learned feedback in the dense layers, as in SAL's deep
    networks); layers already converted are left alone.

    Raises ``ValueError`` for an unknown mode, a model already converted, or ``dfa`` without an example.
    """
    if mode not in MODES:
        raise ValueError(f"unknown feedback mode {mode!r}; allowed: {', '.join(MODES)}")
    if mode == "dfa" and tuple(layers) != (nn.Linear, nn.Conv2d):
        raise ValueError("dfa converts every layer (its output error reaches all of them); layers= is not allowed")
    if mode == "bp":
        return model
    targets = [t for t in _targets(model) if isinstance(t[2], tuple(layers))]
    if any(isinstance(t[2], _FeedbackMixin) for t in targets):
        raise ValueError("model already holds feedback layers; convert a fresh model")
    if not targets:
        raise ValueError("model holds no nn.Linear or nn.Conv2d layer to convert")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    # offset: a model whose weights were drawn after torch.manual_seed(seed) must not get B = W
    gen = torch.Generator().manual_seed(int(seed) + _SEED_OFFSET)
    context = FeedbackContext(mode, gen)
    order_index: dict[int, int] = {}
    in_size: dict[int, int] = {}
    n_out, output_layer = 0, None
    if mode == "dfa":
        if example_input is None:
            raise ValueError("dfa needs example_input (a batch the model accepts) to size the feedback matrices")
        order, in_size, n_out = _probe(model, [t[2] for t in targets], example_input)
        order_index = {id(m): i for i, m in enumerate(order)}
        output_layer = order[-1]
        missing = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))
                   and id(m) not in order_index]
        if missing:
            raise ValueError(f"dfa: the example input never reached layer(s) {', '.join(missing)}")
    new_root = None
    for parent, name, old in targets:
        if isinstance(old, nn.Linear):
            new: nn.Module = FeedbackLinear(old.in_features, old.out_features, bias=old.bias is not None,
                                            device="meta")
        else:
            if old.padding_mode not in ("zeros", "reflect", "replicate", "circular"):
                raise ValueError(f"unsupported padding_mode {old.padding_mode!r}")
            new = FeedbackConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                                 old.dilation, old.groups, bias=old.bias is not None,
                                 padding_mode=old.padding_mode, device="meta")
            _ = new._int_padding  # validates padding="same" early
        new.weight = old.weight
        new.bias = old.bias
        new.train(old.training)
        dfa_shape = (n_out, in_size[id(old)]) if mode == "dfa" else None
        new._init_feedback(mode, context, scale, gen, dfa_shape, is_output=old is output_layer)
        if parent is None:
            new_root = new
        else:
            setattr(parent, name, new)
    return new_root if new_root is not None else model


def feedback_layers(model: nn.Module) -> list[nn.Module]:
    """The converted layers of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, _FeedbackMixin)]


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle between two tensors as flattened vectors, ``acos(⟨a, b⟩ / (‖a‖‖b‖))`` in degrees."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    den = a.norm() * b.norm()
    if den == 0:
        return float("nan")
    return math.degrees(math.acos(float((a @ b / den).clamp(-1.0, 1.0))))


def feedback_stats(B: torch.Tensor, W: torch.Tensor) -> dict[str, float]:
    r"""How far feedback ``B`` is from weight transport (``B`` in ``W``'s shape, so ``B = W`` is backprop):
    ``angle_deg`` = :math:`\arccos \frac{\langle B, W\rangle}{\|B\|\|W\|}` in degrees (flattened),
    ``norm_ratio`` = ‖B‖/‖W‖ (Frobenius), ``sign_agree`` = the fraction of entries with
    ``sign B = sign W``, ``pearson`` = the correlation coefficient of the entries (Gierlich et al. 2025 report
    the angle and the correlation; Akrout et al. 2019 the angle and norm ratio)."""
    b, w = B.detach().flatten().double(), W.detach().flatten().double()
    wn = float(w.norm())
    bc, wc = b - b.mean(), w - w.mean()
    den = float(bc.norm() * wc.norm())
    return {"angle_deg": angle_deg(b, w), "norm_ratio": float(b.norm()) / wn if wn > 0 else float("nan"),
            "sign_agree": float((torch.sign(b) == torch.sign(w)).double().mean()),
            "pearson": float(bc @ wc) / den if den > 0 else float("nan")}


@torch.no_grad()
def alignment(model: nn.Module) -> dict[str, float]:
    """Per feedback layer ``i`` (module order, every mode of the family: FA … KP, DLL's Θ, SAL): the
    :func:`feedback_stats` of its ``B`` against ``W`` as ``angle_deg/i``, ``norm_ratio/i``, ``sign_agree/i`` and
    ``pearson/i`` (our ``B`` has ``W``'s shape, so the angle is the issue's angle(B, Wᵀ) in the ``B ≈ Wᵀ``
    convention); plus the means ``angle_deg_mean`` … ``pearson_mean``. Layers without ``B`` (exact transport)
    and DFA's hidden ``B_l`` (``n_out × input``, no counterpart in ``W``) are skipped. Empty for a model without
    feedback layers."""
    out: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    for i, layer in enumerate(feedback_layers(model)):
        B, W = layer.feedback_matrix(), layer.weight
        if B is None or B.shape != W.shape:
            continue
        for k, v in feedback_stats(B, W).items():
            out[f"{k}/{i}"] = v
            per.setdefault(k, []).append(v)
    for k, vals in per.items():
        out[f"{k}_mean"] = sum(vals) / len(vals)
    return out


@torch.no_grad()
def feedback_figure(model: nn.Module, path: Any, max_points: int = 4000, seed: int = 0) -> Any:
    """A picture of how far every feedback layer's ``B`` is from weight transport: per layer a scatter of ``B``'s
    entries against ``W``'s (a random subset of ``max_points``; backprop is the diagonal up to scale) titled with
    its :func:`feedback_stats`. Written as a PNG to ``path``; returns the path, or None without feedback layers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [(i, m) for i, m in enumerate(feedback_layers(model))
              if m.feedback_matrix() is not None and m.feedback_matrix().shape == m.weight.shape]
    if not layers:
        return None
    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False)
    for ax, (i, m) in zip(axes[0], layers):
        w, b = m.weight.detach().flatten().float().cpu(), m.feedback_matrix().detach().flatten().float().cpu()
        idx = torch.randperm(len(w), generator=g)[:max_points]
        ax.scatter(w[idx].numpy(), b[idx].numpy(), s=2, alpha=0.4)
        st = feedback_stats(b, w)
        ax.set_title(f"layer {i} ({m.mode}): {st['angle_deg']:.0f}°, r={st['pearson']:.2f}", fontsize=9)
        ax.set_xlabel("W")
        ax.set_ylabel("B")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
