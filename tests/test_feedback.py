"""Contracts of the feedback-alignment family (neuroplastic.nn.feedback) and its learners."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neuroplastic import data
from neuroplastic.learners.backprop import MODE_INFO, SupervisedNet
from neuroplastic.nn.feedback import (
    STRATEGIES,
    FeedbackConv2d,
    FeedbackLinear,
    alignment,
    angle_deg,
    convert,
    feedback_layers,
)
from neuroplastic.trainer import evaluate, fit

FB_MODES = [m for m in MODE_INFO if m != "bp"]


def _mixed(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1),
                         nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 5))


def _with_B_equal_W(mode):
    """:func:`_mixed` and a copy converted to ``mode`` whose every feedback matrix is set to its weight."""
    ref = _mixed()
    net = convert(copy.deepcopy(ref), mode, seed=1)
    with torch.no_grad():
        for layer in feedback_layers(net):
            layer.B.copy_(layer.weight)
    return ref, net


def _grads(model, x, y):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return x.grad, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", val=0.1, seed=0)


# ------------------------------------------------------------------------------------------------------
# gradient contracts
def test_fa_with_B_equal_W_is_backprop_exactly():
    ref, fa = _with_B_equal_W("fa")
    x, y = torch.randn(7, 2, 8, 8), torch.randint(0, 5, (7,))
    gx_ref, g_ref = _grads(ref, x, y)
    gx_fa, g_fa = _grads(fa, x, y)
    assert torch.equal(gx_ref, gx_fa)
    assert set(g_ref) == set(g_fa)  # no gradient for the fixed B buffers
    for name in g_ref:
        assert torch.equal(g_ref[name], g_fa[name]), name


STORED = [m for m, s in STRATEGIES.items() if s.make == "uniform"]  # modes whose B can be set by hand


@pytest.mark.parametrize("mode", STORED)
def test_every_stored_mode_with_B_equal_W_is_backprop_and_sends_delta_through_B(mode):
    """The one family's contract for every mode with a B of W's shape (FA, KP, DLL's Θ, SAL): B = W gives
    backprop's gradients exactly; otherwise grad_input = grad_output @ B (linear) and the weight gradients are
    backprop's; a learned B gets its rule's gradient and a fixed one none."""
    ref, net = _with_B_equal_W(mode)
    x, y = torch.randn(7, 2, 8, 8), torch.randint(0, 5, (7,))
    gx_ref, g_ref = _grads(ref, x, y)
    gx, g = _grads(net, x, y)
    assert torch.equal(gx_ref, gx)
    for name in g_ref:
        assert torch.equal(g_ref[name], g[name]), name
    learned = STRATEGIES[mode].stored == "parameter"
    assert {n for n in g if n.endswith(".B")} == ({f"{i}.B" for i in (0, 2, 5, 7)} if learned else set())
    lin = convert(nn.Linear(4, 3), mode, seed=0)
    xi = torch.randn(5, 4, requires_grad=True)
    d = torch.randn(5, 3)
    lin(xi).backward(d)
    torch.testing.assert_close(xi.grad, d @ lin.B.detach())
    torch.testing.assert_close(lin.weight.grad, d.t() @ xi.detach())
    if STRATEGIES[mode].rule == "kp":
        torch.testing.assert_close(lin.B.grad, lin.weight.grad)
    if STRATEGIES[mode].rule == "dll":  # ∇B = n δᵀ ξ, ξ = δ B (DLL's ΔB = −η δ ξᵀ as a batch mean)
        torch.testing.assert_close(lin.B.grad, len(d) * d.t() @ (d @ lin.B.detach()))


def test_alignment_reports_every_mode_with_the_same_keys():
    from neuroplastic.dll import to_dll

    keys = {"angle_deg", "norm_ratio", "sign_agree", "pearson"}
    for net in (convert(_mixed(), "kp", seed=0), convert(_mixed(), "sal", seed=0),
                to_dll(nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3)))):
        a = alignment(net)
        assert {k.split("/")[0] for k in a if "/" in k} == keys
        assert {k for k in a if k.endswith("_mean")} == {f"{k}_mean" for k in keys}
    w = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    layer = convert(nn.Linear(2, 2), "sal", seed=0)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.B.copy_(torch.tensor([[1.0, 2.0], [3.0, 0.5]]))
    a = alignment(layer)
    assert a["sign_agree/0"] == 0.75 and -1 < a["pearson/0"] < 1


def test_linear_grad_input_is_grad_output_at_B_and_weight_grad_is_delta_x():
    torch.manual_seed(0)
    layer = convert(nn.Linear(4, 3), "fa", seed=0)
    assert isinstance(layer, FeedbackLinear)
    x = torch.randn(5, 4, requires_grad=True)
    g = torch.randn(5, 3)
    layer(x).backward(g)
    assert torch.allclose(x.grad, g @ layer.B, atol=1e-6)
    assert not torch.allclose(x.grad, g @ layer.weight, atol=1e-3)  # B ≠ W: not backprop
    assert torch.allclose(layer.weight.grad, g.t() @ x.detach(), atol=1e-6)  # δᵀx
    assert torch.allclose(layer.bias.grad, g.sum(0), atol=1e-6)
    # a hand-computed 1×1 case
    one = convert(nn.Linear(1, 1), "fa", seed=0)
    with torch.no_grad():
        one.weight.fill_(2.0), one.bias.fill_(0.5), one.B.fill_(-3.0)
    xi = torch.tensor([[1.5]], requires_grad=True)
    out = one(xi)
    assert out.item() == pytest.approx(3.5)
    out.backward(torch.tensor([[0.25]]))
    assert xi.grad.item() == pytest.approx(-0.75) and one.weight.grad.item() == pytest.approx(0.375)


def test_conv_grad_input_is_transposed_conv_with_B_and_weight_grad_is_backprops():
    torch.manual_seed(0)
    plain = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    layer = convert(copy.deepcopy(plain), "fa", seed=0)
    assert isinstance(layer, FeedbackConv2d)
    x = torch.randn(2, 3, 9, 9)
    xa = x.clone().requires_grad_(True)
    g = torch.randn(2, 4, 5, 5)
    layer(xa).backward(g)
    want_gx = torch.nn.grad.conv2d_input(x.shape, layer.B, g, stride=2, padding=1)
    assert torch.allclose(xa.grad, want_gx, atol=1e-5)
    assert torch.allclose(xa.grad, F.conv_transpose2d(g, layer.B, stride=2, padding=1), atol=1e-5)
    xb = x.clone().requires_grad_(True)
    plain(xb).backward(g)  # backprop with W: same weight and bias gradients, different input gradient
    assert torch.equal(layer.weight.grad, plain.weight.grad)
    assert torch.equal(layer.bias.grad, plain.bias.grad)
    assert not torch.allclose(xa.grad, xb.grad, atol=1e-3)


@pytest.mark.parametrize("mode", ["usf", "brsf", "frsf"])
def test_sign_concordant_feedback_matches_signs_of_W(mode):
    net = convert(_mixed(), mode, seed=0)
    x, y = torch.randn(4, 2, 8, 8), torch.randint(0, 5, (4,))
    before = [layer.feedback_matrix().clone() for layer in feedback_layers(net)]
    F.cross_entropy(net(x), y).backward()
    after = [layer.feedback_matrix().clone() for layer in feedback_layers(net)]
    for layer, B in zip(feedback_layers(net), after):
        nz = layer.weight != 0
        assert torch.equal(torch.sign(B)[nz], torch.sign(layer.weight.detach())[nz])
        assert angle_deg(B, layer.weight) < 90.0
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert all(changed) if mode == "brsf" else not any(changed)  # brSF redraws M each batch
    if mode == "usf":  # one magnitude per layer
        for B in after:
            assert torch.unique(B.abs()).numel() == 1


def test_kp_learns_B_with_the_weight_update_and_aligns_on_regression():
    torch.manual_seed(0)
    net = convert(nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3)), "kp", seed=0)
    x = torch.randn(256, 10)
    target = torch.tanh(x @ torch.randn(10, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.02)
    start = alignment(net)["angle_deg_mean"]
    loss0 = F.mse_loss(net(x), target)
    loss0.backward()
    for layer in feedback_layers(net):  # ΔB = ΔW: the same gradient on both
        assert torch.equal(layer.B.grad, layer.weight.grad)
    for _ in range(300):
        opt.zero_grad()
        F.mse_loss(net(x), target).backward()
        opt.step()
    end = alignment(net)
    assert start > 45.0
    assert end["angle_deg/0"] < 5.0 and end["angle_deg/1"] < 5.0
    assert F.mse_loss(net(x), target).item() < 0.1 * loss0.item()


def test_dfa_sends_the_output_error_through_B_l():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    net = convert(net, "dfa", seed=0, example_input=torch.zeros(1, 4))
    l0, l1, l2 = feedback_layers(net)
    assert l2.is_output and not l0.is_output and not l1.is_output
    assert tuple(l0.B.shape) == (3, 4) and tuple(l1.B.shape) == (3, 6) and tuple(l2.B.shape) == (3, 5)
    x = torch.randn(8, 4, requires_grad=True)
    h1 = net[1](net[0](x))
    h1.retain_grad()
    h2 = net[3](net[2](h1))
    h2.retain_grad()
    out = net[4](h2)
    out.retain_grad()
    F.cross_entropy(out, torch.randint(0, 3, (8,))).backward()
    e = out.grad
    assert torch.allclose(h2.grad, e @ l2.B, atol=1e-6)  # output layer: e B_L
    assert torch.allclose(h1.grad, e @ l1.B, atol=1e-6)  # hidden layer: e B_l, not W-propagated
    assert torch.allclose(x.grad, e @ l0.B, atol=1e-6)
    a1 = net[2](h1.detach())
    delta1 = (e @ l2.B) * (a1 > 0)  # f'(a) of the activation below, applied by autograd
    assert torch.allclose(l1.weight.grad, delta1.t() @ h1.detach(), atol=1e-6)


def test_dfa_needs_an_example_input_and_errors_are_clear():
    with pytest.raises(ValueError, match="example_input"):
        convert(_mixed(), "dfa")
    with pytest.raises(ValueError, match="unknown feedback mode"):
        convert(_mixed(), "fb")
    net = convert(_mixed(), "fa")
    with pytest.raises(ValueError, match="already"):
        convert(net, "usf")
    with pytest.raises(ValueError, match="scale"):
        convert(_mixed(), "fa", scale=-1.0)
    with pytest.raises(ValueError, match="unknown mode"):
        SupervisedNet((1, 8, 8), 10, mode="nope")


# ------------------------------------------------------------------------------------------------------
# conversion, state, diagnostics
@pytest.mark.parametrize("mode", FB_MODES)
def test_convert_keeps_weights_and_forward_and_holds_state(mode):
    ref = _mixed()
    params = {n: p for n, p in ref.named_parameters()}
    x = torch.randn(3, 2, 8, 8)
    want = ref(x)
    net = convert(ref, mode, seed=0, example_input=x)
    assert net is ref
    assert sum(isinstance(m, (FeedbackLinear, FeedbackConv2d)) for m in net.modules()) == 4
    for n, p in net.named_parameters():
        if not n.endswith(".B"):
            assert p is params[n]  # the same Parameter objects
    assert torch.allclose(net(x), want)
    sd = net.state_dict()
    if mode in ("fa", "dfa", "kp"):
        assert all(f"{i}.B" in sd for i in (0, 2, 5, 7))
    if mode in ("brsf", "frsf"):
        assert all(f"{i}.M" in sd for i in (0, 2, 5, 7))
    assert any(n.endswith(".B") for n, _ in net.named_parameters()) == (mode == "kp")


@pytest.mark.parametrize("mode", ["fa", "dfa", "brsf", "kp"])
def test_pickle_and_torch_save_round_trip(mode):
    m = SupervisedNet((1, 8, 8), 10, arch="small_cnn", mode=mode, channels=(4, 8), seed=0)
    m.configure(1, 1)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    m.train_step(x, y)
    for clone in (pickle.loads(pickle.dumps(m)), _torch_roundtrip(m)):
        assert torch.equal(clone.predict(x), m.predict(x))
        for k, v in m.state_dict().items():
            assert torch.equal(clone.state_dict()[k], v), k
        clone.configure(1, 1)
        assert clone.train_step(x, y)["loss"] > 0  # still trains (context and Functions intact)


def _torch_roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_alignment_angle_and_norm_ratio():
    net = convert(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), "fa", seed=0)
    with torch.no_grad():
        net[0].B.copy_(net[0].weight)
        net[2].B.copy_(-2 * net[2].weight)
    a = alignment(net)
    assert a["angle_deg/0"] == pytest.approx(0.0, abs=1e-4) and a["norm_ratio/0"] == pytest.approx(1.0)
    assert a["angle_deg/1"] == pytest.approx(180.0, abs=1e-4) and a["norm_ratio/1"] == pytest.approx(2.0)
    assert a["angle_deg_mean"] == pytest.approx(90.0, abs=1e-4) and a["norm_ratio_mean"] == pytest.approx(1.5)
    assert angle_deg(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])) == pytest.approx(90.0)
    assert alignment(nn.Linear(2, 2)) == {}


def test_brsf_checkpoint_resume_is_exact(digits, tmp_path):
    small = data.DataBundle("digits", digits.train.subset(torch.arange(300)), None, digits.test,
                            digits.n_classes)

    def run(epochs, resume):
        torch.manual_seed(0)
        m = SupervisedNet(small.in_shape, 10, mode="brsf", hidden=(32,), seed=3)
        fit(m, small, epochs=epochs, batch_size=50, seed=0, checkpoint_dir=tmp_path, resume=resume,
            progress=False)
        return m

    full = run(2, resume=False)
    (tmp_path / "checkpoint.pt").unlink()
    run(1, resume=False)
    resumed = run(2, resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


# ------------------------------------------------------------------------------------------------------
# training
def test_dfa_trains_an_mlp_and_a_cnn_on_digits(digits):
    for arch, kw in (("mlp", {"hidden": (128,)}), ("small_cnn", {"channels": (16, 32)})):
        torch.manual_seed(0)
        m = SupervisedNet(digits.in_shape, 10, arch=arch, mode="dfa", seed=0, **kw)
        fit(m, digits, epochs=8, batch_size=32, seed=0, progress=False)
        assert evaluate(m, digits.test.x, digits.test.y)["acc"] > 0.8, arch  # chance is 0.1
        assert feedback_layers(m.net)[-1].is_output


@pytest.mark.parametrize("mode", list(MODE_INFO))
def test_every_mode_is_registered_and_trains_on_digits(mode, digits):
    from neuroplastic import learners

    e = learners.entry(mode)
    assert e.cls is SupervisedNet and e.paper and e.quick is not None
    assert e.locality == MODE_INFO[mode][1]
    q = e.quick[0]
    torch.manual_seed(0)
    m = learners.get(mode, in_shape=digits.in_shape, n_classes=10, arch=q["preset"],
                     **{k: tuple(v) for k, v in q["params"].items()})
    fit(m, digits, epochs=q["epochs"], batch_size=q["batch_size"], seed=0, progress=False)
    assert evaluate(m, digits.test.x, digits.test.y)["acc"] > 0.8
    diag = m.diagnostics()
    if mode != "bp":
        assert 0.0 <= diag["angle_deg_mean"] < 90.0 and diag["norm_ratio_mean"] > 0


def test_feedback_figure_for_every_feedback_learner_and_none_for_backprop(tmp_path):
    for mode, want in (("fa", 1), ("kp", 1), ("bp", 0)):
        m = SupervisedNet((1, 8, 8), 10, mode=mode, hidden=(16,), seed=0)
        made = m.figures(None, tmp_path / mode)
        assert len(made) == want and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in made)


def test_double_softmax_loss_sends_the_closed_form_bounded_error_and_keeps_the_argmax():
    """``loss="double_softmax"`` (Gierlich et al.'s code): L = CE(softmax(z)), so ∂L/∂z = J(z)(softmax(p) − e_y)/n
    with p = softmax(z) and J the softmax Jacobian; the prediction is p, whose argmax is z's."""
    torch.manual_seed(0)
    net = SupervisedNet((6,), 4, arch="mlp", hidden=(5,), mode="fa", optimizer="sgd", lr=0.1, loss="double_softmax")
    plain = SupervisedNet((6,), 4, arch="mlp", hidden=(5,), mode="fa", optimizer="sgd", lr=0.1)
    plain.load_state_dict(net.state_dict())
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    z = net.net(x).detach().requires_grad_(True)
    F.cross_entropy(torch.softmax(z, 1), y).backward()
    p = torch.softmax(z.detach(), 1)
    q = torch.softmax(p, 1) - F.one_hot(y, 4).float()
    jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert torch.allclose(z.grad, (jac @ q[:, :, None]).squeeze(2) / len(x), atol=1e-7)
    # bounded whatever the size of z: (Jq)_i = p_i Σ_j p_j (q_i − q_j), |q_i − q_j| < 2, so |(Jq)_i| < 2 p_i (1 − p_i)
    assert float(z.grad.abs().max()) <= 0.5 / len(x)
    big = (z.detach() * 1e4).requires_grad_(True)  # logits grown 10^4-fold: p saturates and the error vanishes
    F.cross_entropy(torch.softmax(big, 1), y).backward()
    assert float(big.grad.abs().max()) < 1e-6
    assert torch.allclose(net.predict(x), p) and torch.equal(net.predict(x).argmax(1), plain.predict(x).argmax(1))
    net.configure(1, 1)
    plain.configure(1, 1)
    assert net.train_step(x, y)["loss"] == pytest.approx(F.cross_entropy(p, y).item(), rel=1e-6)
    assert plain.train_step(x, y)["loss"] == pytest.approx(F.cross_entropy(z.detach(), y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        SupervisedNet((6,), 4, arch="mlp", loss="mse")


@pytest.mark.parametrize("mode", ["bp", "fa", "kp", "sal"])
def test_channels_last_changes_the_layout_and_only_the_rounding(mode):
    """``channels_last=True`` holds the conv net's 4-D weights, feedback and activations in NHWC: the same
    equations, so after three SGD steps on the same batch every parameter and buffer (B included) equals the NCHW
    net's to rounding, and a state dict crosses between the layouts with the same outputs. In float64, where the
    layouts' rounding (about 1e-16) cannot flip a near tie of a max-pool window or a ReLU as float32's can (that
    flip routes a gradient elsewhere and the two runs part, as runs on two hosts do). SAL: without phases (they run in
    float32); its B is a dense layer's, which the layout does not touch."""
    from neuroplastic.sal.learners import SALNet

    def make(layout):
        torch.manual_seed(0)
        kw = {"arch": "sal_cnn", "optimizer": "sgd", "lr": 0.05, "channels_last": layout}
        if mode == "sal":
            return SALNet((3, 20, 20), 10, sal_blocks=0, **kw).double()
        return SupervisedNet((3, 20, 20), 10, mode=mode, conv_mode=None if mode == "bp" else "fa", **kw).double()

    nchw, nhwc = make(False), make(True)
    conv = nhwc.net[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    if mode != "bp":
        assert conv.B.is_contiguous(memory_format=torch.channels_last) and not conv.B.is_contiguous()
    assert nchw.net[0].weight.is_contiguous()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 20, 20, generator=g, dtype=torch.float64), torch.randint(0, 10, (16,), generator=g)
    for net in (nchw, nhwc):
        net.configure(1, 1)
        for _ in range(3):
            net.train_step(x, y)
    assert nhwc.net[0].weight.is_contiguous(memory_format=torch.channels_last)  # the optimizer kept the layout
    a, b, start = nchw.state_dict(), nhwc.state_dict(), make(False).state_dict()
    assert a.keys() == b.keys()
    moved = 0.0
    for k in a:
        if a[k] is not None and a[k].is_floating_point() and a[k].numel():
            assert torch.allclose(a[k], b[k], rtol=1e-9, atol=1e-11), k
            moved = max(moved, float((a[k] - start[k]).abs().max()))
    assert moved > 1e-3  # the steps did move the parameters: the comparison is not of two untouched nets
    back = make(False)
    back.load_state_dict(b)
    for net in (back, nhwc):
        net.eval()
    assert torch.allclose(back.predict(x), nhwc.predict(x), rtol=1e-9, atol=1e-11)
    with pytest.raises(TypeError, match="channels_last must be true or false"):
        SupervisedNet((3, 20, 20), 10, arch="sal_cnn", channels_last="yes")


@pytest.mark.parametrize("mode", STORED)
def test_every_stored_mode_with_B_equal_W_is_backprop_under_autocast(mode):
    """Inside ``torch.autocast`` (bfloat16) the one family keeps its contract in autocast's arithmetic: with
    B = W every mode's gradients equal those autograd computes for the plain net under the same autocast, bit for
    bit; and they differ from float32's, so the autocast did act on the feedback products."""
    ref, net = _with_B_equal_W(mode)
    x, y = torch.randn(7, 2, 8, 8), torch.randint(0, 5, (7,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gx_ref, g_ref = _grads(ref, x, y)
        gx, g = _grads(net, x, y)
    assert gx.dtype == torch.float32 and torch.equal(gx_ref, gx)
    for name in g_ref:
        assert g[name].dtype == torch.float32 and torch.equal(g_ref[name], g[name]), name
    gx32, _ = _grads(net, x, y)
    assert not torch.equal(gx, gx32)


@pytest.mark.parametrize("mode", ["bp", "fa", "kp", "sal"])
def test_bfloat16_precision_runs_the_passes_under_autocast_and_keeps_float32_state(mode):
    """``precision="bfloat16"``: the net's output equals the float32 net's to bfloat16's rounding (the passes ran
    under autocast: not bit for bit), the logits the loss sees are float32, and after an SGD step every parameter
    and feedback matrix is still float32 and no state is bfloat16. SAL: without phases (they run in float32 on the
    same B). Single gradients are not compared with float32's: rounding flips near ties of max-pool windows and
    ReLUs, which moves the gradients of a random-init deep net by 10-20 % (the exact check is the test above)."""
    from neuroplastic.sal.learners import SALNet

    def make(precision):
        torch.manual_seed(0)
        kw = {"arch": "sal_cnn", "optimizer": "sgd", "lr": 0.05, "precision": precision}
        if mode == "sal":
            return SALNet((3, 20, 20), 10, sal_blocks=0, **kw)
        return SupervisedNet((3, 20, 20), 10, mode=mode, conv_mode=None if mode == "bp" else "fa", **kw)

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 3, 20, 20, generator=g), torch.randint(0, 10, (32,), generator=g)
    f32, b16 = make("float32"), make("bfloat16")
    for net in (f32, b16):
        net.eval()
    with torch.no_grad():
        z32, z16 = f32.predict(x), b16.predict(x)
    assert z16.dtype == torch.float32
    err = float((z32 - z16).norm() / z32.norm())
    assert 1e-4 < err < 0.05, err
    b16.train()
    b16.configure(1, 1)
    assert b16.train_step(x, y)["loss"] > 0
    assert all(p.dtype == torch.float32 for p in b16.parameters())
    assert not any(t.dtype == torch.bfloat16 for t in b16.state_dict().values() if torch.is_tensor(t))
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        SupervisedNet((3, 20, 20), 10, arch="sal_cnn", precision="half")


def test_feedback_contract_holds_under_autocast():
    """Inside ``torch.autocast`` the one family's contract is kept in autocast's dtype: ``grad_input ==
    grad_output @ B`` with both rounded to bfloat16, the product computed in bfloat16 and returned as float32."""
    torch.manual_seed(0)
    layer = convert(nn.Sequential(nn.Linear(12, 7)), "fa", seed=3)[0]
    x = torch.randn(5, 12, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    g = torch.randn(5, 7).bfloat16()
    out.backward(g)
    assert x.grad.dtype == torch.float32
    assert torch.equal(x.grad, (g @ layer.B.bfloat16()).float())
    assert not torch.equal(x.grad, g.float() @ layer.B)  # rounded: the float32 product differs
