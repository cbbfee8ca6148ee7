"""Hebbian rules, layers and learners: hand-computed tiny cases, conv vs naive reference, contracts."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from neuroplastic.hebbian import rules
from neuroplastic.hebbian.layers import HebbConv2d, HebbLinear, Triangle
from neuroplastic.hebbian.learners import HebbianCNN, HebbianCNNBP
from neuroplastic.hebbian.models import PresetInfo, StageSpec, build


# ---------------------------------------------------------------------------------------------------
# rule math on 1–3 units, by hand
def test_hard_wta_factors_by_hand():
    p, c = rules.HardWTA().factors(torch.tensor([[1.0, 3.0], [2.0, -1.0]]), None)
    assert p.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert c.tolist() == [1.0, 1.0]


def test_softhebb_factors_by_hand():
    u = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]; unit 1 wins
    p, c = rules.SoftHebb(t_inv=1.0).factors(u, u)
    assert torch.allclose(p, torch.tensor([[-0.25, 0.75]]))
    assert torch.allclose(c, torch.tensor([0.0, 0.75 * math.log(3.0)]))
    # temperature: t_inv = 2 -> softmax of [0, 2 ln 3] = [1/10, 9/10]
    p2, _ = rules.SoftHebb(t_inv=2.0).factors(u, u)
    assert torch.allclose(p2, torch.tensor([[-0.1, 0.9]]))


def test_softhebb_adaptive_rate_by_hand():
    w = torch.tensor([[3.0, 4.0], [0.6, 0.8]])  # norms 5 and 1
    r = rules.SoftHebb().rate(w)
    assert torch.allclose(r, torch.tensor([2.0, 1e-5]), atol=1e-6)
    assert rules.SoftHebb(adaptive=False).rate(w) is None


def test_bcm_threshold_and_update_by_hand():
    rule = rules.BCM(2, theta_decay=0.5)
    u = torch.tensor([[2.0, 1.0], [0.5, 1.0]])  # winners: unit 0, then unit 1
    p, c = rule.factors(u, u)
    # masked y = [[2, 0], [0, 1]]; mean y^2 = [2, 0.5]; theta = 0.5 * [2, 0.5] = [1, 0.25]
    assert torch.allclose(rule.theta, torch.tensor([1.0, 0.25]))
    assert torch.allclose(p, torch.tensor([[2.0 * (2 - 1), 0.0], [0.0, 1.0 * (1 - 0.25)]]))
    assert c.tolist() == [0.0, 0.0]


def test_krotov_ranking_by_hand():
    rule = rules.KrotovHopfield(p=3, k=2, delta=0.4)
    u = torch.tensor([[0.1, 0.9, 0.5]])
    g, c = rule.factors(u, u)
    assert torch.allclose(g, torch.tensor([[0.0, 1.0, -0.4]]))
    assert torch.allclose(c, torch.tensor([0.0, 0.9, -0.2]))
    w = torch.tensor([[-2.0, 0.5]])
    assert torch.allclose(rule.current_weight(w), torch.tensor([[-4.0, 0.25]]))


def test_oja_and_plain_hebb_by_hand():
    y = torch.tensor([[2.0]])
    p, c = rules.Oja().factors(y, y)
    assert p.tolist() == [[2.0]] and c.tolist() == [4.0]
    p, c = rules.PlainHebb(decay=0.1).factors(y, y)
    assert p.tolist() == [[2.0]] and torch.allclose(c, torch.tensor([0.1]))


def test_linear_layer_update_by_hand_and_sign_convention():
    """One unit, Oja: Δw = y x - y² w with y = w·x; normalised by max|Δw|; grad = -Δw; SGD adds +η Δw."""
    layer = HebbLinear(2, 1, rules.Oja(), init="normal")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0]]))
    x = torch.tensor([[1.0, 2.0]])
    # y = 1; Δw = [1, 2] - 1 * [1, 0] = [0, 2]; / max = [0, 1]
    layer.plastic = True
    layer.train()
    layer(x)
    assert torch.allclose(layer.weight.grad, torch.tensor([[0.0, -1.0]]))
    opt = torch.optim.SGD([layer.weight], lr=0.1)
    opt.step()
    assert torch.allclose(layer.weight.detach(), torch.tensor([[1.0, 0.1]]))


def test_hard_wta_only_updates_winners():
    torch.manual_seed(0)
    layer = HebbLinear(6, 4, rules.HardWTA(), init="normal")
    with torch.no_grad():
        layer.weight.copy_(torch.eye(4, 6) * 3)
    x = torch.zeros(3, 6)
    x[0, 0], x[1, 2], x[2, 0] = 1.0, 1.0, 2.0  # units 0 and 2 win; 1 and 3 never
    layer.plastic = True
    layer(x)
    g = layer.weight.grad
    assert g[1].abs().sum() == 0 and g[3].abs().sum() == 0
    assert g[0].abs().sum() > 0 and g[2].abs().sum() > 0
    assert layer.win_counts.tolist() == [2.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("update_dtype", [None, "bfloat16"])
def test_softhebb_converges_to_unit_norm_on_random_data(update_dtype):
    g = torch.Generator().manual_seed(0)
    layer = HebbLinear(8, 4, rules.SoftHebb(t_inv=1.0), init="softhebb", generator=g, update_dtype=update_dtype)
    assert layer.weight.norm(dim=1).min() > 10  # starts near 25
    opt = torch.optim.SGD([layer.weight], lr=0.1)
    layer.plastic = True
    for _ in range(800):
        opt.zero_grad()
        layer(torch.randn(16, 8, generator=g))
        opt.step()
    norms = layer.weight.detach().norm(dim=1)
    assert torch.allclose(norms, torch.ones(4), atol=0.1), norms


# ---------------------------------------------------------------------------------------------------
# conv update = naive reference
def _naive_conv_dw(layer: HebbConv2d, x: torch.Tensor) -> torch.Tensor:
    """Per-position loops: currents, factors, Σ p·patch - c·w, normalised, rate-scaled."""
    xp = layer.pad(x)
    k, s, G = layer.kernel_size, layer.stride, layer.groups
    cin_g, cout_g = layer.in_channels // G, layer.out_channels // G
    w = layer._current_weight()
    n, _, hp, wp = xp.shape
    ho, wo = (hp - k) // s + 1, (wp - k) // s + 1
    u = torch.zeros(n, layer.out_channels, ho, wo)
    for b in range(n):
        for o in range(layer.out_channels):
            gi = o // cout_g
            for i in range(ho):
                for j in range(wo):
                    patch = xp[b, gi * cin_g:(gi + 1) * cin_g, i * s:i * s + k, j * s:j * s + k]
                    val = (patch * w[o]).sum()
                    if layer.cosine:
                        val = val / patch.norm().clamp_min(1e-12)
                    u[b, o, i, j] = val
    y = u
    if layer.dog is not None:  # surround: zero-padded depthwise correlation with the DoG kernel, by loops
        kd = layer.dog[0, 0]
        r = kd.shape[-1] // 2
        up = torch.nn.functional.pad(u, (r, r, r, r))
        y = torch.stack([torch.stack([(up[:, :, i:i + 2 * r + 1, j:j + 2 * r + 1] * kd).sum((-2, -1))
                                      for j in range(wo)], -1) for i in range(ho)], -2)
        if layer.surround == "response":  # the competition runs on the filtered response too
            u = y
    p, c = layer.rule.factors(u, y)
    corr = torch.zeros_like(layer.weight)
    for b in range(n):
        for o in range(layer.out_channels):
            gi = o // cout_g
            for i in range(ho):
                for j in range(wo):
                    corr[o] += p[b, o, i, j] * xp[b, gi * cin_g:(gi + 1) * cin_g, i * s:i * s + k, j * s:j * s + k]
    dw = rules.normalize_update(corr - c.view(-1, 1, 1, 1) * layer.weight)
    r = layer.rule.rate(layer.weight)
    return dw if r is None else dw * r.view(-1, 1, 1, 1)


@pytest.mark.parametrize("kw", [
    {"rule": "softhebb", "padding": 1, "stride": 1, "groups": 1, "cosine": False, "dog": None},
    {"rule": "hard", "padding": 2, "stride": 2, "groups": 1, "cosine": True, "dog": (3, 1.0, 1.2)},
    {"rule": "bcm", "padding": 1, "stride": 1, "groups": 1, "cosine": True, "dog": (3, 0.8, 1.1), "surround": "rule"},
    {"rule": "oja", "padding": 0, "stride": 1, "groups": 2, "cosine": False, "dog": None},
    {"rule": "krotov", "padding": 1, "stride": 1, "groups": 1, "cosine": False, "dog": None},
])
@pytest.mark.parametrize("path", ["conv2d_weight", "unfold_gemm"])
def test_conv_update_equals_naive_reference(kw, path, monkeypatch):
    from neuroplastic.hebbian import layers

    # both correlation paths of layers.conv_correlation (normally the GEMM from 256-long patches)
    monkeypatch.setattr(layers, "UNFOLD_MIN_PATCH", 10**9 if path == "conv2d_weight" else 1)
    kw = dict(kw)
    g = torch.Generator().manual_seed(1)
    cout = 4
    layer = HebbConv2d(2, cout, 3, rules.make_rule(kw.pop("rule"), cout), init="normal", generator=g, **kw)
    x = torch.randn(2, 2, 5, 5, generator=g)
    with torch.no_grad():
        ref = _naive_conv_dw(copy.deepcopy(layer), x)  # a copy: BCM's threshold is state the rule updates
        dw = -layer.plasticity(layer.pad(x), layer.currents(layer.pad(x)))
    assert torch.allclose(dw, ref, atol=1e-5)
    assert torch.allclose(layer.weight.grad, -ref, atol=1e-5)


@pytest.mark.parametrize("rule", ["hard", "bcm"])
def test_winner_only_scatter_equals_dense_correlation(rule):
    """Hard-WTA and BCM(wta) factors are zero off the winners: the scatter-add path equals the dense sum."""
    g = torch.Generator().manual_seed(3)
    conv = HebbConv2d(3, 5, 3, rules.make_rule(rule, 5), padding=1, init="normal", generator=g)
    lin = HebbLinear(7, 5, rules.make_rule(rule, 5), init="normal", generator=g)
    for layer, x in ((conv, torch.randn(2, 3, 6, 6, generator=g)), (lin, torch.randn(9, 7, generator=g))):
        assert layer.rule.winner_only
        with torch.no_grad():
            xp = layer.pad(x) if layer is conv else x
            u = layer.rows(layer.currents(xp)) if layer is conv else x @ layer.weight.t()
            p, _ = layer.rule.factors(u, u)
            sparse = layer.correlate_winners(xp, p, u.argmax(dim=1))
            assert torch.allclose(sparse, layer.correlate(xp, p), atol=1e-5)


def test_bcm_conv_matches_naive_reference():
    g = torch.Generator().manual_seed(2)
    mk = lambda: HebbConv2d(1, 3, 3, rules.BCM(3, 0.3), padding=1, init="normal",
                            generator=torch.Generator().manual_seed(5))
    a, b = mk(), mk()
    x = torch.randn(2, 1, 4, 4, generator=g)
    with torch.no_grad():
        ref = _naive_conv_dw(a, x)
        dw = -b.plasticity(b.pad(x), b.currents(b.pad(x)))
    assert torch.allclose(dw, ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# options
def test_triangle_and_dog():
    t = Triangle(0.7)
    u = torch.tensor([[[[1.0]], [[3.0]]]], requires_grad=True)  # mean 2 -> [0, 1]
    y = t(u)
    assert torch.allclose(y.flatten(), torch.tensor([0.0, 1.0]))
    y.sum().backward()
    assert torch.isfinite(u.grad).all()
    k = rules.dog_kernel(5, 1.2, 1.3)
    assert k.shape == (5, 5) and abs(float(k[2, 2]) - 1.0) < 1e-6 and float(k[0, 0]) < 0


def test_dog_kernel_closed_form():
    """Each Gaussian normalised by 2πσ² (the authors' create_sm_kernel), centre scaled to 1: on a 3×3 grid with
    σ 1.0/1.2 the edge value is (e^{-1/2}/2π − e^{-1/2.88}/2.88π) / (1/2π − 1/2.88π), and the kernel is positive."""
    k = rules.dog_kernel(3, 1.0, 1.2)
    num = math.exp(-0.5) / (2 * math.pi) - math.exp(-1 / 2.88) / (2 * math.pi * 1.44)
    den = 1 / (2 * math.pi) - 1 / (2 * math.pi * 1.44)
    assert abs(float(k[0, 1]) - num / den) < 1e-5
    assert float(k.min()) > 0 and abs(float(k.sum()) - 2.7923) < 1e-3
    with pytest.raises(ValueError, match="odd"):
        rules.dog_kernel(4, 1.0, 1.2)
    z = rules.dog_kernel(5, 1.2, 1.3, normalise="sum")  # each Gaussian divided by its sum: zero-sum kernel
    assert abs(float(z.sum())) < 1e-5 and abs(float(z[2, 2]) - 1.0) < 1e-6


def test_surround_shapes_the_response_and_the_competition():
    """With a DoG kernel the layer's output is the DoG-filtered currents, and the winners the rule sees come from it."""
    g = torch.Generator().manual_seed(4)
    a = HebbConv2d(2, 3, 3, rules.HardWTA(), padding=1, init="normal", dog=(3, 1.0, 1.2), generator=g)
    b = HebbConv2d(2, 3, 3, rules.HardWTA(), padding=1, init="normal", generator=torch.Generator().manual_seed(4))
    x = torch.randn(1, 2, 6, 6, generator=g)
    with torch.no_grad():
        u = b(x)
        kd = rules.dog_kernel(3, 1.0, 1.2).view(1, 1, 3, 3).expand(3, 1, 3, 3)
        assert torch.allclose(a(x), torch.nn.functional.conv2d(u, kd, padding=1, groups=3), atol=1e-5)
        a.plasticity(a.pad(x), a(x))
    assert torch.equal(a.win_counts, torch.bincount(a(x).argmax(1).flatten(), minlength=3).double())


def test_dale_constraint_holds_after_training():
    m = HebbianCNN((1, 8, 8), 10, preset="softhebb", width=0.0625, dale=0.8, seed=0)
    m.configure(1, 5)
    for _ in range(5):
        m.train_step(torch.rand(4, 1, 8, 8), None)
    for _, layer, _ in m.net.hebb_layers():
        if layer.dale_sign is not None:
            s = layer.dale_sign.view(1, -1, 1, 1)
            assert (s * layer.weight >= 0).all()


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="allowed"):
        HebbianCNN((1, 8, 8), 10, preset="nope")
    with pytest.raises(ValueError, match="allowed"):
        rules.make_rule("nope", 3)
    with pytest.raises(ValueError, match="t_inv"):
        rules.SoftHebb(t_inv=0)
    with pytest.raises(ValueError, match="groups"):
        HebbConv2d(3, 4, 3, rules.HardWTA(), groups=2)


@pytest.mark.parametrize("preset,shape", [("softhebb", (1, 8, 8)), ("optimal", (1, 28, 28)),
                                          ("depthwise", (1, 28, 28)), ("residual", (1, 8, 8)),
                                          ("stl10", (3, 32, 32)), ("krotov", (1, 8, 8))])
def test_presets_adapt_to_input_shape(preset, shape):
    m = HebbianCNN(shape, 10, preset=preset, width=0.05, seed=0)
    m.configure(1, 4)
    m.train_step(torch.rand(6, *shape), None)
    m.end_epoch(0)
    m.eval()
    f = m.features(torch.rand(3, *shape))
    assert f.shape[0] == 3 and f.shape[1] == m.net.out_features and torch.isfinite(f).all()


def test_zca_stage_is_fitted_on_the_training_split_only_and_whitens():
    """The ZCA data stage fits on seeded training images only (a changed test split does not change it), whitens
    the training split to covariance ≈ I, applies the same map to every split, and refits identically."""
    from neuroplastic.data import ArrayDataset, DataBundle
    from neuroplastic.data.transforms import zca_stage

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(48, 48, generator=g)

    def bundle(test_shift: float) -> DataBundle:
        x = (torch.randn(600, 48, generator=torch.Generator().manual_seed(1)) @ mix).view(600, 3, 4, 4)
        y = torch.zeros(600, dtype=torch.long)
        return DataBundle("toy", ArrayDataset(x[:500].clone(), y[:500]), None,
                          ArrayDataset(x[500:].clone() + test_shift, y[500:]), 10)

    b1, b2 = bundle(0.0), bundle(5.0)
    raw_test = b1.test.x.clone()
    z1 = zca_stage(b1, samples=5000, seed=0)  # more than there are: every training image
    z2 = zca_stage(b2, samples=5000, seed=0)
    assert torch.equal(z1.W_, z2.W_) and torch.equal(z1.mean_, z2.mean_)  # the test split plays no part
    cov = torch.cov(b1.train.x.flatten(1).t())
    assert torch.allclose(cov, torch.eye(48), atol=0.05)
    assert torch.allclose(b1.test.x.flatten(1), (raw_test.flatten(1) - z1.mean_) @ z1.W_, atol=1e-4)


def test_nimmo_presets_on_colour_images_whiten_by_default_through_the_protocol():
    """``input_zca`` (the preset's paper whitens colour inputs: Nimmo's presets, not SoftHebb) is the default of
    ``protocol.zca``; ``false`` turns the stage off."""
    from neuroplastic import experiment

    m = HebbianCNN((3, 8, 8), 10, preset="optimal", width=0.05)
    assert m.input_zca and not HebbianCNN((1, 8, 8), 10, preset="optimal", width=0.05).input_zca
    assert not HebbianCNN((3, 8, 8), 10, preset="softhebb", width=0.05).input_zca
    cfg = experiment.validate({"learner": "hebbian-optimal"})
    assert experiment.zca_settings(cfg, m) == experiment.ZCA_DEFAULTS
    off = experiment.validate({"learner": "hebbian-optimal", "protocol": {"zca": False}})
    assert experiment.zca_settings(off, m) is None


def test_updates_detached_and_checkpoint_roundtrip():
    m = HebbianCNN((1, 8, 8), 10, preset="bcm", width=0.1, seed=0)
    m.configure(1, 3)
    m.train_step(torch.rand(5, 1, 8, 8), None)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    m.eval(), m2.eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(m.features(x), m2.features(x))
    assert all(not p.requires_grad or p.grad is None or not p.grad.requires_grad for p in m.parameters())


def test_backprop_baseline_shares_architecture_and_learns():
    torch.manual_seed(0)
    bp = HebbianCNNBP((1, 8, 8), 3, preset="softhebb", width=0.0625, seed=0)
    hb = HebbianCNN((1, 8, 8), 3, preset="softhebb", width=0.0625, seed=0)
    assert [p.shape for p in bp.net.parameters()] == [p.shape for p in hb.net.parameters()]
    bp.configure(1, 1)
    x, y = torch.rand(30, 1, 8, 8), torch.arange(30) % 3
    x[y == 1, :, :4] += 1.0
    x[y == 2, :, 4:] += 1.0
    first = bp.train_step(x, y)["loss"]
    for _ in range(30):
        last = bp.train_step(x, y)["loss"]
    assert last < first


# ---------------------------------------------------------------------------------------------------
# a 2-layer Hebbian net + probe beats a random-weight net of the same shape on the embedded digits
def test_two_layer_hebbian_beats_random_on_digits():
    from neuroplastic import data
    from neuroplastic.probe import fit_probe
    from neuroplastic.trainer import fit

    bundle = data.prepare("digits", val=0.1, seed=0)
    spec = PresetInfo([StageSpec(16, 3, 1, 0.7, ("max", 2, 2, 0), "softhebb", {"t_inv": 1.0}, 0.3),
                       StageSpec(48, 3, 1, 1.0, ("avg", 2, 2, 0), "softhebb", {"t_inv": 4.0}, 0.075)],
                      probe_epochs=10)
    accs = {}
    for trained in (True, False):
        torch.manual_seed(0)
        m = HebbianCNN(bundle.in_shape, 10, preset="softhebb", seed=0)
        m.net = build(spec, bundle.in_shape, seed=0)
        if trained:
            accs[trained] = fit(m, bundle, epochs=1, batch_size=10, progress=False,
                                probe={"epochs": 10}).final["test_acc"]
        else:
            accs[trained] = fit_probe(m, bundle, progress=False, options={"epochs": 10})[0][-1]["test_acc"]
    assert accs[True] > accs[False] + 0.03, accs


def test_probe_flip_caches_mirrored_features():
    """``probe.flip`` caches the mirrored training images' features (different from the originals) and fits
    the probe on both views; it is refused for inputs that are not images."""
    from neuroplastic import data
    from neuroplastic.probe import cached_features, fit_probe

    bundle = data.prepare("digits", val=0.1, seed=0, limit_train=120, limit_test=40)
    m = HebbianCNN(bundle.in_shape, 10, preset="softhebb", width=0.0625, seed=0)
    f = cached_features(m, bundle.train.x)
    f_flip = cached_features(m, bundle.train.x.flip(-1))
    assert f.shape == f_flip.shape and not torch.allclose(f, f_flip)
    hist, _ = fit_probe(m, bundle, progress=False, options={"epochs": 2, "flip": True})
    assert len(hist) == 2 and 0.0 <= hist[-1]["test_acc"] <= 1.0
    flat = data.prepare("digits", val=0.1, seed=0, limit_train=120, limit_test=40)
    for ds in (flat.train, flat.val, flat.test):
        ds.x = ds.x.flatten(1)
    from neuroplastic import learners

    with pytest.raises(ValueError, match="probe.flip"):
        fit_probe(learners.get("rbm", in_shape=(64,), n_hidden=8), flat, progress=False, options={"flip": True})


def test_hflip_stage_mirrors_half_the_batch_reproducibly(tmp_path):
    """``hflip`` trains on randomly mirrored images drawn from the trainer's own seeded generator: two runs of
    one seed learn the same weights, a third without flips learns different ones, and the generator is part of
    the checkpoint. Non-image inputs are refused."""
    from neuroplastic import data
    from neuroplastic.trainer import CHECKPOINT, fit

    bundle = data.prepare("digits", val=0.1, seed=0, limit_train=64, limit_test=20)
    ws = []
    for i, flip in enumerate((True, True, False)):
        m = HebbianCNN(bundle.in_shape, 10, preset="softhebb", width=0.0625, seed=0)
        fit(m, bundle, epochs=1, batch_size=10, progress=False, hflip=flip, probe={"epochs": 1},
            checkpoint_dir=tmp_path / str(i))
        ws.append(next(iter(m.net.hebb_layers()))[1].weight.detach().clone())
    assert torch.equal(ws[0], ws[1]) and not torch.equal(ws[0], ws[2])
    assert torch.load(tmp_path / "0" / CHECKPOINT, weights_only=True)["aug_rng"] is not None
    flat = data.prepare("digits", val=0.1, seed=0, limit_train=64, limit_test=20)
    flat.train.x = flat.train.x.flatten(1)
    from neuroplastic import learners

    with pytest.raises(ValueError, match="hflip"):
        fit(learners.get("bp", in_shape=(64,), n_classes=10, arch="mlp", hidden=(8,)), flat, epochs=1,
            batch_size=10, progress=False, hflip=True)


def test_pictures_are_written(tmp_path, capsys, monkeypatch):
    from neuroplastic import data
    from neuroplastic.hebbian import viz

    bundle = data.prepare("digits", val=0.1, seed=0, limit_train=200, limit_test=50)
    m = HebbianCNN(bundle.in_shape, 10, preset="softhebb", width=0.0625, seed=0)
    m.configure(1, 10)
    for i in range(0, 100, 10):
        m.train_step(bundle.train.x[i:i + 10], None)
    rf = viz.receptive_fields(m, 1, units=[0, 1], steps=5)
    assert rf.shape == (2, 1, 8, 8) and rf.min() >= 0 and rf.max() <= 1
    monkeypatch.setattr(viz, "_umap_warned", False)  # said once per process: this test must see it
    out = viz.report_figures(m, bundle, tmp_path, rf_steps=5, max_points=50)
    for k in ("filters", "receptive_fields", "winners"):
        assert out[k].exists() and out[k].stat().st_size > 0
    try:
        import umap  # noqa: F401
    except ImportError:
        assert out["umap"] is None and "neuroplastic[viz]" in capsys.readouterr().err


def test_triangle_no_grad_fast_path_matches_the_gradient_safe_form():
    """Triangle(p) = ReLU(u − mean_c u)^p: the no-grad path equals the gradient-safe one, whose gradient is finite."""
    from neuroplastic.hebbian.layers import Triangle

    u = torch.randn(3, 6, 4, 4, generator=torch.Generator().manual_seed(0))
    u[:, :, 0, 0] = 0.0  # z = 0 exactly at some positions
    for p in (0.7, 1.4):
        with torch.no_grad():
            fast = Triangle(p)(u)
        ug = u.clone().requires_grad_()
        safe = Triangle(p)(ug)
        ref = torch.relu(u - u.mean(1, keepdim=True)) ** p
        assert torch.allclose(fast, ref) and torch.allclose(safe, ref)
        safe.sum().backward()
        assert torch.isfinite(ug.grad).all()


def test_max_pool_before_the_triangle_rectification_gives_the_same_output_and_gradient():
    """A stage pools Triangle's centred currents first and rectifies after: ReLU(z)^p is monotone, so
    maxpool(ReLU(z)^p) == ReLU(maxpool(z))^p, with and without a gradient."""
    u = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(1))
    pool = torch.nn.MaxPool2d(4, 2, 1)
    for p in (0.7, 1.0, 1.4):
        t = Triangle(p)
        with torch.no_grad():
            assert torch.equal(t.rectify(pool(t.center(u))), pool(t(u)))
        ua, ub = u.clone().requires_grad_(), u.clone().requires_grad_()
        t.rectify(pool(t.center(ua))).sum().backward()
        pool(t(ub)).sum().backward()
        assert torch.allclose(ua.grad, ub.grad, atol=1e-6)
    stage = build("softhebb", (3, 16, 16), width=0.125).stages[0]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(stage(x), stage.pool(stage.act(stage.conv(stage.bn(x)))))


def test_update_buffer_accumulates_without_aliasing():
    """plasticity() reuses a buffer for -Δw; a second call without zeroing the grad must add to it, not
    overwrite it (the buffer handed out as .grad is never the scratch of the next call)."""
    g = torch.Generator().manual_seed(7)
    mk = lambda: HebbConv2d(2, 4, 3, rules.make_rule("softhebb", 4), padding=1, init="normal",
                            generator=torch.Generator().manual_seed(4))
    a, b = mk(), mk()
    x1, x2 = torch.randn(2, 2, 5, 5, generator=g), torch.randn(2, 2, 5, 5, generator=g)
    with torch.no_grad():
        g1 = a.plasticity(a.pad(x1), a.currents(a.pad(x1))).clone()
        a.weight.grad = None
        g2 = a.plasticity(a.pad(x2), a.currents(a.pad(x2))).clone()
        b.plasticity(b.pad(x1), b.currents(b.pad(x1)))
        b.plasticity(b.pad(x2), b.currents(b.pad(x2)))
        b.plasticity(b.pad(x1), b.currents(b.pad(x1)))
    assert torch.allclose(b.weight.grad, 2 * g1 + g2, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_correlation_layouts_equal_weight_gradient(stride, monkeypatch):
    """conv_correlation is the conv weight gradient for p given as [N, C, H', W'] or as rows [N·H'·W', C],
    on both paths (strided-patch GEMM and conv2d_weight)."""
    from neuroplastic.hebbian import layers

    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 4, 7, 7, generator=g)
    shape = (5, 4, 3, 3)
    h2 = (7 - 3) // stride + 1
    p = torch.randn(3, 5, h2, h2, generator=g)
    ref = torch.nn.grad.conv2d_weight(x, shape, p, stride=stride)
    rows = p.permute(0, 2, 3, 1).reshape(-1, 5)
    for min_patch in (1, 10**9):
        monkeypatch.setattr(layers, "UNFOLD_MIN_PATCH", min_patch)
        assert torch.allclose(layers.conv_correlation(x, p, shape, stride), ref, atol=1e-5)
        for fmt in (torch.contiguous_format, torch.channels_last):  # a channels-last `out` is the GEMM's own output
            out = torch.full(shape, float("nan")).contiguous(memory_format=fmt)
            assert torch.allclose(layers.conv_correlation(x, rows, shape, stride, out=out), ref, atol=1e-5)
            assert torch.allclose(out, ref, atol=1e-5)


def test_channels_last_weight_helpers():
    """Conv weights are kept channels-last; the per-unit views, norms and max|·| read them without reshaping
    into the wrong order."""
    from neuroplastic.hebbian import layers

    g = torch.Generator().manual_seed(5)
    layer = HebbConv2d(3, 4, 3, rules.make_rule("softhebb", 4), padding=1, generator=g)
    w = layer.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    dense = w.detach().contiguous()
    assert torch.allclose(rules.unit_norms(w), dense.flatten(1).norm(dim=1))
    assert torch.equal(rules.max_abs(w), dense.abs().max())
    # unit_rows: each unit's values, in the (i, j, c) memory order, as a view of the weight
    rows_ = rules.unit_rows(w)
    assert rows_.data_ptr() == w.data_ptr()
    assert torch.equal(rows_, dense.permute(0, 2, 3, 1).reshape(4, -1))
    # a forward pass keeps the layout, so the rule's rows layout is a view of the currents
    u = layer(torch.randn(2, 3, 6, 6, generator=g))
    assert u.is_contiguous(memory_format=torch.channels_last)
    assert layer.rows(u).data_ptr() == u.data_ptr()
    assert layers.patch_rows(torch.arange(2 * 4 * 4.0).view(1, 2, 4, 4), 3, 3)[0, :4].tolist() == [0, 16, 1, 17]


def test_surround_presets():
    """``optimal`` filters only what the rule correlates (zero-sum kernel); ``optimal-ref`` and ``depthwise`` filter
    the response (the authors' code; kernel sums > 0); 1×1 layers never get a surround."""
    kinds = {}
    for preset in ("optimal", "optimal-ref", "depthwise"):
        net = build(preset, (3, 32, 32), width=0.0625)
        kinds[preset] = [(m.kernel_size, m.surround, None if m.dog is None else round(float(m.dog.sum()), 2))
                         for _, m, _ in net.hebb_layers()]
    assert all(s == "rule" and abs(tot) < 1e-3 for _, s, tot in kinds["optimal"])
    assert all(s == "response" and tot > 1.5 for _, s, tot in kinds["optimal-ref"])
    assert all((k == 1) == (s is None) for k, s, _ in kinds["depthwise"])
    stage = build("depthwise", (3, 32, 32), width=0.0625).stages[1]
    assert isinstance(stage.bn_pw, torch.nn.BatchNorm2d) and not stage.bn_pw.affine


# ---------------------------------------------------------------------------------------------------
# bfloat16 update product
@pytest.mark.parametrize("path", ["conv2d_weight", "unfold_gemm"])
def test_bfloat16_update_product_is_close_to_float32(path, monkeypatch):
    """``update_dtype='bfloat16'``: the correlation product is within bfloat16 rounding of the float32 one, comes
    back (or is written) in float32, and the weights stay float32; the rest of the update is unchanged."""
    from neuroplastic.hebbian import layers

    monkeypatch.setattr(layers, "UNFOLD_MIN_PATCH", 10**9 if path == "conv2d_weight" else 1)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 7, 7, generator=g).contiguous(memory_format=torch.channels_last)
    p = torch.randn(3 * 25, 8, generator=g)  # rows layout, 5×5 output positions
    ref = layers.conv_correlation(x, p, (8, 6, 3, 3))
    got = layers.conv_correlation(x, p, (8, 6, 3, 3), dtype=torch.bfloat16)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    err = (got - ref).abs().max() / ref.abs().max()
    assert 0 < err < 2e-2, err  # rounded (not exact), but only to bfloat16 precision
    out = torch.empty(8, 6, 3, 3).contiguous(memory_format=torch.channels_last)
    assert layers.conv_correlation(x, p, (8, 6, 3, 3), out=out, dtype=torch.bfloat16) is out
    assert torch.equal(out, got)

    for make in (lambda dt: HebbConv2d(6, 8, 3, rules.SoftHebb(), padding=1, init="normal",
                                       generator=torch.Generator().manual_seed(5), update_dtype=dt),
                 lambda dt: HebbLinear(6 * 49, 8, rules.SoftHebb(), init="normal",
                                       generator=torch.Generator().manual_seed(5), update_dtype=dt)):
        grads = {}
        for dt in (None, "bfloat16"):
            layer = make(dt)
            layer.plastic = True
            layer(x)
            assert layer.weight.dtype == layer.weight.grad.dtype == torch.float32
            grads[dt] = layer.weight.grad
        err = (grads["bfloat16"] - grads[None]).abs().max() / grads[None].abs().max()
        assert 0 < err < 3e-2, (type(layer).__name__, err)


def test_update_dtype_is_validated_and_reaches_every_layer():
    with pytest.raises(ValueError, match="update_dtype"):
        HebbianCNN((1, 8, 8), 10, preset="softhebb", width=0.1, update_dtype="float16")
    with pytest.raises(ValueError, match="update_dtype"):
        HebbLinear(4, 2, rules.Oja(), update_dtype=torch.float64)
    m = HebbianCNN((1, 8, 8), 10, preset="softhebb", width=0.1, update_dtype="bfloat16")
    assert [layer.update_dtype for _, layer, _ in m.net.hebb_layers()] == [torch.bfloat16] * 3
    assert "update_dtype=torch.bfloat16" in repr(m.net)



def test_missing_umap_is_said_once_per_process(capsys, monkeypatch):
    import builtins

    from neuroplastic.hebbian import viz

    real = builtins.__import__

    def no_umap(name, *a, **k):
        if name == "umap":
            raise ImportError("no umap")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    monkeypatch.setattr(viz, "_umap_warned", False)
    for _ in range(3):
        assert viz.plot_umap(torch.zeros(4, 2), torch.zeros(4), "unused.png") is None
    assert capsys.readouterr().err.count("UMAP pictures need") == 1
