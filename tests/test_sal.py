"""Spike-based alignment learning: the rule against explicit pairwise sums, its sign, the stochastic neurons'
statistics and refractoriness, and the two-neuron case."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from neuroplastic.sal import (
    SALRule,
    SALTrace,
    SpikingNet,
    firing_probability,
    plasticity_noise,
    sal_pairs,
    sal_step,
)
from neuroplastic.sal.studies import block_rate, flow_field, two_neurons


def _explicit(pre: torch.Tensor, post: torch.Tensor, rule: SALRule) -> torch.Tensor:
    """ΔP[post j, pre i] by enumerating spike pairs (summed over networks): the definition of the rule."""
    k = rule.kernel(dtype=torch.float64)
    _, r, n_pre = pre.shape
    n_post = post.shape[2]
    out = torch.zeros(n_post, n_pre, dtype=torch.float64)
    for net in range(r):
        for i in range(n_pre):
            tp = torch.nonzero(pre[:, net, i]).flatten().tolist()
            for j in range(n_post):
                tq = torch.nonzero(post[:, net, j]).flatten().tolist()
                if rule.pairing == "all":
                    for t1 in tp:
                        for t2 in tq:
                            d = t2 - t1
                            if 1 <= abs(d) <= rule.cut:
                                out[j, i] += -rule.amplitude * k[d - 1] if d > 0 else rule.amplitude * k[-d - 1]
                else:
                    for t2 in tq:  # each post spike with the nearest earlier pre spike: causal
                        earlier = [t for t in tp if t < t2]
                        if earlier and t2 - max(earlier) <= rule.cut:
                            out[j, i] -= rule.amplitude * k[t2 - max(earlier) - 1]
                    for t1 in tp:  # each pre spike with the nearest earlier post spike: anti-causal
                        earlier = [t for t in tq if t < t1]
                        if earlier and t1 - max(earlier) <= rule.cut:
                            out[j, i] += rule.amplitude * k[t1 - max(earlier) - 1]
    return out


@pytest.mark.parametrize("pairing", ["all", "nearest"])
@pytest.mark.parametrize("window", ["exponential", "triangular"])
def test_trace_based_sal_equals_the_explicit_pairwise_sum(pairing, window):
    g = torch.Generator().manual_seed(0)
    pre = (torch.rand(157, 3, 4, generator=g) < 0.15).float()
    post = (torch.rand(157, 3, 5, generator=g) < 0.15).float()
    rule = SALRule(amplitude=0.7, tau=4.0, cut=9, window=window, pairing=pairing)
    want = _explicit(pre, post, rule)
    tp, tq = SALTrace(rule, (3, 4), dtype=torch.float64), SALTrace(rule, (3, 5), dtype=torch.float64)
    got = torch.zeros_like(want)
    for a, b in ((0, 1), (1, 40), (40, 41), (41, 100), (100, 157)):  # blocks of any length, online
        got += sal_step(pre[a:b], post[a:b], tp, tq)
    torch.testing.assert_close(got, want)
    per = sal_step(pre, post, SALTrace(rule, (3, 4), dtype=torch.float64), SALTrace(rule, (3, 5), dtype=torch.float64),
                   per_net=True)
    torch.testing.assert_close(per.sum(0), want)


@pytest.mark.parametrize("window", ["exponential", "triangular"])
def test_the_one_product_block_update_equals_the_explicit_pairwise_sum_block_by_block(window):
    """sal_block(Y_pre, H_post) takes the same pairs as sal_pairs over a block's traces (those whose later spike is
    in the block), for blocks shorter and longer than the cut."""
    from neuroplastic.sal.rule import sal_block

    g = torch.Generator().manual_seed(1)
    pre = (torch.rand(157, 3, 4, generator=g) < 0.15).float()
    post = (torch.rand(157, 3, 5, generator=g) < 0.15).float()
    rule = SALRule(amplitude=0.7, tau=4.0, cut=9, window=window)
    tp, tq = SALTrace(rule, (3, 4), dtype=torch.float64), SALTrace(rule, (3, 5), dtype=torch.float64)
    bp, bq = SALTrace(rule, (3, 4), dtype=torch.float64), SALTrace(rule, (3, 5), dtype=torch.float64)
    total = torch.zeros(5, 4, dtype=torch.float64)
    for a, b in ((0, 1), (1, 40), (40, 41), (41, 100), (100, 157)):
        hist_q, none = bq.block_terms(post[a:b], pre=False)
        _, y_p = bp.block_terms(pre[a:b])
        got = sal_block(y_p, hist_q, amplitude=rule.amplitude)
        torch.testing.assert_close(got, sal_step(pre[a:b], post[a:b], tp, tq))
        assert none is None
        total += got
    torch.testing.assert_close(total, _explicit(pre, post, rule))
    with pytest.raises(ValueError, match="all-pairs"):
        SALTrace(SALRule(pairing="nearest"), (1, 1)).block_terms(pre[:5, :1, :1])


def test_a_block_run_is_the_steps_it_replaces():
    """SpikingNet.run(T) draws one block of uniforms and steps through it: the same spikes as T calls of step() with
    those uniforms, block after block, whether a block is shorter or longer than the one before (its buffer is the
    leading steps of one reused buffer)."""
    g = torch.Generator().manual_seed(3)
    proj = {(0, 1): torch.randn(3, 6, generator=g), (1, 0): torch.randn(6, 3, generator=g) * 0.5,
            (1, 2): torch.randn(2, 3, generator=g)}
    biases = [torch.randn(6, generator=g), None, torch.zeros(2)]
    a = SpikingNet([6, 3, 2], proj, biases, n_nets=4, tau_ref=3, generator=torch.Generator().manual_seed(9))
    b = SpikingNet([6, 3, 2], proj, biases, n_nets=4, tau_ref=3, generator=torch.Generator().manual_seed(9))
    draws = torch.Generator().manual_seed(9)
    for steps in (50, 20, 50, 70):
        got = a.run(steps)
        uni = torch.rand(steps, 4, 11, generator=draws)
        want = [torch.stack(x) for x in zip(*[b.step(uniforms=uni[t]) for t in range(steps)])]
        for x, y in zip(got, want):
            assert torch.equal(x, y)
        assert 0 < float(got[0].mean()) < 1


def test_the_cuda_graph_route_is_taken_on_cuda_only_and_can_be_turned_off(monkeypatch):
    """run() replays CUDA graphs on a CUDA device unless NEUROPLASTIC_CUDA_GRAPH=0; never on the CPU, where a block
    runs step by step whatever the setting (so CPU runs stay as they were)."""
    from neuroplastic.sal.neurons import cuda_graphs

    monkeypatch.delenv("NEUROPLASTIC_CUDA_GRAPH", raising=False)
    assert cuda_graphs("cuda") and cuda_graphs("cuda:1") and not cuda_graphs("cpu")
    monkeypatch.setenv("NEUROPLASTIC_CUDA_GRAPH", "0")
    assert not cuda_graphs("cuda")
    monkeypatch.setenv("NEUROPLASTIC_CUDA_GRAPH", "1")
    net = SpikingNet([3, 2], {(0, 1): torch.ones(2, 3)}, [None, None], n_nets=2, tau_ref=2)
    assert not net.graphs and net._graph_key(5) is None


def _graph_pair(monkeypatch, graphs: bool) -> SpikingNet:
    monkeypatch.setenv("NEUROPLASTIC_CUDA_GRAPH", "1" if graphs else "0")
    g = torch.Generator(device="cuda").manual_seed(5)
    sizes = [40, 16, 4]
    proj = {}
    for l in (1, 2):
        proj[l - 1, l] = torch.randn(sizes[l], sizes[l - 1], device="cuda", generator=g)
        proj[l, l - 1] = torch.randn(sizes[l], sizes[l - 1], device="cuda", generator=g).t()
    biases = [None, torch.randn(16, device="cuda", generator=g), torch.zeros(24, 4, device="cuda")]
    return SpikingNet(sizes, proj, biases, n_nets=24, tau_ref=3, refractory=3, device="cuda",
                      generator=torch.Generator(device="cuda").manual_seed(8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replayed_cuda_graphs_give_the_spikes_of_step_by_step_launches(monkeypatch):
    """The graph route (capture on the second block of a shape, replays after) draws the same spikes as the
    step-by-step route, across in-place changes of a projection and of a bias between blocks (the phase's B
    update), a step() outside the graph, a chain state set between blocks (sal_persist), blocks of another length (a
    second graph) and blocks of the two lengths alternating (a phase's settling steps and blocks: each length replays
    its own graph)."""
    nets = [_graph_pair(monkeypatch, False), _graph_pair(monkeypatch, True)]
    assert not nets[0].graphs and nets[1].graphs
    for k, steps in enumerate([30, 30, 30, 30, 7, 7, 30, 30, 7, 30, 7, 30, 50, 7]):
        if k == 3:
            for net in nets:
                net.projections[2, 1].mul_(-0.5)
                net.biases[1].add_(0.7)
        if k == 5:
            for net in nets:
                net.step()
        if k == 8:  # a chain state set between blocks (a persistent phase's start): half the networks at rest
            state = nets[0].chain_state()
            state[::2] = 0
            for net in nets:
                net.set_chain_state(state)
        got = [torch.cat(net.run(steps), 2).clone() for net in nets]
        assert torch.equal(got[0], got[1]), f"block {k}"
        assert 0 < float(got[0].mean()) < 1
    assert len(nets[1]._graphs) == 2 and not nets[0]._graphs  # 7 and 30 steps; 50 was seen once, not captured


def test_the_window_sign_is_pinned():
    """pre before post (causal) depresses, post before pre (anti-causal) potentiates; same step: nothing."""
    rule = SALRule(amplitude=1.0, tau=10.0, cut=20)

    def update(t_pre: int, t_post: int) -> float:
        pre, post = torch.zeros(30, 1, 1), torch.zeros(30, 1, 1)
        pre[t_pre], post[t_post] = 1, 1
        return float(sal_step(pre, post, SALTrace(rule, (1, 1)), SALTrace(rule, (1, 1))))

    assert update(5, 8) == pytest.approx(-math.exp(-0.3))
    assert update(8, 5) == pytest.approx(+math.exp(-0.3))
    assert update(5, 5) == 0.0
    assert update(2, 25) == 0.0  # beyond the cut


@pytest.mark.parametrize("refractory", [None, 9])
def test_firing_probability_matches_sigma_u_minus_log_tau_and_refractoriness_holds(refractory):
    tau = 10
    silent = tau if refractory is None else refractory  # steps after a spike without one
    u = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    net = SpikingNet([4], {}, [u], n_nets=500, tau_ref=tau, refractory=refractory,
                     generator=torch.Generator().manual_seed(0))
    free = torch.zeros(4)
    fired = torch.zeros(4)
    last = torch.full((500, 4), -10_000)
    for t in range(400):
        was_free = (net.countdown[0] <= 1)  # free at this step: countdown reaches 0 before the draw
        s = net.step()[0]
        z = net.psp()[0]
        assert bool((z >= s).all())  # a unit that spiked has its PSP on
        gap = t - last
        assert not bool(((s > 0) & (gap <= silent)).any())  # none in the refractory steps after the last one
        last = torch.where(s > 0, torch.full_like(last, t), last)
        free += was_free.float().sum(0)
        fired += s.sum(0)
    want = firing_probability(u, tau)
    rate = fired / free
    se = torch.sqrt(want * (1 - want) / free)
    assert bool(((rate - want).abs() < 5 * se + 1e-3).all()), (rate, want)


@pytest.mark.parametrize("n", [5, 11])  # 5 pre units: the subset sums are tabulated; 11: grouped products
def test_weights_shared_by_groups_of_networks_give_the_per_network_run_exactly(n):
    groups, per = 3, 4
    g = torch.Generator().manual_seed(3)
    w = torch.randn(groups, n, n, generator=g)
    bias = torch.randn(groups * per, n, generator=g) * 0.5

    def run(p: torch.Tensor, change_at: int = -1) -> torch.Tensor:
        net = SpikingNet([n], {(0, 0): p}, [bias], n_nets=groups * per, tau_ref=3,
                         generator=torch.Generator().manual_seed(0))
        out = []
        for t in range(60):
            if t == change_at:  # an in-place change between steps is seen at the next step
                p.mul_(-1.0)
            out.append(net.step()[0])
        return torch.stack(out)

    spikes = run(w.clone())
    assert torch.equal(spikes, run(w.repeat_interleave(per, 0)))
    assert spikes.sum() > 0
    changed = run(w.clone(), change_at=30)
    assert torch.equal(changed, run(w.repeat_interleave(per, 0), change_at=30))
    assert torch.equal(changed[:30], spikes[:30]) and not torch.equal(changed[30:], spikes[30:])
    with pytest.raises(ValueError, match="G dividing"):
        SpikingNet([n], {(0, 0): torch.zeros(5, n, n)}, [None], n_nets=groups * per)


@pytest.mark.parametrize("refractory, spikes, psp", [
    (None, [1, 0, 0, 0, 0] * 2 + [1, 0], [1, 1, 1, 1, 0] * 2 + [1, 1]),  # τ_ref = 4 silent steps: a PSP-free step between
    (3, [1, 0, 0, 0] * 3, [1] * 12),  # Buesing's τ_ref − 1: it fires again on its PSP's last step, z stays on
])
def test_psp_lasts_exactly_tau_ref_steps_and_the_refractory_period_is_kept(refractory, spikes, psp):
    """A unit certain to fire whenever free (bias 50): a spike at step t puts its PSP on the potentials of steps
    t + 1 … t + τ_ref (z = 1 for τ_ref steps from t on) and the unit cannot spike for ``refractory`` steps after it."""
    net = SpikingNet([1], {}, [torch.tensor([50.0])], tau_ref=4, refractory=refractory,
                     generator=torch.Generator().manual_seed(0))
    z, s = [], []
    for _ in range(12):
        s.append(float(net.step()[0]))
        z.append(float(net.psp()[0]))
    assert s == spikes
    assert z == psp
    with pytest.raises(ValueError, match="refractory"):
        SpikingNet([1], {}, [None], tau_ref=4, refractory=2)  # shorter than the PSP: not a single countdown


def test_a_chain_state_holds_all_a_net_needs_to_go_on():
    """chain_state is the whole Markov state: a fresh net (the same weights) given it and the generator's state draws
    the spikes the first net goes on to draw, step for step; from rest it draws others. A wrong shape or a countdown
    out of range is refused."""
    torch.manual_seed(0)
    sizes = [6, 4]
    proj = {(0, 1): torch.randn(4, 6) * 2, (1, 0): torch.randn(6, 4) * 2}

    def make():
        return SpikingNet(sizes, proj, [torch.full((6,), 0.5), None], n_nets=5, tau_ref=4,
                          generator=torch.Generator().manual_seed(3))

    first = make()
    first.run(37)
    state, gen = first.chain_state(), first.generator.get_state()
    assert state.dtype == torch.int16 and int(state.max()) > 0
    going_on = torch.cat(first.run(50), dim=2)
    second = make()
    second.generator.set_state(gen)
    second.set_chain_state(state)
    assert torch.equal(torch.cat(second.run(50), dim=2), going_on)
    rest = make()
    rest.generator.set_state(gen)
    assert not torch.equal(torch.cat(rest.run(50), dim=2), going_on)
    with pytest.raises(ValueError, match="shape"):
        second.set_chain_state(state[:2])
    with pytest.raises(ValueError, match="countdowns"):
        second.set_chain_state(torch.full_like(state, 9))


def test_symmetric_pair_stays_symmetric_without_noise_and_the_sum_is_kept():
    w = torch.full((16,), 0.5)
    out = two_neurons(w, w.clone(), both=True, blocks=30, block_steps=500, lr=0.1, lr_final=None, seed=1)
    gap = out["w12"] - out["w21"]
    assert float(gap.abs().max()) < 0.2  # spiking noise only: it fluctuates around the symmetric fixed point
    assert float(gap[-10:].mean().abs()) < 0.05  # and does not drift away on average
    torch.testing.assert_close(out["w12"] + out["w21"], torch.full_like(out["w12"], 1.0))  # antisymmetric rule


def test_two_neurons_sal_pulls_w21_to_w12():
    w12 = torch.tensor([1.0, -1.0, 0.8, -0.6])
    w21 = torch.tensor([-1.0, 1.0, -0.5, 0.9])
    out = two_neurons(w12, w21, blocks=40, block_steps=500, lr=3.0, lr_final=0.05, seed=0)
    gap0 = (w12 - w21).abs()
    gap = (out["w12"][-1] - out["w21"][-1]).abs()
    assert torch.equal(out["w12"][-1], w12)  # only w21 is plastic
    assert bool((gap < 0.5 * gap0).all()) and float((gap / gap0).mean()) < 0.3, (gap / gap0)
    drift = flow_field(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), steps=20_000)
    assert drift[0, 1] > 0 > drift[1, 1]  # w21 moves towards w12 from both sides


def test_two_neurons_replicas_average_the_update_of_their_networks():
    # one block: a run of K replicas moves by the mean of the updates its K networks would make alone (the same
    # simulation: the networks, their order and the generator's draws are identical)
    w12, w21 = torch.tensor([0.6, -0.4]), torch.tensor([-0.2, 0.9])
    rep = two_neurons(w12, w21, blocks=1, block_steps=400, lr=2.0, lr_final=None, replicas=3, seed=5)
    flat = two_neurons(w12.repeat_interleave(3), w21.repeat_interleave(3), blocks=1, block_steps=400, lr=2.0,
                       lr_final=None, seed=5)
    torch.testing.assert_close(rep["w21"][1], flat["w21"][1].view(2, 3).mean(1))
    assert torch.equal(rep["w12"], torch.stack([w12, w12]))
    with pytest.raises(ValueError, match="replicas"):
        two_neurons(w12, w21, replicas=0)
    with pytest.raises(ValueError, match="decay"):
        two_neurons(w12, w21, decay="cosine")


def test_block_rate_schedules_run_from_lr_to_lr_final():
    for decay in ("geometric", "harmonic"):
        assert block_rate(0, 11, 3.0, 0.05, decay) == 3.0
        assert abs(block_rate(10, 11, 3.0, 0.05, decay) - 0.05) < 1e-12
    assert block_rate(7, 11, 3.0, None) == 3.0
    # harmonic: 1/eta grows linearly in the block index
    inv = [1 / block_rate(k, 11, 3.0, 0.05, "harmonic") for k in range(11)]
    steps = [b - a for a, b in itertools.pairwise(inv)]
    assert max(steps) - min(steps) < 1e-9


def test_plasticity_noise_is_truncated_and_off_at_zero():
    g = torch.Generator().manual_seed(0)
    amp = plasticity_noise((1000,), 0.05, g)
    assert float((amp - 1).abs().max()) <= 0.075 + 1e-6 and 0.03 < float(amp.std()) < 0.05
    assert torch.equal(plasticity_noise((5,), 0.0), torch.ones(5))
    with pytest.raises(ValueError, match="sigma"):
        plasticity_noise((2,), -1.0)
    with pytest.raises(ValueError, match="window"):
        SALRule(window="square")


# ------------------------------------------------------------------------------------------------------
# the deep-network learner
def _small_sal(**kw):
    from neuroplastic import learners

    args = {"in_shape": (1, 8, 8), "n_classes": 10, "arch": "mlp", "hidden": (16,), "sal_nets": 4,
                "sal_blocks": 2, "sal_block_steps": 100, "seed": 0}
    args.update(kw)
    torch.manual_seed(0)  # the forward weights come from torch's global generator
    return learners.get("sal", **args)


def _driven_sal(gain: float = 3.0, **kw):
    """:func:`_small_sal`, configured, with its forward weights times ``gain``: synapses strong enough to make the
    copy fire and SAL move B."""
    m = _small_sal(**kw)
    m.configure(1, 10)
    with torch.no_grad():
        for layer in m._dense():
            layer.weight.mul_(gain)
    return m


def test_sal_phase_aligns_feedback_with_the_forward_weights():
    m = _driven_sal(4, sal_nets=16, sal_blocks=4, sal_block_steps=1000)
    angles = [m.diagnostics()["angle_deg_mean"]]
    for _ in range(3):
        m.sal_phase()
        angles.append(m.diagnostics()["angle_deg_mean"])
    assert angles[0] > 80 and all(b < a for a, b in itertools.pairwise(angles)) and angles[-1] < angles[0] - 20, angles


def test_sal_learner_runs_a_phase_before_every_epoch_and_sgd_leaves_B_alone(tmp_path):
    from neuroplastic import data
    from neuroplastic.learners.backprop import SupervisedNet
    from neuroplastic.nn.feedback import FeedbackConv2d
    from neuroplastic.trainer import fit

    bundle = data.prepare("digits", val=0.1, seed=0)
    small = data.DataBundle("digits", bundle.train.subset(torch.arange(96)), None, bundle.test, 10)
    m = _small_sal()
    phases = []
    real = m.sal_phase
    m.sal_phase = lambda: phases.append(int(m.steps_done)) or real()
    before = [layer.B.clone() for layer in m._dense()]
    fit(m, small, epochs=2, batch_size=32, seed=0, progress=False)
    assert phases == [0, 3]  # the first step of each of the 2 epochs (3 batches each)
    assert all(not layer.B.requires_grad for layer in m._dense())  # B is not trained by SGD
    assert any(not torch.equal(b, layer.B) for b, layer in zip(before, m._dense()))
    cnn = _small_sal(arch="small_cnn", channels=(4,), conv_mode="fa")
    assert [type(x).__name__ for x in cnn.net if hasattr(x, "weight")] == ["FeedbackConv2d", "FeedbackLinear"]
    assert isinstance(cnn.net[0], FeedbackConv2d) and cnn.net[0].mode == "fa" and cnn._dense()[0].mode == "sal"
    with pytest.raises(ValueError, match="sal_nets"):
        _small_sal(sal_nets=0)
    assert isinstance(cnn, SupervisedNet)


def test_a_sal_phase_shows_its_blocks_in_the_training_progress(capsys):
    """The phase runs inside the epoch's first step; the trainer's progress bar names the block it is in."""
    from neuroplastic import data
    from neuroplastic.learners.base import listening, say
    from neuroplastic.trainer import fit

    bundle = data.prepare("digits", val=0.1, seed=0)
    small = data.DataBundle("digits", bundle.train.subset(torch.arange(64)), None, bundle.test, 10)
    fit(_small_sal(sal_block_steps=20), small, epochs=1, batch_size=32, seed=0, progress=True)
    assert "SAL phase: block 2/2 of 4 networks x 20 steps" in capsys.readouterr().err
    heard = []
    with listening(heard.append):
        say("a")
    say("b")  # nobody listening: nothing happens
    assert heard == ["a"]


@pytest.mark.parametrize("persist, dense", [(False, False), (True, False), (True, True)])
def test_sal_learner_resumes_exactly(tmp_path, persist, dense):
    from neuroplastic import data
    from neuroplastic.trainer import fit

    bundle = data.prepare("digits", val=0.1, seed=0)
    small = data.DataBundle("digits", bundle.train.subset(torch.arange(96)), None, bundle.test, 10)

    def run(epochs, resume):
        torch.manual_seed(0)
        if dense and not __import__("neuroplastic.sal.native", fromlist=["available"]).available():
            pytest.skip("the native SAL kernel is not built")
        noise = {"sal_precision": "bfloat16"} if dense else {"plasticity_noise": 0.05}
        m = _small_sal(synaptic_noise=0.1, sal_persist=persist, **noise)
        fit(m, small, epochs=epochs, batch_size=32, seed=0, checkpoint_dir=tmp_path, resume=resume, progress=False)
        return m

    full = run(2, resume=False)
    (tmp_path / "checkpoint.pt").unlink()
    run(1, resume=False)
    resumed = run(2, resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k
    if persist:  # the chains travel with the checkpoint: the resumed run's second phase went on from them
        assert torch.equal(resumed.chains, full.chains)


@pytest.mark.parametrize("replicas, epochs", [(1, 120), (8, 40)])  # replicas: as many samples in fewer epochs
def test_sampling_network_learns_the_target_and_sal_removes_the_asymmetry(replicas, epochs):
    from neuroplastic.sal.studies import boltzmann_target, kl_divergence, sampling_network

    w, _, states, p = boltzmann_target(3, seed=0)
    assert torch.allclose(w, w.t()) and float(p.sum()) == pytest.approx(1.0) and len(states) == 8
    assert float(kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-9)
    torch.manual_seed(0)
    out = sampling_network(runs=2, n=4, epochs=epochs, sleep_steps=300, eval_every=epochs,
                           eval_steps=3000 // replicas, lr=0.05 * 120 / epochs, sal_lr=0.05 * 120 / epochs,
                           synaptic_sigma=(0.8,), replicas=replicas, chunk=128, seed=0)
    dkl, asym, sal = out["dkl"], out["asym"], out["sal"]
    assert bool((dkl[-1] < 0.6 * dkl[0]).all()), dkl  # wake-sleep learning moves towards the target
    torch.testing.assert_close(asym[-1][~sal], asym[0][~sal])  # symmetric Hebbian updates keep W - Wᵀ as it was
    assert bool((asym[-1][sal] < 0.6 * asym[0][sal]).all()), asym  # SAL removes it


def test_sampling_network_plasticity_noise_breaks_the_symmetry_and_sal_holds_it():
    """Unequal amplitudes on the two directions' measurement of the sleep coactivation leave no symmetric fixed
    point: from a symmetric start Hebbian learning alone drifts asymmetric; with SAL the asymmetry stays smaller."""
    from neuroplastic.sal.studies import sampling_network

    torch.manual_seed(0)
    out = sampling_network(runs=2, n=4, epochs=60, sleep_steps=100, eval_every=60, eval_steps=200, lr=0.2,
                           sal_lr=0.2, plasticity_sigma=(0.2,), replicas=16, seed=1)
    asym, sal = out["asym"], out["sal"]
    assert float(asym[0].max()) < 1e-12  # a symmetric start
    assert bool((asym[-1][~sal] > 0.01).all()), asym
    assert bool((asym[-1][sal] < 0.5 * asym[-1][~sal]).all()), asym


def test_phase_noise_estimates_the_noise_of_the_average_from_two_halves():
    from neuroplastic.sal.rule import phase_noise

    g = torch.Generator().manual_seed(0)
    mean, sigma, d = torch.randn(50, 40, generator=g), 0.3, 2000
    for n in [(8, 8), (5, 11)]:
        est = []
        for _ in range(d // 40):
            per_net = mean + sigma * torch.randn(sum(n), 50, 40, generator=g)
            est.append(phase_noise(per_net[:n[0]].sum(0), per_net[n[0]:].sum(0), n))
        truth = 50 * 40 * sigma**2 / sum(n)  # E||average - mean||^2
        assert abs(sum(est) / len(est) / truth - 1) < 0.05, (n, sum(est) / len(est), truth)
    with pytest.raises(ValueError, match="two non-empty halves"):
        phase_noise(mean, mean, (0, 4))


def test_noise_floor_is_the_stationary_angle_of_the_noisy_relaxation():
    from neuroplastic.nn.feedback import feedback_stats
    from neuroplastic.sal.rule import noise_floor

    g = torch.Generator().manual_seed(1)
    w, kappa, noise = torch.randn(60, 50, generator=g), 0.1, 0.08
    b = torch.randn(60, 50, generator=g)
    exact = noise_floor(b, b + kappa * (w - b), w, (noise * float(w.norm()))**2)
    assert exact["pull"] == pytest.approx(kappa) and exact["noise"] == pytest.approx(noise)
    assert exact["floor_deg"] == pytest.approx(math.degrees(math.atan(noise / math.sqrt(kappa * (2 - kappa)))))
    angles = []  # the process itself: B' = B + kappa (W - B) + xi, ||xi|| = noise ||W||
    for t in range(400):
        b = b + kappa * (w - b) + noise * float(w.norm()) / math.sqrt(w.numel()) * torch.randn(60, 50, generator=g)
        if t >= 100:
            angles.append(feedback_stats(b, w)["angle_deg"])
    assert sum(angles) / len(angles) == pytest.approx(exact["floor_deg"], rel=0.05)
    assert "floor_deg" not in noise_floor(b, b + 1.5 * (w - b), w, 1.0)  # overshooting: no stationary angle
    assert exact["estimate"] == pytest.approx(noise / kappa)
    assert "estimate" not in noise_floor(b, b - 0.1 * (w - b), w, 1.0)  # pushed away: no estimate of W


def test_relaxation_floor_of_a_b_held_below_w_is_higher_and_is_the_stationary_angle_of_that_process():
    """B' = |B| (B + kappa (W - B) + xi) / |...| with |B| = r |W| held: the stationary angle is
    atan(noise / sqrt(kappa^2 + 2 kappa (1 - kappa) r)); r = 1 is the free relaxation's floor."""
    from neuroplastic.nn.feedback import feedback_stats
    from neuroplastic.sal.rule import noise_floor, relaxation_floor

    assert relaxation_floor(0.08, 0.1) == pytest.approx(math.degrees(math.atan(0.08 / math.sqrt(0.1 * 1.9))))
    g = torch.Generator().manual_seed(11)
    w = torch.randn(60, 40, generator=g)
    kappa, noise = 0.09, 0.02
    for ratio in (0.2, 0.6):
        b = torch.randn(60, 40, generator=g)
        b *= ratio * float(w.norm()) / float(b.norm())
        angles = []
        for t in range(600):
            b = b + kappa * (w - b) + noise * float(w.norm()) / math.sqrt(w.numel()) * torch.randn(
                60, 40, generator=g)
            b *= ratio * float(w.norm()) / float(b.norm())
            if t >= 100:
                angles.append(feedback_stats(b, w)["angle_deg"])
        floor = relaxation_floor(noise, kappa, ratio)
        assert sum(angles) / len(angles) == pytest.approx(floor, rel=0.06), ratio
        assert floor > relaxation_floor(noise, kappa)  # held below W's norm: higher than the free floor
        held = noise_floor(b, b + kappa * (w - b), w, (noise * float(w.norm()))**2, held=True)
        assert held["floor_deg"] == pytest.approx(floor)  # the ratio read off the phase's start
    with pytest.raises(ValueError, match="kappa"):
        relaxation_floor(0.1, 1.2)
    with pytest.raises(ValueError, match="ratio"):
        relaxation_floor(0.1, 0.1, 0.0)


def test_averaging_bound_is_reached_by_the_inverse_variance_average_and_not_beaten_by_a_constant_rate():
    """tan(bound) = (sum s_k^-2)^(-1/2): K equal phases give atan(s / sqrt K); averaging the phases' estimates
    W + noise (noise s ||W||) with inverse-variance weights lands on it, and the relaxation at a constant rate with
    the same phases stays above it."""
    from neuroplastic.nn.feedback import feedback_stats
    from neuroplastic.sal.rule import averaging_bound

    assert averaging_bound([2.0] * 16) == pytest.approx(math.degrees(math.atan(0.5)))
    assert averaging_bound([1.0, 2.0]) == pytest.approx(math.degrees(math.atan((1 + 0.25) ** -0.5)))
    assert math.isnan(averaging_bound([]))
    for bad in ([1.0, 0.0], [-1.0], [float("nan")]):
        with pytest.raises(ValueError, match="estimate noises"):
            averaging_bound(bad)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(80, 60, generator=g)
    s = [1.5] * 10 + [3.0] * 10  # two kinds of phases

    def estimate(sk: float) -> torch.Tensor:
        return w + sk * float(w.norm()) / math.sqrt(w.numel()) * torch.randn(80, 60, generator=g)

    bound = averaging_bound(s)
    est = [estimate(sk) for sk in s]
    best = sum(e / sk**2 for e, sk in zip(est, s)) / sum(sk**-2 for sk in s)
    assert feedback_stats(best, w)["angle_deg"] == pytest.approx(bound, rel=0.05)
    for kappa in (0.05, 0.1, 0.3):  # B' = B + kappa (W_hat - B): the SAL relaxation with its estimates
        b = torch.randn(80, 60, generator=g)
        for e in est:
            b = b + kappa * (e - b)
        assert feedback_stats(b, w)["angle_deg"] > bound, kappa


def test_relaxation_angle_meets_its_closed_forms_and_a_simulated_relaxation():
    """Pulls 1/k weigh every phase equally: equal estimates reach averaging_bound; a constant pull tends to
    relaxation_floor at noise kappa s; no schedule beats the bound; a simulated relaxation B' = B + kappa (W_hat - B)
    in 4,800 dimensions from a random start lands on the formula (40 degrees); bad input is refused."""
    import random

    from neuroplastic.nn.feedback import feedback_stats
    from neuroplastic.sal.rule import averaging_bound, relaxation_angle, relaxation_floor

    k = 25
    assert relaxation_angle([1.5] * k, [1 / (n + 1) for n in range(k)], start=3.0) == pytest.approx(
        averaging_bound([1.5] * k))
    assert relaxation_angle([0.8] * 3000, [0.1] * 3000) == pytest.approx(relaxation_floor(0.08, 0.1))
    rng = random.Random(4)
    for _ in range(20):
        s = [rng.uniform(0.3, 3.0) for _ in range(12)]
        pulls = [rng.uniform(0.02, 1.0) for _ in range(12)]
        assert relaxation_angle(s, pulls, start=0.0) >= averaging_bound(s) - 1e-9
    g = torch.Generator().manual_seed(6)
    w = torch.randn(80, 60, generator=g)
    s = [2.0 - 0.1 * n for n in range(8)]
    pulls = [0.4 / (1 + 0.75 * n) for n in range(8)]  # a falling rate's pulls, as learner sal's sal_lr_decay gives
    scale = float(w.norm()) / math.sqrt(w.numel())
    angles = []
    for _ in range(4):
        b = 1.5 * scale * torch.randn(80, 60, generator=g)  # few phases: the start still counts (34 deg without it)
        for sk, kappa in zip(s, pulls):
            b = b + kappa * (w + sk * scale * torch.randn(80, 60, generator=g) - b)
        angles.append(feedback_stats(b, w)["angle_deg"])
    assert sum(angles) / 4 == pytest.approx(relaxation_angle(s, pulls, start=1.5), rel=0.02)
    for est, pul, start, match in (([1.0], [0.5, 0.5], 1.0, "one pull per estimate"), ([], [], 1.0, "one pull"),
                                   ([0.0], [0.5], 1.0, "estimate noises"), ([1.0], [1.5], 1.0, "pulls"),
                                   ([1.0], [0.0], 1.0, "pulls"), ([1.0], [0.5], -1.0, "start")):
        with pytest.raises(ValueError, match=match):
            relaxation_angle(est, pul, start=start)


def test_run_bound_reads_a_runs_logged_phases():
    from neuroplastic.sal.analysis import run_bound

    history = [{"sal_noise/2": 0.2, "sal_pull/2": 0.1, "sal_noise/3": 0.1, "sal_pull/3": -0.1}] * 4
    got = run_bound(history, [2, 3])
    assert got["run_bound_deg/2"] == pytest.approx(math.degrees(math.atan(2 / 2)))  # s = 2 over 4 phases
    assert got["run_phases/2"] == 4 and got["phases_for_10deg/2"] == pytest.approx(4 / math.tan(math.radians(10))**2)
    assert "run_bound_deg/3" not in got  # no positive pull: no estimate
    assert run_bound([{"test_acc": 0.5}], [2]) == {}


def test_run_movement_splits_the_end_angle_into_the_phase_and_the_epoch():
    from neuroplastic.sal.analysis import run_movement
    from neuroplastic.sal.rule import relaxation_floor

    history = [{"angle_deg/2": 30.0 - k, "angle_deg/3": 12.0} for k in range(6)]
    after = [[29.0 - k, 11.5] for k in range(6)]  # fc1: W moved 1 degree away each epoch; fc2: 0.5
    got = run_movement(history, after, [2, 3], last=5)
    assert got["movement_deg/2"] == pytest.approx(1.0) and got["movement_deg/3"] == pytest.approx(0.5)
    assert got["after_phase_deg/2"] == pytest.approx(sum(29.0 - k for k in range(1, 6)) / 5)  # the last 5 only
    assert run_movement(history, after[1:], [2, 3]) == {}  # log and history of different epochs: nothing
    assert "movement_deg/3" not in run_movement(history, [[29.0, -1.0]] * 6, [2, 3])  # -1: no angle logged
    noisy = [{**h, "sal_noise/2": 0.02, "sal_pull/2": 0.09, "norm_ratio/2": 0.2} for h in history]
    free, held = run_movement(noisy, after, [2]), run_movement(noisy, after, [2], held=True)
    assert free["floor_deg/2"] == pytest.approx(relaxation_floor(0.02, 0.09))  # the paper's rule: B at W's norm
    assert held["floor_deg/2"] == pytest.approx(relaxation_floor(0.02, 0.09, 0.2))  # at the norm it was held at
    assert held["excess_deg/2"] == pytest.approx(held["after_phase_deg/2"] - held["floor_deg/2"])
    with pytest.raises(ValueError, match="last"):
        run_movement(history, after, [2], last=0)


def test_fixed_point_bias_recovers_the_drift_under_noise_and_the_fixed_point_of_the_relaxation():
    """Two noisy updates at B = W sharing a drift d: the drift, the noise and the fixed point W + d / kappa of
    B' = B + kappa (W - B) + d (its angle from W, checked by running the noise-free relaxation)."""
    from neuroplastic.nn.feedback import feedback_stats
    from neuroplastic.sal.rule import fixed_point_bias

    g = torch.Generator().manual_seed(5)
    w = torch.randn(400, 300, generator=g)
    scale = float(w.norm())
    d = torch.randn(400, 300, generator=g)
    d = d - (d * w).sum() / w.pow(2).sum() * w  # orthogonal to W
    d *= 0.03 * scale / float(d.norm())
    xi = [torch.randn(400, 300, generator=g) * (0.1 * scale / 346.4) for _ in range(2)]  # ||xi|| = 0.1 ||W||
    got = fixed_point_bias(w, d + xi[0], d + xi[1], pull=0.1)
    assert got["drift"] == pytest.approx(0.03, rel=0.05) and got["noise"] == pytest.approx(0.1, rel=0.05)
    assert got["corr"] == pytest.approx(0.03**2 / (0.03**2 + 0.1**2), abs=0.02)
    b = w.clone()
    for _ in range(300):  # the noise-free relaxation rests at W + d / kappa
        b = b + 0.1 * (w - b) + d
    assert got["bias_deg"] == pytest.approx(feedback_stats(b, w)["angle_deg"], rel=0.05)
    assert got["drift_along"] == pytest.approx(0, abs=1e-3)
    shrink = d - 0.02 * w  # a drift with a part along W: the fixed point also shrinks
    got = fixed_point_bias(w, shrink + xi[0], shrink + xi[1], pull=0.1)
    assert got["drift_along"] == pytest.approx(-0.02, abs=1e-3)
    b = w.clone()
    for _ in range(300):
        b = b + 0.1 * (w - b) + shrink
    assert got["bias_deg"] == pytest.approx(feedback_stats(b, w)["angle_deg"], rel=0.05)
    for ratio in (0.3, 1.0):  # from B = r W, the pull kappa (1 - r) W is not a bias; the held-norm fixed point
        small = d / 3
        pulled = fixed_point_bias(w, 0.1 * (1 - ratio) * w + small + xi[0] / 3,
                                  0.1 * (1 - ratio) * w + small + xi[1] / 3, pull=0.1, ratio=ratio)
        assert pulled["drift"] == pytest.approx(0.01, rel=0.15) and pulled["drift_along"] == pytest.approx(0, abs=2e-3)
        b = ratio * w
        for _ in range(300):  # B held at r |W|: B -> r |W| normalised (B + kappa (W - B) + d)
            b = b + 0.1 * (w - b) + small
            b *= ratio * scale / float(b.norm())
        assert pulled["bias_deg"] == pytest.approx(feedback_stats(b, w)["angle_deg"], rel=0.1), ratio
    with pytest.raises(ValueError, match="ratio"):
        fixed_point_bias(w, d, d, pull=0.1, ratio=0.0)
    unbiased = fixed_point_bias(w, xi[0], xi[1], pull=0.1)  # W is the fixed point: drift ~ 0
    assert unbiased["drift"] < 0.01 and unbiased["bias_deg"] < 6
    assert "bias_deg" not in fixed_point_bias(w, d, d, pull=0.0)
    with pytest.raises(ValueError, match="non-zero W"):
        fixed_point_bias(torch.zeros(3, 2), d[:3, :2], d[:3, :2], 0.1)


def test_sal_phase_reports_the_fraction_of_units_at_the_refractory_limit():
    m = _small_sal(sal_nets=4, sal_blocks=1, sal_block_steps=200)
    m.configure(1, 10)
    hidden, out_layer = m._dense()
    idx = m.dense_index()
    with torch.no_grad():
        hidden.bias.fill_(50.0)  # every hidden unit fires whenever it is free: 1 / tau_ref
        out_layer.bias.fill_(-50.0)  # silent
    out = m.sal_phase()
    assert out[f"sal_saturated/{idx[0]}"] == 1.0, out
    assert out[f"sal_saturated/{idx[1]}"] == 0.0, out
    assert 0.0 <= out["sal_saturated_input"] < 1.0, out  # zero bias, top-down input only


def test_sal_net_runs_its_copy_with_its_refractory_period():
    """``refractory`` reaches the spiking copy: hidden units driven to fire whenever free spike every
    ``refractory + 1`` steps, which is the limit the saturation fraction is measured against."""
    for bad in (8, 10.5, True):  # below tau_ref - 1, not an integer
        with pytest.raises(ValueError, match="refractory"):
            _small_sal(refractory=bad)
    m = _small_sal(sal_nets=4, sal_blocks=1, sal_block_steps=260, refractory=12)
    m.configure(1, 10)
    hidden, out_layer = m._dense()
    with torch.no_grad():
        hidden.bias.fill_(50.0)
        out_layer.bias.fill_(-50.0)
    out = m.sal_phase()
    assert out[f"sal_saturated/{m.dense_index()[0]}"] == 1.0, out  # 20 spikes in 260 steps: the limit, 1 / 13


def test_sal_phase_logs_its_noise_floor_which_falls_with_more_networks():
    noise = {}
    for nets in (8, 32):
        m = _driven_sal(4, sal_nets=nets, sal_blocks=2, sal_block_steps=1000)
        out = m.sal_phase()
        assert {"sal_noise/0", "sal_pull/0", "sal_noise/1", "sal_pull/1"} <= set(out), out
        for i in (0, 1):  # one phase: its bound is that of its own estimate
            if f"sal_estimate/{i}" in out:
                assert out[f"sal_bound_deg/{i}"] == pytest.approx(math.degrees(math.atan(out[f"sal_estimate/{i}"])))
        noise[nets] = out["sal_noise/0"]
    assert 1.5 < noise[8] / noise[32] < 2.7, noise  # noise ~ 1/sqrt(networks)
    assert "sal_noise/0" not in _small_sal(sal_nets=1).sal_phase()  # one network: no halves to compare


def test_sal_phase_log_survives_the_state_dict_and_is_drawn(tmp_path):
    m = _small_sal(sal_nets=8, sal_blocks=2, sal_block_steps=300)
    m.configure(1, 10)
    for _ in range(3):
        m.sal_phase()
    assert m.phase_log.shape == (3, 6)  # 2 dense layers: their angles, their floors, their estimate noises
    assert float(m.phase_log[:, :2].min()) > 0 and float(m.phase_log[:, :2].max()) < 180
    fresh = _small_sal(sal_nets=8, sal_blocks=2, sal_block_steps=300)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.phase_log, m.phase_log)
    older = {k: v for k, v in m.state_dict().items() if k != "_extra_state"}  # saved before the log existed
    fresh.load_state_dict(older)
    assert len(fresh.phase_log) == 0
    fresh.load_state_dict({**older, "_extra_state": m.phase_log[:, :4]})  # saved before it held the estimates
    assert torch.equal(fresh.phase_log[:, :4], m.phase_log[:, :4]) and bool((fresh.phase_log[:, 4:] == -1).all())
    names = [p.name for p in m.figures(None, tmp_path)]
    assert names == ["feedback.png", "sal_alignment.png"] and (tmp_path / "sal_alignment.png").stat().st_size > 0


def test_a_neuron_at_its_refractory_limit_leaves_sal_without_a_restoring_force():
    """Why ``sal_max_gain`` exists: with both neurons in range the drift of w21 points to w12 = 1 from either side;
    when either neuron fires at its refractory limit (bias 6: σ(6 − ln 10) ≈ 0.98 per free step) the drift vanishes
    whatever w21 — the refractory clock makes as many anti-causal as causal pairs."""
    from neuroplastic.sal.studies import flow_field

    grid = torch.tensor([[1.0, -1.0], [1.0, 3.0]]).repeat(8, 1)  # (w12, w21), 8 networks per point

    def drift(bias):
        return flow_field(grid, steps=20_000, bias=bias, seed=0)[:, 1].view(8, 2).mean(0)

    low, high = drift(0.0).tolist()
    assert low > 0.06 and high < -0.08, (low, high)  # restoring force toward w21 = w12
    for bias in ((6.0, 0.0), (0.0, 6.0)):  # the pre neuron of w21, then its post neuron, saturated
        assert drift(bias).abs().max() < 0.03, (bias, drift(bias))


def test_sal_max_gain_scales_the_copy_and_divides_the_update_back():
    """A net whose dense layers sit at the cap learns exactly as without one; the same net scaled by 4 (W, B, b)
    enters the copy scaled by 1/4 — the same copy, the same spikes — and its B moves by exactly 4 times as much."""
    def made(scale, cap):
        m = _small_sal(sal_nets=4, sal_blocks=2, sal_block_steps=200, sal_max_gain=cap)
        m.configure(1, 10)
        signs = torch.Generator().manual_seed(3)
        with torch.no_grad():  # entries ±c: g = c·sqrt(fan_in) = 0.5 exactly in both layers (64 and 16 inputs)
            for layer, c in zip(m._dense(), (1 / 16, 1 / 8)):
                s = torch.randint(0, 2, layer.weight.shape, generator=signs) * 2.0 - 1
                layer.weight.copy_(scale * c * s)
                layer.B.mul_(scale)
                layer.bias.mul_(scale)
        return m

    plain, at_cap, scaled = made(1, None), made(1, 0.5), made(4, 0.5)
    assert [scaled.copy_scale(x) for x in scaled._dense()] == [0.25, 0.25]
    before = [x.B.clone() for x in scaled._dense()]
    outs = [m.sal_phase() for m in (plain, at_cap, scaled)]
    for a, b, c, b0 in zip(plain._dense(), at_cap._dense(), scaled._dense(), before):
        assert torch.equal(a.B, b.B) and not torch.equal(c.B, b0)
        assert torch.equal(c.B, 4 * a.B)
    assert {k: v for k, v in outs[2].items() if k.startswith("sal_scale")} == {"sal_scale/0": 0.25, "sal_scale/1": 0.25}
    assert "sal_scale/0" not in outs[0] and outs[1]["sal_scale/0"] == 1.0
    with pytest.raises(ValueError, match="sal_max_gain"):
        _small_sal(sal_max_gain=0.0)


def test_sal_lr_per_dense_layer_moves_each_B_by_its_own_rate():
    """One rate per dense layer: the same phase (same spikes, the rates do not touch the copy's first block) moves
    each layer's B by its rate times the one-rate update; a wrong count is a one-line error."""
    def update(lr):
        m = _small_sal(sal_nets=4, sal_blocks=1, sal_block_steps=200, sal_lr=lr)
        m.configure(1, 10)
        before = [x.B.clone() for x in m._dense()]
        m.sal_phase()
        return [x.B - b for x, b in zip(m._dense(), before)]

    one, two = update(0.5), update([0.5, 2.0])
    torch.testing.assert_close(two[0], one[0], rtol=0, atol=0)
    torch.testing.assert_close(two[1], 4 * one[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="sal_lr"):
        _small_sal(sal_lr=[0.1, 0.2, 0.3])


def test_sal_lr_decay_falls_as_robbins_monro_from_the_phase_log():
    """Phase n runs at sal_lr / (1 + d (n - 1)); the phase number is the phase log's length (it travels with
    the weights), so a net whose log holds two phases moves B by a third of the first phase's update with d =
    1 (the same spikes: one block, the rate does not touch it); d = 0 is the constant rate; a negative d is
    refused."""
    def update(decay, done):
        m = _small_sal(sal_nets=4, sal_blocks=1, sal_block_steps=200, sal_lr=0.6, sal_lr_decay=decay)
        m.configure(1, 10)
        m.phase_log = torch.zeros(done, 3 * len(m._dense()), dtype=torch.float64)
        before = [x.B.clone() for x in m._dense()]
        m.sal_phase()
        return [x.B - b for x, b in zip(m._dense(), before)], m

    first, m = update(1.0, 0)
    third, _ = update(1.0, 2)
    assert m.phase_rates(1) == [0.6, 0.6] and m.phase_rates(3) == pytest.approx([0.2, 0.2], rel=1e-12)
    for a, b in zip(first, third):
        torch.testing.assert_close(b, a / 3, rtol=1e-5, atol=1e-7)
    flat, _ = update(0.0, 2)
    for a, b in zip(first, flat):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    with pytest.raises(ValueError, match="sal_lr_decay"):
        _small_sal(sal_lr_decay=-0.1)


def _small_ideal(**kw):
    from neuroplastic import learners

    torch.manual_seed(0)
    return learners.get("sal-ideal", **{"in_shape": (1, 8, 8), "n_classes": 10, "arch": "mlp", "hidden": (16,),
                                        "seed": 0, **kw})


def test_sal_ideal_moves_B_the_fraction_q_of_the_way_to_W_and_declares_weight_transport():
    """The diagnostic learner sal-ideal: its phase is B <- B + q (W - B) exactly in every dense layer (q = 1: B = W,
    angle 0), one phase-log row per phase without a floor or estimate (-1), no spikes drawn; with a held norm W's
    direction at B's initial norm; it is registered apart, C1 ✘, while SAL (C1 ✓) refuses the option; q outside
    (0, 1] is refused."""
    from neuroplastic import learners

    half = _small_ideal(sal_ideal_pull=0.5)
    half.configure(1, 10)
    before = [(x.B.clone(), x.weight.detach().clone()) for x in half._dense()]
    half.sal_phase()
    for x, (b, w) in zip(half._dense(), before):
        torch.testing.assert_close(x.B, (b + w) / 2, rtol=0, atol=1e-7)
    assert half.phase_log.shape == (1, 3 * len(half._dense()))
    assert half.phase_log[0, len(half._dense()):].tolist() == [-1.0] * (2 * len(half._dense()))
    full = _small_ideal(sal_ideal_pull=1.0)
    full.configure(1, 10)
    full.sal_phase()
    assert max(full.dense_angles()) < 1e-3
    held = _small_ideal(sal_ideal_pull=1.0, sal_bnorm="initial")  # W's direction at B's initial norm
    held.configure(1, 10)
    out = held.sal_phase()
    assert max(held.dense_angles()) < 1e-3
    for x, n0, i in zip(held._dense(), held.b_norm0.tolist(), held.dense_index()):
        torch.testing.assert_close(float(x.B.norm()), n0, rtol=1e-5, atol=0)
        assert out[f"sal_bnorm_gain/{i}"] == pytest.approx(n0 / float(x.weight.detach().norm()), rel=1e-5)
    assert not learners.entry("sal-ideal").locality.c1 and learners.entry("sal").locality.c1
    assert full.name == "sal-ideal" and not full.locality.c1
    with pytest.raises(ValueError, match="sal_ideal_pull"):
        _small_sal(sal_ideal_pull=0.5)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="sal_ideal_pull"):
            _small_ideal(sal_ideal_pull=bad)


def test_sal_bnorm_initial_keeps_sals_direction_at_the_initial_norm_and_resumes_with_it():
    """The same phase (same seed, same spikes: the rescaling comes after the last block) gives ``B`` the direction of
    the paper's rule and the Frobenius norm ``B`` had at initialisation; the gain is logged; the norms travel with
    the state dict (a net loaded from it rescales to them), and weights saved before they existed still load."""
    def phased(bnorm):
        # strong synapses: SAL changes B's norm noticeably in one phase
        m = _driven_sal(4, sal_nets=4, sal_blocks=2, sal_block_steps=200, sal_lr=20.0, sal_bnorm=bnorm)
        start = [float(x.B.norm()) for x in m._dense()]
        return m, start, m.sal_phase()

    (free, start, out_free), (held, start_held, out) = phased("free"), phased("initial")
    assert start == start_held and torch.allclose(held.b_norm0, torch.tensor(start, dtype=torch.float64))
    for a, b, n0, i in zip(free._dense(), held._dense(), start, held.dense_index()):
        assert abs(float(a.B.norm()) / n0 - 1) > 0.05  # the paper's rule moved the norm
        torch.testing.assert_close(float(b.B.norm()), n0, rtol=1e-5, atol=0)
        torch.testing.assert_close(b.B, a.B * (n0 / a.B.norm()), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out[f"sal_bnorm_gain/{i}"], n0 / float(a.B.norm()), rtol=1e-5, atol=0)
    assert not any(k.startswith("sal_bnorm_gain") for k in out_free)
    state = held.state_dict()
    other = _small_sal(sal_nets=4, sal_blocks=2, sal_block_steps=200, sal_bnorm="initial", seed=5)
    other.load_state_dict(state)
    assert torch.equal(other.b_norm0, held.b_norm0)
    old = {k: v for k, v in state.items() if k != "b_norm0"}
    _small_sal(sal_bnorm="initial").load_state_dict(old)
    with pytest.raises(ValueError, match="sal_bnorm"):
        _small_sal(sal_bnorm="weight")


@pytest.mark.skipif(not __import__("neuroplastic.sal.native", fromlist=["available"]).available(),
                    reason="the native SAL kernel is not built")
@pytest.mark.parametrize("kw", [{}, {"sal_pairing": "nearest"}, {"sal_window": "triangular"},
                                {"plasticity_noise": 0.05}, {"refractory": 9}, {"sal_nets": 5},
                                {"sal_burn_in": 250}, {"sal_burn_in": 30, "sal_pairing": "nearest"},
                                {"sal_settle": 25}, {"sal_persist": True, "sal_burn_in": 20}])
def test_native_sal_phase_draws_the_same_spikes_and_sums_as_the_torch_route(monkeypatch, kw):
    """The native route (events in C) and the torch route (dense products) of a phase: the same uniforms (the native
    route's, one key per chunk, fed to the torch route's draws) give the same spikes (the same spike
    count, to the last spike) and the same B after two blocks, up to the order of float sums; the noise estimate of
    the two halves agrees too (with ``sal_persist``, of a second phase going on from the first's chains). Strong
    forward weights make the copy fire and SAL move B."""
    from neuroplastic.sal import native
    from neuroplastic.sal.neurons import SpikingNet

    monkeypatch.setattr(SpikingNet, "draw", lambda self, steps: native.chunk_uniforms(
        native.chunk_key(self.generator), steps, self.n_nets, sum(self.sizes)))

    def phase(flag):
        monkeypatch.setenv("NEUROPLASTIC_NATIVE", flag)
        m = _driven_sal(3, sal_blocks=2, sal_block_steps=400, **kw)
        assert m.native_route() == (flag == "1")
        if kw.get("sal_persist"):
            m.sal_phase()
        before = [x.B.clone() for x in m._dense()]
        return m, before, m.sal_phase()

    (t, before, out_t), (n, _, out_n) = phase("0"), phase("1")
    assert out_t["sal_rate"] == out_n["sal_rate"] > 0.01
    for a, b, b0 in zip(t._dense(), n._dense(), before):
        assert (a.B - b0).abs().max() > 0.01  # SAL moved B
        torch.testing.assert_close(b.B, a.B, rtol=0, atol=1e-5 * float(a.B.abs().max()))
    for i in t.dense_index():
        assert out_n[f"sal_noise/{i}"] == pytest.approx(out_t[f"sal_noise/{i}"], rel=1e-4)


@pytest.mark.skipif(not __import__("neuroplastic.sal.native", fromlist=["available"]).available(),
                    reason="the native SAL kernel is not built")
def test_native_sal_span_does_not_change_a_bit(monkeypatch):
    """The kernel's span (a group's SAL sums of several steps added together) orders its memory access, not its sums:
    any span gives the same spikes and the same B to the bit, with two groups of networks in a half (35 = 32 + 3) and
    a block's steps not a multiple of the span."""
    from neuroplastic.sal.native import NativePhase

    def phase(span):
        monkeypatch.setattr(NativePhase, "span", span)
        m = _driven_sal(3, sal_nets=70, sal_blocks=2, sal_block_steps=150)
        out = m.sal_phase()
        return [x.B.detach().clone() for x in m._dense()], out["sal_rate"]

    plain, rate = phase(1)
    assert rate > 0.01
    for span in (2, 7, 64, None):
        b, r = phase(span)
        assert r == rate
        assert all(torch.equal(x, y) for x, y in zip(b, plain)), span


def _xoshiro_lanes(key: int, r: int, steps: int, units: int) -> list[list[float]]:
    """The native route's uniforms of network r written out: eight xoshiro128++ lanes, lane word j (= 8 w + q) seeded
    with the top 32 bits of SplitMix64's finaliser of key + (32 r + j + 1) * golden; unit g from lane g mod 8."""
    mask64, mask32, golden = (1 << 64) - 1, (1 << 32) - 1, 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        return z ^ (z >> 31)

    def rotl(v: int, k: int) -> int:
        return ((v << k) | (v >> (32 - k))) & mask32

    seed = (key + r * 32 * golden) & mask64
    lanes = [[mix((seed + (w * 8 + q + 1) * golden) & mask64) >> 32 for w in range(4)] for q in range(8)]
    out = []
    for _ in range(steps):
        row = []
        for _ in range(0, units, 8):
            for s in lanes:
                row.append((((rotl((s[0] + s[3]) & mask32, 7) + s[0]) & mask32) >> 8) / 2**24)
                t = (s[1] << 9) & mask32
                s[2] ^= s[0]
                s[3] ^= s[1]
                s[1] ^= s[2]
                s[0] ^= s[3]
                s[2] ^= t
                s[3] = rotl(s[3], 11)
        out.append(row[:units])
    return out


@pytest.mark.skipif(not __import__("neuroplastic.sal.native", fromlist=["available"]).available(),
                    reason="the native SAL kernel is not built")
def test_native_sal_uniforms_are_the_documented_stream():
    """chunk_uniforms (what the kernel compares with its units' firing probabilities) is the documented generator, to
    the bit: per network, per key; and it looks uniform: mean, variance, neighbours and networks uncorrelated."""
    from neuroplastic.sal import native

    key = 0x1234_5678_9ABC
    u = native.chunk_uniforms(key, 3, 2, 13)
    for r in range(2):
        assert u[:, r].tolist() == _xoshiro_lanes(key, r, 3, 13)
    assert torch.equal(u, native.chunk_uniforms(key, 3, 2, 13))
    assert not torch.equal(u, native.chunk_uniforms(key + 1, 3, 2, 13))
    big = native.chunk_uniforms(native.chunk_key(torch.Generator().manual_seed(0)), 200, 4, 1000).double()
    assert abs(float(big.mean()) - 0.5) < 0.002 and abs(float(big.var()) - 1 / 12) < 0.001
    assert float(big.min()) >= 0 and float(big.max()) < 1
    c = big - 0.5
    for a, b in ((c[:, :, :-1], c[:, :, 1:]), (c[:-1], c[1:]), (c[:, 0], c[:, 1])):  # units, steps, networks
        assert abs(float((a * b).mean()) * 12) < 0.01


@pytest.mark.skipif(not __import__("neuroplastic.sal.native", fromlist=["available"]).available(),
                    reason="the native SAL kernel is not built")
@pytest.mark.parametrize("nets", [6, 37])
def test_native_sal_phase_does_not_depend_on_the_thread_count(nets):
    """The native route runs the two halves of the networks on up to two threads: one thread and two give the same
    B to the last bit (each sum is added in one order), for halves of equal and of unequal size."""
    def phase(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            m = _driven_sal(3, sal_nets=nets, sal_blocks=2, sal_block_steps=150)
            out = m.sal_phase()
        finally:
            torch.set_num_threads(before)
        return [x.B.detach().clone() for x in m._dense()], out

    (one, out1), (two, out2) = phase(1), phase(2)
    assert out1["sal_rate"] == out2["sal_rate"] > 0.01
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_a_burn_in_advances_the_copy_but_enters_no_sum(monkeypatch):
    """sal_burn_in steps run before the first block: they draw uniforms (so the blocks see other spikes) but their
    spikes count neither in B's update nor in the phase's rate; a copy started from rest fires in bursts on the
    refractory clock, and the burn-in is what the blocks then skip. 0 is the paper's phase; negative is refused."""
    monkeypatch.setenv("NEUROPLASTIC_NATIVE", "0")

    def phase(burn):
        m = _driven_sal(3, sal_blocks=1, sal_block_steps=40, sal_burn_in=burn)
        before = [x.B.clone() for x in m._dense()]
        out = m.sal_phase()
        return out, [x.B - b for x, b in zip(m._dense(), before)], m

    (_, d_plain, m), (burnt, d_burnt, _) = phase(0), phase(200)
    assert any(not torch.equal(a, b) for a, b in zip(d_plain, d_burnt))
    # the rate counts the block's 40 steps only: at most one spike per refractory + 1 steps
    assert 0 < burnt["sal_rate"] <= 1 / (m.sal_cfg["refractory"] + 1)
    with pytest.raises(ValueError, match="sal_burn_in"):
        _small_sal(sal_burn_in=-1)


def test_settling_steps_run_after_every_update_of_b_and_enter_no_sum(monkeypatch):
    """sal_settle steps run between two blocks, after B has moved (none before the first block): with one block
    they change nothing, with two they do (the second block sees other spikes), and the phase's rate counts the
    blocks' steps only. 0 is the paper's phase; negative is refused."""
    monkeypatch.setenv("NEUROPLASTIC_NATIVE", "0")

    def phase(blocks, settle):
        m = _driven_sal(3, sal_blocks=blocks, sal_block_steps=40, sal_settle=settle)
        out = m.sal_phase()
        return out, [x.B.detach().clone() for x in m._dense()], m

    (_, one, _), (_, one_settled, _) = phase(1, 0), phase(1, 300)
    assert all(torch.equal(a, b) for a, b in zip(one, one_settled))
    (_, two, _), (settled, two_settled, m) = phase(2, 0), phase(2, 300)
    assert any(not torch.equal(a, b) for a, b in zip(two, two_settled))
    assert 0 < settled["sal_rate"] <= 1 / (m.sal_cfg["refractory"] + 1)
    with pytest.raises(ValueError, match="sal_settle"):
        _small_sal(sal_settle=-1)


def test_persistent_chains_go_on_from_where_the_last_phase_left(monkeypatch):
    """sal_persist: the first phase is the paper's (from rest), the second goes on from the chain state the first
    left (so it draws other spikes than from rest), and that state is kept after every phase; off, nothing is kept.
    A phase of another number of networks starts from rest; a config's non-boolean is refused."""
    monkeypatch.setenv("NEUROPLASTIC_NATIVE", "0")

    def two_phases(persist, chains=None):
        m = _driven_sal(3, sal_blocks=1, sal_block_steps=60, sal_persist=persist)
        outs = []
        for _ in range(2):
            if chains is not None:
                m.chains = chains
            m.sal_phase()
            outs.append([x.B.detach().clone() for x in m._dense()])
        return outs, m

    (off, m_off), (on, m_on) = two_phases(False), two_phases(True)
    assert m_off.chains is None
    assert tuple(m_on.chains.shape) == (4, 64 + 16 + 10)  # networks x units of the copy (8x8 inputs, 16, 10)
    assert all(torch.equal(a, b) for a, b in zip(off[0], on[0]))  # the first phase starts from rest either way
    assert any(not torch.equal(a, b) for a, b in zip(off[1], on[1]))  # the second goes on from the first's chains
    assert m_on.chains.dtype == torch.int16 and int(m_on.chains.max()) > 0
    # chains of another shape (another number of networks): the phase starts from rest, as without the option
    (other, _) = two_phases(True, chains=torch.zeros(7, 3, dtype=torch.int16))
    assert all(torch.equal(a, b) for a, b in zip(other[1], off[1]))
    from neuroplastic import learners

    with pytest.raises(ValueError, match="sal_persist"):
        learners.check_params("sal", {"sal_persist": "yes"})


def test_native_sal_route_steps_aside_for_the_operation_counter():
    """The energy model's counter must see the phase's work: under it the phase takes the torch route."""
    from neuroplastic.energy import OpCounter

    m = _small_sal()
    with OpCounter():
        assert not m.native_route()


def test_analysis_phases_run_at_the_rate_the_run_had_reached():
    """Extra phases of ``analyze sal`` on a run with a falling SAL rate go on at its next phase's rate (not the
    first phase's, though each study empties the phase log), and the settings are the run's again afterwards."""
    from neuroplastic.sal.analysis import _restored

    m = _small_sal(sal_lr=0.6, sal_lr_decay=1.0)
    m.phase_log = torch.zeros(2, 3 * len(m._dense()), dtype=torch.float64)
    with _restored(m):
        m.phase_log = m.phase_log[:0]
        assert m.phase_rates(1) == pytest.approx([0.2, 0.2], rel=1e-12)
    assert m.sal_cfg["lr"] == [0.6, 0.6] and m.sal_cfg["lr_decay"] == 1.0 and len(m.phase_log) == 2


_NATIVE = pytest.mark.skipif(not __import__("neuroplastic.sal.native", fromlist=["available"]).available(),
                             reason="the native SAL kernel is not built")


def _dense_chain(sizes, nets, refractory=10, gain=2.5, seed=0):
    """A chain ``SpikingNet`` as a phase builds it (``W_l`` forward, ``B_lᵀ`` back), weights and feedback drawn with a
    gain that makes it fire, and the ``DensePhase`` pieces."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(b, a, generator=g) * gain / a**0.5 for a, b in itertools.pairwise(sizes)]
    feedback = [torch.randn(b, a, generator=g) * gain / a**0.5 for a, b in itertools.pairwise(sizes)]
    projections = {}
    for l, (w, b) in enumerate(zip(weights, feedback), start=1):
        projections[(l - 1, l)], projections[(l, l - 1)] = w, b.t()
    biases = [torch.randn(n, generator=g) for n in sizes]
    net = SpikingNet(sizes, projections, biases, n_nets=nets, tau_ref=10, refractory=refractory,
                     generator=torch.Generator().manual_seed(seed + 1))
    return net, weights, feedback


@_NATIVE
@pytest.mark.parametrize("refractory, nets, chunk, plan, packed", [
    (10, 6, 35, [(0, 40), (1, 100), (0, 15), (1, 70)], True),  # burn-in, a block over chunks, settling, a short block
    (9, 5, 200, [(1, 60), (1, 12), (0, 3), (1, 50)], True),  # Buesing's refractory (more spikes in a window); odd halves
    (10, 4, 50, [(1, 120)], False),  # torch's addmm where oneDNN's packed product is missing
])
def test_dense_sal_sums_are_the_all_pairs_sums_of_its_own_spikes_block_by_block(monkeypatch, refractory, nets, chunk,
                                                                                 plan, packed):
    """The dense route's SAL sums (terms y written by the kernel from spike ages, one product per chunk of rows) are
    the all-pairs sums of the spikes it drew (:func:`sal_pairs` over traces of the whole run), block by block: a pair
    counts in the block of its later spike, pairs across a block's start or end and through settling steps included,
    per half of the networks. Up to bfloat16's rounding of the terms (2^-9 relative); a pair missed or counted twice
    would move a sum by a whole term."""
    from neuroplastic.sal import native
    from neuroplastic.sal.native import DensePhase

    if not packed:
        monkeypatch.setattr(native, "_LINEAR", None)

    sizes = [12, 9, 7, 3]
    net, weights, feedback = _dense_chain(sizes, nets, refractory)
    rule = SALRule(tau=10.0, cut=20)
    split = nets // 2
    recorded = []

    class Recording(DensePhase):
        def _shift(self, steps):
            rows = []
            for k, sl in self.where:
                halves = [self.s[k][h][self.c: self.c + steps, :, sl].float() for h in (0, 1)]
                rows.append(torch.cat(halves, dim=1))
            recorded.append(rows)
            super()._shift(steps)

    phase = Recording(net, weights, feedback, rule, split, chunk)
    fired = torch.zeros(nets, sum(sizes))
    phase.run(0, fired)  # loads the weights: packed for oneDNN where it can
    assert (phase.packed is not None) == (packed and native._LINEAR is not None)
    blocks, t = [], 0
    for summed, steps in plan:
        sums = [[torch.zeros(a, b) for _ in range(2)] for a, b in itertools.pairwise(sizes)] if summed else None
        phase.run(steps, fired, sums)
        if summed:
            blocks.append((t, t + steps, sums))
        t += steps
    spikes = [torch.cat([r[p] for r in recorded]) for p in range(len(sizes))]  # [T, R, N] per population
    assert spikes[0].shape[0] == t and float(sum(s.sum() for s in spikes)) == float(fired.sum())
    assert all(s.mean() > 0.02 for s in spikes)
    traces = [SALTrace(rule, (nets, n)).traces(s) for n, s in zip(sizes, spikes)]  # from the spikes before each step
    halves = [slice(0, split), slice(split, nets)]
    for b0, b1, sums in blocks:
        for l in range(1, len(sizes)):
            for h, part in enumerate(halves):
                want = sal_pairs(spikes[l][b0:b1, part], spikes[l - 1][b0:b1, part], traces[l][b0:b1, part],
                                 traces[l - 1][b0:b1, part])
                assert want.abs().max() > 1
                torch.testing.assert_close(sums[l - 1][h], want, rtol=0, atol=0.01 * float(want.abs().max()))


@_NATIVE
@pytest.mark.parametrize("bias", [-3.0, 0.0, 2.0])
def test_dense_sal_units_fire_at_the_rate_of_their_probability_and_refractory_period(bias):
    """Without input a unit of the dense route fires as a renewal process: a spike with probability
    p = σ(b − ln τ_ref) at every free step, then ``refractory`` steps without, so its rate is p / (1 + refractory·p);
    and its PSP lasts τ_ref steps (a spike's unit is on in the next τ_ref steps' PSPs, read back from the chain)."""
    from neuroplastic.sal.native import DensePhase

    sizes, nets, steps = [64, 64], 50, 400
    net, weights, feedback = _dense_chain(sizes, nets, gain=0.0)
    net.biases = [torch.full((n,), bias) for n in sizes]
    phase = DensePhase(net, weights, feedback, SALRule(tau=10.0, cut=20), nets // 2, 100)
    fired = torch.zeros(nets, sum(sizes))
    phase.run(steps, fired)
    p = float(firing_probability(torch.tensor(bias), 10))
    want = p / (1 + 10 * p)
    rate = float(fired.mean()) / steps
    assert rate == pytest.approx(want, rel=0.05, abs=2e-4)
    assert float(fired.max()) <= math.ceil(steps / 11)  # never two spikes within the refractory period
    phase.store_state()
    count = net.chain_state()
    assert int(count.min()) >= 0 and int(count.max()) <= 11


@_NATIVE
def test_dense_sal_phase_aligns_B_as_the_float32_route_does(monkeypatch):
    """A phase on the dense bfloat16 route pulls B towards W as the float32 route does: the same sampling noise and
    pull of its two halves (logged per layer) within their spread over phases, and the angle falls phase by phase."""
    def phases(precision):
        m = _driven_sal(4, sal_nets=16, sal_blocks=4, sal_block_steps=500, sal_precision=precision)
        outs, angles = [], [m.diagnostics()["angle_deg_mean"]]
        for _ in range(3):
            outs.append(m.sal_phase())
            angles.append(m.diagnostics()["angle_deg_mean"])
        return outs, angles

    (o32, a32), (o16, a16) = phases("float32"), phases("bfloat16")
    assert all(b < a for a, b in itertools.pairwise(a16)) and a16[-1] < a16[0] - 15, a16
    assert abs(a16[-1] - a32[-1]) < 5, (a16, a32)
    for key in [k for k in o32[0] if k.startswith(("sal_pull/", "sal_noise/"))]:
        for x, y in zip(o32, o16):
            assert y[key] == pytest.approx(x[key], rel=0.25), key
    assert o16[0]["sal_rate"] == pytest.approx(o32[0]["sal_rate"], rel=0.05)


def test_sal_precision_is_validated_before_work():
    with pytest.raises(ValueError, match="sal_precision must be one of"):
        _small_sal(sal_precision="float16")
    for kw in ({"sal_pairing": "nearest"}, {"plasticity_noise": 0.05}):
        with pytest.raises(ValueError, match="sal_precision bfloat16"):
            _small_sal(sal_precision="bfloat16", **kw)
