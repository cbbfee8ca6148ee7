"""Boltzmann machines: the correlation rule against exact gradients, free energy, AIS against exact log Z."""

import math

import pytest
import torch

from neuroplastic import data, trainer
from neuroplastic.boltzmann import machines as bm


def test_correlation_rule_by_hand():
    x_d = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y_d = torch.tensor([[1.0], [0.0]])
    x_m = torch.tensor([[0.0, 1.0]])
    y_m = torch.tensor([[1.0]])
    dw, dbx, dby = bm.correlation_rule(x_d, y_d, x_m, y_m)
    # <x y>_data = [[0.5], [0]]; <x y>_model = [[0], [1]]
    assert torch.equal(dw, torch.tensor([[0.5], [-1.0]]))
    assert torch.equal(dbx, torch.tensor([1.0, -0.5]))
    assert torch.equal(dby, torch.tensor([-0.5]))


def test_rbm_free_energy_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    rbm = bm.RBM(4, 3, init_std=0.5, generator=g)
    with torch.no_grad():
        rbm.b.normal_(generator=g)
        rbm.c.normal_(generator=g)
    v = bm.enumerate_states(4)
    h = bm.enumerate_states(3)
    energy = -(v @ rbm.b)[:, None] - (h @ rbm.c)[None, :] - v @ rbm.W @ h.T
    assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-energy, 1), atol=1e-5)


def test_rbm_rule_with_exact_model_statistics_is_the_log_likelihood_gradient():
    g = torch.Generator().manual_seed(1)
    rbm = bm.RBM(5, 3, init_std=0.5, generator=g).double()
    v_data = (torch.rand(7, 5, generator=g) < 0.5).double()
    # exact gradient by autograd of the mean log-likelihood
    ll = (-rbm.free_energy(v_data)).mean() - bm.exact_log_z_rbm(rbm)
    grads = torch.autograd.grad(ll, [rbm.W, rbm.b, rbm.c])
    # the rule with exact model expectations: weight all visible states by p(v)
    v_all = bm.enumerate_states(5).double()
    p = torch.softmax(-rbm.free_energy(v_all), 0).detach()
    with torch.no_grad():
        h_d, h_all = rbm.p_h(v_data), rbm.p_h(v_all)
        dw = v_data.T @ h_d / len(v_data) - (v_all * p[:, None]).T @ h_all
        db = v_data.mean(0) - p @ v_all
        dc = h_d.mean(0) - p @ h_all
    for a, b in zip(grads, (dw, db, dc)):
        assert torch.allclose(a, b, atol=1e-10)
    # and accumulate_grad writes minus the rule (so an optimizer step ascends the likelihood)
    rbm.accumulate_grad(v_data, v_data)
    assert torch.allclose(rbm.W.grad, torch.zeros_like(rbm.W.grad))


def test_full_bm_rule_with_loops_is_the_exact_gradient():
    torch.manual_seed(0)
    m = bm.BoltzmannMachine(4, 0, init_std=0.7).double()  # visible only, fully connected: loops of every length
    x_all = bm.enumerate_states(4).double()
    v_data = x_all[[1, 3, 3, 7, 12, 15]]
    ll = (-m.energy(v_data)).mean() - bm.exact_log_z_bm(m)
    gw, gb = torch.autograd.grad(ll, [m.W, m.b])
    p = torch.softmax(-m.energy(x_all), 0).detach()
    # exact data-minus-model correlations; autograd treats W_ij and W_ji as separate entries, each
    # receiving half of d(-E)/dw_ij = x_i x_j, so the rule equals gw + gw^T off the diagonal
    dw = v_data.T @ v_data / len(v_data) - (x_all * p[:, None]).T @ x_all
    dw.fill_diagonal_(0)
    assert torch.allclose((gw + gw.T).fill_diagonal_(0), dw, atol=1e-10)
    assert torch.allclose(gb, v_data.mean(0) - p @ x_all, atol=1e-10)
    # accumulate_grad with "model samples" equal to the data gives a zero update
    m.accumulate_grad(v_data, v_data)
    assert m.W.grad.abs().max() < 1e-12 and m.b.grad.abs().max() < 1e-12


def test_full_bm_learns_a_small_distribution_by_gibbs():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    target = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.float)
    v_data = target[torch.randint(0, 3, (300,), generator=g)]
    m = bm.BoltzmannMachine(4, 2, generator=g)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    before = bm.exact_log_marginal_bm(m, target).mean().item()
    chains = torch.cat([v_data[:100], torch.zeros(100, 2)], 1)
    for _ in range(300):
        with torch.no_grad():
            x_data = m.sweep(m.sweep(torch.cat([v_data, torch.zeros(300, 2)], 1), g, True), g, True)
            chains = m.sweep(chains, g)
            m.accumulate_grad(x_data, chains)
        opt.step()
    after = bm.exact_log_marginal_bm(m, target).mean().item()
    assert after > before + 1.0
    assert after > math.log(1 / 3) - 0.6  # close to the entropy bound log(1/3)


def test_ais_matches_exact_log_z():
    g = torch.Generator().manual_seed(3)
    rbm = bm.RBM(10, 6, init_std=0.8, generator=g)
    with torch.no_grad():
        rbm.b.normal_(0, 0.5, generator=g)
        rbm.c.normal_(0, 0.5, generator=g)
    v_train = (torch.rand(200, 10, generator=g) < 0.3).float()
    est, se = bm.ais_log_z(rbm, bm.base_rate_biases(v_train), bm.ais_schedule("fast"), 200,
                           torch.Generator().manual_seed(0))
    exact = float(bm.exact_log_z_rbm(rbm).detach())
    assert abs(est - exact) < 0.05, (est, exact)
    assert se < 0.1


def test_rbm_learner_learns_digits_features_and_reports_ais():
    trainer.seed_everything(0)
    b = data.prepare("digits", val=0.1, seed=0)
    from neuroplastic import learners

    m = learners.get("rbm", in_shape=b.in_shape, n_hidden=64, lr=0.05, ais="fast", ais_chains=50)
    res = trainer.fit(m, b, epochs=5, batch_size=32, progress=False, probe={"epochs": 60})
    # monitoring happens at evaluation epochs, not every step: the pseudo-likelihood of the validation split rises
    assert "train_loss" not in res.history[-1]
    assert res.history[-1]["val_pseudo_ll"] > res.history[0]["val_pseudo_ll"]
    assert res.final["test_acc"] > 0.7
    extra = m.final_metrics(b)
    # an untrained RBM (W≈0, zero biases) has log p(v) ≈ -64 log 2 ≈ -44.4 nats on 64 binary pixels
    assert -30 < extra["log_likelihood"] < 0


def test_bad_arguments_are_named():
    from neuroplastic import learners

    with pytest.raises(ValueError, match="unknown binarization 'fuzzy'"):
        learners.get("rbm", in_shape=(1, 8, 8), binarization="fuzzy")
    with pytest.raises(ValueError, match="unknown ais"):
        learners.get("rbm", in_shape=(1, 8, 8), ais="slow")
