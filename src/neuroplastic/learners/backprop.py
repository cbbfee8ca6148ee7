"""Supervised networks trained end to end: backprop and the feedback-alignment family.

One learner class serves every mode: the architecture is built once (:mod:`neuroplastic.nn.archs`)
and its ``Linear``/``Conv2d`` layers are swapped by :func:`neuroplastic.nn.feedback.convert` for layers
whose backward pass uses a feedback matrix ``B`` instead of ``W`` (FA, DFA, sign-symmetry, KP).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import archs
from .base import Learner, Locality

_BP_LOCALITY = Locality(False, False, False, "exact gradient: transports W^T and a global error in a second phase")


def make_optimizer(params, optimizer: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                   ) -> torch.optim.Optimizer:
    """``adam`` | ``adamw`` | ``sgd`` (with momentum) over ``params``."""
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


class _LinearDecay:
    """Picklable ``epoch -> 1 - epoch/epochs`` (lambdas break torch.save)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = max(epochs, 1)

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.epochs)


class SupervisedNet(Learner):
    """A feed-forward classifier trained end to end by backprop or a feedback-alignment variant.

    ``mode``: ``bp`` (exact gradients) or any mode of :func:`neuroplastic.nn.feedback.convert`.
    Loss: cross-entropy on the logits. Optimizer and schedule are shared by every mode.
    """

    name = "bp"
    paper = "Rumelhart, Hinton & Williams 1986"
    locality = _BP_LOCALITY

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, arch: str = "mlp", mode: str = "bp",
                 hidden: tuple[int, ...] = (256,), act: str = "relu", channels: tuple[int, ...] | None = None,
                 optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0,
                 schedule: str = "none", feedback_scale: float | None = None) -> None:
        super().__init__()
        kw: dict = {"act": act}
        if arch == "mlp":
            kw["hidden"] = tuple(hidden)
        elif channels is not None:
            kw["channels"] = tuple(channels)
        self.net = archs.build(arch, in_shape, n_classes, **kw)
        self.mode = mode
        if mode != "bp":
            from ..nn.feedback import convert

            fb_kw = {} if feedback_scale is None else {"scale": feedback_scale}
            convert(self.net, mode, **fb_kw)
        self.name = mode
        self.opt_cfg = (optimizer, lr, momentum, weight_decay, schedule)
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, lr)  # validate names early
        if schedule not in ("none", "cosine", "linear", "step"):
            raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        optimizer, lr, momentum, wd, schedule = self.opt_cfg
        self.optimizer = make_optimizer(self.parameters(), optimizer, lr, momentum, wd)
        self.scheduler = make_scheduler(self.optimizer, schedule, epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def diagnostics(self) -> dict[str, float]:
        if self.mode == "bp":
            return {}
        from ..nn.feedback import alignment

        return alignment(self.net)


from . import register  # noqa: E402

register("bp", SupervisedNet, summary="backpropagation (exact gradients), the reference",
         quick={"dataset": "digits", "preset": "mlp", "params": {"hidden": [128]}, "epochs": 10, "batch_size": 32})
