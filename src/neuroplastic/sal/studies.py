"""SAL's studies (Gierlich et al. 2025): two reciprocally connected stochastic neurons, and a sampling network that
learns a Boltzmann distribution; both registered as studies (:mod:`neuroplastic.studies`) that ``bench`` runs.

Neuron 1 projects to neuron 2 with ``w21`` and neuron 2 to neuron 1 with ``w12``. SAL on ``w21`` alone (pre =
neuron 1, post = neuron 2) pulls it to ``w12``: the anti-causal pairs (2 before 1) are what ``w12`` causes and
potentiate, the causal pairs (1 before 2) are what ``w21`` causes itself and depress. SAL on both synapses moves
them by opposite amounts (the rule is antisymmetric in pre and post), so both meet at their mean. Many runs
(seeds, starting points) are simulated at once as parallel networks with their own weights.
"""

from __future__ import annotations

import torch

from ..boltzmann.machines import enumerate_states
from ..boltzmann.machines import kl_divergence as boltzmann_kl
from .neurons import SpikingNet
from .rule import SALRule, SALTrace, sal_pairs, sal_step

__all__ = ["block_rate", "boltzmann_target", "flow_field", "kl_divergence", "sampling_network", "sampling_study",
           "two_neuron_study", "two_neurons"]


def _pair_net(w12: torch.Tensor, w21: torch.Tensor, bias: float | tuple[float, float], tau_ref: int,
              gen: torch.Generator, refractory: int | None = None) -> SpikingNet:
    r = len(w12)
    b1, b2 = (bias, bias) if isinstance(bias, (int, float)) else bias
    return SpikingNet([1, 1], {(0, 1): w21.view(r, 1, 1), (1, 0): w12.view(r, 1, 1)},
                      [torch.full((1,), float(b1)), torch.full((1,), float(b2))], n_nets=r, tau_ref=tau_ref,
                      refractory=refractory, generator=gen)


def block_rate(k: int, blocks: int, lr: float, lr_final: float | None, decay: str = "geometric") -> float:
    r"""The learning rate of block ``k`` of ``blocks``, from ``lr`` at the first block to ``lr_final`` at the last
    (``None``: constant): ``"geometric"`` :math:`\eta_k = \eta_0 (\eta_f/\eta_0)^{k/(K-1)}`, ``"harmonic"``
    :math:`\eta_k = \eta_0 / (1 + a k)` with :math:`a = (\eta_0/\eta_f - 1)/(K-1)` (Robbins & Monro 1951)."""
    if lr_final is None or blocks == 1:
        return lr
    if decay == "geometric":
        return lr * (lr_final / lr) ** (k / (blocks - 1))
    return lr / (1 + (lr / lr_final - 1) * k / (blocks - 1))


def two_neurons(w12: torch.Tensor, w21: torch.Tensor, *, both: bool = False, blocks: int = 100,
                block_steps: int = 1000, lr: float = 3.0, lr_final: float | None = 0.01, bias: float = 0.0,
                tau_ref: int = 10, replicas: int = 1, decay: str = "geometric", rule: SALRule | None = None,
                refractory: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    r"""Run SAL on ``w21`` (and on ``w12`` when ``both``) for ``blocks`` blocks of ``block_steps`` steps, one
    run per entry of the starting weights ``w12``, ``w21`` (``[R]``), each simulated by ``replicas`` parallel
    networks that share its weights.

    After block ``k`` ``w += η_k · ⟨ΔP⟩ / (block_steps / τ_ref)``: the block's summed update averaged over the run's
    replicas (as the deep net's SAL phase averages over its 32 parallel networks) and normalised by the block's
    length in refractory periods (as in the authors' sampling network); ``η_k`` falls from ``lr`` to ``lr_final``
    (``None``: constant) over the blocks, ``decay`` ``"geometric"`` or ``"harmonic"`` (:func:`block_rate`; the
    harmonic, Robbins–Monro schedule's late steps average the noisy estimates of all blocks alike): large steps
    first, small ones to average out the spiking noise at the end.
    ``refractory``: steps without a spike after one (:class:`~neuroplastic.sal.neurons.SpikingNet`; default
    ``tau_ref``). Returns the trajectories ``w12``, ``w21`` ``[blocks + 1, R]`` (start included) and the spike rate
    per neuron and step. Each block is simulated by :meth:`SpikingNet.run` (its uniforms drawn at once)."""
    if replicas < 1:
        raise ValueError(f"two_neurons: replicas must be >= 1, got {replicas}")
    if decay not in ("geometric", "harmonic"):
        raise ValueError(f"two_neurons: decay must be 'geometric' or 'harmonic', got {decay!r}")
    rule = rule or SALRule(tau=float(tau_ref), cut=2 * tau_ref, window="exponential", pairing="all")
    gen = torch.Generator().manual_seed(seed)
    w12, w21 = w12.clone().float(), w21.clone().float()
    r = len(w12)
    # the simulated networks' weights: each run's pair repeated over its replicas, rewritten after every block
    net12, net21 = w12.repeat_interleave(replicas), w21.repeat_interleave(replicas)
    net = _pair_net(net12, net21, bias, tau_ref, gen, refractory)
    traces = [SALTrace(rule, (r * replicas, 1)), SALTrace(rule, (r * replicas, 1))]
    hist12, hist21, spikes = [w12.clone()], [w21.clone()], 0.0
    norm = block_steps / tau_ref
    for k in range(blocks):
        eta = block_rate(k, blocks, lr, lr_final, decay)
        s0, s1 = net.run(block_steps)  # [T, R·replicas, 1] each
        spikes += float(s0.sum() + s1.sum())
        d21 = sal_step(s0, s1, traces[0], traces[1], per_net=True).view(r, replicas).mean(1)  # pre 1 -> post 2
        w21 += eta * d21 / norm
        if both:
            w12 -= eta * d21 / norm  # the same pairs seen from synapse 2 -> 1: the opposite update
        net12.copy_(w12.repeat_interleave(replicas))
        net21.copy_(w21.repeat_interleave(replicas))
        hist12.append(w12.clone())
        hist21.append(w21.clone())
    return {"w12": torch.stack(hist12), "w21": torch.stack(hist21),
            "rate": torch.tensor(spikes / (2 * r * replicas * blocks * block_steps))}


def flow_field(grid: torch.Tensor, *, steps: int = 20_000, bias: float | tuple[float, float] = 0.0,
               tau_ref: int = 10, rule: SALRule | None = None, refractory: int | None = None,
               seed: int = 0) -> torch.Tensor:
    """The mean SAL drift of both synapses at fixed weights: for every point ``(w12, w21)`` of ``grid`` ``[P, 2]``
    the update per refractory period ``(Δw12, Δw21)`` ``[P, 2]`` averaged over ``steps`` steps (the weights held
    fixed). The phase-plane picture of the two-neuron study. ``bias``: both neurons' bias, or ``(b1, b2)`` (a large
    bias drives a neuron to its refractory limit, where SAL loses its restoring force)."""
    rule = rule or SALRule(tau=float(tau_ref), cut=2 * tau_ref)
    gen = torch.Generator().manual_seed(seed)
    w12, w21 = grid[:, 0].float(), grid[:, 1].float()
    net = _pair_net(w12, w21, bias, tau_ref, gen, refractory)
    traces = [SALTrace(rule, (len(grid), 1)), SALTrace(rule, (len(grid), 1))]
    total = torch.zeros(len(grid))
    chunk = 1000
    for start in range(0, steps, chunk):
        s = [net.step() for _ in range(min(chunk, steps - start))]
        s0, s1 = torch.stack([a for a, _ in s]), torch.stack([b for _, b in s])
        total += sal_step(s0, s1, traces[0], traces[1], per_net=True).view(-1)
    d21 = total / (steps / tau_ref)
    return torch.stack([-d21, d21], 1)


# --------------------------------------------------------------------------------------------------
# the sampling network (SAL meets Boltzmann machines)
def boltzmann_target(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A target Boltzmann distribution over ``n`` binary units, ``p*(z) ∝ exp(½ zᵀWz + bᵀz)`` with ``W`` symmetric
    (zero diagonal) and ``W``, ``b`` ~ U(−1, 1) (Gierlich et al. 2025): returns ``W, b``, the ``2ⁿ`` states and
    their exact probabilities."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1
    w = torch.triu(w, 1)
    w = w + w.t()
    b = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
    states = enumerate_states(n, dtype=torch.float64)
    logp = 0.5 * torch.einsum("si,ij,sj->s", states, w, states) + states @ b
    return w, b, states, torch.softmax(logp, 0)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``D_KL(p ‖ q) = Σ p log(p / q)`` over the last axis, from probabilities (``q`` floored at ``eps``: states the
    sampler never visited): :func:`neuroplastic.boltzmann.machines.kl_divergence` of ``log q``."""
    return boltzmann_kl(p, torch.log(q.clamp_min(eps)))


def sampling_network(*, runs: int = 5, n: int = 7, epochs: int = 2000, sleep_steps: int = 1000,
                     eval_every: int = 100, eval_steps: int = 20_000, lr: float = 0.01, sal_lr: float = 0.01,
                     with_sal: tuple[bool, ...] = (False, True), plasticity_sigma: tuple[float, ...] = (0.0,),
                     synaptic_sigma: tuple[float, ...] = (0.0,), w0_std: float = 0.2, tau_ref: int = 10,
                     replicas: int = 1, chunk: int = 250, rule: SALRule | None = None,
                     refractory: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Learn target Boltzmann distributions (:func:`boltzmann_target`, one per run) with a network of ``n``
    stochastic neurons by wake–sleep Hebbian learning, with and without SAL on the same synapses.

    Every combination of ``with_sal`` × ``plasticity_sigma`` × ``synaptic_sigma`` × ``runs`` is one network,
    all simulated at once, each by ``replicas`` parallel copies that share its weights and biases (as
    :func:`two_neurons`; the deep net's SAL phase averages over its 32 networks alike). Per epoch: a sleep phase of
    ``sleep_steps`` free-running steps gives the model's ``⟨z_i z_j⟩``, ``⟨z_i⟩`` (time averages of the PSP
    states over the steps and the replicas); the data's are exact. Hebbian update
    ``ΔW = η (⟨zzᵀ⟩_data − (1 + ε) ∘ ⟨zzᵀ⟩_model)``, ``Δb = η (⟨z⟩_data − ⟨z⟩_model)``: the plasticity noise ``ε``,
    fixed per synapse and direction (:func:`~neuroplastic.sal.rule.plasticity_noise`, σ per network), scales the
    synapse's measurement of the sleep-phase coactivation, as in the authors' code (there a spike-timing rule
    with a triangular window of width τ_ref measures it, which for rectangular PSPs of length τ_ref is the PSPs'
    overlap, ⟨z_i z_j⟩). With unequal amplitudes in the two directions no symmetric ``W`` is a fixed point, so the
    asymmetry grows. SAL (nearest spike, triangular window of width τ_ref, as the authors' sampling network uses;
    its amplitudes noisy alike) adds ``η_SAL · (1 + ε') ∘ ⟨ΔP⟩ / (sleep_steps / τ_ref)``, ``⟨ΔP⟩`` the replicas'
    mean. Initial ``W``: symmetric N(0, ``w0_std``) plus independent N(0, σ_syn) per entry
    (synaptic noise); a run's networks with and without SAL start from the same ``W`` and have the same plasticity
    amplitudes (a paired comparison). The phase is simulated in pieces of ``chunk`` steps (memory). A network's
    replicas share one weight matrix in the simulation (:class:`~neuroplastic.sal.neurons.SpikingNet` groups), and
    the coactivations are counted per state, so the run is the same, number for number, as with a copy per replica.
    ``tau_ref``: the authors' sampling network uses 50 steps (with ``sleep_steps`` and ``eval_steps`` scaled alike,
    as in suite sal-sampling's target cells).

    ``refractory``: steps without a spike after one (:class:`~neuroplastic.sal.neurons.SpikingNet`; default
    ``tau_ref``, the authors'). With ``τ_ref − 1`` (Buesing et al.'s sampling) SAL's fixed point between units of
    unequal rates is measurably asymmetric, the more so the shorter ``τ_ref`` (var(W − Wᵀ) about 0.015 at 10 steps,
    0.001 at 50); with ``τ_ref`` it is 0.0006–0.001 at 10 steps (sal-sampling-tau10), but the sampled distribution is
    then not exactly the Boltzmann distribution of ``W`` and ``b`` (a silent step between PSPs).

    Returns per network (``[G]``, ``G`` networks; the grid in ``with_sal``, ``plasticity``, ``synaptic``, ``run``)
    the curves ``dkl`` (D_KL(target ‖ sampled), from ``eval_steps`` free-running steps of every replica) and
    ``asym`` (var(W − Wᵀ) over the off-diagonal pairs), ``[evals, G]``, at ``epoch`` ``[evals]``."""
    from .neurons import SpikingNet
    from .rule import plasticity_noise

    if min(replicas, chunk) < 1:
        raise ValueError(f"sampling_network: replicas and chunk must be >= 1, got {replicas}, {chunk}")
    rule = rule or SALRule(tau=float(tau_ref), cut=tau_ref, window="triangular", pairing="nearest")
    grid = [(s, pn, sn, r) for s in with_sal for pn in plasticity_sigma for sn in synaptic_sigma for r in range(runs)]
    g_count = len(grid)
    gen = torch.Generator().manual_seed(seed)
    targets = [boltzmann_target(n, seed * 1000 + r) for r in range(runs)]
    states = targets[0][2].float()
    p_star = torch.stack([targets[r][3] for *_, r in grid]).float()  # [G, 2^n]
    c_data = torch.einsum("gs,si,sj->gij", p_star, states, states)
    m_data = p_star @ states
    # the starting weights and plasticity amplitudes of a run and noise level, shared by its networks with and
    # without SAL (a paired comparison)
    start: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for _, pn, sn, r in grid:
        if (pn, sn, r) not in start:
            sym = torch.triu(torch.randn(n, n, generator=gen) * w0_std, 1)
            start[pn, sn, r] = (sym + sym.t() + torch.randn(n, n, generator=gen) * sn,
                                plasticity_noise((n, n), pn, gen), plasticity_noise((n, n), pn, gen))
    off = 1 - torch.eye(n)
    w = torch.stack([start[key[1:]][0] for key in grid]) * off
    amp = torch.stack([start[key[1:]][1] for key in grid])  # Hebbian amplitudes (1 + ε)
    amp_sal = torch.stack([start[key[1:]][2] for key in grid])  # SAL's (1 + ε')
    bias = torch.zeros(g_count, n)
    sal_on = torch.tensor([float(s) for s, *_ in grid]).view(g_count, 1, 1)
    # the simulated networks: a network's replicas are consecutive and share its weights (one [n, n] per group);
    # the biases are repeated over the replicas, rewritten after every epoch
    net_w, net_b = w.clone(), bias.repeat_interleave(replicas, 0)
    nets = g_count * replicas
    net = SpikingNet([n], {(0, 0): net_w}, [net_b], n_nets=nets, tau_ref=tau_ref, refractory=refractory,
                     generator=gen)
    trace = SALTrace(rule, (nets, n))
    weights = (2 ** torch.arange(n)).float()
    group = torch.arange(nets) // replicas * 2**n  # each replica's row of the group's state counts
    outer = torch.einsum("si,sj->sij", states, states).view(2**n, n * n)  # z zᵀ of every state
    dkl, asym, at = [], [], []

    def run_counted(steps: int, on_spikes=None) -> torch.Tensor:
        """``steps`` free-running steps in pieces of ``chunk``: how often each network's replicas were in each state
        ``[G, 2^n]`` (each replica's state as a number, z · 2^i, exact in floats); ``on_spikes`` sees each piece's
        spikes ``[T, nets, n]``."""
        counts = torch.zeros(g_count * 2**n)
        for t0 in range(0, steps, chunk):
            codes, ss = [], []
            for _ in range(min(chunk, steps - t0)):
                ss.append(net.step()[0])
                codes.append(net.psp()[0] @ weights)
            counts += torch.bincount((group + torch.stack(codes).long()).flatten(), minlength=len(counts))
            if on_spikes is not None:
                on_spikes(torch.stack(ss))
        return counts.view(g_count, 2**n)

    def measure() -> None:
        dkl.append(kl_divergence(p_star, run_counted(eval_steps) / (eval_steps * replicas)))
        d = (w - w.transpose(1, 2))[:, off.bool()]
        asym.append(d.var(1))

    def group_mean(x: torch.Tensor) -> torch.Tensor:
        return x.view(g_count, replicas, *x.shape[1:]).mean(1)

    for epoch in range(epochs):
        if epoch % eval_every == 0:
            at.append(epoch)
            measure()
        # the coactivations from how often each network's replicas were in each state (whole numbers: exact in
        # floats in any order of summation); SAL's update per replica, then averaged
        d_sal = torch.zeros(nets, n, n)

        def add_sal(sp: torch.Tensor, d_sal: torch.Tensor = d_sal) -> None:
            x = trace.traces(sp)
            d_sal += sal_pairs(sp, sp, x, x, amplitude=rule.amplitude, per_net=True)  # [nets, post, pre]

        visits = run_counted(sleep_steps, add_sal)
        c_model = (visits @ outer).view(g_count, n, n) / replicas / sleep_steps
        m_model = visits @ states / replicas / sleep_steps
        d_sal = group_mean(d_sal) / sleep_steps
        w += (lr * (c_data - amp * c_model) + sal_on * sal_lr * amp_sal * d_sal * tau_ref) * off
        bias += lr * (m_data - m_model)
        net_w.copy_(w)
        net_b.copy_(bias.repeat_interleave(replicas, 0))
    at.append(epochs)
    measure()
    return {"epoch": torch.tensor(at), "dkl": torch.stack(dkl), "asym": torch.stack(asym),
            "sal": torch.tensor([s for s, *_ in grid]), "plasticity": torch.tensor([pn for _, pn, _, _ in grid]),
            "synaptic": torch.tensor([sn for _, _, sn, _ in grid]), "run": torch.tensor([r for *_, r in grid])}


# --------------------------------------------------------------------------------------------------
# the studies as runs of the store (neuroplastic.studies): metrics, curves and pictures
def two_neuron_study(*, runs: int = 10, both: bool = False, blocks: int = 100, block_steps: int = 1000,
                     lr: float = 3.0, lr_final: float | None = 0.01, w_range: float = 1.0, bias: float = 0.0,
                     tau_ref: int = 10, replicas: int = 1, decay: str = "geometric", flow_grid: int = 9,
                     flow_steps: int = 10_000, refractory: int | None = None, seed: int = 0):
    """The two-neuron study from ``runs`` random starts ``w12, w21 ~ U(−w_range, w_range)`` (:func:`two_neurons`).
    Metrics: the final gap ``|w12 − w21|`` as a fraction of its start (``gap_ratio_max``, ``gap_ratio_median``) and
    the fraction of runs below 5 % (``converged_fraction``); with ``both``, also how far the pair ends from the
    starting mean (``mean_error_max``). History: the median and largest gap ratio per block. The pictures also show
    the mean SAL drift (:func:`flow_field`) on a ``flow_grid`` × ``flow_grid`` grid of the plane (0: none)."""
    from ..studies import StudyOutput

    if runs < 1 or blocks < 1 or block_steps < 1 or replicas < 1 or not w_range > 0:
        raise ValueError("two-neuron study: runs, blocks, block_steps and replicas must be >= 1 and w_range > 0")
    g = torch.Generator().manual_seed(seed)
    w12 = (torch.rand(runs, generator=g) * 2 - 1) * w_range
    w21 = (torch.rand(runs, generator=g) * 2 - 1) * w_range
    res = two_neurons(w12, w21, both=both, blocks=blocks, block_steps=block_steps, lr=lr, lr_final=lr_final,
                      bias=bias, tau_ref=tau_ref, replicas=replicas, decay=decay, refractory=refractory, seed=seed)
    gap = (res["w12"] - res["w21"]).abs()
    ratio = gap / gap[0].clamp_min(1e-12)
    metrics = {"gap_ratio_max": float(ratio[-1].max()), "gap_ratio_median": float(ratio[-1].median()),
               "converged_fraction": float((ratio[-1] < 0.05).float().mean()), "runs": runs,
               "spike_rate": float(res["rate"])}
    if both:
        metrics["mean_error_max"] = float((res["w21"][-1] - (w12 + w21) / 2).abs().max())
    history = [{"epoch": k, "gap_ratio_median": float(ratio[k].median()), "gap_ratio_max": float(ratio[k].max())}
               for k in range(blocks + 1)]
    data = {"w12": res["w12"], "w21": res["w21"], "ratio": ratio, "both": both}
    if flow_grid > 0:
        axis = torch.linspace(-w_range, w_range, flow_grid)
        grid = torch.cartesian_prod(axis, axis)  # (w12, w21)
        data["flow_at"], data["flow"] = grid, flow_field(grid, steps=flow_steps, bias=bias, tau_ref=tau_ref,
                                                         refractory=refractory, seed=seed + 1)
    return StudyOutput(metrics, history, data)


def two_neuron_figures(out, folder) -> list:
    """The runs' paths in the (w21, w12) plane beside the diagonal, and the gap ratio over blocks (log scale)."""
    from pathlib import Path

    from matplotlib.figure import Figure

    d = out.data
    fig = Figure(figsize=(10, 4.2))
    a1, a2 = fig.subplots(1, 2)
    if "flow" in d:  # the phase-plane flow of SAL on w21 (and, opposite, on w12) behind the paths
        at, flow = d["flow_at"], d["flow"]
        a1.quiver(at[:, 1], at[:, 0], flow[:, 1], flow[:, 0] if d["both"] else torch.zeros(len(flow)),
                  color="0.6", angles="xy", width=0.004)
    for r in range(d["w12"].shape[1]):
        a1.plot(d["w21"][:, r], d["w12"][:, r], lw=0.8)
        a1.plot(d["w21"][0, r], d["w12"][0, r], "o", ms=3, color="gray")
    lim = float(torch.cat([d["w12"], d["w21"]]).abs().max()) * 1.05
    a1.plot([-lim, lim], [-lim, lim], "k--", lw=0.7)
    a1.set(xlabel="w21 (learned by SAL)", ylabel="w12", title="paths from random starts (dots); arrows: mean drift")
    a2.semilogy(d["ratio"].clamp_min(1e-4).numpy(), lw=0.8)
    a2.axhline(0.05, color="gray", ls="--", lw=0.8)
    a2.set(xlabel="block", ylabel="|w12 − w21| / start", title="gap over learning (dashed: 5 %)")
    fig.suptitle("SAL, two neurons" + (" (both synapses plastic)" if d["both"] else " (w21 plastic)"))
    path = Path(folder) / "two_neurons.png"
    fig.savefig(path, dpi=100)
    return [path]


def sampling_study(*, runs: int = 5, n: int = 7, epochs: int = 2000, sleep_steps: int = 1000, eval_every: int = 100,
                   eval_steps: int = 20_000, lr: float = 0.01, sal_lr: float = 0.01,
                   plasticity_sigma: list[float] | tuple[float, ...] = (0.0,),
                   synaptic_sigma: list[float] | tuple[float, ...] = (0.0,), w0_std: float = 0.2, tau_ref: int = 10,
                   replicas: int = 1, refractory: int | None = None, seed: int = 0):
    """The sampling-network study (:func:`sampling_network`) for every noise level, Hebbian learning alone and with
    SAL. Metrics per level (``dkl/<hebb|sal>/p<σ>/s<σ>``, ``asym/...``: final values, mean over runs), their means
    over levels (``dkl_hebb``, ``dkl_sal``, ``asym_hebb``, ``asym_sal``) and the fraction of levels at which SAL ends
    lower (``sal_lower_dkl_fraction``, ``sal_lower_asym_fraction``). History: the means per evaluation."""
    from ..studies import StudyOutput

    if min(runs, n, epochs, sleep_steps, eval_every, eval_steps, replicas) < 1:
        raise ValueError("sampling study: runs, n, epochs, sleep_steps, eval_every, eval_steps and replicas must be "
                         ">= 1")
    res = sampling_network(runs=runs, n=n, epochs=epochs, sleep_steps=sleep_steps, eval_every=eval_every,
                           eval_steps=eval_steps, lr=lr, sal_lr=sal_lr, with_sal=(False, True),
                           plasticity_sigma=tuple(plasticity_sigma), synaptic_sigma=tuple(synaptic_sigma),
                           w0_std=w0_std, tau_ref=tau_ref, replicas=replicas, refractory=refractory, seed=seed)
    metrics: dict = {"runs": runs, "epochs": epochs}
    lower = {"dkl": [], "asym": []}
    for pn in plasticity_sigma:
        for sn in synaptic_sigma:
            at = (res["plasticity"] == pn) & (res["synaptic"] == sn)
            for key in ("dkl", "asym"):
                final = {s: float(res[key][-1][at & (res["sal"] == s)].mean()) for s in (False, True)}
                metrics[f"{key}/hebb/p{pn:g}/s{sn:g}"], metrics[f"{key}/sal/p{pn:g}/s{sn:g}"] = final[False], final[True]
                lower[key].append(final[True] < final[False])
    for key in ("dkl", "asym"):
        for s, name in ((False, "hebb"), (True, "sal")):
            metrics[f"{key}_{name}"] = float(res[key][-1][res["sal"] == s].mean())
        metrics[f"sal_lower_{key}_fraction"] = sum(lower[key]) / len(lower[key])
    history = [{"epoch": int(e), **{f"{key}_{name}": float(res[key][i][res["sal"] == s].mean())
                                    for key in ("dkl", "asym") for s, name in ((False, "hebb"), (True, "sal"))}}
               for i, e in enumerate(res["epoch"])]
    return StudyOutput(metrics, history, res)


def sampling_figures(out, folder) -> list:
    """D_KL(target ‖ sampled) and var(W − Wᵀ) over training, Hebbian alone (dashed) and with SAL (solid), one colour
    per noise level; the band is the range over runs."""
    from pathlib import Path

    from matplotlib import colormaps
    from matplotlib.figure import Figure

    r = out.data
    levels = sorted({(float(p), float(s)) for p, s in zip(r["plasticity"], r["synaptic"])})
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2)
    x = r["epoch"].numpy()
    for j, (pn, sn) in enumerate(levels):
        colour = colormaps["viridis"](j / max(1, len(levels) - 1))
        for sal in (False, True):
            at = (r["plasticity"] == pn) & (r["synaptic"] == sn) & (r["sal"] == sal)
            for ax, key in zip(axes, ("dkl", "asym")):
                y = r[key][:, at]
                ax.plot(x, y.mean(1).numpy(), color=colour, ls="-" if sal else "--",
                        label=f"{'SAL' if sal else 'Hebb'} plast. σ {pn:g}, syn. σ {sn:g}")
                ax.fill_between(x, y.min(1).values.numpy(), y.max(1).values.numpy(), color=colour, alpha=0.12)
    for ax, name in zip(axes, ("D_KL(target ‖ sampled)", "var(W − Wᵀ)")):
        ax.set(xlabel="epoch", ylabel=name, yscale="log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.subplots_adjust(right=0.78, wspace=0.3)
    fig.suptitle("SAL in a sampling network: Hebbian wake-sleep learning alone (dashed) and with SAL (solid)")
    path = Path(folder) / "sampling_network.png"
    fig.savefig(path, dpi=100)
    return [path]


def _register() -> None:
    from ..studies import register

    paper = "Gierlich, Baumbach, Kungl, Max & Petrovici 2025 (arXiv 2503.02642)"
    register("sal-two-neurons", two_neuron_study, paper=paper, figures=two_neuron_figures,
             summary="two reciprocal stochastic neurons: SAL on w21 pulls it to w12 (on both: to their mean)")
    register("sal-sampling", sampling_study, paper=paper, figures=sampling_figures,
             summary="a 7-neuron sampling network learns a Boltzmann target by wake-sleep Hebbian learning, with "
                     "and without SAL, under plasticity and synaptic noise")


_register()
