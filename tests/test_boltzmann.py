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


# --------------------------------------------------------------------------------------------------------------
# centred and Gaussian RBMs against enumeration

def _random_rbm(nv: int, nh: int, seed: int, centred: bool = True) -> bm.RBM:
    g = torch.Generator().manual_seed(seed)
    rbm = bm.RBM(nv, nh, init_std=0.7, generator=g).double()
    with torch.no_grad():
        rbm.b.normal_(0, 0.5, generator=g)
        rbm.c.normal_(0, 0.5, generator=g)
        if centred:
            rbm.mu.copy_(torch.rand(nv, generator=g, dtype=torch.float64))
            rbm.lam.copy_(torch.rand(nh, generator=g, dtype=torch.float64))
    return rbm


def test_centred_rbm_free_energy_and_conditionals_equal_enumeration():
    rbm = _random_rbm(4, 3, 0)
    v, h = bm.enumerate_states(4).double(), bm.enumerate_states(3).double()
    e = torch.stack([rbm.energy(v, hh.expand(len(v), -1)) for hh in h], 1)  # [16, 8]
    assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-e, 1), atol=1e-10)
    p_hv = torch.softmax(-e, 1)  # p(h|v) by enumeration
    assert torch.allclose(rbm.p_h(v), p_hv @ h, atol=1e-10)
    p_vh = torch.softmax(-e, 0)  # p(v|h)
    assert torch.allclose(rbm.p_v(h), p_vh.T @ v, atol=1e-10)
    # log Z by the visible side, by the hidden side (uncentred form) and by brute force agree
    brute = torch.logsumexp(-e.flatten(), 0)
    assert torch.allclose(bm.exact_log_z_rbm(rbm), brute, atol=1e-10)
    wide = _random_rbm(6, 3, 1)
    v6 = bm.enumerate_states(6).double()
    assert torch.allclose(bm.exact_log_z_rbm(wide), torch.logsumexp(-wide.free_energy(v6), 0), atol=1e-10)


def test_moving_the_offsets_leaves_the_distribution_unchanged():
    rbm = _random_rbm(5, 3, 2)
    v = bm.enumerate_states(5).double()
    before = -rbm.free_energy(v) - bm.exact_log_z_rbm(rbm)
    g = torch.Generator().manual_seed(9)
    rbm.set_offsets(torch.rand(5, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64))
    after = -rbm.free_energy(v) - bm.exact_log_z_rbm(rbm)
    assert torch.allclose(before, after, atol=1e-10)
    assert not torch.allclose(rbm.mu, torch.zeros(5, dtype=torch.float64))


def test_gaussian_rbm_free_energy_conditionals_and_log_z_against_enumeration_and_quadrature():
    g = torch.Generator().manual_seed(3)
    rbm = bm.GaussianRBM(2, 3, init_std=0.6, learn_variance=True, generator=g).double()
    with torch.no_grad():
        rbm.b.normal_(0, 0.5, generator=g)
        rbm.c.normal_(0, 0.5, generator=g)
        rbm.log_var.copy_(torch.tensor([-0.3, 0.4], dtype=torch.float64))
    h = bm.enumerate_states(3).double()
    v = torch.randn(5, 2, generator=g, dtype=torch.float64)
    e = torch.stack([rbm.energy(v, hh.expand(len(v), -1)) for hh in h], 1)
    assert torch.allclose(rbm.free_energy(v), -torch.logsumexp(-e, 1), atol=1e-10)
    assert torch.allclose(rbm.p_h(v), torch.softmax(-e, 1) @ h, atol=1e-10)
    # p(v|h) is Gaussian with mean b + W h: E(v, h) - E(mean, h) = sum (v - mean)^2 / (2 sigma^2)
    hh = h[5:6].expand(len(v), -1)
    mean = rbm.mean_v(hh)
    quad = (0.5 * (v - mean) ** 2 * torch.exp(-rbm.log_var)).sum(1)
    assert torch.allclose(rbm.energy(v, hh) - rbm.energy(mean, hh), quad, atol=1e-10)
    # log Z: the hidden sum in closed form against a 2-D quadrature of exp(-F(v))
    grid = torch.linspace(-12, 12, 801, dtype=torch.float64)
    vv = torch.cartesian_prod(grid, grid)
    dv = (grid[1] - grid[0]) ** 2
    quadrature = torch.logsumexp(-rbm.free_energy(vv), 0) + torch.log(dv)
    assert abs(float((bm.exact_log_z_grbm(rbm) - quadrature).detach())) < 1e-6


def test_gaussian_rbm_rule_is_the_exact_gradient_given_exact_statistics():
    """With the model expectation replaced by samples of a distribution, the rule is the difference of the
    expected gradients of -E; here data and 'model' batches are two sets, checked against autograd of -F."""
    g = torch.Generator().manual_seed(4)
    rbm = bm.GaussianRBM(3, 2, init_std=0.5, learn_variance=True, generator=g).double()
    vd, vm = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    obj = (-rbm.free_energy(vd)).mean() - (-rbm.free_energy(vm)).mean()
    grads = torch.autograd.grad(obj, [rbm.W, rbm.b, rbm.c, rbm.log_var])
    rbm.accumulate_grad(vd, vm)
    for p, gr in zip((rbm.W, rbm.b, rbm.c, rbm.log_var), grads):
        assert torch.allclose(-p.grad, gr, atol=1e-10)


def test_centred_rule_is_the_centred_gradient_of_the_free_energy():
    """accumulate_grad writes minus the data-minus-model gradient of -F in the centred parametrisation."""
    rbm = _random_rbm(4, 3, 5)
    g = torch.Generator().manual_seed(6)
    vd = (torch.rand(7, 4, generator=g) < 0.5).double()
    vm = (torch.rand(5, 4, generator=g) < 0.5).double()
    obj = (-rbm.free_energy(vd)).mean() - (-rbm.free_energy(vm)).mean()
    grads = torch.autograd.grad(obj, [rbm.W, rbm.b, rbm.c])
    rbm.accumulate_grad(vd, vm)
    for p, gr in zip((rbm.W, rbm.b, rbm.c), grads):
        assert torch.allclose(-p.grad, gr, atol=1e-10)


@pytest.mark.parametrize("density", [0.05, 0.5])  # below the gather threshold, and above it (dense product)
@pytest.mark.parametrize("transpose", [False, True])
def test_binary_matmul_equals_the_dense_product(density, transpose):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(30, 40, generator=g) < density
    w = torch.randn(40 if not transpose else 30, 7, generator=g, dtype=torch.float64)
    want = (x.double().T if transpose else x.double()) @ w
    assert torch.allclose(bm.binary_matmul(x, w, transpose=transpose), want, atol=1e-12)
    with pytest.raises(ValueError, match="bool"):
        bm.binary_matmul(x.double(), w)


def test_centred_rule_on_bool_units_equals_the_float_route():
    """Binary units given as bool take the uncentred product minus mu (dy)^T: the same update as (v - mu)^T y."""
    rbm = _random_rbm(12, 5, 9)
    g = torch.Generator().manual_seed(2)
    vd, vm = torch.rand(9, 12, generator=g) < 0.1, torch.rand(6, 12, generator=g) < 0.1
    rbm.accumulate_grad(vd.double(), vm.double())
    want = [p.grad.clone() for p in (rbm.W, rbm.b, rbm.c)]
    rbm.accumulate_grad(vd, vm)
    for p, w in zip((rbm.W, rbm.b, rbm.c), want):
        assert torch.allclose(p.grad, w, atol=1e-12)


def test_rbm_update_with_one_product_for_data_and_chains_equals_the_step_written_out():
    """rbm_update's PCD route (binary data as bool, the data's and the chains' p(h|v) in one product) makes the
    same updates as the step written out: p(h|v) of the data, the sampler, the centred rule, SGD, offsets."""
    rbms = [_random_rbm(20, 6, 11) for _ in range(2)]
    samplers = [bm.PCD(20, 6, n_chains=5).double() for _ in range(2)]
    opts = [torch.optim.SGD(r.parameters(), lr=0.1) for r in rbms]
    gens = [torch.Generator().manual_seed(5) for _ in range(2)]
    data = (torch.rand(4, 8, 20, generator=torch.Generator().manual_seed(1)) < 0.1).double()
    for v in data:
        bm.rbm_update(rbms[0], samplers[0], opts[0], v, gens[0], offset_rate=0.1)
        r = rbms[1]
        with torch.no_grad():
            ph = r.p_h(v)
            vm, phm = samplers[1].sample(r, v, ph, gens[1])
            r.accumulate_grad(v, vm.double(), ph, phm)
        opts[1].step()
        with torch.no_grad():
            r.set_offsets(torch.lerp(r.mu, v.mean(0), 0.1), torch.lerp(r.lam, ph.mean(0), 0.1))
    for a, b in zip(rbms[0].state_dict().values(), rbms[1].state_dict().values()):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.equal(samplers[0].v, samplers[1].v)


# --------------------------------------------------------------------------------------------------------------
# samplers

def _exact_gradient(rbm: bm.RBM, v_data: torch.Tensor) -> torch.Tensor:
    ll = (-rbm.free_energy(v_data)).mean() - bm.exact_log_z_rbm(rbm)
    return torch.autograd.grad(ll, rbm.W)[0]


@pytest.mark.parametrize("kind", ["cd", "pcd", "pt"])
def test_sampler_gradients_point_along_the_exact_gradient(kind):
    rbm = _random_rbm(6, 4, 7, centred=False).float()
    g = torch.Generator().manual_seed(0)
    v_data = (torch.rand(4000, 6, generator=g) < torch.linspace(0.1, 0.9, 6)).float()
    exact = _exact_gradient(rbm, v_data).flatten()
    if kind == "pt":
        s = bm.ParallelTempering(6, 4, n_chains=4000, k=1, n_temps=4)
    else:
        s = bm.PCD(6, 4, n_chains=4000, k=1, persistent=kind == "pcd")
    with torch.no_grad():
        ph = rbm.p_h(v_data)
        for _ in range(1 if kind == "cd" else 30):  # persistent chains: let them mix (the model is fixed)
            vm, phm = s.sample(rbm, v_data, ph, g)
        rbm.accumulate_grad(v_data, vm, ph, phm)
    cos = float(torch.nn.functional.cosine_similarity(-rbm.W.grad.flatten(), exact, 0))
    assert cos > (0.5 if kind == "cd" else 0.95), cos


def test_parallel_tempering_samples_every_temperature_exactly():
    """Swaps keep detailed balance: after many PT steps of a fixed model, each temperature's chains are
    distributed as p_beta(v) (total variation against enumeration), and swaps are accepted."""
    rbm = _random_rbm(3, 2, 8, centred=False).float()
    with torch.no_grad():
        rbm.W.mul_(3.0)  # a rugged model
    s = bm.ParallelTempering(3, 2, n_chains=20000, k=1, n_temps=3, min_beta=0.2)
    g = torch.Generator().manual_seed(1)
    v0 = (torch.rand(50, 3, generator=g) < 0.5).float()
    with torch.no_grad():
        for _ in range(60):
            s.sample(rbm, v0, rbm.p_h(v0), g)
    states = bm.enumerate_states(3)
    codes = (s.v.long() << torch.arange(3)).sum(2)  # [T, C]
    for t, beta in enumerate(s.betas.tolist()):
        W, b, c, _ = rbm.uncentred()
        log_f = beta * (states @ b) + torch.nn.functional.softplus(beta * (states @ W + c)).sum(1)
        exact = torch.softmax(log_f, 0)
        emp = torch.bincount(codes[t], minlength=8).float() / codes.shape[1]
        assert 0.5 * float((emp - exact.detach()).abs().sum()) < 0.02, (t, emp, exact)
    assert 0.05 < float(s.swaps[0] / s.swaps[1]) <= 1.0


def test_ais_and_reverse_ais_bracket_the_exact_log_z():
    """In expectation forward AIS underestimates log Z and reverse AIS (from exact model samples) overestimates it:
    400 independent estimates of 10 chains each, on a short schedule where the gaps are clear."""
    rbm = _random_rbm(10, 6, 11, centred=True)
    with torch.no_grad():
        rbm.W.mul_(2.0)
    exact = float(bm.exact_log_z_rbm(rbm).detach())
    g = torch.Generator().manual_seed(2)
    base = bm.base_rate_biases((torch.rand(500, 10, generator=g) < 0.4).float())
    betas = torch.linspace(0, 1, 8, dtype=torch.float64)
    log10 = math.log(10)
    lw, off = bm.ais_log_weights(rbm, base, betas, 4000, torch.Generator().manual_seed(0))
    fwd = off + torch.logsumexp(lw.view(400, 10), 1) - log10
    states = bm.enumerate_states(10).double()
    p = torch.softmax(-rbm.free_energy(states).detach(), 0)
    start = states[torch.multinomial(p, 4000, replacement=True, generator=g)]  # exact model samples
    lw, off = bm.reverse_ais_log_weights(rbm, base, start, betas, torch.Generator().manual_seed(0))
    rev = off - (torch.logsumexp(lw.view(400, 10), 1) - log10)
    assert float(fwd.mean()) < exact - 0.03 and float(rev.mean()) > exact + 0.03, (fwd.mean(), exact, rev.mean())
    # with the standard-shaped schedule and many chains both land on it
    est, se = bm.ais_log_z(rbm, base, bm.ais_schedule("fast"), 500, torch.Generator().manual_seed(0))
    est_r, _ = bm.reverse_ais_log_z(rbm, base, start[:500], bm.ais_schedule("fast"), torch.Generator().manual_seed(0))
    assert abs(est - exact) < 0.1 and abs(est_r - exact) < 0.1 and se < 0.1


# --------------------------------------------------------------------------------------------------------------
# machines with loops

def test_graph_colouring_gives_independent_sets():
    for graph, n_colours in (("full", 7), ("bipartite", 2), ("visible", None)):
        m = bm.make_graph(4, 3, graph)
        colours = bm.graph_colouring(m)
        assert sorted(torch.cat(colours).tolist()) == list(range(7))
        for idx in colours:
            assert m[idx][:, idx].sum() == 0
        if n_colours is not None:
            assert len(colours) == n_colours
    ring = torch.zeros(6, 6)
    for i in range(6):
        ring[i, (i + 1) % 6] = ring[(i + 1) % 6, i] = 1
    assert len(bm.graph_colouring(ring)) == 2
    with pytest.raises(ValueError, match="symmetric 0/1"):
        bm.make_graph(3, 0, torch.triu(torch.ones(3, 3), 1))


def test_colour_class_gibbs_samples_a_machine_with_loops_exactly():
    ring = torch.zeros(5, 5)  # an odd ring: a loop, three colours
    for i in range(5):
        ring[i, (i + 1) % 5] = ring[(i + 1) % 5, i] = 1
    ring[0, 2] = ring[2, 0] = 1
    g = torch.Generator().manual_seed(0)
    m = bm.BoltzmannMachine(5, 0, ring, init_std=1.5, generator=g)
    with torch.no_grad():
        m.b.normal_(0, 0.5, generator=g)
    assert len(m.colours) == 3
    x = (torch.rand(20000, 5, generator=g) < 0.5).float()
    with torch.no_grad():
        for _ in range(40):
            x = m.sweep(x, g)
    states = bm.enumerate_states(5)
    exact = torch.softmax(-m.energy(states), 0)
    emp = torch.bincount((x.long() << torch.arange(5)).sum(1), minlength=32).float() / len(x)
    assert 0.5 * float((emp - exact.detach()).abs().sum()) < 0.02
    assert torch.equal(m.W, m.W.T) and float((m.W.detach() * (1 - ring)).abs().sum()) == 0.0


# --------------------------------------------------------------------------------------------------------------
# learners, protocol, estimator

def test_pcd_chains_persist_across_batches_and_resume_exactly(tmp_path):
    from neuroplastic import learners

    b = data.prepare("digits", val=0.1, seed=0)

    def run(epochs, resume=False):
        trainer.seed_everything(0)
        m = learners.get("rbm", in_shape=b.in_shape, n_hidden=32, lr=0.05, ais="none", monitor="none")
        trainer.fit(m, b, epochs=epochs, batch_size=32, progress=False, checkpoint_dir=tmp_path, resume=resume,
                    probe={"epochs": 1})
        return m

    once = run(1)
    chains = once.sampler.v.clone()
    assert bool(once.sampler.ready) and not torch.equal(chains, torch.zeros_like(chains))
    again = run(3, resume=True)  # continues the 1-epoch checkpoint: chains come back with it
    full = learners.get("rbm", in_shape=b.in_shape, n_hidden=32, lr=0.05, ais="none", monitor="none")
    trainer.seed_everything(0)
    trainer.fit(full, b, epochs=3, batch_size=32, progress=False, probe={"epochs": 1})
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_dbn_trains_its_layers_one_after_another():
    from neuroplastic import learners

    b = data.prepare("digits", val=0.1, seed=0)
    m = learners.get("dbn", in_shape=b.in_shape, layers=[32, 16], lr=0.05)
    m.configure(4, 1)
    snapshots = []
    trainer.seed_everything(0)
    res = trainer.fit(m, b, epochs=4, batch_size=64, progress=False, probe={"epochs": 5},
                      callbacks=[_Snapshot(m, snapshots)])
    assert [r["layer"] for r in res.history] == [0.0, 0.0, 1.0, 1.0]  # the layer each epoch trained
    w0 = [s[0] for s in snapshots]
    w1 = [s[1] for s in snapshots]
    assert not torch.equal(w0[0], w0[1]) and torch.equal(w0[1], w0[2]) and torch.equal(w0[2], w0[3])
    assert torch.equal(w1[0], w1[1]) and not torch.equal(w1[1], w1[2]) and not torch.equal(w1[2], w1[3])
    assert m.sample(4, steps=10).shape == (4, 64)


class _Snapshot(trainer.Callback):
    def __init__(self, m, out):
        self.m, self.out = m, out

    def on_epoch_end(self, state, row):
        self.out.append([r.W.detach().clone() for r in self.m.rbms])


def test_binarize_stage_is_seeded_and_validated():
    from neuroplastic import experiment

    cfg = {"learner": "rbm", "dataset": "digits", "epochs": 1, "params": {"n_hidden": 8, "ais": "none"},
           "protocol": {"binarize": {"mode": "stochastic", "seed": 3}, "probe": {"epochs": 1}}}
    _, b1, _ = experiment.build(cfg)
    _, b2, _ = experiment.build(dict(cfg, seed=5))
    _, b3, _ = experiment.build(cfg)
    assert set(b1.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(b1.train.x, b3.train.x) and torch.equal(b1.val.x, b3.val.x)
    assert torch.equal(b1.test.x, b2.test.x)  # the run seed does not change the binary test set
    with pytest.raises(experiment.ConfigError, match="protocol.binarize.mode"):
        experiment.validate(dict(cfg, protocol={"binarize": {"mode": "fuzzy"}}))
    with pytest.raises(experiment.ConfigError, match="exclude each other"):
        experiment.build(dict(cfg, normalize=True))


def test_bernoulli_rbm_estimator_api_round_trips():
    import pickle

    import numpy as np

    from neuroplastic.boltzmann import BernoulliRBM

    X = (np.random.default_rng(0).random((300, 16)) < 0.3).astype(np.float32)
    est = BernoulliRBM(n_components=8, n_iter=3, batch_size=20, random_state=0)
    assert est.fit(X) is est and est.partial_fit(X[:20]) is est
    assert est.transform(X).shape == (300, 8) and isinstance(est.transform(X), np.ndarray)
    assert isinstance(est.transform(torch.tensor(X)), torch.Tensor)
    assert est.components_.shape == (8, 16) and est.sample(5, n_steps=3).shape == (5, 16)
    assert est.score_samples(X).shape == (300,) and est.gibbs(X[:4]).shape == (4, 16)
    clone = pickle.loads(pickle.dumps(est))
    assert np.array_equal(clone.transform(X), est.transform(X))
    clone.partial_fit(X[:20]), est.partial_fit(X[:20])
    assert np.array_equal(clone.transform(X), est.transform(X))  # generator and chains survive the pickle
    params = est.get_params()
    assert params["n_components"] == 8 and BernoulliRBM(**params).get_params() == params
    assert est.set_params(learning_rate=0.1) is est and est.learning_rate == 0.1
    with pytest.raises(ValueError, match="unknown parameter"):
        est.set_params(n_hidden=3)
    same = BernoulliRBM(n_components=8, n_iter=3, batch_size=20, random_state=0).fit(X)
    again = BernoulliRBM(n_components=8, n_iter=3, batch_size=20, random_state=0).fit(X)
    assert np.array_equal(same.components_, again.components_)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        BernoulliRBM(n_components=2).fit(X * 3)


def test_peer_timing_runs_scikit_learn_on_the_same_array():
    pytest.importorskip("sklearn")
    import numpy as np

    from neuroplastic.boltzmann.peers import sklearn_epoch_seconds

    out = sklearn_epoch_seconds(np.random.default_rng(0).random((200, 16), dtype=np.float32), 8, 20, 0.01, 0)
    assert out["sklearn_epoch_seconds"] > 0 and out["sklearn_f64_epoch_seconds"] > 0
    assert out["sklearn_threads"] == torch.get_num_threads()


def test_generated_boltzmann_targets():
    from neuroplastic.data.generated import ISING_EDGES, bars_and_stripes, ising_target, make_bars_and_stripes

    pats = bars_and_stripes(3)
    assert pats.shape == (14, 9) and len(pats.unique(dim=0)) == 14
    x, y = make_bars_and_stripes(140, seed=0)
    assert torch.equal(torch.bincount((x.long() << torch.arange(9)).sum(1)).clamp(max=1).sum(), torch.tensor(14))
    assert int(y.sum()) == 60  # 6 stripe patterns x 10
    w, _b = ising_target()
    assert torch.equal(w, w.T) and int((w != 0).sum()) == 2 * len(ISING_EDGES)
    mask = (w != 0).float()
    assert len(bm.graph_colouring(mask)) >= 3  # odd loops: not bipartite


def test_sparsity_penalty_pulls_the_mean_hidden_activity_to_its_target():
    from neuroplastic import learners
    from neuroplastic.boltzmann.machines import sparsity_grad

    g = torch.Generator().manual_seed(0)
    rbm = bm.RBM(30, 12, init_std=0.1, generator=g)
    rbm.set_offsets(lam=torch.full((12,), 0.5))
    v = (torch.rand(200, 30, generator=g) < 0.3).float()
    rbm.set_offsets(mu=v.mean(0))
    opt = torch.optim.SGD(rbm.parameters(), lr=1.0)
    q = torch.full((12,), 0.05)
    start = rbm.p_h(v).mean(0).detach()
    assert float((start - 0.05).abs().min()) > 0.3  # far from the target (about 0.5) at the start
    for _ in range(300):  # the penalty alone
        with torch.no_grad():
            for p in rbm.parameters():
                p.grad = torch.zeros_like(p)
            sparsity_grad(rbm, v, rbm.p_h(v), q, 0.05, 1.0, decay=0.5)
        opt.step()
    torch.testing.assert_close(rbm.p_h(v).mean(0).detach(), torch.full((12,), 0.05), atol=5e-3, rtol=0)
    # the learner validates it before training
    with pytest.raises(ValueError, match="sparsity_target"):
        learners.get("rbm", in_shape=(1, 5, 6), sparsity_target=1.5)
