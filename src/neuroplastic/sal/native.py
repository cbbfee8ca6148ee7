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

:class:`DensePhase` is the other native route, a labelled option (``sal_precision="bfloat16"``): dense bfloat16
products for the potentials and the SAL sums (oneDNN, on AMX where the CPU has it), the kernel drawing the spikes and
writing the window's terms.
"""

from __future__ import annotations

import itertools
import math
import os

import torch

from .neurons import SpikingNet
from .rule import SALRule

_ABI = 7  # the interface of _native.c this module calls (its NATIVE_ABI)

try:
    from . import _native
except ImportError:  # built without a C compiler: the torch route
    _native = None
if getattr(_native, "ABI", None) != _ABI:  # a stale build (a rebuild failed): the torch route
    _native = None

__all__ = ["DensePhase", "NativePhase", "available", "chunk_key", "chunk_uniforms", "threads"]


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


_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _packed(mats: list[torch.Tensor], rows: int) -> list[torch.Tensor] | None:
    """``mats`` (bfloat16 linear weights ``[out, in]``) packed in oneDNN's layout for products with ``rows`` rows
    (torch's ``mkldnn._reorder_linear_weight``, as torch's compiler prepacks frozen weights), or ``None`` where torch
    lacks the ops or the packed product differs from ``addmm``'s (checked once, on the first matrix)."""
    global _LINEAR
    if _LINEAR is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        packed = [torch.ops.mkldnn._reorder_linear_weight(m, rows) for m in mats]
        if not _PACK_CHECKED:
            x = (torch.arange(3 * mats[0].shape[1]).view(3, -1) % 3 == 0).to(torch.bfloat16)
            bias = torch.zeros(mats[0].shape[0], dtype=torch.bfloat16)
            want = torch.nn.functional.linear(x, mats[0], bias)
            got = _LINEAR(x, torch.ops.mkldnn._reorder_linear_weight(mats[0], 3), bias, "none", [], "")
            if not torch.equal(want, got):
                raise RuntimeError("packed product differs")
            _PACK_CHECKED.append(True)
        return packed
    except (RuntimeError, AttributeError):
        _LINEAR = None
        return None


_PACK_CHECKED: list[bool] = []


class DensePhase:
    r"""A phase's chain ``net`` on the dense bfloat16 route (``sal_precision="bfloat16"``; a labelled option, not
    the paper's arithmetic). Each step's potentials are two dense products with bfloat16 operands, float32
    accumulation and a bfloat16 result, on the CPU's matrix units where it has them (AMX); the kernel
    (``_native.c``'s ``dense_step``: the native route's uniforms, exponential and refractory clock) draws the step's
    spikes from them. The chain is bipartite, the even populations ``0, 2, …`` receiving only from the odd ones and
    the odd ones only from the even, so

    .. math::  u_\text{even} = b_\text{even} + z_\text{odd} M_{oe}, \qquad
               u_\text{odd} = b_\text{odd} + z_\text{even} M_{eo}

    with ``M`` the projections' blocks (``W_lᵀ`` from ``l-1`` to ``l``, ``B_l`` from ``l`` to ``l-1``; zero between
    populations that are not neighbours), rebuilt from ``weights`` and ``feedback`` at every block (``B`` moves
    between blocks).

    The SAL sums are products too. With the window's terms of a pre unit ``j`` at row (step) ``i``,

    .. math::  y_j(i) = \sum_{s:\ 0 < |s - i| \le c} \operatorname{sign}(s - i)\, k(|s - i|)\,[\text{spike of } j
               \text{ at } s],

    the all-pairs update of the feedback projection ``l → l-1`` (pre = layer ``l``, post = layer ``l-1``) over a
    block is :math:`\sum_i s_{l-1}(i)^\top y_l(i)` (the pairs :func:`~neuroplastic.sal.rule.sal_pairs` sums: +A for a
    pre spike after the post spike, −A before), a pair counting in the block of its later spike, as on the other
    routes. The kernel writes ``y`` of the row ``c`` steps back at every step (from the ages of each unit's last spikes),
    and of the block's last ``c`` rows at its end; every chunk of rows is one product per projection and half of the
    networks, added to float32 sums. All-pairs only, without plasticity noise.

    What bfloat16 changes (8 bits of mantissa): the weights, the potentials (about 0.4 % of ``|u|``) and the terms
    ``y`` are rounded, so a spike whose uniform lands within that rounding of its probability goes the other way, and
    a chunk's sums carry a relative rounding of about 2^-9. The rounding does not favour ``B = W``; whether it changes
    what SAL reaches is measured (suite sal-mnist-100-bf16's dense cell), not assumed. Without AMX (or AVX-512 BF16) bfloat16
    products are slower than float32 ones."""

    def __init__(self, net: SpikingNet, weights: list[torch.Tensor], feedback: list[torch.Tensor], rule: SALRule,
                 split: int, chunk: int) -> None:
        if not available():
            raise RuntimeError("the native SAL kernel is not built (or NEUROPLASTIC_NATIVE=0)")
        n = len(weights)
        expected = {(l - 1, l) for l in range(1, n + 1)} | {(l, l - 1) for l in range(1, n + 1)}
        if set(net.projections) != expected or any(p.dim() != 2 for p in net.projections.values()) \
                or net.device.type != "cpu" or rule.pairing != "all":
            raise ValueError("the dense SAL route runs a chain of 2-D projections l-1 <-> l on the CPU, all-pairs only")
        self.net, self.weights, self.feedback, self.rule = net, weights, feedback, rule
        r, c, bf = net.n_nets, rule.cut, torch.bfloat16
        self.split, self.chunk, self.c = int(split), int(chunk), c
        self.m = math.ceil((2 * c + 1) / (net.refractory + 1))  # spikes a unit can fire in 2c + 1 steps
        offsets = [0, 0]
        self.where: list[tuple[int, slice]] = []  # population -> (segment, its units there); population 0 first
        for p, size in enumerate(net.sizes):
            self.where.append((p % 2, slice(offsets[p % 2], offsets[p % 2] + size)))
            offsets[p % 2] += size
        self.n = offsets
        self.yfrom = [net.sizes[0], 0]  # population 0 is pre of no feedback projection: no terms
        self.u = [torch.empty(r, m, dtype=bf) for m in self.n]
        self.z = [torch.zeros(r, m, dtype=bf) for m in self.n]
        self.count = [torch.zeros(r, m, dtype=torch.int16) for m in self.n]
        self.fired = [torch.zeros(r, m) for m in self.n]
        self.ages = [torch.full((r, self.m, m - f), 2 * c + 1, dtype=torch.int16) for m, f in zip(self.n, self.yfrom)]
        self.bias = [torch.zeros(m, dtype=bf) for m in self.n]
        for p, b in enumerate(net.biases):
            k, sl = self.where[p]
            self.bias[k][sl] = b.to(bf)
        # the products' weights as a linear layer's, [out, in]: odd -> even, even -> odd (packed for oneDNN if it can)
        self.mat = [torch.zeros(self.n[k], self.n[1 - k], dtype=bf) for k in (0, 1)]
        self.packed: list[torch.Tensor] | None = None
        rows = [self.split, r - self.split]
        # per segment and half: the spikes of c rows before a chunk and of the chunk, and the chunk's terms
        self.s = [[torch.zeros(c + self.chunk, rh, m, dtype=bf) for rh in rows] for m in self.n]
        self.y = [[torch.zeros(max(c, self.chunk), rh, m - f, dtype=bf) for rh in rows]
                  for m, f in zip(self.n, self.yfrom)]
        self.kernel = rule.kernel("cpu", torch.float32).contiguous()
        self.gen = torch.empty(r * 128 + 32, dtype=torch.uint8)  # every network's lanes (128 bytes), 32-aligned
        off = (-self.gen.data_ptr()) % 32
        self.gen_view = self.gen[off: off + r * 128]
        _native.dense_seed(chunk_key(net.generator), r, self.gen_view.data_ptr())
        for p, cnt in enumerate(net.countdown):  # the chain's state (at rest, or the last phase's)
            k, sl = self.where[p]
            self.count[k][:, sl] = cnt
            self.z[k][:, sl] = (cnt > net._psp_above).to(bf)

    def store_state(self) -> None:
        """The chain's countdowns back into ``net`` (for :meth:`SpikingNet.chain_state`), its PSPs set from them."""
        for p, cnt in enumerate(self.net.countdown):
            k, sl = self.where[p]
            cnt.copy_(self.count[k][:, sl])
        self.net._set_psps()

    def _load_weights(self) -> None:
        """The blocks of ``M`` from the weights and feedback as they are now (bfloat16), packed in oneDNN's layout
        for the products where torch has oneDNN's linear op (the same products, without a repacking every step)."""
        for l, (w, b) in enumerate(zip(self.weights, self.feedback), start=1):
            (ka, sa), (kb, sb) = self.where[l - 1], self.where[l]  # l-1 -> l: W_l; l -> l-1: B_lᵀ
            self.mat[kb][sb, sa] = w.to(torch.bfloat16)
            self.mat[ka][sa, sb] = b.t().to(torch.bfloat16)
        self.packed = _packed(self.mat, self.net.n_nets)

    def _pointers(self, s_row: int, y_row: int | None, steps: int = 1) -> torch.Tensor:
        """``dense_step``'s pointers for ``steps`` steps ``[steps, 16]``: per segment count, z, fired, ages, then the
        spikes' rows ``s_row + t`` and the terms' rows ``y_row + t`` of both halves (0: none)."""
        base, move = [], []
        for k in (0, 1):
            base += [self.count[k].data_ptr(), self.z[k].data_ptr(), self.fired[k].data_ptr(), self.ages[k].data_ptr()]
            move += [0] * 4
            for h in (0, 1):
                b = self.s[k][h]
                base.append(b[s_row].data_ptr() if b.numel() else 0)
                move.append(b[0].numel() * 2 if b.numel() else 0)
            for h in (0, 1):
                b = self.y[k][h]
                base.append(b[y_row].data_ptr() if y_row is not None and b.numel() else 0)
                move.append(b[0].numel() * 2 if y_row is not None and b.numel() else 0)
        t = torch.arange(steps, dtype=torch.int64)[:, None]
        return torch.tensor(base, dtype=torch.int64) + t * torch.tensor(move, dtype=torch.int64)

    def _call(self, ptrs: int, fire: bool, o: int, e: int, u: tuple[int, int] = (0, 0)) -> None:
        """One ``dense_step``: a step (``fire``, from the potentials at ``u``) or a row of terms only, the row ``o``
        steps before the newest spikes, ``e`` the block's steps up to them (``_native.c``)."""
        net = self.net
        _native.dense_step(net.n_nets, self.split, self.n[0], self.n[1], self.yfrom[0], self.yfrom[1], self.m, self.c,
                           int(fire), net.refractory, net._psp_above, net._log_tau, self.kernel.data_ptr(), o, e,
                           int(e >= o), u[0], u[1], ptrs, self.gen_view.data_ptr(), threads())

    def _chunk(self, steps: int, first: int | None) -> None:
        """``steps`` steps (at most a chunk); with ``first`` (the block's steps before this chunk) each step also
        writes the terms of the row ``c`` steps back into row ``t`` of :attr:`y`."""
        c = self.c
        ptrs = self._pointers(c, None if first is None else 0, steps)
        at, row = ptrs.data_ptr(), ptrs.shape[1] * 8
        for t in range(steps):
            if self.packed is not None:
                u = (_LINEAR(self.z[1], self.packed[0], self.bias[0], "none", [], ""),
                     _LINEAR(self.z[0], self.packed[1], self.bias[1], "none", [], ""))
            else:
                u = (torch.addmm(self.bias[0], self.z[1], self.mat[0].t(), out=self.u[0]),
                     torch.addmm(self.bias[1], self.z[0], self.mat[1].t(), out=self.u[1]))
            self._call(at + t * row, True, c, 0 if first is None else first + t, (u[0].data_ptr(), u[1].data_ptr()))

    def _add_sums(self, sums: list[list[torch.Tensor]], s_rows: slice, y_rows: slice) -> None:
        """Every feedback projection's ``Σ_i s_post(i)ᵀ y_pre(i)`` over the rows, per half, added to ``sums``."""
        for l in range(1, len(self.net.sizes)):
            (kp, sp), (kq, sq) = self.where[l - 1], self.where[l]
            for h, total in enumerate(sums[l - 1]):
                post = self.s[kp][h][s_rows, :, sp].flatten(0, 1)
                pre = self.y[kq][h][y_rows, :, sq.start - self.yfrom[kq]: sq.stop - self.yfrom[kq]].flatten(0, 1)
                total += (post.t() @ pre).float()

    def _shift(self, steps: int) -> None:
        """The last ``c`` rows of spikes become the next chunk's first."""
        for per in self.s:
            for buf in per:
                buf[: self.c] = buf[steps: steps + self.c].clone()

    def _add_fired(self, fired: torch.Tensor) -> None:
        """The spike counts of the segments added to ``fired`` (the net's order), then zeroed."""
        for p, size in enumerate(self.net.sizes):
            k, sl = self.where[p]
            start = sum(self.net.sizes[:p])
            fired[:, start: start + size] += self.fired[k][:, sl]
        for f in self.fired:
            f.zero_()

    def run(self, steps: int, fired: torch.Tensor, sums: list[list[torch.Tensor]] | None = None) -> None:
        """``steps`` free-running steps in chunks; every unit's spikes added to ``fired`` ``[R, ΣN]`` (the net's
        order). With ``sums`` (one ``[n_{l-1}, n_l]`` per feedback projection and half of the networks) the steps
        are a block: its all-pairs SAL sums ``Δ(B_lᵀ)`` (without ``A``) are added, its last ``c`` rows' terms written
        at its end; without, they only advance the chain (burn-in, settling: summed nowhere)."""
        self._load_weights()
        c, done = self.c, 0
        while done < steps:
            n = min(self.chunk, steps - done)
            self._chunk(n, None if sums is None else done)
            if sums is not None:
                self._add_sums(sums, slice(0, n), slice(0, n))
                if done + n == steps:  # the block's last c rows: the terms of the spikes up to its end
                    ptrs = self._pointers(0, 0, c)
                    for q in range(c):
                        self._call(ptrs[q].data_ptr(), False, c - 1 - q, steps - 1)
                    self._add_sums(sums, slice(n, n + c), slice(0, c))
            self._shift(n)
            done += n
        self._add_fired(fired)
