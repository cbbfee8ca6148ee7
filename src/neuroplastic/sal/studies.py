"""SAL's smallest study (Gierlich et al. 2025): two reciprocally connected stochastic neurons.

Neuron 1 projects to neuron 2 with ``w21`` and neuron 2 to neuron 1 with ``w12``. SAL on ``w21`` alone (pre =
neuron 1, post = neuron 2) pulls it to ``w12``: the anti-causal pairs (2 before 1) are what ``w12`` causes and
potentiate, the causal pairs (1 before 2) are what ``w21`` causes itself and depress. SAL on both synapses moves
them by opposite amounts (the rule is antisymmetric in pre and post), so both meet at their mean. Many runs
(seeds, starting points) are simulated at once as parallel networks with their own weights.
"""

from __future__ import annotations

import torch

from .neurons import SpikingNet
from .rule import SALRule, SALTrace, sal_step

__all__ = ["flow_field", "two_neurons"]


def _pair_net(w12: torch.Tensor, w21: torch.Tensor, bias: float, tau_ref: int, gen: torch.Generator) -> SpikingNet:
    r = len(w12)
    return SpikingNet([1, 1], {(0, 1): w21.view(r, 1, 1), (1, 0): w12.view(r, 1, 1)},
                      [torch.full((1,), bias), torch.full((1,), bias)], n_nets=r, tau_ref=tau_ref, generator=gen)


def two_neurons(w12: torch.Tensor, w21: torch.Tensor, *, both: bool = False, blocks: int = 100,
                block_steps: int = 1000, lr: float = 3.0, lr_final: float | None = 0.01, bias: float = 0.0,
                tau_ref: int = 10, rule: SALRule | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Run SAL on ``w21`` (and on ``w12`` when ``both``) for ``blocks`` blocks of ``block_steps`` steps, one
    network per entry of the starting weights ``w12``, ``w21`` (``[R]``).

    After block ``k`` ``w += η_k · ΔP / (block_steps / τ_ref)`` (the block's summed update normalised by its length
    in refractory periods, as in the authors' sampling network), ``η_k`` falling geometrically from ``lr`` to
    ``lr_final`` (``None``: constant): large steps first, small ones to average out the spiking noise at the end. Returns the trajectories ``w12``, ``w21``
    ``[blocks + 1, R]`` (start included) and the spike rate per neuron and step."""
    rule = rule or SALRule(tau=float(tau_ref), cut=2 * tau_ref, window="exponential", pairing="all")
    gen = torch.Generator().manual_seed(seed)
    w12, w21 = w12.clone().float(), w21.clone().float()
    net = _pair_net(w12, w21, bias, tau_ref, gen)
    r = len(w12)
    traces = [SALTrace(rule, (r, 1)), SALTrace(rule, (r, 1))]
    hist12, hist21, spikes = [w12.clone()], [w21.clone()], 0.0
    norm = block_steps / tau_ref
    for k in range(blocks):
        eta = lr if lr_final is None or blocks == 1 else lr * (lr_final / lr) ** (k / (blocks - 1))
        s0, s1 = [], []
        for _t in range(block_steps):
            a, b = net.step()
            s0.append(a)
            s1.append(b)
        s0, s1 = torch.stack(s0), torch.stack(s1)  # [T, R, 1]
        spikes += float(s0.sum() + s1.sum())
        d21 = sal_step(s0, s1, traces[0], traces[1], per_net=True).view(r)  # pre 1 -> post 2
        w21 += eta * d21 / norm
        if both:
            w12 -= eta * d21 / norm  # the same pairs seen from synapse 2 -> 1: the opposite update
        hist12.append(w12.clone())
        hist21.append(w21.clone())
    return {"w12": torch.stack(hist12), "w21": torch.stack(hist21),
            "rate": torch.tensor(spikes / (2 * r * blocks * block_steps))}


def flow_field(grid: torch.Tensor, *, steps: int = 20_000, bias: float = 0.0, tau_ref: int = 10,
               rule: SALRule | None = None, seed: int = 0) -> torch.Tensor:
    """The mean SAL drift of both synapses at fixed weights: for every point ``(w12, w21)`` of ``grid`` ``[P, 2]``
    the update per refractory period ``(Δw12, Δw21)`` ``[P, 2]`` averaged over ``steps`` steps (the weights held
    fixed). The phase-plane picture of the two-neuron study."""
    rule = rule or SALRule(tau=float(tau_ref), cut=2 * tau_ref)
    gen = torch.Generator().manual_seed(seed)
    w12, w21 = grid[:, 0].float(), grid[:, 1].float()
    net = _pair_net(w12, w21, bias, tau_ref, gen)
    traces = [SALTrace(rule, (len(grid), 1)), SALTrace(rule, (len(grid), 1))]
    total = torch.zeros(len(grid))
    chunk = 1000
    for start in range(0, steps, chunk):
        s = [net.step() for _ in range(min(chunk, steps - start))]
        s0, s1 = torch.stack([a for a, _ in s]), torch.stack([b for _, b in s])
        total += sal_step(s0, s1, traces[0], traces[1], per_net=True).view(-1)
    d21 = total / (steps / tau_ref)
    return torch.stack([-d21, d21], 1)
