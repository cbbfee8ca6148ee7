r"""Discrete-time stochastic spiking neurons for SAL (Gierlich et al. 2025, after Buesing et al. 2011).

Membrane potential :math:`u_i(t) = b_i + \sum_j P_{ij}\, z_j(t-1) + I_i(t)` with rectangular PSPs
:math:`z_j(t) = 1` for the ``τ_ref`` steps from a spike of ``j`` on (the PSP length equals the refractory period).
A unit that is not refractory spikes with probability :math:`\varphi(u) = \sigma(u - \ln \tau_\text{ref})` per
step; after a spike it is refractory (cannot spike) for ``τ_ref`` steps, exactly while its ``z`` is 1.

A :class:`SpikingNet` is populations joined by projections (``P`` of shape ``[N_post, N_pre]``, or
``[R, N_post, N_pre]``: one per network, to run many seeds or noise levels at once), simulated for ``R``
parallel networks at once, its randomness drawn from an explicit generator. Nothing of the run is kept
but the current state: the caller sees each step's spikes (``step``) and keeps what it needs.
"""

from __future__ import annotations

import itertools
import math

import torch

__all__ = ["SpikingNet", "firing_probability"]


def firing_probability(u: torch.Tensor, tau_ref: int) -> torch.Tensor:
    r""":math:`\varphi(u) = \sigma(u - \ln \tau_\text{ref})`: the spike probability per step of a free unit."""
    return torch.sigmoid(u - math.log(tau_ref))


class SpikingNet:
    """Populations of stochastic units (sizes ``sizes``) and projections ``{(pre, post): P [N_post, N_pre]}``,
    biases per population, ``R`` parallel networks, refractory period ``tau_ref`` steps.

    ``step(inputs)`` advances one step: potentials from the previous step's PSPs, spikes drawn, refractoriness
    updated; returns the spikes ``[R, N]`` per population (float 0/1). Weights are read at every step, so a
    caller may change them between steps (plasticity)."""

    def __init__(self, sizes: list[int], projections: dict[tuple[int, int], torch.Tensor],
                 biases: list[torch.Tensor | None], *, n_nets: int = 1, tau_ref: int = 10,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        if not (isinstance(tau_ref, int) and tau_ref >= 1):
            raise ValueError(f"tau_ref must be an integer >= 1, got {tau_ref!r}")
        if n_nets < 1:
            raise ValueError(f"n_nets must be >= 1, got {n_nets}")
        for (a, b), p in projections.items():
            if not (0 <= a < len(sizes) and 0 <= b < len(sizes)) or tuple(p.shape[-2:]) != (sizes[b], sizes[a]) \
                    or p.dim() not in (2, 3) or (p.dim() == 3 and p.shape[0] != n_nets):
                raise ValueError(f"projection {a}->{b} must have shape ({sizes[b]}, {sizes[a]}) or "
                                 f"({n_nets}, {sizes[b]}, {sizes[a]}) (one per network), got {tuple(p.shape)}")
        self.sizes, self.projections, self.tau_ref, self.n_nets = list(sizes), projections, tau_ref, n_nets
        self.biases = [torch.zeros(n, device=device) if b is None else b for n, b in zip(sizes, biases)]
        self.generator = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
        self.device = torch.device(device)
        ends = torch.tensor([0, *sizes]).cumsum(0).tolist()
        self._spans = [slice(a, b) for a, b in itertools.pairwise(ends)]
        # one state for all populations, so each step's element-wise work is a few operations on [R, ΣN];
        # ``countdown`` holds each population's view of it
        self._count = torch.zeros(n_nets, ends[-1], dtype=torch.int16, device=device)
        #: steps of refractoriness (= PSP) left per unit; z = countdown > 0
        self.countdown = [self._count[:, sl] for sl in self._spans]
        self._u = torch.empty(n_nets, ends[-1], device=device)
        self._uni: torch.Tensor | None = None  # run()'s block of uniforms, reused from block to block
        self._log_tau = math.log(tau_ref)

    def psp(self) -> list[torch.Tensor]:
        """The rectangular PSPs ``z`` ``[R, N]`` of every population (1 while refractory)."""
        z = (self._count > 0).float()
        return [z[:, sl] for sl in self._spans]

    def potentials(self, inputs: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
        """``u = b + Σ_pre z_pre Pᵀ (+ input)`` per population, from the current PSPs (views of one buffer that the
        next call overwrites). Biases and projections are read now, so a caller may change them between steps."""
        z = (self._count > 0).float()
        u = self._u
        for b, sl in zip(self.biases, self._spans):
            u[:, sl].copy_(b.expand(self.n_nets, -1))
        for (a, b), p in self.projections.items():
            za, ub = z[:, self._spans[a]], u[:, self._spans[b]]
            if p.dim() == 3 and p.shape[2] == 1:  # one pre unit: a broadcast product, not R tiny matrix products
                ub.addcmul_(p[:, :, 0], za)
            elif p.dim() == 3:
                ub.add_(torch.bmm(p, za.unsqueeze(2)).squeeze(2))
            else:
                ub.addmm_(za, p.t())
        for sl, x in zip(self._spans, inputs or []):
            if x is not None:
                u[:, sl] += x
        return [u[:, sl] for sl in self._spans]

    def step(self, inputs: list[torch.Tensor | None] | None = None,
             uniforms: list[torch.Tensor] | torch.Tensor | None = None) -> list[torch.Tensor]:
        """Advance one step; return each population's spikes ``[R, N]`` (0/1 floats). ``uniforms``: the step's
        U(0, 1) draws, per population or as one ``[R, ΣN]`` tensor (:meth:`run` draws a whole block at once);
        default: drawn now, population by population."""
        self.potentials(inputs)
        if uniforms is None:
            uniforms = [torch.rand((self.n_nets, n), generator=self.generator, device=self.device)
                        for n in self.sizes]
        r = uniforms if isinstance(uniforms, torch.Tensor) else torch.cat(list(uniforms), dim=1)
        out = self._fire(r).float()
        return [out[:, sl] for sl in self._spans]

    def _fire(self, r: torch.Tensor) -> torch.Tensor:
        """Draw the spikes ``[R, ΣN]`` (bool) of the potentials just computed, with uniforms ``r``: a unit fires if it
        is free (its countdown reaches 0 now) and ``r < φ(u)``; a spike restarts its countdown at ``τ_ref``."""
        c = self._count.sub_(1).clamp_min_(0)
        spikes = (c == 0) & (r < self._u.sub_(self._log_tau).sigmoid_())
        c.masked_fill_(spikes, self.tau_ref)
        return spikes

    def run(self, steps: int) -> list[torch.Tensor]:
        """``steps`` free-running steps (no input); every population's spikes ``[steps, R, N]``. The uniform
        draws of the whole block are made at once, for all populations in one call (not the order :meth:`step`
        draws them in: the same distribution, another stream)."""
        shape = (steps, self.n_nets, self._count.shape[1])
        if self._uni is None or self._uni.shape != shape:  # reused: no fresh pages every block
            self._uni = torch.empty(shape, device=self.device)
        uni = self._uni.uniform_(generator=self.generator)
        out = torch.empty(steps, self.n_nets, self._count.shape[1], device=self.device)
        for t in range(steps):
            self.potentials()
            out[t] = self._fire(uni[t])
        return [out[:, :, sl] for sl in self._spans]
