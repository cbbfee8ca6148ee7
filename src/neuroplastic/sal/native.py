r"""The native CPU route of a SAL phase (Gierlich et al. 2025): the same dynamics and the same SAL sums as the torch
route of :class:`~neuroplastic.learners.SALNet`'s phase (:meth:`SpikingNet.run
<neuroplastic.sal.neurons.SpikingNet.run>` with :meth:`SALTrace.block_terms <neuroplastic.sal.rule.SALTrace.
block_terms>` and :func:`~neuroplastic.sal.rule.sal_block`, or :func:`~neuroplastic.sal.rule.sal_pairs`), computed
event by event in C (``_native.c``, built by ``setup.py`` when a C compiler is present).

The potentials :math:`u = b + \sum_\text{pre} P z` change only where a PSP starts (a spike) or ends ``τ_ref`` steps
later, so each step adds or subtracts the fan-out row of those few units instead of multiplying every PSP by every
weight; at a firing rate ρ per step that is about :math:`2\rho` of the dense product's work. The SAL terms of a
feedback projection ``l → l-1`` are summed at the spikes too: a spike of unit ``k`` of layer ``l`` at step ``t``
adds the trace :math:`x_{l-1}(t) = \sum_{d=1}^{\text{cut}} k(d)\, s_{l-1}(t-d)` to row ``k`` of the anti-causal
sum ``H_l`` (pairs +A), a spike of unit ``i`` of layer ``l-1`` adds :math:`x_l(t)` to row ``i`` of the causal sum
``C_l`` (pairs −A), so that

.. math::  \Delta P_l = A\,(H_l^\top \circ (1 + \varepsilon^+) - C_l \circ (1 + \varepsilon^-)),

the update :func:`~neuroplastic.sal.rule.sal_pairs` sums (its ``hebb`` and ``anti``). Traces come from each unit's
last ``⌈cut / (refractory + 1)⌉`` spikes' ages (no unit fires more often), so they are exact (nearest-spike
pairing: the last one only). The kernel draws its uniforms as it goes (no ``[steps, R, ΣN]`` block to fill and
hold): every network has generators of its own, seeded from one key per call (:func:`chunk_key`, from the phase's
generator) and its index, so the draws do not depend on the order of work. Given those uniforms
(:func:`chunk_uniforms`), the torch route draws the same spikes, but where a potential summed in another order (or
the kernel's exponential, within 2e-7) lands within rounding of a uniform (tested). ``NEUROPLASTIC_NATIVE=0`` turns
the route off.

The networks run in two fixed slices, the phase's two halves (each has sums of its own), on up to two of torch's
OpenMP threads (:func:`threads`; the team of ``_team.h``, as the RBM's native step): each value is summed in one
order whatever their number, so the result does not depend on it. On a 2-core AMD EPYC (AVX2), two threads, the
paper's phase of a fresh MNIST net (32 networks, 10,000 steps) took 12.5 s here against 36.1 s on the torch route, and
0.15-0.16 of an SGD epoch in training runs (suite sal-cost-many's note, which also has the profile).
"""

from __future__ import annotations

import itertools
import math
import os

import torch

from .neurons import SpikingNet
from .rule import SALRule

_ABI = 6  # the interface of _native.c this module calls (its NATIVE_ABI)

try:
    from . import _native
except ImportError:  # built without a C compiler: the torch route
    _native = None
if getattr(_native, "ABI", None) != _ABI:  # a stale build (a rebuild failed): the torch route
    _native = None

__all__ = ["NativePhase", "available", "chunk_key", "chunk_uniforms", "threads"]


def available() -> bool:
    """Whether the native kernel is built and not turned off by ``NEUROPLASTIC_NATIVE=0``."""
    return _native is not None and os.environ.get("NEUROPLASTIC_NATIVE", "1") != "0"


def chunk_key(generator: torch.Generator) -> int:
    """The key of one call's draws (:meth:`NativePhase.run`: one per chunk of steps), drawn from the phase's
    ``generator`` (as the RBM's native step draws its keys, :func:`neuroplastic.boltzmann.native.step_keys`)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def chunk_uniforms(key: int, steps: int, nets: int, units: int) -> torch.Tensor:
    """The uniforms ``[steps, R, ΣN]`` that :meth:`NativePhase.run` draws in a call with key ``key`` (``_native.c``:
    every network's eight xoshiro128++ lanes, Blackman & Vigna 2021, seeded by SplitMix64 from the key and its index;
    unit ``g`` from lane ``g mod 8``, step by step; the top 24 bits over :math:`2^{24}`). What the torch route
    (:meth:`SpikingNet.draw <neuroplastic.sal.neurons.SpikingNet.draw>`) needs to draw the native route's spikes."""
    if _native is None:
        raise RuntimeError("the native SAL kernel is not built")
    out = torch.empty((steps, nets, units), dtype=torch.float32)
    _native.uniforms(key, steps, nets, units, out.data_ptr())
    return out


def threads() -> int:
    """The phase's thread count: torch's (``torch.set_num_threads``), at most 2 (one per half of the networks; one
    where ``_native.c`` finds no OpenMP runtime)."""
    return max(1, min(2, torch.get_num_threads()))


class NativePhase:
    """The state of one phase on the native route: a chain ``net`` of populations ``0 … L`` whose projections are
    ``(l-1, l)`` = ``weights[l-1]`` (``W_l`` ``[n_l, n_{l-1}]``) and ``(l, l-1)`` = ``feedback[l-1].t()`` (``B_l``
    ``[n_l, n_{l-1}]``, read as it is when each chunk starts) and the ages of each unit's last spikes.

    :meth:`run` advances ``steps`` steps and adds each feedback projection's anti-causal and causal SAL sums
    (module docstring) to ``hebb[l][h]`` ``[n_l, n_{l-1}]`` and ``anti[l][h]`` ``[n_{l-1}, n_l]`` for the networks
    of half ``h`` (networks ``< split`` and the rest), and every unit's spike count to ``fired`` ``[R, ΣN]``.

    ``span`` orders the kernel's memory access, not its sums (``_native.c``): a group of networks keeps the spikes
    and traces of ``span`` steps and adds their SAL sums together, each row of a sum read and written once per span
    instead of once per step. ``None`` (or 0): as many steps as fit 1 MiB of a group's traces, at most 8. Any span gives
    the same result to the bit (tested). With it and the step's spikes read from bit masks of 64 units, the phases of
    suite sal-cost-many's MNIST cells (32 and 320 networks) ran 12-14 % shorter than with the kernel before both, to
    the same test accuracy (its note)."""

    span: int | None = None

    def __init__(self, net: SpikingNet, weights: list[torch.Tensor], feedback: list[torch.Tensor], rule: SALRule,
                 split: int) -> None:
        if not available():
            raise RuntimeError("the native SAL kernel is not built (or NEUROPLASTIC_NATIVE=0)")
        n = len(weights)
        expected = {(l - 1, l) for l in range(1, n + 1)} | {(l, l - 1) for l in range(1, n + 1)}
        if set(net.projections) != expected or any(p.dim() != 2 for p in net.projections.values()) \
                or net.device.type != "cpu":
            raise ValueError("the native SAL route runs a chain of 2-D projections l-1 <-> l on the CPU only")
        self.net, self.feedback, self.rule, self.split = net, feedback, rule, int(split)
        self.fwd = [w.t().contiguous() for w in weights]  # fan-out rows; W is fixed during a phase
        self.m = 1 if rule.pairing == "nearest" else math.ceil(rule.cut / (net.refractory + 1))
        zero = torch.zeros(1)
        self.table = torch.cat([zero, rule.kernel("cpu", torch.float32), zero]).contiguous()  # k(d) at d, 0 outside
        self.sizes = torch.tensor(net.sizes, dtype=torch.int64)
        total = sum(net.sizes)
        self.ages = torch.full((net.n_nets, self.m, total), rule.cut + 1, dtype=torch.int16)  # cut + 1: no spike

    def sums(self) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """Zeroed anti-causal and causal sums of every feedback projection, per half: what :meth:`run` adds to."""
        pairs = list(itertools.pairwise(self.net.sizes))
        return ([[torch.zeros(n_up, n_lo) for _ in range(2)] for n_lo, n_up in pairs],
                [[torch.zeros(n_lo, n_up) for _ in range(2)] for n_lo, n_up in pairs])

    def run(self, steps: int, hebb: list[list[torch.Tensor]], anti: list[list[torch.Tensor]],
            fired: torch.Tensor) -> None:
        """``steps`` free-running steps (no input); the sums as in the class docstring (added, not overwritten)."""
        net = self.net
        n = len(self.fwd)
        key = chunk_key(net.generator)
        net._z = net._z.contiguous().clone()
        net.potentials()  # u from the PSPs now and the weights as they are (B changes between blocks)
        back = [b.contiguous() for b in self.feedback]
        tensors = [*self.fwd, *back, *(h[0] for h in hebb), *(h[1] for h in hebb), *(a[0] for a in anti),
                   *(a[1] for a in anti)]
        for x in (*tensors, fired):
            if x.dtype != torch.float32 or not x.is_contiguous():
                raise ValueError("native SAL: every array must be contiguous float32")
        ptrs = torch.tensor([x.data_ptr() for x in tensors], dtype=torch.int64)  # unsigned in C: the same bits
        _native.run(steps, net.n_nets, n, self.split, self.m, self.rule.cut, int(self.rule.pairing == "nearest"),
                    net.refractory, net._psp_above, net._log_tau, self.sizes.data_ptr(), ptrs.data_ptr(),
                    self.table.data_ptr(), key, net._u.data_ptr(), fired.data_ptr(),
                    net._count.data_ptr(), net._z.data_ptr(), self.ages.data_ptr(), threads(), int(self.span or 0))
