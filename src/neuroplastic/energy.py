r"""Energy per inference and per training sample, counted from what a run actually computes.

One counting mechanism serves every learner. :class:`OpCounter` is a ``TorchDispatchMode``: while it is active it
sees every matrix product and convolution the learner executes — forward passes, autograd's backward, and the
hand-written update products of local rules alike — and counts

- **MACs** (multiply-accumulates) of a product of two dense operands, :math:`n k m` for
  :math:`[n, k] \times [k, m]`, and :math:`N C_\text{out} H_\text{out} W_\text{out} (C_\text{in}/g) k_h k_w` for a
  convolution (its backward: the same per gradient it computes);
- **ACs** (accumulates) where one operand is binary (spikes, binary units): an event-driven circuit adds a weight
  per non-zero entry and target, :math:`\mathrm{nnz}(A)\, m` for :math:`A\,B` with binary :math:`A`, and for a
  convolution of a binary input the exact number of (non-zero input, output) pairs;
- **reads** of stored synaptic values (parameters and buffers of the learner): one read per MAC or AC that uses a
  stored operand (batch-1 inference, no reuse across samples — the accounting of event-driven hardware).

A learner whose hardware mapping differs from the products its simulation runs gives its own count through
:meth:`~neuroplastic.learners.base.Learner.count_inference_ops` (the spiking mode networks: spikes enter the mode space
through the filter, :mod:`neuroplastic.spiking.energy`) or ``count_training_ops`` (SAL's phase, event by event:
:meth:`~neuroplastic.sal.learners.SALNet._phase`); everything else is counted here.

Energy is :math:`E = n_\text{MAC} E_\text{MAC} + n_\text{AC} E_\text{AC} + n_\text{read} E_\text{read}` with the
45 nm, 32-bit floating-point figures of Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014: :math:`E_\text{MAC} = 4.6` pJ (3.7 pJ multiply + 0.9 pJ add), :math:`E_\text{AC} = 0.9` pJ, and
:math:`E_\text{read} = 5` pJ (a 32-bit word from an 8 KB SRAM: half of the 10 pJ quoted for 64 bits). They are
overridable (:class:`EnergyModel`, ``neuroplastic report --energy``). Neuron state updates, element-wise
non-linearities and off-chip traffic are not counted: a proxy for comparing rules, not a hardware estimate.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["DEFAULT_ENERGY", "EnergyModel", "OpCount", "OpCounter", "count_run", "energy_pj", "ops_watched"]

_aten = torch.ops.aten


@dataclasses.dataclass(frozen=True)
class EnergyModel:
    """Energy per operation in picojoules, with the source of the figures."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    read_pj: float = 5.0
    source: str = "45 nm, 32-bit float (Horowitz, ISSCC 2014): MAC 4.6 pJ, AC 0.9 pJ, SRAM read 5 pJ"

    def __post_init__(self) -> None:
        for k in ("mac_pj", "ac_pj", "read_pj"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"energy per operation {k} must be a finite number >= 0, got {v!r}")

    @classmethod
    def parse(cls, text: str) -> EnergyModel:
        """``mac=4.6,ac=0.9,read=5`` (any subset; pJ) → a model whose source says the figures were overridden."""
        kw: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, val = part.partition("=")
            if key.strip() not in ("mac", "ac", "read") or not val.strip():
                raise ValueError(f"energy override {part!r}: expected mac=PJ, ac=PJ or read=PJ")
            try:
                kw[f"{key.strip()}_pj"] = float(val)
            except ValueError:
                raise ValueError(f"energy override {part!r}: {val!r} is not a number") from None
        m = dataclasses.replace(cls(), **kw)
        return dataclasses.replace(m, source=f"user figures: MAC {m.mac_pj:g} pJ, AC {m.ac_pj:g} pJ, "
                                             f"read {m.read_pj:g} pJ")


DEFAULT_ENERGY = EnergyModel()


@dataclasses.dataclass
class OpCount:
    """Operations counted (totals over what was run; divide by the samples for per-sample figures)."""

    mac: float = 0.0
    ac: float = 0.0
    reads: float = 0.0

    def per(self, n: int) -> OpCount:
        """This count divided by ``n`` samples."""
        return OpCount(self.mac / n, self.ac / n, self.reads / n)

    def __add__(self, other: OpCount) -> OpCount:
        return OpCount(self.mac + other.mac, self.ac + other.ac, self.reads + other.reads)

    def energy_pj(self, model: EnergyModel = DEFAULT_ENERGY) -> float:
        r""":math:`n_\text{MAC} E_\text{MAC} + n_\text{AC} E_\text{AC} + n_\text{read} E_\text{read}` (pJ)."""
        return energy_pj(self.mac, self.ac, self.reads, model)


def ops_watched() -> bool:
    """Whether a torch dispatch mode (:class:`OpCounter`) watches the ops now: native kernels, whose work it cannot
    see, then leave it to their torch routes."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return _get_current_dispatch_mode() is not None


def energy_pj(mac: float, ac: float, reads: float, model: EnergyModel = DEFAULT_ENERGY) -> float:
    """Energy in picojoules of the given operation counts under ``model``."""
    return mac * model.mac_pj + ac * model.ac_pj + reads * model.read_pj


def _is_binary(t: torch.Tensor) -> bool:
    """Spikes or binary units: every entry 0 or 1, at least one 1 (an all-zero operand — a silent ReLU layer — is
    counted as dense: the conservative reading)."""
    return t.is_floating_point() and t.numel() > 0 and bool(((t == 0) | (t == 1)).all()) and bool((t == 1).any())


class OpCounter(TorchDispatchMode):
    """Count MACs, ACs and stored-weight reads of every product run inside the ``with`` block (module docstring).

    ``stored``: tensors whose values live in synaptic memory (by default nothing; :func:`count_run` passes the
    learner's parameters and buffers). A product whose operand shares storage with one of them reads it.
    """

    def __init__(self, stored: list[torch.Tensor] | tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self.count = OpCount()
        self._stored = {t.untyped_storage().data_ptr() for t in stored if t.numel()}

    def _stored_in(self, *ts: torch.Tensor) -> bool:
        return any(isinstance(t, torch.Tensor) and t.numel() and t.untyped_storage().data_ptr() in self._stored
                   for t in ts)

    def _add(self, kind: str, ops: float, *operands: torch.Tensor) -> None:
        setattr(self.count, kind, getattr(self.count, kind) + ops)
        if self._stored_in(*operands):
            self.count.reads += ops

    def _product(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """``a [(b,) n, k] @ b [(b,) k, m]``: ACs from the non-zeros of a binary operand, else MACs."""
        n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
        if _is_binary(a):
            self._add("ac", float(torch.count_nonzero(a)) * m, a, b)
        elif _is_binary(b):
            self._add("ac", float(torch.count_nonzero(b)) * n, a, b)
        else:
            self._add("mac", float(math.prod(a.shape[:-2]) * n * k * m), a, b)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, out_shape: torch.Size, stride, padding, dilation,
              transposed: bool, groups: int, factor: int = 1) -> None:
        """A convolution (``factor`` = number of gradients its backward computes)."""
        if transposed:  # every input element reaches C_out/g * kernel outputs
            self._add("mac", float(x.numel()) * w.shape[1] * math.prod(w.shape[2:]) * factor, x, w)
        elif factor == 1 and x.dim() in (3, 4) and _is_binary(x):
            ones = torch.ones((groups, x.shape[1] // groups, *w.shape[2:]), dtype=x.dtype, device=x.device)
            conv = torch.nn.functional.conv2d if x.dim() == 4 else torch.nn.functional.conv1d
            hits = conv(x, ones, None, stride, padding, dilation, groups)  # non-zero inputs in each field
            self._add("ac", float(hits.sum()) * (w.shape[0] // groups), x, w)
        else:
            self._add("mac", float(math.prod(out_shape)) * math.prod(w.shape[1:]) * factor, x, w)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = func.overloadpacket  # every overload of a product counts: ``out=`` and in place (``addmm_``) too
        if op in (_aten.mm, _aten.bmm):
            self._product(args[0], args[1])
        elif op in (_aten.addmm, _aten.addmm_, _aten.baddbmm, _aten.baddbmm_):
            self._product(args[1], args[2])
        elif op is _aten.mv:
            self._product(args[0], args[1].unsqueeze(-1))
        elif op in (_aten.addmv, _aten.addmv_):
            self._product(args[1], args[2].unsqueeze(-1))
        elif func is _aten.dot.default:
            self._product(args[0].unsqueeze(0), args[1].unsqueeze(-1))
        elif func is _aten.convolution.default:
            x, w, _, stride, padding, dilation, transposed, _, groups = args[:9]
            self._conv(x, w, out.shape, stride, padding, dilation, transposed, groups)
        elif func is _aten.convolution_backward.default:
            grad_out, x, w = args[0], args[1], args[2]
            stride, padding, dilation, transposed, _, groups, mask = args[4:11]
            n_grads = int(bool(mask[0])) + int(bool(mask[1]))
            if n_grads:
                self._conv(x, w, grad_out.shape, stride, padding, dilation, transposed, groups, factor=n_grads)
        return out


def _stored_tensors(learner: torch.nn.Module) -> list[torch.Tensor]:
    return [t for t in list(learner.parameters()) + list(learner.buffers()) if t.is_floating_point()]


@torch.no_grad()
def count_inference(learner: Any, x: torch.Tensor) -> OpCount:
    """Operations per sample of ``learner.predict`` on the batch ``x`` (or the learner's own count)."""
    own = learner.count_inference_ops(x)
    if own is not None:
        return own
    was = learner.training
    learner.eval()
    try:
        with OpCounter(_stored_tensors(learner)) as c:
            learner.predict(x)
    finally:
        learner.train(was)
    return c.count.per(len(x))


def count_step(learner: Any, fn: Any, *args: Any) -> OpCount:
    """Operations of ``fn(*args)`` (a method of ``learner``), reads counted against ``learner``'s stored tensors."""
    with OpCounter(_stored_tensors(learner)) as c:
        fn(*args)
    return c.count


def count_training(learner: Any, x: torch.Tensor, y: torch.Tensor) -> OpCount:
    """Operations per sample of one ``train_step`` on ``(x, y)``, run on a copy of the learner (the trained model is
    not touched). A learner with work done once per epoch (SAL's phase) gives its own count, that work shared over
    the epoch's samples (:meth:`~neuroplastic.learners.base.Learner.count_training_ops`)."""
    twin = copy.deepcopy(learner)
    twin.train()
    own = twin.count_training_ops(x, y)
    if own is not None:
        return own
    return count_step(twin, twin.train_step, x, y).per(len(x))


def count_run(learner: Any, bundle: Any, *, batch_size: int, model: EnergyModel = DEFAULT_ENERGY,
              max_batch: int = 64) -> dict[str, Any]:
    """The energy metrics of a trained run: operation counts and energy per inference (test samples) and per
    training sample (one training step on training samples, on a copy), under ``model``. Keys ``ops_*`` and
    ``energy_*_pj``; ``energy_model`` names the figures used. Unsupervised learners' probe fitting is not counted."""
    n = max(1, min(batch_size, max_batch, len(bundle.train), len(bundle.test)))
    dev = next((t.device for t in learner.parameters()), torch.device("cpu"))
    inf = count_inference(learner, bundle.test.x[:n].to(dev))
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(bundle.train), generator=g)[:n]
    train = count_training(learner, bundle.train.x[idx].to(dev), bundle.train.y[idx].to(dev))
    out: dict[str, Any] = {}
    for name, c in (("inference", inf), ("train", train)):
        out.update({f"ops_{name}_mac": c.mac, f"ops_{name}_ac": c.ac, f"ops_{name}_reads": c.reads,
                    f"energy_{name}_pj": c.energy_pj(model)})
    out["energy_model"] = model.source
    return out
