r"""Discrete-time stochastic spiking neurons for SAL (Gierlich et al. 2025, after Buesing et al. 2011).

Membrane potential :math:`u_i(t) = b_i + \sum_j P_{ij}\, z_j(t-1) + I_i(t)` with rectangular PSPs
:math:`z_j(t) = 1` for the ``τ_ref`` steps from a spike of ``j`` on: a spike at step ``t`` adds its weight to the
potentials of steps ``t + 1 … t + τ_ref``. A unit that is not refractory spikes with probability
:math:`\varphi(u) = \sigma(u - \ln \tau_\text{ref})` per step; after a spike at step ``t`` it is refractory (cannot
spike) for ``refractory`` steps, ``t + 1 … t + refractory``:

- ``refractory = τ_ref`` (the default): the absolute refractory period of Gierlich et al.'s neurons and of their code
  (a unit spikes again no sooner than ``τ_ref + 1`` steps later, so even a unit at its limit has a step with
  :math:`z = 0` between two PSPs and each of its spikes is seen by the units it projects to);
- ``refractory = τ_ref − 1``: Buesing et al.'s (2011) discrete-time neural sampling, where a unit may spike again on
  the last step of its PSP, so :math:`P(z = 1) = \sigma(u)` exactly; a unit at its limit then holds :math:`z = 1`
  without a break and its spikes carry no timing. In SAL's deep network this version leaves the noise-free fixed
  point of a phase 7.7 / 11.4 / 7.5° from ``B = W`` (fc1 / fc2 / fc3 of a trained MNIST net), the default 1.6 / 5.2 /
  2.5° (``neuroplastic analyze sal --bias``; suite sal-floor's note).

A :class:`SpikingNet` is populations joined by projections (``P`` of shape ``[N_post, N_pre]``, or
``[R, N_post, N_pre]``: one per network, to run many seeds or noise levels at once, or ``[G, N_post, N_pre]``:
one per group of ``R / G`` consecutive networks, replicas that share their weights), simulated for ``R``
parallel networks at once, its randomness drawn from an explicit generator. Nothing of the run is kept
but the current state: the caller sees each step's spikes (``step``) and keeps what it needs.

**The CUDA route.** On a GPU a step is about twenty small kernels, most of them shorter than their launch from
Python, so :meth:`SpikingNet.run` records a block's steps once as a CUDA graph and replays it, the uniforms drawn
before each replay from the same generator in the same order: the same kernels on the same numbers, so the same
spikes as step-by-step launches. ``NEUROPLASTIC_CUDA_GRAPH=0`` turns it off; the CPU route is unchanged.
"""

from __future__ import annotations

import itertools
import math
import os

import torch

from ..boltzmann.machines import enumerate_states
from ..energy import ops_watched

__all__ = ["SpikingNet", "check_refractory", "cuda_graphs", "firing_probability"]

_TABLE_MAX_PRE = 8  # a projection shared by groups of networks with at most this many pre units is tabulated
_GRAPHS = 4  # captured CUDA graphs kept per SpikingNet (one per block length: a phase's blocks, settling, burn-in)


def firing_probability(u: torch.Tensor, tau_ref: int) -> torch.Tensor:
    r""":math:`\varphi(u) = \sigma(u - \ln \tau_\text{ref})`: the spike probability per step of a free unit."""
    return torch.sigmoid(u - math.log(tau_ref))


def cuda_graphs(device: torch.device | str) -> bool:
    """Whether :meth:`SpikingNet.run` replays CUDA graphs on ``device``: a CUDA device, and not turned off by
    ``NEUROPLASTIC_CUDA_GRAPH=0`` (module docstring)."""
    return torch.device(device).type == "cuda" and os.environ.get("NEUROPLASTIC_CUDA_GRAPH", "1") != "0"


def check_refractory(refractory: int | None, tau_ref: int) -> int:
    """The steps without a spike after a spike (module docstring): ``tau_ref`` for ``None``, else an integer from
    ``tau_ref − 1`` (Buesing et al.'s sampling) to 30,000 (the countdown is 16-bit); ``ValueError`` otherwise."""
    value = tau_ref if refractory is None else refractory
    if isinstance(value, bool) or not isinstance(value, int) or not tau_ref - 1 <= value <= 30_000:
        raise ValueError(f"refractory must be an integer number of steps from tau_ref - 1 = {tau_ref - 1} to 30000, "
                         f"got {refractory!r}")
    return value


class SpikingNet:
    """Populations of stochastic units (sizes ``sizes``) and projections ``{(pre, post): P [N_post, N_pre]}``,
    biases per population, ``R`` parallel networks, PSP length ``tau_ref`` steps, ``refractory`` steps after a spike
    without one (default ``tau_ref``; the module docstring).

    ``step(inputs)`` advances one step: potentials from the previous step's PSPs, spikes drawn, refractoriness
    updated; returns the spikes ``[R, N]`` per population (float 0/1). Weights are read at every step, so a
    caller may change them between steps (plasticity)."""

    def __init__(self, sizes: list[int], projections: dict[tuple[int, int], torch.Tensor],
                 biases: list[torch.Tensor | None], *, n_nets: int = 1, tau_ref: int = 10,
                 refractory: int | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> None:
        if not (isinstance(tau_ref, int) and tau_ref >= 1):
            raise ValueError(f"tau_ref must be an integer >= 1, got {tau_ref!r}")
        refractory = check_refractory(refractory, tau_ref)
        if n_nets < 1:
            raise ValueError(f"n_nets must be >= 1, got {n_nets}")
        for (a, b), p in projections.items():
            if not (0 <= a < len(sizes) and 0 <= b < len(sizes)) or tuple(p.shape[-2:]) != (sizes[b], sizes[a]) \
                    or p.dim() not in (2, 3) or (p.dim() == 3 and (p.shape[0] < 1 or n_nets % p.shape[0])):
                raise ValueError(f"projection {a}->{b} must have shape ({sizes[b]}, {sizes[a]}) or "
                                 f"(G, {sizes[b]}, {sizes[a]}) with G dividing {n_nets} (one per group of "
                                 f"networks), got {tuple(p.shape)}")
        self.sizes, self.projections, self.tau_ref, self.n_nets = list(sizes), projections, tau_ref, n_nets
        #: steps after a spike in which the unit cannot spike (the module docstring)
        self.refractory = refractory
        self.biases = [torch.zeros(n, device=device) if b is None else b for n, b in zip(sizes, biases)]
        self.generator = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
        self.device = torch.device(device)
        ends = torch.tensor([0, *sizes]).cumsum(0).tolist()
        self._spans = [slice(a, b) for a, b in itertools.pairwise(ends)]
        # one state for all populations, so each step's element-wise work is a few operations on [R, ΣN];
        # ``countdown`` holds each population's view of it
        self._count = torch.zeros(n_nets, ends[-1], dtype=torch.int16, device=device)
        #: per unit, ``refractory + 1`` at a spike, then one less per step: the unit is free when it reaches 0, and its
        #: PSP is on while it is above ``refractory + 1 − τ_ref``
        self.countdown = [self._count[:, sl] for sl in self._spans]
        self._psp_above = refractory + 1 - tau_ref
        self._z = torch.zeros(n_nets, ends[-1], device=device)  # the PSPs (count > 0) as floats, set by _fire
        self._u = torch.empty(n_nets, ends[-1], device=device)
        self._uni: torch.Tensor | None = None  # run()'s blocks of uniforms: views of one buffer (_uniforms)
        self._log_tau = math.log(tau_ref)
        self._pow2 = 2.0 ** torch.arange(_TABLE_MAX_PRE, device=device)  # a 0/1 state's number, exact in floats
        self._tables: dict[tuple[int, int], tuple[tuple[int, int], torch.Tensor]] = {}
        self._rows: dict[tuple[int, int], torch.Tensor] = {}
        #: the CUDA route (module docstring): :meth:`run` replays CUDA graphs
        self.graphs = cuda_graphs(self.device)
        #: the captured blocks, key -> (graph, uniforms, spikes, PSP state), at most _GRAPHS of them (oldest out)
        self._graphs: dict[tuple, tuple] = {}
        self._seen: set[tuple] = set()  # the keys run() has seen: a block runs eagerly once before its capture

    def chain_state(self) -> torch.Tensor:
        """The chain's state: every unit's countdown ``[R, ΣN]`` (int16; its PSP and refractory clock follow from it,
        and with the weights its potential). A copy: what :meth:`set_chain_state` takes to go on from here."""
        return self._count.clone()

    def set_chain_state(self, count: torch.Tensor) -> None:
        """Go on from a state :meth:`chain_state` gave (of a net with the same sizes and networks; the weights may
        differ): the countdowns copied in, the PSPs set from them. ``ValueError`` on another shape or a countdown
        outside ``0 … refractory + 1``."""
        if tuple(count.shape) != tuple(self._count.shape):
            raise ValueError(f"a chain state of shape {tuple(self._count.shape)} is needed, got {tuple(count.shape)}")
        if int(count.min()) < 0 or int(count.max()) > self.refractory + 1:
            raise ValueError(f"a chain state's countdowns lie in 0 ... {self.refractory + 1}, got "
                             f"{int(count.min())} ... {int(count.max())}")
        self._count.copy_(count)
        self._set_psps()

    def event_ops(self, spikes: list[float]) -> float:
        r"""Accumulates of the potentials kept event by event (the native route; an event-driven circuit): a spike's
        rectangular PSP adds its unit's weights to its targets' potentials where it starts and takes them away
        where it ends, :math:`2 \sum_{(a, b)} S_a N_b` over the projections ``a → b`` for ``spikes[a]`` spikes
        of population ``a`` (over all networks and steps); each reads one stored weight."""
        return 2.0 * sum(spikes[a] * self.sizes[b] for a, b in self.projections)

    def psp(self) -> list[torch.Tensor]:
        """The rectangular PSPs ``z`` ``[R, N]`` of every population (1 for ``τ_ref`` steps from a spike on; views of a
        tensor the next step replaces, not overwrites)."""
        return [self._z[:, sl] for sl in self._spans]

    def potentials(self, inputs: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
        """``u = b + Σ_pre z_pre Pᵀ (+ input)`` per population, from the current PSPs (views of one buffer that the
        next call overwrites). Biases and projections are read now, so a caller may change them between steps."""
        z, u = self._z, self._u
        torch.cat([b.expand(self.n_nets, -1) for b in self.biases], dim=1, out=u)  # one copy of every bias
        for (a, b), p in self.projections.items():
            za, ub = z[:, self._spans[a]], u[:, self._spans[b]]
            if p.dim() == 3 and p.shape[0] < self.n_nets and p.shape[2] <= _TABLE_MAX_PRE:
                # shared by groups, few pre units: every subset's sum tabulated (rebuilt when P changes), looked up
                rows = torch.addmv(self._group_rows(p.shape[0], p.shape[2]), za, self._pow2[: za.shape[1]])
                ub.add_(self._subset_sums(a, b, p).index_select(0, rows.long()))
            elif p.dim() == 3 and p.shape[0] < self.n_nets:  # shared by groups: G products of [R/G, N_pre] rows
                g = p.shape[0]
                ub.add_(torch.bmm(za.reshape(g, -1, za.shape[1]), p.transpose(1, 2).contiguous()).view(self.n_nets, -1))
            elif p.dim() == 3 and p.shape[2] == 1:  # one pre unit: a broadcast product, not R tiny matrix products
                ub.addcmul_(p[:, :, 0], za)
            elif p.dim() == 3:
                ub.add_(torch.bmm(p, za.unsqueeze(2)).squeeze(2))
            else:
                ub.addmm_(za, p.t())
        for sl, x in zip(self._spans, inputs or []):
            if x is not None:
                u[:, sl] += x
        return [u[:, sl] for sl in self._spans]

    def _subset_sums(self, a: int, b: int, p: torch.Tensor) -> torch.Tensor:
        """``Σ_k P[g, :, k] z_k`` for every group ``g`` and every 0/1 state ``z`` of the pre population, rows
        ``g · 2^N_pre + Σ_k z_k 2^k`` (``[G · 2^N_pre, N_post]``): the same products as the step's, tabulated once
        per change of ``P`` (its version counter: in-place writes count)."""
        key = (p.data_ptr(), p._version)
        cached = self._tables.get((a, b))
        if cached is None or cached[0] != key:
            g, n_post, n_pre = p.shape
            states = enumerate_states(n_pre, p.device, p.dtype)
            sums = torch.bmm(states.expand(g, -1, -1), p.transpose(1, 2).contiguous())
            cached = (key, sums.reshape(g * 2**n_pre, n_post))
            self._tables[a, b] = cached
        return cached[1]

    def _group_rows(self, groups: int, n_pre: int) -> torch.Tensor:
        """Each network's first row in :meth:`_subset_sums`' table, ``(network // (R / G)) · 2^N_pre`` (floats: exact
        below 2^24 rows)."""
        if (groups, n_pre) not in self._rows:
            self._rows[groups, n_pre] = (torch.arange(self.n_nets, device=self.device)
                                         // (self.n_nets // groups) * 2**n_pre).float()
        return self._rows[groups, n_pre]

    def step(self, inputs: list[torch.Tensor | None] | None = None,
             uniforms: list[torch.Tensor] | torch.Tensor | None = None) -> list[torch.Tensor]:
        """Advance one step; return each population's spikes ``[R, N]`` (0/1 floats). ``uniforms``: the step's
        U(0, 1) draws, per population or as one ``[R, ΣN]`` tensor (:meth:`run` draws a whole block at once);
        default: drawn now, population by population."""
        self.potentials(inputs)
        if uniforms is None:
            uniforms = [torch.rand((self.n_nets, n), generator=self.generator, device=self.device)
                        for n in self.sizes]
        if not isinstance(uniforms, torch.Tensor):
            parts = list(uniforms)
            uniforms = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = self._fire(uniforms).float()
        return [out[:, sl] for sl in self._spans]

    def _fire(self, r: torch.Tensor) -> torch.Tensor:
        """Draw the spikes ``[R, ΣN]`` (bool) of the potentials just computed, with uniforms ``r``: a unit fires if it
        is free (its countdown reaches 0 now) and ``r < φ(u)``; a spike restarts its countdown at ``refractory + 1``."""
        c = self._count.sub_(1).clamp_min_(0)
        spikes = (c == 0) & (r < self._u.sub_(self._log_tau).sigmoid_())
        c.masked_fill_(spikes, self.refractory + 1)
        self._set_psps()
        return spikes

    def _set_psps(self) -> None:
        """The PSPs from the countdowns: on (1.0) while a unit's countdown is above ``refractory + 1 − τ_ref``. A new
        tensor, so the views :meth:`psp` gave stay as they were."""
        c = self._count
        self._z = torch.gt(c, self._psp_above, out=torch.empty(c.shape, device=c.device))

    def run(self, steps: int) -> list[torch.Tensor]:
        """``steps`` free-running steps (no input); every population's spikes ``[steps, R, N]`` (valid until the next
        call: on the CUDA route they are its graph's buffer, and so are the PSPs :meth:`psp` shows after it). The
        uniform draws of the whole block are made at once, for all populations in one call (not the order
        :meth:`step` draws them in: the same distribution, another stream). On the CUDA route (module docstring) the
        second block of a shape is captured as a graph and every later one replays it (a graph per block length, so
        blocks of two lengths may alternate); the first runs step by step, which also warms the kernels the capture
        records."""
        shape = (steps, self.n_nets, self._count.shape[1])
        key = self._graph_key(steps)
        if key is not None and key in self._seen:
            return self._replay(key, shape)
        if key is not None:
            self._seen.add(key)
        out = torch.empty(shape, device=self.device)
        self._steps(self.draw(steps), out)
        return [out[:, :, sl] for sl in self._spans]

    def draw(self, steps: int) -> torch.Tensor:
        """A block's uniform draws ``[steps, R, ΣN]`` from :attr:`generator`, into :meth:`uniforms`' buffer: what
        :meth:`run` compares with the block's firing probabilities."""
        return self.uniforms(steps).uniform_(generator=self.generator)

    def uniforms(self, steps: int) -> torch.Tensor:
        """A buffer ``[steps, R, ΣN]`` for a block's uniform draws: the leading steps of one buffer as long as the
        longest block so far, so blocks of any length reuse its pages (a fresh one every block would cost a page
        fault per 4 KiB)."""
        if self._uni is None or len(self._uni) < steps:
            self._uni = torch.empty((steps, self.n_nets, self._count.shape[1]), device=self.device)
        return self._uni[:steps]

    def _steps(self, uni: torch.Tensor, out: torch.Tensor) -> None:
        """The steps of a block: the potentials, then the spikes drawn with ``uni[t]`` into ``out[t]``."""
        for t in range(len(uni)):
            self.potentials()
            out[t] = self._fire(uni[t])

    def _graph_key(self, steps: int) -> tuple | None:
        """What a captured block depends on beyond the values it reads (the step count, every projection's and
        bias's storage and strides): ``None`` off the CUDA graph route, where a projection is tabulated (its
        table is rebuilt in Python when it changes), or while an operation counter watches (it must see every step:
        :func:`~neuroplastic.energy.ops_watched`)."""
        if not self.graphs or ops_watched() or torch.cuda.is_current_stream_capturing():
            return None
        tensors = []
        for p in self.projections.values():
            if p.dim() == 3 and p.shape[0] < self.n_nets and p.shape[2] <= _TABLE_MAX_PRE:
                return None
            tensors.append(p)
        tensors += self.biases
        return (steps, *((t.data_ptr(), tuple(t.shape), t.stride()) for t in tensors))

    def _replay(self, key: tuple, shape: tuple[int, int, int]) -> list[torch.Tensor]:
        """One block on the CUDA graph of ``key`` (captured now if there is none): the uniforms drawn into its buffer,
        the graph replayed."""
        if key not in self._graphs:
            while len(self._graphs) >= _GRAPHS:  # the oldest graph's memory goes first
                del self._graphs[next(iter(self._graphs))]
            self._graphs[key] = self._capture(shape)
        graph, uni, out, z = self._graphs[key]
        if self._z is not z:  # a step outside the graph moved the PSPs: the graph reads them from z
            z.copy_(self._z)
            self._z = z
        uni.uniform_(generator=self.generator)  # as draw(), into the buffer this graph reads
        graph.replay()
        return [out[:, :, sl] for sl in self._spans]

    def _capture(self, shape: tuple[int, int, int]) -> tuple:
        """Record ``shape[0]`` steps as a CUDA graph (nothing runs: :meth:`_replay` replays it). The state it
        updates in place (countdown, potentials) and the uniforms, spikes and PSPs it reads and writes live in
        buffers that outlast the capture (the uniforms' is :meth:`uniforms`' view, shared by the graphs: they replay
        one at a time, each after its draw); the PSPs of the last step are copied to where the first step reads
        them."""
        uni, out, z = self.uniforms(shape[0]), torch.empty(shape, device=self.device), self._z
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._steps(uni, out)
            z.copy_(self._z)
        self._z = z
        return graph, uni, out, z
