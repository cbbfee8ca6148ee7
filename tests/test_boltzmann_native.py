"""The native route of the RBM's PCD-1 step (boltzmann.native): its random numbers, the step against the library's
step written out with the same samples, when it applies, and that it learns."""

import copy
import os
import sys

import pytest
import torch

from neuroplastic.boltzmann import machines as bm
from neuroplastic.boltzmann import native

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernels not built (no C compiler)")

_GOLDEN, _M1, _M2, _MASK = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, (1 << 64) - 1


def _uniform(key: int, i: int) -> float:
    """u_i of _native.c written out: SplitMix64's finaliser of key + (i + 1) * golden, top 24 bits / 2^24."""
    z = (key + (i + 1) * _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return ((z ^ (z >> 31)) >> 40) / 2**24


def _bernoulli(p: torch.Tensor, key: int) -> torch.Tensor:
    s = torch.empty(p.shape, dtype=torch.uint8)
    native._native.bernoulli(p.data_ptr(), p.numel(), key, s.data_ptr())
    return s


def test_native_bernoulli_is_the_documented_counter_stream():
    p = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    key = 123456789
    s = _bernoulli(p, key)
    expected = torch.tensor([_uniform(key, i) < float(p[i]) for i in range(1000)], dtype=torch.uint8)
    assert torch.equal(s, expected)
    assert torch.equal(s, _bernoulli(p, key)) and not torch.equal(s, _bernoulli(p, key + 1))


def test_native_bernoulli_frequencies_match_p():
    p = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0]).repeat(40_000, 1).contiguous()
    s = _bernoulli(p, 7).float().mean(0)
    assert torch.allclose(s, p[0], atol=0.006)  # 4 standard errors at p = 0.5
    a = torch.tensor([-3.0, 0.0, 2.0]).repeat(40_000, 1).contiguous()
    t = torch.empty(a.shape, dtype=torch.uint8)
    native._native.bernoulli_logit(a.data_ptr(), a.numel(), 9, t.data_ptr())
    assert torch.allclose(t.float().mean(0), torch.sigmoid(a[0]), atol=0.006)


def _machine(d: int = 20, h: int = 12, chains: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rbm = bm.RBM(d, h, init_std=0.3, generator=g)
    with torch.no_grad():
        rbm.b.normal_(0, 0.5, generator=g)
        rbm.c.normal_(0, 0.5, generator=g)
        rbm.mu.uniform_(0.1, 0.9, generator=g)
        rbm.lam.uniform_(0.1, 0.9, generator=g)
    s = bm.PCD(d, h, n_chains=chains)
    s.v.copy_((torch.rand(chains, d, generator=g) < 0.4).float())
    s.ph.copy_(torch.rand(chains, h, generator=g))
    s.ready.fill_(True)
    return rbm, s


@pytest.mark.parametrize("h,nu", [(12, 0.1), (16, 0.1), (37, 0.1), (37, 0.0)])
def test_native_step_equals_the_library_step_with_the_same_samples(h, nu):
    """The fused step against the library's pieces (p_h, the centred rule, SGD, set_offsets) given the same chain
    samples, drawn here with the step's keys: every parameter, offset and chain state agrees to float rounding (with
    the offsets fixed too, nu = 0)."""
    rbm, sampler = _machine(h=h)
    ref, ref_s = copy.deepcopy(rbm), copy.deepcopy(sampler)
    lr = 0.05
    gens = [torch.Generator().manual_seed(3) for _ in range(2)]
    data = (torch.rand(3, 5, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    sgd = torch.optim.SGD(rbm.parameters(), lr=lr)
    for v in data:
        assert native.sgd_rate(rbm, sampler, sgd, v, None) == lr
        bm.rbm_update(rbm, sampler, sgd, v, gens[0], offset_rate=nu)  # the native route, then the offsets' move
        k_hidden, k_visible = native.step_keys(gens[1])
        with torch.no_grad():
            hc = _bernoulli(ref_s.ph, k_hidden).float()
            a_v = torch.addmm(torch.addmv(ref.b, ref.W, ref.lam, alpha=-1), hc, ref.W.T)
            vm = torch.empty(a_v.shape, dtype=torch.uint8)
            native._native.bernoulli_logit(a_v.data_ptr(), a_v.numel(), k_visible, vm.data_ptr())
            vm = vm.float()
            ph, phm = ref.p_h(torch.cat([v, vm])).split([len(v), len(vm)])
            ref.accumulate_grad(v, vm, ph, phm)
        opt.step()
        if nu > 0:
            with torch.no_grad():
                ref.set_offsets(torch.lerp(ref.mu, v.mean(0), nu), torch.lerp(ref.lam, ph.mean(0), nu))
        ref_s.keep(vm, phm)
        assert torch.equal(sampler.v, ref_s.v)
        for name, t in rbm.state_dict().items():
            assert torch.allclose(t, ref.state_dict()[name], atol=2e-6, rtol=1e-5), name
        assert torch.allclose(sampler.ph, ref_s.ph, atol=2e-6)


def test_native_step_does_not_depend_on_the_number_of_threads(monkeypatch):
    """Each thread's share is fixed by the shapes and every value is summed in one order: 1, 2, 3 and 5 threads give
    bit-identical steps (shapes with several blocks of 16 units on each side, some threads idle at 5)."""
    results = []
    for nt in (1, 2, 3, 5):
        monkeypatch.setattr(native, "threads", lambda nt=nt: nt)
        rbm, sampler = _machine(d=50, h=37, chains=9)
        gen = torch.Generator().manual_seed(4)
        data = (torch.rand(4, 11, 50, generator=torch.Generator().manual_seed(5)) < 0.3).float()
        for v in data:
            assert native.pcd_step(rbm, sampler, v, 0.05, 0.1, gen)
        results.append([t.clone() for t in (*rbm.state_dict().values(), sampler.v, sampler.ph)])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.skipif(sys.platform != "linux" or "OpenMP" not in torch.__config__.parallel_info(),
                    reason="torch without an OpenMP runtime, or not Linux: the step runs on one thread")
def test_native_step_runs_on_torchs_openmp_runtime():
    """The step's threads are torch's OpenMP team (no second pool competing for the cores): the runtime found is the
    one in torch's folder where torch brings its own."""
    path = native._native.openmp()
    assert path is not None and os.path.basename(path).startswith(("libgomp", "libomp", "libiomp"))
    torch_dir = os.path.dirname(torch.__file__)
    lib = os.path.join(torch_dir, "lib")
    if os.path.isdir(lib) and any(f.startswith(("libgomp", "libomp", "libiomp")) for f in os.listdir(lib)):
        assert os.path.realpath(path).startswith(os.path.realpath(torch_dir))


def test_native_step_applies_only_where_it_is_the_same_update():
    rbm, sampler = _machine()
    v = (torch.rand(5, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    sgd = torch.optim.SGD(rbm.parameters(), lr=0.1)
    assert native.sgd_rate(rbm, sampler, sgd, v, None) == 0.1
    assert native.sgd_rate(rbm, sampler, torch.optim.SGD(rbm.parameters(), lr=0.1, momentum=0.5), v, None) is None
    assert native.sgd_rate(rbm, sampler, torch.optim.SGD(rbm.parameters(), lr=0.1, weight_decay=1e-4), v,
                           None) is None
    assert native.sgd_rate(rbm, sampler, torch.optim.Adam(rbm.parameters()), v, None) is None
    assert native.sgd_rate(rbm, sampler, sgd, v, (torch.zeros(12), 0.1, 0.1)) is None
    assert native.sgd_rate(rbm, sampler, sgd, v.double(), None) is None
    cd = bm.PCD(20, 12, n_chains=7, persistent=False)
    assert native.sgd_rate(rbm, cd, sgd, v, None) is None
    fresh = bm.PCD(20, 12, n_chains=7)  # chains not started yet: the first step starts them on the torch route
    assert native.sgd_rate(rbm, fresh, sgd, v, None) is None
    before = copy.deepcopy(rbm.state_dict())
    assert native.pcd_step(rbm, sampler, v * 0.5, 0.1, 0.01, None) is False  # grey levels: refused, nothing changed
    assert all(torch.equal(t, before[k]) for k, t in rbm.state_dict().items())


def test_native_and_torch_routes_learn_the_same_distribution(monkeypatch):
    """Both routes of rbm_update fit a small RBM to two noisy prototypes: exact log-likelihoods (4 seeds each) far above
    the independent-units model and close to each other (the routes draw different samples)."""
    g = torch.Generator().manual_seed(0)
    proto = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]]).float()
    data = proto[torch.randint(2, (4000,), generator=g)]
    data = (data + (torch.rand(data.shape, generator=g) < 0.05).float()) % 2
    m = data.mean(0)
    independent = float((data * m.log() + (1 - data) * (1 - m).log()).sum(1).mean())  # about -5.5 nats
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("NEUROPLASTIC_NATIVE", flag)
        lls = []
        for seed in range(4):
            rbm = bm.RBM(8, 6, init_std=0.01, generator=torch.Generator().manual_seed(seed))
            bm.init_from_data(rbm, data, centred=True)
            sampler = bm.PCD(8, 6, n_chains=50)
            opt = torch.optim.SGD(rbm.parameters(), lr=0.1)
            gen = torch.Generator().manual_seed(10 + seed)
            for _ in range(10):
                for v in data.split(50):
                    bm.rbm_update(rbm, sampler, opt, v, gen, offset_rate=0.01)
            with torch.no_grad():
                lls.append(float((-rbm.free_energy(data)).mean() - bm.exact_log_z_rbm(rbm)))
        out[flag] = sum(lls) / len(lls)
    assert out["1"] > independent + 2 and out["0"] > independent + 2
    assert abs(out["1"] - out["0"]) < 0.5

