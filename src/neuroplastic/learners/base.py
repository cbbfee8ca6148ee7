"""The learner protocol every learning system in neuroplastic implements.

A *learner* is an :class:`torch.nn.Module` that owns its parameters, its local learning rule(s) and its
optimizer, and exposes one small protocol to the trainer and the bench harness:

``train_step(x, y) -> dict``
    One update on a batch, by whatever rule the learner uses (backprop, feedback alignment, a Hebbian
    rule, contrastive divergence, ...). Local rules write ``-Δw`` into ``param.grad`` and the learner's
    ``torch.optim`` optimizer applies it, so schedules and optimizers are shared by every rule.
``predict(x) -> Tensor``
    Class scores ``[N, n_classes]``.
``eval_step(x, y) -> dict``
    Sums over the batch (``n``, ``correct`` and optionally ``loss``) that the trainer adds up; the
    default uses :meth:`predict`. Sequence tasks override it (e.g. decision accuracy).
``features(x) -> Tensor``
    For unsupervised learners (``supervised = False``): the frozen representation a linear probe reads.
:func:`say` (a function of this module, not a method)
    Long work inside a step (SAL's phase before an epoch) tells the trainer's progress display what it is doing.
``locality``
    Which of the criteria C1 (no weight symmetry), C2 (local error), C3 (single phase) of Lv et al.
    (ICML 2025) the rule meets, with a one-line reason.

The trainer never looks inside a learner; the harness never knows which rule it is running.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Locality:
    """Locality criteria of a learning rule (Lv et al., ICML 2025, Table 1).

    c1: no weight symmetry (no weight transport); c2: local error (no global error signal routed through
    other layers' weights); c3: single phase (no separate backward/relaxation/negative phase).
    """

    c1: bool
    c2: bool
    c3: bool
    why: str

    def marks(self) -> str:
        """The three criteria as ``✓``/``✘`` in order C1 C2 C3."""
        return " ".join("✓" if v else "✘" for v in (self.c1, self.c2, self.c3))


class NonFiniteError(FloatingPointError):
    """Raised when a loss or a parameter becomes NaN/Inf during training. ``history``: the rows of the epochs
    finished before it (set by :func:`neuroplastic.trainer.fit`; empty when raised elsewhere), so a diverged run
    keeps its curve."""

    def __init__(self, *args: object, history: list[dict[str, float]] | None = None) -> None:
        super().__init__(*args)
        self.history = list(history or [])


class Learner(nn.Module):
    """Base class of every learner (see the module docstring for the protocol).

    Subclasses set the class attributes ``name``, ``paper``, ``locality``, ``supervised`` and implement
    :meth:`train_step` and :meth:`predict` (supervised) or :meth:`train_step` and :meth:`features`
    (unsupervised). They build their optimizer in :meth:`configure`, which the trainer calls once the
    number of epochs and steps per epoch are known.
    """

    name: ClassVar[str] = "learner"
    paper: ClassVar[str] = ""
    locality: ClassVar[Locality] = Locality(False, False, False, "unspecified")
    supervised: ClassVar[bool] = True
    #: Linear-probe protocol for unsupervised learners (Nimmo & Mondragón 2025: Adam 1e-3, 20 epochs,
    #: dropout 0.5, lr halving). Subclasses or configs may override.
    probe_epochs: int = 20
    probe_lr: float = 1e-3
    probe_dropout: float = 0.5
    probe_batch_size: int = 64
    #: z-score the probe's input features (False: raw features, SoftHebb's readout).
    probe_standardize: bool = True
    #: measure the probe's val/test accuracy every this many epochs (always at the last).
    probe_eval_every: int = 1
    #: Shape of one input sample the learner was built for (set by subclasses that take ``in_shape``);
    #: the trainer refuses data of another shape with an error naming both.
    in_shape: tuple[int, ...] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.probe: nn.Module | None = None

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """Allowed values of the learner's name-valued arguments (``arch``: networks, ``preset``: presets), for
        ``neuroplastic learners NAME``. Default: none."""
        return {}

    @classmethod
    def init_defaults(cls) -> dict[str, Any]:
        """The default of every keyword argument of :meth:`__init__` that has one (what a config that leaves it out
        gets, before a registry entry's fixed defaults)."""
        return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}

    @classmethod
    def network(cls, params: dict[str, Any]) -> str | None:
        """The network this learner trains with keyword arguments ``params`` (defaults filled in), as
        :func:`neuroplastic.nn.archs.signature` names it, so that the report measures it against the backprop
        reference of the very same net whatever preset names it; None where the net is the learner's own (the
        report then goes by the preset name). Default: None."""
        return None

    @classmethod
    def exact(cls, params: dict[str, Any]) -> bool:
        """Whether the configuration ``params`` computes exact gradients ∂L/∂W everywhere, so that a registered
        ``baseline`` learner's run of it is the backprop reference of its network. Default: False."""
        return False

    @classmethod
    def method(cls, params: dict[str, Any]) -> str | None:
        """A short name for the configuration ``params`` where it trains by another method than the learner's own
        (a hybrid such as backprop in the dense layers with fixed random feedback in the convolutions, SAL's upper
        bound in Gierlich et al. 2025), so that the decision table ranks it apart; None for the learner's own
        method. Default: None."""
        return None

    @classmethod
    def run_defaults(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Run settings (``epochs``, ``batch_size``) that this learner's study fixes for the given keyword
        arguments (e.g. a preset's batch size, one unsupervised epoch); a config that does not set them gets these
        instead of the generic defaults. Default: none."""
        return {}

    # ----------------------------------------------------------------------------------------------
    # protocol
    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        """Create ``self.optimizer`` (and optionally ``self.scheduler``) for a run of ``epochs``."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        """One update on a batch; returns scalar metrics (``loss`` at least when there is one)."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, n_classes]``. Unsupervised learners use their fitted probe."""
        if self.supervised:
            raise NotImplementedError
        if self.probe is None:
            raise RuntimeError(f"{self.name}: predict() needs a fitted linear probe (run the trainer first)")
        return self.probe(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen representation for the linear probe ``[N, D]``."""
        raise NotImplementedError(f"{self.name} does not expose features()")

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Summed metrics over a batch: ``n``, ``correct`` and ``loss`` (cross-entropy of the scores)."""
        scores = self.predict(x)
        loss = nn.functional.cross_entropy(scores.float(), y, reduction="sum").item()
        return {"n": float(len(y)), "correct": float((scores.argmax(1) == y).sum().item()), "loss": loss}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after each training epoch: step schedulers, return diagnostics to log."""
        if self.scheduler is not None:
            self.scheduler.step()
        return self.diagnostics()

    def diagnostics(self) -> dict[str, float]:
        """Scalars worth logging each epoch (alignment angles, firing rates, ...)."""
        return {}

    def figures(self, bundle: Any, out_dir: Any) -> list[Any]:
        """Pictures of the trained learner written as PNGs into ``out_dir`` (receptive fields, mode
        trajectories, ...); returns their paths. The bench harness calls it after each run and the report
        shows what it wrote. Default: none."""
        return []

    def monitor(self, bundle: Any) -> dict[str, float]:
        """Metrics of an unsupervised learner measured at the trainer's evaluation epochs (``eval_every``) and
        logged in its history: e.g. a quick log-likelihood estimate of the validation split, reconstruction error.
        Counted as evaluation, not training time. Default: none."""
        return {}

    def final_metrics(self, bundle: Any) -> dict[str, Any]:
        """Extra metrics computed once after training (log-likelihood by AIS, energy per inference,
        pruning curves, ...); the harness stores them beside ``test_acc``."""
        return {}

    def count_inference_ops(self, x: torch.Tensor) -> Any:
        """Operations per inference when the hardware mapping differs from the products the simulation runs (an
        :class:`~neuroplastic.energy.OpCount` per sample of ``x``); ``None`` (default) lets
        :class:`~neuroplastic.energy.OpCounter` count the products of :meth:`predict`."""
        return None

    def count_training_ops(self, x: torch.Tensor, y: torch.Tensor | None) -> Any:
        """Operations per training sample when a step's work is not what one ``train_step`` runs (work done once per
        epoch, shared over its samples); called on a copy of the learner. ``None`` (default): count one
        ``train_step`` (:func:`neuroplastic.energy.count_training`)."""
        return None

    def reset_state(self) -> None:
        """Reset time-dependent state (membranes, traces) in every submodule that has ``reset()``."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset") and callable(m.reset):
                m.reset()

    # ----------------------------------------------------------------------------------------------
    # state for checkpoints (the nn.Module state_dict holds parameters and buffers)
    def generators(self) -> dict[str, torch.Generator]:
        """Named random generators the learner draws from; saved and restored by checkpoints."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.Generator)}

    def training_state(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimizer, scheduler, generators, probe."""
        return {
            "model": self.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generators": {k: g.get_state() for k, g in self.generators().items()},
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`training_state`."""
        self.load_state_dict(state["model"])
        if self.optimizer is not None and state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        gens = self.generators()
        for k, s in state.get("generators", {}).items():
            if k in gens:
                gens[k].set_state(s)

    def check_finite(self, where: str) -> None:
        """Raise :class:`NonFiniteError` naming the first parameter/buffer holding NaN or Inf."""
        for pname, t in list(self.named_parameters()) + list(self.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise NonFiniteError(f"{self.name}: NaN/Inf in '{pname}' {where}")

    def n_params(self, trainable_only: bool = True) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


_status: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("status", default=None)


def say(text: str) -> None:
    """Tell the progress display of the training in progress what long work inside a step is doing (``text``: one
    short line, e.g. ``"SAL phase: block 2/5"``); nothing when no display listens (:func:`listening`)."""
    hook = _status.get()
    if hook is not None:
        hook(text)


@contextlib.contextmanager
def listening(hook: Callable[[str], None]) -> Iterator[None]:
    """Within the block, :func:`say` passes its text to ``hook`` (the trainer's progress bar)."""
    token = _status.set(hook)
    try:
        yield
    finally:
        _status.reset(token)


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``lo <= value <= hi`` (``<`` where ``lo_open``/``hi_open``):
    the one range check of learner hyperparameters (a negative rate or zero chains is a config error naming the
    key, not a run that trains nothing)."""
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above:
        left = "" if lo is None else f"{'(' if lo_open else '['}{lo:g}, "
        right = "" if hi is None else f"{hi:g}{')' if hi_open else ']'}"
        want = (f"in {left}{right}" if lo is not None and hi is not None
                else f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else f"{'<' if hi_open else '<='} {hi:g}")
        raise ValueError(f"{name} must be {want}, got {value!r}")


def check_loss(loss: torch.Tensor | float, learner: str, where: str) -> float:
    """Return ``loss`` as a float, raising :class:`NonFiniteError` if it is NaN/Inf."""
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteError(f"{learner}: loss is {value} {where}")
    return value
