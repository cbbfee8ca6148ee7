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
        #: steps of refractoriness (= PSP) left per unit; z = countdown > 0
        self.countdown = [torch.zeros(n_nets, n, dtype=torch.int16, device=device) for n in sizes]
        self._log_tau = math.log(tau_ref)

    def psp(self) -> list[torch.Tensor]:
        """The rectangular PSPs ``z`` ``[R, N]`` of every population (1 while refractory)."""
        return [(c > 0).float() for c in self.countdown]

    def potentials(self, inputs: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
        """``u = b + Σ_pre z_pre Pᵀ (+ input)`` per population, from the current PSPs."""
        z = self.psp()
        u: list[torch.Tensor | None] = [None] * len(self.sizes)
        for (a, b), p in self.projections.items():
            if p.dim() == 3:
                add = torch.bmm(p, z[a].unsqueeze(2)).squeeze(2)
                u[b] = add + self.biases[b] if u[b] is None else u[b].add_(add)
            elif u[b] is None:
                u[b] = torch.addmm(self.biases[b].expand(self.n_nets, -1), z[a], p.t())
            else:
                u[b].addmm_(z[a], p.t())
        out = [self.biases[i].expand(self.n_nets, -1).clone() if ui is None else ui for i, ui in enumerate(u)]
        for i, x in enumerate(inputs or []):
            if x is not None:
                out[i] = out[i] + x
        return out

    def step(self, inputs: list[torch.Tensor | None] | None = None,
             uniforms: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Advance one step; return each population's spikes ``[R, N]`` (0/1 floats). ``uniforms``: the step's
        U(0, 1) draws per population (:meth:`run` draws a whole block at once); default: drawn now."""
        u = self.potentials(inputs)
        out = []
        for i, ui in enumerate(u):
            c = (self.countdown[i] - 1).clamp_min_(0)
            r = uniforms[i] if uniforms is not None else torch.rand(ui.shape, generator=self.generator,
                                                                       device=self.device)
            spikes = (c == 0) & (r < torch.sigmoid(ui.sub_(self._log_tau)))
            self.countdown[i] = c.masked_fill_(spikes, self.tau_ref)
            out.append(spikes.float())
        return out

    def run(self, steps: int) -> list[torch.Tensor]:
        """``steps`` free-running steps (no input); every population's spikes ``[steps, R, N]``. The uniform
        draws of the whole block are made at once (one call per population instead of one per step)."""
        uni = [torch.rand(steps, self.n_nets, n, generator=self.generator, device=self.device) for n in self.sizes]
        out = [torch.empty(steps, self.n_nets, n, device=self.device) for n in self.sizes]
        for t in range(steps):
            for o, s in zip(out, self.step(uniforms=[x[t] for x in uni])):
                o[t] = s
        return out
