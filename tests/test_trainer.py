"""Contracts of the trainer, the learner registry, the probe and experiment configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuroplastic import data, experiment, learners, trainer
from neuroplastic.learners import Learner, Locality, NonFiniteError, register


def _bp(bundle, **kw):
    trainer.seed_everything(0)
    return learners.get("bp", in_shape=bundle.in_shape, n_classes=bundle.n_classes, arch="mlp", hidden=(32,),
                        **kw)


@pytest.fixture(scope="module")
def digits():
    return data.prepare("digits", val=0.1, seed=0)


def test_fit_learns_digits_and_reports_metrics(digits):
    res = trainer.fit(_bp(digits), digits, epochs=5, batch_size=32, seed=0, progress=False)
    assert res.epochs_done == 5 and len(res.history) == 5
    for key in ("train_loss", "val_acc", "test_acc", "seconds", "samples_per_s"):
        assert key in res.final
    assert res.final["test_acc"] > 0.85
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.peak_memory_mb > 0


def test_eval_every_evaluates_on_schedule_and_at_the_end(digits):
    res = trainer.fit(_bp(digits), digits, epochs=4, batch_size=32, seed=0, progress=False, eval_every=3)
    assert ["val_acc" in r for r in res.history] == [False, False, True, True]
    assert "test_acc" in res.final
    with pytest.raises(ValueError, match="eval_every"):
        trainer.fit(_bp(digits), digits, epochs=1, batch_size=32, progress=False, eval_every=0)


def test_epoch_lines_give_each_epoch_and_the_time_left_or_only_slow_epochs_and_the_last(digits):
    lines: list[str] = []
    trainer.fit(_bp(digits), digits, epochs=3, batch_size=32, seed=0, progress=False,
                callbacks=[trainer.EpochLines(lines.append)])
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("val_acc" in line and "test_acc" in line for line in lines)
    assert ["left)" in line for line in lines] == [True, True, False]
    few: list[str] = []
    trainer.fit(_bp(digits), digits, epochs=3, batch_size=32, seed=0, progress=False,
                callbacks=[trainer.EpochLines(few.append, min_seconds=3600)])
    assert few == []  # quick epochs: no line
    assert trainer.epoch_line({"epoch": 2, "test_acc": 0.5}) == "epoch 2  test_acc 50.00%"


def test_same_seed_gives_identical_metrics(digits):
    a = trainer.fit(_bp(digits), digits, epochs=3, batch_size=32, seed=7, progress=False)
    b = trainer.fit(_bp(digits), digits, epochs=3, batch_size=32, seed=7, progress=False)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in a.history]
    strip_b = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in b.history]
    assert strip == strip_b
    c = trainer.fit(_bp(digits), digits, epochs=3, batch_size=32, seed=8, progress=False)
    assert c.history[-1]["train_loss"] != a.history[-1]["train_loss"]


def test_resume_continues_exactly(digits, tmp_path):
    full = _bp(digits, optimizer="sgd", lr=0.05, schedule="cosine")
    ref = trainer.fit(full, digits, epochs=4, batch_size=32, seed=3, progress=False)
    part = _bp(digits, optimizer="sgd", lr=0.05, schedule="cosine")

    def crash_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.fit(part, digits, epochs=4, batch_size=32, seed=3, progress=False, checkpoint_dir=tmp_path,
                    log=crash_after_two)
    resumed = _bp(digits, optimizer="sgd", lr=0.05, schedule="cosine")
    torch.manual_seed(999)  # a different global RNG state must not matter after resume
    out = trainer.fit(resumed, digits, epochs=4, batch_size=32, seed=3, progress=False, checkpoint_dir=tmp_path,
                      resume=True)
    assert len(out.history) == 4
    assert out.history[-1]["train_loss"] == ref.history[-1]["train_loss"]
    for p, q in zip(resumed.parameters(), full.parameters()):
        assert torch.equal(p, q)


class _Exploding(Learner):
    """Test learner whose weights become NaN at a chosen step, or which raises Ctrl-C at a chosen step."""

    name = "exploding"
    locality = Locality(True, True, True, "test")

    def __init__(self, in_shape, n_classes, nan_at=10**9, interrupt_at=10**9):
        super().__init__()
        self.lin = nn.Linear(int(torch.tensor(in_shape).prod()), n_classes)
        self.nan_at, self.interrupt_at, self.steps = nan_at, interrupt_at, 0

    def configure(self, epochs, steps_per_epoch):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.01)

    def train_step(self, x, y):
        self.steps += 1
        if self.steps == self.interrupt_at:
            raise KeyboardInterrupt
        loss = nn.functional.cross_entropy(self.lin(x.flatten(1)), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.steps >= self.nan_at:
            with torch.no_grad():
                self.lin.weight[0, 0] = float("nan")
        return {"loss": loss.item()}

    def predict(self, x):
        return self.lin(x.flatten(1))


def test_nan_in_weights_stops_with_named_layer_and_keeps_last_checkpoint(digits, tmp_path):
    steps = (len(digits.train) + 31) // 32
    m = _Exploding(digits.in_shape, 10, nan_at=steps + 5)  # NaN during epoch 2
    with pytest.raises(NonFiniteError, match=r"lin\.weight.*epoch 2"):
        trainer.fit(m, digits, epochs=3, batch_size=32, progress=False, checkpoint_dir=tmp_path, check_every=1)
    state = torch.load(tmp_path / trainer.CHECKPOINT, weights_only=False)
    assert state["epoch"] == 1
    assert torch.isfinite(state["learner"]["model"]["lin.weight"]).all()


def test_nan_loss_is_caught(digits):
    class Bad(_Exploding):
        def train_step(self, x, y):
            return {"loss": float("inf")}

    with pytest.raises(NonFiniteError, match="loss is inf at epoch 1 step 1"):
        trainer.fit(Bad(digits.in_shape, 10), digits, epochs=1, batch_size=32, progress=False)


def test_ctrl_c_leaves_a_valid_checkpoint(digits, tmp_path):
    steps = (len(digits.train) + 31) // 32
    m = _Exploding(digits.in_shape, 10, interrupt_at=steps + 3)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(m, digits, epochs=3, batch_size=32, progress=False, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / trainer.CHECKPOINT, weights_only=False)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert not list(tmp_path.glob("*.tmp*"))


class _RandomFeatures(Learner):
    """Unsupervised test learner: fixed random ReLU features (no learning)."""

    name = "random-features"
    supervised = False
    probe_epochs = 15
    probe_dropout = 0.0

    def __init__(self, in_shape, n_classes):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(int(torch.tensor(in_shape).prod()), 256, generator=g))

    def train_step(self, x, y):
        assert y is None
        return {}

    def features(self, x):
        return torch.relu(x.flatten(1) @ self.proj)


def test_unsupervised_learner_gets_a_linear_probe(digits):
    m = _RandomFeatures(digits.in_shape, 10)
    res = trainer.fit(m, digits, epochs=1, batch_size=64, progress=False)
    assert res.final["test_acc"] > 0.8
    assert len(res.final["probe_history"]) == 15
    assert m.predict(digits.test.x[:5]).shape == (5, 10)


def test_registry_errors_name_the_problem():
    with pytest.raises(KeyError, match="unknown learner 'nope'.*bp"):
        learners.get("nope")
    with pytest.raises(ValueError, match="unknown parameter.*'hiden'.*allowed: .*hidden"):
        learners.get("bp", in_shape=(1, 8, 8), n_classes=10, hiden=(3,))
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        learners.get("bp", in_shape=(1, 8, 8), n_classes=10, act="relux")
    with pytest.raises(TypeError):
        register("x", dict)
    assert "bp" in learners.names()
    assert learners.entry("bp").locality.marks() == "✘ ✘ ✘"


def test_config_validation_errors():
    with pytest.raises(experiment.ConfigError, match="unknown config key.*'epoch'"):
        experiment.validate({"learner": "bp", "epoch": 3})
    with pytest.raises(experiment.ConfigError, match="'epochs' must be int"):
        experiment.validate({"learner": "bp", "epochs": "three"})
    with pytest.raises(experiment.ConfigError, match="unknown dataset 'mnits'"):
        experiment.validate({"learner": "bp", "dataset": "mnits"})
    with pytest.raises(experiment.ConfigError, match="unknown learner"):
        experiment.validate({"learner": "bpp"})
    with pytest.raises(experiment.ConfigError, match="needs 'learner'"):
        experiment.validate({})
    with pytest.raises(experiment.ConfigError, match="unknown parameter.*'lrr'"):
        experiment.validate({"learner": "bp", "params": {"lrr": 0.1}})


def test_config_is_not_mutated_and_hash_is_stable():
    cfg = {"learner": "bp", "params": {"hidden": [16]}, "epochs": 1}
    before = repr(cfg)
    a = experiment.validate(cfg)
    assert repr(cfg) == before
    assert experiment.config_hash(a) == experiment.config_hash(experiment.validate(cfg))
    assert experiment.config_hash(a) != experiment.config_hash(experiment.validate({**cfg, "seed": 1}))


def test_run_and_record_have_the_standard_keys():
    out = experiment.run({"learner": "bp", "preset": "mlp", "params": {"hidden": [16]}, "epochs": 2,
                          "batch_size": 64}, progress=False)
    rec = experiment.record(out, command="pytest")
    for key in ("learner", "dataset", "preset", "seed", "epochs", "status", "test_acc", "train_seconds",
                "commit", "cpu", "torch", "command"):
        assert key in rec
    assert rec["preset"] == "mlp" and 0.0 <= rec["test_acc"] <= 1.0
    assert "limit_train" not in rec and "limit_test" not in rec  # all the data
    part = experiment.run({"learner": "bp", "preset": "mlp", "params": {"hidden": [16]}, "epochs": 1,
                           "limit_train": 300, "limit_test": 100}, progress=False)
    rec = experiment.record(part, command="pytest")
    assert rec["limit_train"] == 300 and rec["limit_test"] == 100


def test_batches_cover_every_sample_once():
    x = torch.arange(103).float().unsqueeze(1)
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([xb for xb, _ in data.batches(x, x, 10, shuffle=True, generator=g)]).flatten()
    assert sorted(seen.tolist()) == list(range(103))
    assert len(list(data.batches(x, x, 10, drop_last=True))) == 10


def test_wrong_input_shape_is_a_clear_error(digits):
    m = learners.get("bp", in_shape=(1, 28, 28), n_classes=10, arch="mlp", hidden=(8,))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(1, 28, 28\).*'digits'.*\(1, 8, 8\)"):
        trainer.fit(m, digits, epochs=1, batch_size=32, progress=False)


def test_a_failing_picture_does_not_lose_a_finished_run(tmp_path, monkeypatch):
    from neuroplastic.learners.backprop import SupervisedNet

    def broken(self, bundle, out_dir):
        raise RuntimeError("no display")

    monkeypatch.setattr(SupervisedNet, "figures", broken)
    out = experiment.run({"learner": "bp", "params": {"hidden": [8]}, "epochs": 1}, progress=False,
                         figures_dir=tmp_path)
    assert out.metrics["figures_error"] == "RuntimeError: no display"
    assert 0.0 <= out.metrics["test_acc"] <= 1.0


def test_probe_raw_features_and_sparse_evaluation():
    """standardize=False reads the raw features; eval_every measures accuracy only every k epochs and at the last."""
    from neuroplastic.probe import LinearProbe, train_probe

    g = torch.Generator().manual_seed(0)
    f = torch.randn(200, 6, generator=g) * 5 + 3
    y = (f[:, 0] > 3).long()
    raw = LinearProbe(6, 2, dropout=0.0, standardize=False)
    raw.set_stats(f)  # a no-op when off
    assert torch.equal(raw.mean, torch.zeros(6)) and torch.equal(raw.std, torch.ones(6))
    assert torch.allclose(raw(f), raw.linear(f))
    std = LinearProbe(6, 2, dropout=0.0)
    std.set_stats(f)
    assert not torch.allclose(std(f), std.linear(f))
    probe, hist = train_probe(f, y, 2, epochs=7, lr=0.05, dropout=0.0, standardize=False, eval_every=3,
                              evals={"val": (f, y)})
    assert [("val_acc" in r) for r in hist] == [False, False, True, False, False, True, True]
    assert hist[-1]["val_acc"] > 0.9 and not probe.standardize
    with pytest.raises(ValueError, match="eval_every"):
        train_probe(f, y, 2, epochs=1, eval_every=0)


def test_probe_flip_trains_on_both_views():
    """With ``f_flip`` every sample enters as either view (p = 1/2): a probe whose two views carry the label in
    different features learns both; without it the mirrored view stays at chance. Bad shapes are refused."""
    from neuroplastic.probe import train_probe

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=g)
    sign = (2 * y - 1).float()
    f = 0.1 * torch.randn(400, 4, generator=g)
    f[:, 0] += sign  # original view: the label is in feature 0
    f_flip = 0.1 * torch.randn(400, 4, generator=g)
    f_flip[:, 2] += sign  # mirrored view: in feature 2
    evals = {"orig": (f, y), "flip": (f_flip, y)}
    kw = {"epochs": 30, "lr": 0.05, "dropout": 0.0, "standardize": False, "evals": evals}
    _, plain = train_probe(f, y, 2, **kw)
    _, both = train_probe(f, y, 2, f_flip=f_flip, **kw)
    assert plain[-1]["orig_acc"] > 0.95 and plain[-1]["flip_acc"] < 0.7
    assert both[-1]["orig_acc"] > 0.95 and both[-1]["flip_acc"] > 0.95
    with pytest.raises(ValueError, match="f_flip"):
        train_probe(f, y, 2, epochs=1, f_flip=f_flip[:10])


def test_half_dropout_is_bernoulli_half_and_unbiased():
    """The bit-mask dropout keeps each element with probability 1/2, independently, and scales by 2."""
    from neuroplastic.probe import half_dropout

    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = half_dropout(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    keep = (y > 0).float()
    assert abs(keep.mean().item() - 0.5) < 0.005  # 400k draws: std 0.0008
    assert (keep.mean(0) - 0.5).abs().max() < 0.1  # every position (incl. each of the 8 bit lanes)
    corr = ((keep[:, :-1] - 0.5) * (keep[:, 1:] - 0.5)).mean() / 0.25  # neighbours are independent
    assert abs(corr.item()) < 0.01
    assert not torch.equal(half_dropout(x), half_dropout(x))  # a fresh mask each call


def test_the_probe_applies_half_dropout_as_one_masked_product_with_doubled_weights():
    """Training-mode LinearProbe output equals W·half_dropout(x) + b for the same draws, bit for bit, with and
    without standardisation; its input tensor is not modified."""
    from neuroplastic.probe import LinearProbe, half_dropout

    x = torch.randn(16, 40, generator=torch.Generator().manual_seed(0))
    for std in (False, True):
        probe = LinearProbe(40, 3, standardize=std, generator=torch.Generator().manual_seed(1))
        probe.set_stats(x)
        probe.train()
        x0 = x.clone()
        probe.generator = torch.Generator().manual_seed(5)
        out = probe(x)
        assert torch.equal(x, x0)
        z = (x - probe.mean) / probe.std if std else x
        ref = probe.linear(half_dropout(z, torch.Generator().manual_seed(5)))
        assert torch.equal(out, ref)


def test_peak_memory_is_measured_per_run_not_per_process():
    """A small run after a large allocation reports its own peak, not the process's lifetime peak (Linux)."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("per-run CPU peak needs /proc/self/clear_refs (Linux)")
    from neuroplastic import data, learners, trainer

    big = torch.ones(1536 * 2**20 // 4)  # 1.5 GB resident, then freed
    big += 1
    del big
    b = data.prepare("digits", val=0.1, seed=0)
    m = learners.get("bp", in_shape=b.in_shape, n_classes=10, arch="mlp", hidden=[16])
    res = trainer.fit(m, b, epochs=1, batch_size=64, progress=False)
    assert 0 < res.peak_memory_mb < 1200, res.peak_memory_mb  # the lifetime peak would be above 1.5 GB


def test_a_few_labels_probe_standardises_with_every_training_images_features():
    """A probe of one label per class reads features standardised with the statistics of every training image (their
    labels unused): features that happen to be zero on the ten labelled images but active elsewhere would otherwise
    be divided by σ = 1e-6 and drown the informative ones, leaving the probe at chance."""
    from neuroplastic.data.core import ArrayDataset, DataBundle
    from neuroplastic.probe import fit_probe, per_class_subset

    g = torch.Generator().manual_seed(0)
    n, classes = 600, 3
    y = torch.arange(n) % classes
    labelled = per_class_subset(y, 1, 0)
    centres = 4.0 * torch.eye(classes)
    informative = centres[y] + torch.randn(n, classes, generator=g)
    sparse = torch.rand(n, 40, generator=g) * (torch.rand(n, 40, generator=g) < 0.2)  # active on a fifth
    sparse[labelled] = 0.0  # ... but never on the labelled few
    feats = torch.cat([informative, sparse], 1)

    class Frozen(torch.nn.Module):  # its "images" are the row numbers; its features the table above
        probe_epochs, probe_lr, probe_dropout, probe_batch_size = 30, 0.05, 0.0, 64

        def features(self, x):
            return feats[x[:, 0].long()]

    rows = torch.arange(n, dtype=torch.float32)[:, None]
    split = ArrayDataset(rows, y)
    bundle = DataBundle("table", split, None, split, classes)
    _, runs = fit_probe(Frozen(), bundle, labels_per_class=[1], min_steps=30, progress=False)
    assert runs[0]["n_labels"] == classes and runs[0]["test_acc"] > 0.9, runs
