"""Supervised networks trained end to end: backprop and the feedback-alignment family.

One learner class serves every mode: the architecture is built once (:mod:`neuroplastic.nn.archs`)
and its ``Linear``/``Conv2d`` layers are swapped by :func:`neuroplastic.nn.feedback.convert` for layers
whose backward pass uses a feedback matrix ``B`` instead of ``W`` (FA, DFA, sign-symmetry, KP).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..nn import archs
from .base import Learner, Locality, check_range

_BP_LOCALITY = Locality(False, False, False, "exact gradient: transports W^T and a global error in a second phase")

#: Kolen-Pollack weight decay (Akrout et al. 2019; 1e-3 in PAPERS.md).
KP_WEIGHT_DECAY = 1e-3

#: mode -> (paper, locality on Lv et al.'s criteria C1 no weight symmetry / C2 local error / C3 single
#: phase, one-line summary). Every FA variant still routes a global output error down the network after
#: the forward pass (C2 ✘, C3 ✘, as Lv et al. mark FA); they differ on C1.
MODE_INFO: dict[str, tuple[str, Locality, str]] = {
    "bp": ("Rumelhart, Hinton & Williams 1986", _BP_LOCALITY, "backpropagation (exact gradients), the reference"),
    "fa": ("Lillicrap, Cownden, Tweed & Akerman 2016 (Nat. Commun. 7:13276)",
           Locality(True, False, False, "fixed random B replaces W^T (Lv et al.: FA ✓✘✘); the output error is "
                    "still propagated layer by layer in a separate backward phase"),
           "feedback alignment: errors sent back through fixed random matrices B"),
    "dfa": ("Nøkland 2016 (NeurIPS)",
            Locality(True, False, False, "fixed random B_l, no W^T; but every layer receives the global output "
                     "error, broadcast after the forward pass (global error, second phase)"),
            "direct feedback alignment: the output error broadcast to every layer through fixed B_l"),
    "usf": ("Liao, Leibo & Poggio 2016 (AAAI); Moskovitz, Litwin-Kumar & Abbott 2018",
            Locality(False, False, False, "B = s·sign(W) copies W's signs (sign transport), global error, "
                     "separate backward phase"),
            "uniform sign-concordant feedback: B = s·sign(W)"),
    "brsf": ("Liao, Leibo & Poggio 2016 (AAAI)",
             Locality(False, False, False, "B = |M|∘sign(W) copies W's signs (sign transport), global error, "
                      "separate backward phase"),
             "batchwise random-magnitude sign-concordant feedback: B = |M|∘sign(W), M redrawn each batch"),
    "frsf": ("Liao, Leibo & Poggio 2016 (AAAI)",
             Locality(False, False, False, "B = |M0|∘sign(W) copies W's signs (sign transport), global error, "
                      "separate backward phase"),
             "fixed random-magnitude sign-concordant feedback: B = |M0|∘sign(W)"),
    "kp": ("Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019 (NeurIPS); Kolen & Pollack 1994",
           Locality(True, False, False, "W is never copied: B learns from the same locally available δ·x^T as W "
                    "plus decay, and aligns with W; global error, separate backward phase"),
           "Kolen-Pollack: B gets W's update plus weight decay, so B -> W"),
}


def make_optimizer(params, optimizer: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   ) -> torch.optim.Optimizer:
    """``adam`` | ``adamw`` | ``sgd`` (with momentum) over ``params``."""
    check_range("lr", lr, 0, lo_open=True)
    check_range("momentum", momentum, 0, 1, hi_open=True)
    check_range("weight_decay", weight_decay, 0)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {optimizer!r}; allowed: adam, adamw, sgd")


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, epochs: int):
    """Per-epoch schedule: ``none`` | ``cosine`` | ``linear`` (decay to 0) | ``step`` (×0.1 at 50 %, 75 %)."""
    if schedule == "none":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if schedule == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, _LinearDecay(epochs))
    if schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, [max(1, epochs // 2), max(1, 3 * epochs // 4)], 0.1)
    raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")


#: the losses of :class:`SupervisedNet`: ``ce`` (cross-entropy on the logits) and ``double_softmax`` (Gierlich
#: et al.'s code: cross-entropy on the softmax of the logits)
LOSSES = ("ce", "double_softmax")
#: the arithmetic of the net's forward and backward passes (``SupervisedNet``'s ``precision``)
PRECISIONS = ("float32", "bfloat16")


def cross_entropy_step(optimizer: torch.optim.Optimizer, logits: torch.Tensor, y: torch.Tensor,
                       ) -> dict[str, float]:
    """One end-to-end step: :math:`L = \\mathrm{CE}(\text{logits}, y)`, ``backward`` (whatever the layers'
    backward rules are: BP, FA, DLL, ...), ``optimizer.step()``. Returns batch ``loss`` and ``acc``."""
    loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item()}


class _LinearDecay:
    """Picklable ``epoch -> 1 - epoch/epochs`` (lambdas break torch.save)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = max(epochs, 1)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs)


class SupervisedNet(Learner):
    r"""A feed-forward classifier trained end to end by backprop or a feedback-alignment variant.

    ``mode``: ``bp`` (exact gradients) or any mode of :func:`neuroplastic.nn.feedback.convert`
    (``fa``, ``dfa``, ``usf``, ``brsf``, ``frsf``, ``kp``). Loss: cross-entropy on the logits; the optimizer
    and schedule are shared by every mode. ``loss="double_softmax"`` (a labelled variant, not the default) is the
    loss of Gierlich et al.'s code for every method of their deep-network comparison: the net ends in a softmax
    and the cross-entropy takes its output ``p = softmax(z)`` as logits, :math:`L = -\log \mathrm{softmax}(p)_y`.
    Its error :math:`\partial L/\partial z = J_\text{softmax}(z)\,(\mathrm{softmax}(p) - e_y)` is bounded and
    vanishes as ``p`` saturates, so the error sent down through the feedback weights stays small however large the
    forward weights grow - and an output saturated on the wrong class gets almost none either (benchmarks:
    sal-mnist-dsm); :meth:`predict` then returns ``p`` (the same argmax as ``z``). ``feedback_scale``
    multiplies the initial feedback magnitudes; ``seed`` seeds the feedback matrices (the weights come from torch's
    global generator).
    ``channels_last``: hold a convolutional net's 4-D weights, feedback matrices and activations in the NHWC layout
    (``torch.channels_last``) instead of NCHW. The values and the equations are the same; only the order of each
    sum inside a kernel changes, so the rounding (tested in float64). In float32 that rounding can flip a near tie
    of a max-pool window or a ReLU, which routes a gradient elsewhere: two runs that differ only in layout part as
    runs on two hosts do. On the CPU, NHWC max-pooling is vectorised over channels and NCHW's is not (a 2×2 pool
    with indices of SAL's first MNIST layer at batch 128: 2.2 ms against 46 ms, one thread of a 2-core Xeon with
    AVX-512); an SGD epoch of SAL's deep net on MNIST took 16.8 s against 21.7 s there, 1.3 times as fast (suite
    sal-cost-layout). Default off, so that a recorded command recomputes its record's numbers.
    ``precision``: ``float32`` (default) or ``bfloat16``: the net's forward and backward passes (the feedback
    products ``δB`` and ``δᵀx`` included) run under ``torch.autocast`` in bfloat16 - 8 bits of mantissa, which
    CPUs with AMX and recent GPUs multiply fast - while the weights, feedback matrices, optimizer state, loss and
    every local rule stay float32 (mixed precision, Micikevicius et al. 2018). The equations are the same; each
    product is rounded to bfloat16 (relative error about 2⁻⁸). An FA epoch of SAL's deep net in NHWC took 11.6 s
    against 24.2 s on MNIST and 2 CIFAR-10 epochs 25.2 against 55.8 s (a 2-core Xeon with AMX; suite
    sal-cost-precision); the gain needs bfloat16 hardware (AMX, AVX-512 BF16, a recent GPU) and was not measured
    elsewhere. Default float32.
    ``weight_decay``: default 0, except ``kp`` 1e-3 (Akrout et al. 2019, as in PAPERS.md); KP needs the
    decay to be decoupled so that ``W − B`` shrinks by ``(1 − lr·wd)`` every step, hence ``kp`` with
    ``optimizer="adam"`` runs AdamW (SGD's decay acts on ``W`` and ``B`` alike and also works).
    """

    name = "bp"
    paper = "Rumelhart, Hinton & Williams 1986"
    locality = _BP_LOCALITY

    #: feedback modes this class trains besides :data:`MODE_INFO`'s (a subclass adds the one whose feedback it
    #: learns outside autograd, e.g. SAL's spike-timing phase)
    extra_modes: tuple[str, ...] = ()

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, arch: str = "mlp", mode: str = "bp",
                 hidden: tuple[int, ...] = (256,), act: str | None = None, channels: tuple[int, ...] | None = None,
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float | None = None, schedule: str = "none", feedback_scale: float | None = None,
                 conv_mode: str | None = None, loss: str = "ce", channels_last: bool = False,
                 precision: str = "float32", seed: int = 0) -> None:
        super().__init__()
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last must be true or false, got {channels_last!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
        if mode not in MODE_INFO and mode not in self.extra_modes:
            raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODE_INFO)}")
        if conv_mode is not None and conv_mode not in MODE_INFO or conv_mode == "dfa":
            raise ValueError(f"unknown conv_mode {conv_mode!r}; allowed: "
                             f"{', '.join(m for m in MODE_INFO if m != 'dfa')} (or null: the same as mode)")
        if (not isinstance(hidden, (list, tuple)) or not hidden
                or not all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 65536 for h in hidden)):
            raise ValueError(f"hidden must be a non-empty list of layer sizes (ints from 1 to 65536), got {hidden!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if weight_decay is None:
            weight_decay = KP_WEIGHT_DECAY if mode == "kp" else 0.0
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        kw: dict = {} if act is None else {"act": act}  # None: the network's own (relu; tanh for Lv et al.'s CNNs)
        if arch == "mlp":
            kw["hidden"] = tuple(hidden)
        elif channels is not None:
            kw["channels"] = tuple(channels)
        self.in_shape = tuple(in_shape)
        self.loss = loss
        self.net = archs.build(arch, in_shape, n_classes, **kw)
        self.mode = mode
        self.conv_mode = mode if conv_mode is None else conv_mode
        from ..nn.feedback import convert

        fb_kw = {} if feedback_scale is None else {"scale": feedback_scale}
        if self.conv_mode == mode:
            if mode != "bp":
                convert(self.net, mode, seed=seed, example_input=torch.zeros(2, *in_shape), **fb_kw)
        else:  # convolutions with conv_mode's feedback (e.g. fixed random), dense layers with mode's
            if self.conv_mode != "bp" and any(isinstance(m, nn.Conv2d) for m in self.net.modules()):
                convert(self.net, self.conv_mode, seed=seed, layers=(nn.Conv2d,), **fb_kw)
            if mode != "bp":
                convert(self.net, mode, seed=seed + 1, layers=(nn.Linear,), **fb_kw)
        #: whether inputs go to the NHWC layout (only where the net has convolutions: a dense net has no 4-D tensors)
        self.channels_last = channels_last and any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)  # 4-D weights and feedback (B, M) alike
        #: ``torch.autocast``'s dtype for the net's passes, or None: float32 throughout
        self.autocast = torch.bfloat16 if precision == "bfloat16" else None
        self.name = mode
        if mode in MODE_INFO:
            self.paper, self.locality = MODE_INFO[mode][0], MODE_INFO[mode][1]
        if mode == "kp" and optimizer == "adam":
            optimizer = "adamw"  # decoupled decay: W − B → 0 geometrically (see the class docstring)
        self.opt_cfg = (optimizer, lr, momentum, weight_decay, schedule)
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, lr)  # validate names early
        if schedule not in ("none", "cosine", "linear", "step"):
            raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")

    @classmethod
    def _with_defaults(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**cls.init_defaults(), **params}

    @classmethod
    def network(cls, params: dict[str, Any]) -> str | None:
        """The signature of ``arch`` built as :meth:`__init__` builds it (``hidden`` for the MLP, ``channels``
        where given, ``act`` where given, else the network's own)."""
        p = cls._with_defaults(params)
        if p["arch"] not in archs.ARCHS:
            return None
        kw = {"act": p["act"]}
        if p["arch"] == "mlp":
            kw["hidden"] = tuple(p["hidden"])
        elif p.get("channels") is not None:
            kw["channels"] = tuple(p["channels"])
        return archs.signature(p["arch"], **kw)

    @classmethod
    def exact(cls, params: dict[str, Any]) -> bool:
        """Exact gradients: ``mode`` bp in every layer, convolutions included (``conv_mode`` unset or bp); "BP in
        FC + FA in conv" is not exact."""
        p = cls._with_defaults(params)
        return p["mode"] == "bp" and p["conv_mode"] in (None, "bp")

    @classmethod
    def method(cls, params: dict[str, Any]) -> str | None:
        """``"<mode> + <conv_mode> in conv"`` where the convolutions learn by another feedback mode than the dense
        layers (``conv_mode`` set and unlike ``mode``: "bp + fa in conv"), else None."""
        p = cls._with_defaults(params)
        return None if p["conv_mode"] in (None, p["mode"]) else f"{p['mode']} + {p['conv_mode']} in conv"

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """Networks of :data:`neuroplastic.nn.archs.ARCHS` (loaded learner modules may add theirs) and the losses
        (:data:`LOSSES`)."""
        return {"arch": sorted(archs.ARCHS), "loss": list(LOSSES)}

    def generators(self) -> dict[str, torch.Generator]:
        """The learner's generators plus the feedback context's (brSF redraws ``M`` from it every batch)."""
        gens = super().generators()
        from ..nn.feedback import feedback_layers

        layers = feedback_layers(self.net)
        if layers:
            gens.update(layers[0].context.generators())
        return gens

    def load_training_state(self, state: dict) -> None:
        """As the base class; first recreates the device generators the checkpoint holds (brSF on a GPU
        creates its generator at the first batch), so that their states are restored too."""
        from ..nn.feedback import feedback_layers

        layers = feedback_layers(self.net)
        for key in state.get("generators", {}):
            dev = key[len("feedback_"):]
            if layers and key.startswith("feedback_") and (not dev.startswith("cuda") or torch.cuda.is_available()):
                layers[0].context.device_generator(torch.device(dev))
        super().load_training_state(state)

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        optimizer, lr, momentum, wd, schedule = self.opt_cfg
        self.optimizer = make_optimizer(self.parameters(), optimizer, lr, momentum, wd)
        self.scheduler = make_scheduler(self.optimizer, schedule, epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits the loss sees: the net's output, through a softmax with ``loss="double_softmax"``."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast is None:
            z = self.net(x)
        else:
            with torch.autocast(x.device.type, dtype=self.autocast):
                z = self.net(x).float()
        return torch.softmax(z, 1) if self.loss == "double_softmax" else z

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return cross_entropy_step(self.optimizer, self(x), y)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def figures(self, bundle: Any, out_dir: Any) -> list:
        """``feedback.png``: every feedback layer's ``B`` against ``W`` (:func:`~neuroplastic.nn.feedback.
        feedback_figure`); nothing for pure backprop."""
        from pathlib import Path

        from ..nn.feedback import feedback_figure

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        made = feedback_figure(self.net, Path(out_dir) / "feedback.png", seed=0)
        return [made] if made is not None else []

    def diagnostics(self) -> dict[str, float]:
        """The feedback family's alignment keys for every layer with feedback (none for pure backprop)."""
        from ..nn.feedback import alignment

        return alignment(self.net)


from . import register

_QUICK = {"dataset": "digits", "preset": "mlp", "params": {"hidden": [128]}, "epochs": 10, "batch_size": 32}

register("bp", SupervisedNet, summary="backpropagation (exact gradients), the reference", quick=dict(_QUICK),
         baseline=True)
for _mode in MODE_INFO:
    if _mode != "bp":
        register(_mode, SupervisedNet, paper=MODE_INFO[_mode][0], locality=MODE_INFO[_mode][1],
                 summary=MODE_INFO[_mode][2], quick=dict(_QUICK), mode=_mode)
