"""Energy counting: the operation counts of tiny networks equal hand counts (dense MACs, ACs from binary operands,
convolutions and their backward), training is counted on a copy, and the figures turn into energy as stated."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from neuroplastic import data, experiment, learners
from neuroplastic.energy import (
    DEFAULT_ENERGY,
    EnergyModel,
    OpCounter,
    count_inference,
    count_run,
    count_training,
)


def _mlp():
    torch.manual_seed(0)
    m = learners.get("bp", in_shape=(1, 2, 2), n_classes=2, arch="mlp", hidden=[3])
    m.configure(epochs=1, steps_per_epoch=1)
    return m


def test_dense_mlp_inference_and_training_match_hand_counts():
    m = _mlp()
    x = torch.rand(5, 1, 2, 2) * 0.8 + 0.1  # not binary
    c = count_inference(m, x)
    assert (c.mac, c.ac) == (4 * 3 + 3 * 2, 0)  # per sample
    assert c.reads == c.mac  # every product reads a stored weight
    t = count_training(m, x, torch.tensor([0, 1, 0, 1, 1]))
    # forward 18; weight gradients 4*3 + 3*2; the input gradient of the second layer 3*2 (none for the input)
    assert t.mac == 18 + 18 + 6 and t.ac == 0
    assert t.reads == 18 + 6  # forward and the backward product through W2 read weights; gradients do not


def test_binary_inputs_are_counted_as_accumulates_from_their_nonzeros():
    m = _mlp()
    x = torch.tensor([[1.0, 0, 1, 1], [0, 0, 0, 1]]).view(2, 1, 2, 2)
    c = count_inference(m, x)
    assert c.ac == (3 + 1) * 3 / 2  # 4 input spikes in 2 samples, each reaching 3 hidden units
    assert c.mac == 3 * 2  # the hidden layer is not binary


def test_products_written_in_place_or_into_out_are_counted_like_plain_ones():
    a, b, c = torch.rand(3, 4), torch.rand(4, 5), torch.zeros(3, 5)
    spikes = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
    with OpCounter() as k:
        c.addmm_(a, b)
        torch.mm(a, b, out=c)
        c.addmm_(spikes, b)
        torch.bmm(a[None], b[None], out=c[None])
        torch.zeros(3).addmv_(a, b[:, 0])
    assert k.count.mac == 3 * 3 * 4 * 5 + 3 * 4 and k.count.ac == 5 * 5


def test_every_step_of_a_spiking_run_is_counted():
    """A spiking copy's potentials u += z Pᵀ (in place, every step of SpikingNet.run) are products the energy
    model counts: ACs from the PSPs' non-zeros times the targets, a step with no PSP on as dense MACs."""
    from neuroplastic.sal import SpikingNet

    g = torch.Generator().manual_seed(3)
    proj = {(0, 1): torch.randn(3, 6, generator=g) * 2, (1, 0): torch.randn(6, 3, generator=g)}

    def net():
        return SpikingNet([6, 3], proj, [None, None], n_nets=4, tau_ref=3, generator=torch.Generator().manual_seed(9))

    with OpCounter() as k:
        net().run(40)
    b, uni = net(), torch.rand(40, 4, 9, generator=torch.Generator().manual_seed(9))  # run()'s draws, step by step
    ac = mac = 0
    for t in range(40):
        z = b.psp()
        for (pre, _), p in proj.items():
            nnz = int(z[pre].count_nonzero())
            ac, mac = (ac + nnz * p.shape[0], mac) if nnz else (ac, mac + 4 * p.shape[1] * p.shape[0])
        b.step(uniforms=uni[t])
    assert ac > 0 and (k.count.ac, k.count.mac) == (ac, mac)


def test_training_is_counted_on_a_copy():
    m = _mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_training(m, torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 1, 0]))
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())


def test_convolution_macs_and_backward():
    x = torch.randn(2, 2, 5, 5, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    with OpCounter() as c:
        y = F.conv2d(x, w, padding=0, stride=1)
    assert c.count.mac == 2 * 3 * 3 * 3 * (2 * 3 * 3)  # N * C_out * H_out * W_out * C_in * k * k
    with OpCounter() as c:
        y.sum().backward()
    assert c.count.mac == 2 * (2 * 3 * 3 * 3 * 18)  # grad input and grad weight
    dw = torch.randn(4, 1, 3, 3)
    with OpCounter() as c:
        F.conv2d(torch.randn(1, 4, 6, 6), dw, groups=4)
    assert c.count.mac == 4 * 4 * 4 * 9  # depthwise: C_out * H_out * W_out * k * k


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 1, 1), (1, 0, 2)])
def test_binary_convolution_counts_every_active_input_in_every_field(stride, padding, groups):
    g = torch.Generator().manual_seed(stride + padding + groups)
    x = (torch.rand(2, 4, 6, 6, generator=g) < 0.3).float()
    w = torch.randn(6, 4 // groups, 3, 3, generator=g)
    with OpCounter() as c:
        y = F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    xp = F.pad(x, (padding,) * 4)
    per_group_out, per_group_in = 6 // groups, 4 // groups
    brute = 0
    for n, o, i, j in itertools.product(range(2), range(6), range(y.shape[2]), range(y.shape[3])):
        grp = o // per_group_out
        field = xp[n, grp * per_group_in:(grp + 1) * per_group_in, i * stride:i * stride + 3, j * stride:j * stride + 3]
        brute += int(field.sum())
    assert c.count.ac == brute and c.count.mac == 0


def test_stored_tensors_are_recognised_through_views():
    w = torch.randn(3, 4)
    with OpCounter([w]) as c:
        torch.randn(2, 3) @ w  # w itself
        torch.randn(2, 4) @ w.t()  # a view of w
        torch.randn(2, 4) @ torch.randn(4, 5)  # nothing stored
    assert c.count.mac == 24 + 24 + 40 and c.count.reads == 48


def test_energy_model_figures_and_overrides():
    assert (DEFAULT_ENERGY.mac_pj, DEFAULT_ENERGY.ac_pj, DEFAULT_ENERGY.read_pj) == (4.6, 0.9, 5.0)
    assert "Horowitz" in DEFAULT_ENERGY.source
    m = EnergyModel.parse("mac=1, read=0")
    assert (m.mac_pj, m.ac_pj, m.read_pj) == (1.0, 0.9, 0.0) and "user" in m.source
    for bad in ("mac=x", "flop=1", "mac=-1"):
        with pytest.raises(ValueError, match="energy"):
            EnergyModel.parse(bad)


def test_spiking_learners_report_their_event_driven_count():
    b = data.prepare("digits", val=0.1, seed=0)
    m = learners.get("snn-mode", in_shape=b.in_shape, n_classes=10, n_hidden=20, n_modes=3, steps=5)
    x = b.test.x[:8]
    m.eval_gen.manual_seed(0)
    own = m.count_inference_ops(x)
    assert own is not None and own.ac > 0
    m.eval_gen.manual_seed(0)  # the same input spikes
    c = count_inference(m, x)
    assert (c.mac, c.ac, c.reads) == (own.mac, own.ac, own.reads)


def test_a_run_records_its_energy_and_the_protocol_can_turn_it_off():
    cfg = {"learner": "bp", "dataset": "digits", "epochs": 1, "params": {"arch": "mlp", "hidden": [16]}}
    out = experiment.run(cfg, progress=False)
    assert out.metrics["ops_inference_mac"] == 64 * 16 + 16 * 10
    assert out.metrics["energy_inference_pj"] == pytest.approx(out.metrics["ops_inference_mac"] * (4.6 + 5.0))
    assert out.metrics["energy_train_pj"] > out.metrics["energy_inference_pj"]
    off = experiment.run(dict(cfg, protocol={"energy": False}), progress=False)
    assert not any(k.startswith("energy_") for k in off.metrics)
    assert experiment.config_hash(experiment.validate(cfg)) == experiment.config_hash(
        experiment.validate(dict(cfg, protocol={"energy": True})))  # the default does not change the hash
    b = data.prepare("digits", val=0.1, seed=0)
    m = learners.get("bp", in_shape=b.in_shape, n_classes=10, arch="mlp", hidden=[8])
    m.configure(epochs=1, steps_per_epoch=1)
    assert count_run(m, b, batch_size=32)["ops_inference_mac"] == 64 * 8 + 8 * 10


def test_work_done_once_per_epoch_is_shared_over_the_epochs_samples():
    import copy

    from neuroplastic.energy import count_step

    m = learners.get("sal", in_shape=(1, 8, 8), n_classes=10, arch="mlp", hidden=[16], sal_nets=2, sal_blocks=1,
                     sal_block_steps=50)
    m.configure(epochs=1, steps_per_epoch=10)
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    own = count_training(m, x, y)
    mid = copy.deepcopy(m)
    mid.steps_done += 1  # inside the epoch: an SGD step only
    sgd = count_step(mid, mid.train_step, x, y).per(8)
    twin = copy.deepcopy(m)  # the phase of the epoch, from the same state as the counted copy
    phase = twin._phase()[1]  # counted from its spikes (test_a_sal_phase_is_counted_event_by_event)
    assert phase.ac > 0 and phase.reads > 0
    assert own.mac == pytest.approx(sgd.mac) and own.ac == pytest.approx(sgd.ac + phase.ac / 80)
    assert own.reads == pytest.approx(sgd.reads + phase.reads / 80)
    assert int(m.steps_done) == 0  # counted on a copy


@pytest.mark.parametrize("burn_in,settle", [(0, 0), (7, 5)])
def test_a_sal_phase_is_counted_event_by_event(monkeypatch, burn_in, settle):
    """The phase's count comes from its spikes: every spike of population a adds and later takes away its weights to
    the N_b targets of each projection a -> b (2 S_a N_b accumulates, each reading a synapse), over all steps; the
    SAL sums add S_pre N_post + S_post N_pre per feedback projection over the blocks' steps."""
    import copy

    from neuroplastic.sal.neurons import SpikingNet

    monkeypatch.setenv("NEUROPLASTIC_NATIVE", "0")  # the torch route: its spikes can be watched step by step
    m = learners.get("sal", in_shape=(1, 8, 8), n_classes=10, arch="mlp", hidden=[16, 12], sal_nets=4, sal_blocks=3,
                     sal_block_steps=30, sal_burn_in=burn_in, sal_settle=settle)
    m.configure(epochs=1, steps_per_epoch=10)
    runs: list[list[float]] = []  # spikes per population of every run() call
    plain_run = SpikingNet.run

    def run(self, steps):
        out = plain_run(self, steps)
        runs.append([float(sp.sum()) for sp in out])
        return out

    monkeypatch.setattr(SpikingNet, "run", run)
    out, ops = copy.deepcopy(m)._phase()
    sizes = [64, 16, 12, 10]
    total = [sum(r[i] for r in runs) for i in range(4)]
    psp = 2 * sum(total[l] * sizes[l + 1] + total[l + 1] * sizes[l] for l in range(3))
    assert ops.mac == 0 and ops.reads == psp > 0
    free_calls = {0, 2, 4} if burn_in else set()  # burn-in, block, settling, block, settling, block: one call each
    block = [sum(r[i] for k, r in enumerate(runs) if k not in free_calls) for i in range(4)]
    sums = sum(block[l + 1] * sizes[l] + block[l] * sizes[l + 1] for l in range(3))
    assert ops.ac == pytest.approx(psp + sums, rel=1e-12)
    assert out["sal_rate"] == pytest.approx(sum(block) / (sum(sizes) * 4 * 90), rel=1e-12)


def test_the_native_phase_counts_the_spikes_of_its_burn_in_and_settling_too(monkeypatch):
    """The native route draws other spikes (its own stream) of the same dynamics: its count, burn-in and settling
    (300 of the 500 steps) included, agrees with the torch route's within sampling noise."""
    import copy

    from neuroplastic.sal import native

    if not native.available():
        pytest.skip("the native SAL kernel is not built")
    m = learners.get("sal", in_shape=(1, 8, 8), n_classes=10, arch="mlp", hidden=[16], sal_nets=16, sal_blocks=2,
                     sal_block_steps=100, sal_burn_in=200, sal_settle=100)
    m.configure(epochs=1, steps_per_epoch=10)
    ops = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("NEUROPLASTIC_NATIVE", flag)
        twin = copy.deepcopy(m)
        assert twin.native_route() == (flag == "1")
        ops[flag] = twin._phase()[1]
    assert ops["1"].reads == pytest.approx(ops["0"].reads, rel=0.05)
    assert ops["1"].ac == pytest.approx(ops["0"].ac, rel=0.05)


def test_a_reloaded_model_has_the_runs_schedule(tmp_path):
    import json

    cfg = experiment.validate({"learner": "sal", "dataset": "digits", "epochs": 1, "batch_size": 64,
                               "params": {"arch": "mlp", "hidden": [16], "sal_nets": 2, "sal_blocks": 1,
                                          "sal_block_steps": 50}, "protocol": {"energy": False}})
    experiment.run(cfg, checkpoint_dir=tmp_path, progress=False)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    learner, bundle, _ = experiment.load_trained(tmp_path)
    assert learner.steps_per_epoch == -(-len(bundle.train) // 64) > 1  # the phase is shared over the right epoch
