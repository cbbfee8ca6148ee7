"""Contracts of the spiking mode-based networks (Lin & Huang 2024): neurons, filters, surrogates, the
fast BPTT against the autograd reference, the O(NP) recurrence against the dense W, and learning."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from neuroplastic.spiking import energy
from neuroplastic.spiking.encoders import bernoulli_encode, constant_current
from neuroplastic.spiking.filters import DoubleExpFilter, SingleExpFilter, reset_net
from neuroplastic.spiking.mode_rnn import ModeRNN, mode_importance
from neuroplastic.spiking.neurons import LIF, lif_first_spike_step
from neuroplastic.spiking.surrogate import SURROGATES, primitive, pseudo_derivative, spike


@pytest.fixture(autouse=True)
def _one_thread():
    """The per-step ops are tiny: one thread avoids OpenMP spin-waits on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _first_spike(lif: LIF, current: float, steps: int = 400) -> int | None:
    lif.reset()
    s = lif(torch.full((steps, 1), current)).flatten()
    idx = s.nonzero().flatten()
    return int(idx[0]) + 1 if len(idx) else None


@pytest.mark.parametrize("tau_syn", [0.0, 10.0])
@pytest.mark.parametrize("current", [0.3, 0.5, 1.2, 3.0])
def test_lif_time_to_first_spike_matches_closed_form(tau_syn, current):
    lif = LIF(tau_syn=tau_syn)
    expected = lif_first_spike_step(current, tau_syn=tau_syn)
    assert _first_spike(lif, current) == expected
    if tau_syn == 0.0 and current > 1:  # the log formula, by hand
        beta = math.exp(-2.0 / 20.0)
        assert expected == math.ceil(math.log(1 - 1 / current) / math.log(beta))


def test_lif_below_rheobase_never_fires():
    assert lif_first_spike_step(0.9, tau_syn=0.0) is None
    assert _first_spike(LIF(tau_syn=0.0), 0.9) is None


def test_refractory_period_and_reset_to_zero():
    lif = LIF(tau_syn=0.0, refractory=10.0, dt=2.0)  # 5 refractory steps
    u = []
    spikes = []
    for _ in range(60):
        spikes.append(float(lif.step(torch.tensor([50.0]))))
        u.append(float(lif.U))
    idx = [i for i, s in enumerate(spikes) if s]
    assert idx[0] == 0  # huge current: fires on the first step
    assert all(b - a == 6 for a, b in itertools.pairwise(idx))  # 5 silent steps in between
    for i in idx:
        assert all(v == 0.0 for v in u[i + 1:i + 6])  # membrane held at 0 while refractory
    lif2 = LIF(tau_syn=0.0, refractory=0.0)
    s2 = [float(lif2.step(torch.tensor([50.0]))) for _ in range(6)]
    assert s2 == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # reset to zero: one step at 0, then fires again


def test_state_resets():
    lif = LIF()
    a = lif(torch.full((30, 2), 0.8))
    reset_net(torch.nn.Sequential(lif))
    assert lif.U is None and lif.I is None
    b = lif(torch.full((30, 2), 0.8))
    assert torch.equal(a, b)
    f = DoubleExpFilter()
    r1 = f(torch.ones(5, 1))
    f.reset()
    assert torch.equal(f(torch.ones(5, 1)), r1)


def test_filters_by_hand():
    f = SingleExpFilter(tau_d=30.0, dt=2.0)
    r = f(torch.tensor([[1.0], [0.0]])).flatten()
    d = math.exp(-2 / 30)
    assert torch.allclose(r, torch.tensor([2 / 30, d * 2 / 30]))
    g = DoubleExpFilter(tau_r=2.0, tau_d=30.0, dt=2.0)
    r = g(torch.tensor([[1.0], [0.0]])).flatten()
    h1, h2 = 1.0, math.exp(-1.0)
    r1 = (1 - d) * h1
    assert torch.allclose(r, torch.tensor([r1, d * r1 + (1 - d) * h2]))


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogate_backward_matches_primitive_autograd(name):
    v = torch.linspace(-2.0, 2.0, 101, dtype=torch.float64)
    v = v[(v.abs() - 1.0).abs() > 1e-3]  # avoid the triangle's kinks
    v1 = v.clone().requires_grad_(True)
    s = spike(v1, name)
    assert torch.equal(s.detach(), (v >= 0).double())
    (g1,) = torch.autograd.grad(s.sum(), v1)
    v2 = v.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(primitive(v2, name).sum(), v2)
    assert torch.allclose(g1, g2, atol=1e-12)
    assert torch.allclose(pseudo_derivative(v, name), g2, atol=1e-12)


def test_fast_sigmoid_value_by_hand():
    v = torch.tensor([0.04], requires_grad=True)
    spike(v, "fast_sigmoid", 25.0).sum().backward()
    assert torch.allclose(v.grad, torch.tensor([0.25]))  # 1/(1+25*0.04)^2


def test_mode_recurrence_equals_dense_w():
    g = torch.Generator().manual_seed(0)
    net = ModeRNN(5, 40, 4, generator=g)
    r = torch.rand(7, 40, generator=g)
    W = net.recurrent_weight()
    assert W.shape == (40, 40)
    assert torch.allclose(net.recurrent_input(r), r @ W.t(), atol=1e-6)
    assert net.n_recurrent_params() == 2 * 40 * 4 + 4
    # whole network: a full-rank net holding the same W gives the same spikes
    full = ModeRNN(5, 40, 4, rank="full", generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full.w_in.copy_(net.w_in)
        full.w_rec.copy_(W)
    x = (torch.rand(30, 3, 5, generator=g) < 0.5).float() * 3
    r1, s1 = net(x)
    r2, s2 = full(x)
    assert s1.sum() > 0
    assert torch.equal(s1, s2) and torch.allclose(r1, r2, atol=1e-5)


@pytest.mark.parametrize("rank", ["mode", "full"])
@pytest.mark.parametrize("refractory", [10.0, 0.0])
def test_fast_bptt_matches_autograd_reference(rank, refractory):
    g = torch.Generator().manual_seed(3)
    net = ModeRNN(12, 24, 3, rank=rank, refractory=refractory, generator=g).double()
    x = (torch.rand(35, 4, 12, generator=g, dtype=torch.float64) < 0.3).double() * 2
    r1, s1 = net(x)
    r2, s2 = net.forward_reference(x)
    assert s1.sum() > 10
    assert torch.equal(s1, s2)
    assert torch.allclose(r1, r2, atol=1e-12)
    w = torch.randn(r1.shape, generator=g, dtype=torch.float64)
    params = list(net.parameters())
    g1 = torch.autograd.grad((r1 * w).sum() + r1.amax(0).sum(), params)
    g2 = torch.autograd.grad((r2 * w).sum() + r2.amax(0).sum(), params)
    for (n, _), a, b in zip(net.named_parameters(), g1, g2):
        assert b.abs().max() > 0, n
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-7), n


def test_state_resets_between_batches():
    net = ModeRNN(6, 20, 2, generator=torch.Generator().manual_seed(0))
    x = torch.rand(20, 3, 6) * 3
    a, _ = net(x)
    net(torch.rand(20, 3, 6) * 5)  # another batch in between
    b, _ = net(x)
    c, _ = net.forward_reference(x)
    d, _ = net.forward_reference(x)
    assert torch.equal(a, b) and torch.equal(c, d)


def test_mode_importance_by_hand():
    xi_in = torch.tensor([[3.0, 0.0], [4.0, 0.0]])  # column norms 5, 0
    xi_out = torch.tensor([[0.0, 1.0], [0.0, 0.0]])  # column norms 0, 1
    lam = torch.tensor([1.0, -2.0])
    gamma = 3.0 / 6.0
    assert torch.allclose(mode_importance(xi_in, xi_out, lam), torch.tensor([gamma * 5 + 1, gamma * 1 + 2]))


def test_bernoulli_encode_statistics_and_seed():
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    s = bernoulli_encode(x, 20000, torch.Generator().manual_seed(0))
    assert s.shape == (20000, 1, 4)
    m = s.mean(0).flatten()
    assert m[0] == 0 and m[3] > 0.999
    assert abs(m[1] - 0.25) < 0.015 and abs(m[2] - 0.5) < 0.015
    s2 = bernoulli_encode(x, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli_encode(torch.tensor([[1.5]]), 2)
    assert constant_current(torch.tensor([[2.0]]), 3).flatten().tolist() == [2.0, 2.0, 2.0]


def test_energy_counts_by_hand():
    c = energy.count_ops(steps=10, n_in=4, n_hidden=5, n_out=2, n_modes=3, spiking=True, input_spikes=7.0,
                         hidden_spikes=11.0, per_step_readout=False)
    assert c.ac == 7 * 5 + 11 * 3
    assert c.mac == 10 * (3 + 5 * 3) + 5 * 2
    r = energy.count_ops(steps=10, n_in=4, n_hidden=5, n_out=2, n_modes=None, spiking=False, input_spikes=None,
                         hidden_spikes=0.0, per_step_readout=True)
    assert r.ac == 0 and r.mac == 10 * 4 * 5 + 10 * 25 + 10 * 5 * 2
    assert r.reads == r.mac + r.ac  # every operation reads its stored weight
    assert r.energy_pj() == pytest.approx(r.mac * 4.6 + r.reads * 5.0)


def test_context_task_shapes_and_targets():
    from neuroplastic.data.context import context_task, decision_window, decisions

    x, y = context_task(200, 0, silent=5, stim=10, after=15, switch=True, p_switch=0.5, switch_steps=10)
    assert x.shape == (200, 30, 4) and y.shape == (200, 30)
    assert (y[:, :15] == 0).all()
    assert (x[:, :5, :2] == 0).all() and (x[:, 15:, :2] == 0).all()
    assert (x[:, :, 2:].sum(2) == 1).all()
    ctx0 = x[:, 0, 2:].argmax(1)
    mean_stim = x[:, 5:15, :2].mean(1)
    assert (y[:, 15] == torch.sign(mean_stim[torch.arange(200), ctx0]) ).float().mean() > 0.7
    switched = (x[:, -1, 2:] != x[:, 0, 2:]).any(1)
    assert 0.3 < switched.float().mean() < 0.7
    w = decision_window(y)
    assert (w.sum(1) >= 10).all() and (w[:, :15] == 0).all()
    assert decisions(y, y).all() and not decisions(-y, y).any()


def test_learner_protocol_and_errors():
    from neuroplastic import learners

    m = learners.get("snn-mode", in_shape=(1, 8, 8), n_classes=10, n_hidden=16, steps=5)
    assert m.name == "snn-mode" and m.net.n_recurrent_params() == 2 * 16 * 3 + 3
    m.configure(1, 1)
    out = m.train_step(torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    assert math.isfinite(out["loss"]) and m.predict(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    f = learners.get("snn-fullrank", in_shape=(1, 8, 8), n_classes=10, n_hidden=16, steps=5)
    assert f.net.n_recurrent_params() == 16 * 16
    with pytest.raises(ValueError, match="task"):
        learners.get("rnn-mode", in_shape=(1, 8, 8), n_classes=10, task="bogus")
    with pytest.raises(ValueError, match="n_modes"):
        learners.get("snn-mode", in_shape=(1, 8, 8), n_classes=10, n_hidden=4, n_modes=5)


def test_small_mode_rnn_learns_context_task():
    from neuroplastic import data
    from neuroplastic.trainer import evaluate, fit

    torch.manual_seed(0)
    from neuroplastic import learners

    bundle = data.prepare("context-mini", val=0, seed=0, limit_train=640)
    m = learners.get("snn-mode", in_shape=bundle.in_shape, n_classes=2, n_hidden=32, n_modes=3, lr=1e-2, seed=0)
    assert m.task == "sequence"
    fit(m, bundle, epochs=6, batch_size=64, seed=0, progress=False)
    acc = evaluate(m, bundle.test.x, bundle.test.y)["acc"]
    assert acc > 0.9
    fm = m.final_metrics(bundle)
    assert set(fm["prune_curve"]) == {1, 2, 3} and fm["energy_pj_per_inference"] > 0


def test_pruning_restores_weights_and_learner_pickles(tmp_path):
    from neuroplastic import data, learners

    bundle = data.prepare("context-mini", val=0, seed=0, limit_train=64, limit_test=32)
    m = learners.get("snn-mode", in_shape=bundle.in_shape, n_classes=2, n_hidden=16, n_modes=3)
    lam = m.net.lam.detach().clone()
    acc = m.pruned_accuracy(bundle.test.x, bundle.test.y, 1)
    assert 0.0 <= acc <= 1.0 and torch.equal(m.net.lam.detach(), lam)
    with pytest.raises(ValueError, match="sequence inputs"):
        m.predict(torch.rand(2, 100))
    torch.save(m, tmp_path / "m.pt")
    m2 = torch.load(tmp_path / "m.pt", weights_only=False)
    x = bundle.test.x[:4]
    assert torch.equal(m.predict(x), m2.predict(x))


def test_full_rank_network_draws_its_raster_without_mode_pictures(tmp_path):
    from neuroplastic import experiment

    out = experiment.run({"learner": "snn-fullrank", "dataset": "digits", "epochs": 1,
                          "params": {"n_hidden": 16, "steps": 5}}, progress=False, figures_dir=tmp_path)
    assert "figures_error" not in out.metrics
    assert (tmp_path / "raster.png").is_file() and not (tmp_path / "trajectories.png").exists()
