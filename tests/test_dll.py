"""Contracts of the DLL package (Lv et al. 2025) and the predictive-coding baseline."""

import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import neuroplastic.dll.learners  # noqa: F401  (registers the chartext dataset)
from neuroplastic import experiment, learners
from neuroplastic.dll import DLLConv2d, DLLLinear, dll_mlp_sweep, to_dll
from neuroplastic.dll.layers import angle_deg
from neuroplastic.dll.models import DLLRNN
from neuroplastic.dll.pc import pc_relax, split_blocks
from neuroplastic.nn.archs import lv_cnn_cifar, lv_cnn_mnist


def _mlp(seed=0, sizes=(6, 5, 4, 3)):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _set_theta_to_w(net):
    for m in net:
        if isinstance(m, (DLLLinear, DLLConv2d)) and m.theta is not None:
            m.set_theta(m.weight.detach())


def _grads(net, x, y):
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_theta_equal_w_gives_backprop_mlp():
    plain = _mlp().double()
    dll = to_dll(plain, "learned", generator=torch.Generator().manual_seed(1)).double()
    _set_theta_to_w(dll)
    x, y = torch.randn(7, 6, dtype=torch.double), torch.randint(0, 3, (7,))
    gp, gd = _grads(plain, x, y), _grads(dll, x, y)
    for name, g in gp.items():
        torch.testing.assert_close(gd[name], g, rtol=1e-12, atol=1e-12)


def test_theta_equal_w_errors_are_minus_gradients():
    """Reference sweep with Θ = W: ξ_i = −∂L/∂u_i (per-sample loss) and ΔW = −∂L/∂W (mean loss)."""
    torch.manual_seed(0)
    ws = [torch.randn(5, 6, dtype=torch.double), torch.randn(4, 5, dtype=torch.double),
          torch.randn(3, 4, dtype=torch.double)]
    bs = [torch.randn(w.shape[0], dtype=torch.double) for w in ws]
    x, y = torch.randn(4, 6, dtype=torch.double), torch.tensor([0, 2, 1, 2])
    onehot = F.one_hot(y, 3).double()
    ref = dll_mlp_sweep(ws, bs, [None, ws[1], ws[2]], x, lambda u: onehot - u.softmax(1), torch.tanh,
                        lambda a: 1 - torch.tanh(a) ** 2)
    wp = [w.clone().requires_grad_(True) for w in ws]
    u1 = torch.tanh(x @ wp[0].t() + bs[0])
    u1.retain_grad()
    u2 = torch.tanh(u1 @ wp[1].t() + bs[1])
    u2.retain_grad()
    F.cross_entropy(u2 @ wp[2].t() + bs[2], y, reduction="sum").backward()
    torch.testing.assert_close(ref["xi"][1], -u1.grad)
    torch.testing.assert_close(ref["xi"][2], -u2.grad)
    for i in range(3):
        torch.testing.assert_close(ref["dW"][i], -wp[i].grad / len(y))


def test_theta_equal_w_gives_backprop_cnn():
    torch.manual_seed(0)
    plain = lv_cnn_mnist((1, 28, 28), 10).double()
    dll = to_dll(plain, "learned", generator=torch.Generator().manual_seed(1)).double()
    _set_theta_to_w(dll)
    x, y = torch.randn(3, 1, 28, 28, dtype=torch.double), torch.tensor([1, 5, 9])
    gp, gd = _grads(plain, x, y), _grads(dll, x, y)
    for name, g in gp.items():
        torch.testing.assert_close(gd[name], g, rtol=1e-10, atol=1e-12)


def test_fast_sweep_equals_naive_reference():
    """Random Θ: the autograd-Function path gives exactly the per-layer reference's ΔW, Δb and ΔΘ."""
    plain = _mlp(3).double()
    dll = to_dll(plain, "learned", theta_std=0.7, generator=torch.Generator().manual_seed(2)).double()
    lin = [m for m in dll if isinstance(m, DLLLinear)]
    x, y = torch.randn(5, 6, dtype=torch.double), torch.tensor([0, 1, 2, 2, 0])
    onehot = F.one_hot(y, 3).double()
    ref = dll_mlp_sweep([m.weight.detach() for m in lin], [m.bias.detach() for m in lin],
                        [None if m.theta is None else m.theta.detach() for m in lin], x,
                        lambda u: onehot - u.softmax(1), torch.tanh, lambda a: 1 - torch.tanh(a) ** 2)
    _grads(dll, x, y)
    for i, m in enumerate(lin):
        torch.testing.assert_close(m.weight.grad, -ref["dW"][i])
        torch.testing.assert_close(m.bias.grad, -ref["db"][i])
        if m.theta is not None:
            torch.testing.assert_close(m.theta.grad, -ref["dTheta"][i])
    assert lin[0].theta is None


def test_theta_update_has_the_papers_sign():
    """1×1 layer, hand-computed: δ = ξ_top·f' ; ξ = Θ δ ; paper: ΔΘ = −η δ ξ, so Θ.grad = +δ ξ = δ² Θ > 0
    for Θ > 0 and one SGD step shrinks |Θ| (the reference code's flipped sign would grow it)."""
    layer = DLLLinear(1, 1, bias=False, theta_std=1.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.theta.fill_(2.0)
    u = torch.tensor([[1.5]], requires_grad=True)
    a = layer(u)
    loss = -3.0 * a.sum()  # ξ_top = −∂L/∂a = 3, f = identity (f' = 1)
    loss.backward()
    delta, xi = 3.0, 2.0 * 3.0
    assert layer.theta.grad.item() == pytest.approx(delta * xi)  # −ΔΘ/η = +δ ξ
    assert layer.weight.grad.item() == pytest.approx(-delta * 1.5)  # −ΔW/η = −δ u
    assert u.grad.item() == pytest.approx(-xi)  # ∂L/∂u = −ξ = −Θ δ
    opt = torch.optim.SGD([layer.theta], lr=0.01)
    opt.step()
    assert layer.theta.item() == pytest.approx(2.0 - 0.01 * 18.0)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_theta_rule_is_descent_on_somatic_error(kind):
    """ΔΘ = −η δ ξᵀ is gradient descent on ½Σ‖ξ‖² with ξ = Θᵀδ (linear and convolutional forms)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if kind == "linear":
        layer = DLLLinear(4, 3, generator=gen).double()
        x = torch.randn(5, 4, dtype=torch.double, requires_grad=True)
    else:
        layer = DLLConv2d(2, 3, 3, padding=1, generator=gen).double()
        x = torch.randn(5, 2, 6, 6, dtype=torch.double, requires_grad=True)
    out = layer(x)
    g = torch.randn_like(out)
    (out * g).sum().backward()  # hands the layer g = −δ
    theta = layer.theta.detach().clone().requires_grad_(True)
    if kind == "linear":
        xi = g @ theta
    else:
        xi = torch.nn.grad.conv2d_input(x.shape, theta, g, 1, 1)
    torch.testing.assert_close(x.grad, xi.detach())
    (0.5 * xi.pow(2).sum()).backward()
    torch.testing.assert_close(layer.theta.grad, len(x) * theta.grad)


def test_dll_fa_keeps_theta_fixed_and_dll_learns_it():
    cfg = {"dataset": "digits", "preset": "mlp-small", "epochs": 1, "batch_size": 64, "limit_train": 256}
    for name, moves in (("dll-fa", False), ("dll", True)):
        _, bundle, learner = experiment.build(dict(cfg, learner=name))
        before = [m.theta.detach().clone() for m in learner.net if isinstance(m, DLLLinear) and m.theta is not None]
        learner.configure(1, 4)
        for i in range(0, 256, 64):
            learner.train_step(bundle.train.x[i:i + 64], bundle.train.y[i:i + 64])
        after = [m.theta for m in learner.net if isinstance(m, DLLLinear) and m.theta is not None]
        changed = any(not torch.equal(b, a) for b, a in zip(before, after))
        assert changed == moves, name
        d = learner.diagnostics()
        assert 0 <= d["angle_deg_mean"] <= 180 and d["norm_ratio/1"] > 0 and 0 <= d["sign_agree/1"] <= 1


def test_small_dll_mlp_learns_digits():
    out = experiment.run({"learner": "dll", "dataset": "digits", "preset": "mlp-small", "epochs": 8,
                          "batch_size": 32, "seed": 0}, progress=False)
    assert out.metrics["test_acc"] > 0.90
    assert "angle_deg_mean" in out.history[-1] and "pearson_mean" in out.history[-1]


def test_pc_learns_digits():
    out = experiment.run({"learner": "pc", "dataset": "digits", "preset": "mlp-small", "epochs": 3,
                          "batch_size": 32, "seed": 0, "params": {"n_steps": 5}}, progress=False)
    assert out.metrics["test_acc"] > 0.85


def test_pc_relaxation_lowers_energy_and_starts_feedforward():
    net = _mlp(0)
    blocks = split_blocks(net)
    assert len(blocks) == 3 and sum(len(b) for b in blocks) == len(net)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    from neuroplastic.dll.pc import pc_energy
    ff = pc_relax(blocks, x, y, 1, 1e-12)
    with torch.no_grad():
        h = blocks[0](x)
    torch.testing.assert_close(ff[0], h)
    e_ff = pc_energy(blocks, x, ff, y).item()
    e_relaxed = pc_energy(blocks, x, pc_relax(blocks, x, y, 20, 0.1), y).item()
    assert e_relaxed < e_ff


def test_rnn_shapes_and_char_dataset():
    from neuroplastic import data

    b = data.prepare("chartext", val=0.1)
    assert b.task == "sequence" and b.train.x.shape[1:] == (64, b.n_classes)
    assert torch.equal(b.train.x[0, 1:].argmax(-1), b.train.y[0, :-1])  # targets are the next characters
    rnn = DLLRNN(b.n_classes, 16, b.n_classes, output="all", generator=torch.Generator().manual_seed(0))
    assert rnn(b.train.x[:3]).shape == (3, 64, b.n_classes)
    smnist = DLLRNN(28, 16, 10, generator=torch.Generator().manual_seed(0))
    assert smnist(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_rnn_theta_equal_w_gives_bptt():
    gen = torch.Generator().manual_seed(0)
    rnn = DLLRNN(5, 7, 3, output="all", generator=gen).double()
    ref = DLLRNN(5, 7, 3, output="all", feedback="bp", generator=torch.Generator().manual_seed(0)).double()
    ref.load_state_dict({k: v for k, v in rnn.state_dict().items() if not k.endswith(".B")})
    for m in (rnn.w_h, rnn.w_y):
        m.set_theta(m.weight.detach())
    x, y = torch.randn(4, 6, 5, dtype=torch.double), torch.randint(0, 3, (4, 6))
    for net in (rnn, ref):
        F.cross_entropy(net(x).reshape(-1, 3), y.reshape(-1)).backward()
    ref_params = dict(ref.named_parameters())
    assert len(ref_params) == 5
    for n, p in ref_params.items():
        torch.testing.assert_close(dict(rnn.named_parameters())[n].grad, p.grad)


def test_registry_locality_and_presets():
    assert learners.entry("dll").locality.marks() == "✓ ✓ ✓"
    assert learners.entry("dll-fa").locality.marks() == "✓ ✓ ✓"
    assert learners.entry("pc").locality.marks() == "✘ ✓ ✘"
    with pytest.raises(ValueError, match="unknown preset"):
        learners.get("dll", in_shape=(1, 8, 8), n_classes=10, preset="resnet")
    with pytest.raises(ValueError, match="unknown feedback"):
        DLLLinear(2, 2, feedback="sometimes")
    with pytest.raises(ValueError, match="not available"):
        learners.get("pc", in_shape=(28, 28), n_classes=10, preset="rnn-smnist")
    assert lv_cnn_cifar((3, 32, 32), 10)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_learner_pickle_round_trip():
    m = learners.get("dll", in_shape=(1, 8, 8), n_classes=10, preset="mlp-small")
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(m.predict(x), m2.predict(x))


def test_angle():
    a = torch.tensor([1.0, 0.0])
    assert angle_deg(a, torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert angle_deg(a, a) == pytest.approx(0.0, abs=1e-6)


def test_flipped_theta_rule_is_a_labelled_variant_with_opposite_sign():
    grads = {}
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for rule in ("paper", "flipped"):
        m = learners.get("dll", in_shape=(1, 8, 8), n_classes=10, preset="mlp-small", theta_rule=rule)
        m.configure(1, 1)
        F.cross_entropy(m(x), y).backward()
        grads[rule] = [mod.theta.grad.clone() for mod in m.net if isinstance(mod, DLLLinear) and mod.theta is not None]
    for gp, gf in zip(grads["paper"], grads["flipped"]):
        torch.testing.assert_close(gf, -gp)
    with pytest.raises(ValueError, match="theta_rule"):
        learners.get("dll", in_shape=(1, 8, 8), n_classes=10, preset="mlp-small", theta_rule="sideways")
