"""Robustness at inference: level 0 is the plain test accuracy exactly, weights come back unchanged, perturbations do
what they say, and the protocol key records the metrics that the report's table shows."""

import pytest
import torch

from neuroplastic import data, experiment, learners, trainer
from neuroplastic.robustness import perturbed, robustness, synaptic_weights


@pytest.fixture(scope="module")
def trained():
    trainer.seed_everything(0)
    b = data.prepare("digits", val=0.1, seed=0)
    m = learners.get("bp", in_shape=b.in_shape, n_classes=10, arch="mlp", hidden=[32])
    trainer.fit(m, b, epochs=3, batch_size=64, progress=False)
    return m, b


def test_level_zero_is_the_plain_accuracy_and_weights_are_restored(trained):
    m, b = trained
    before = {k: v.clone() for k, v in m.state_dict().items()}
    plain = trainer.evaluate(m, b.test.x, b.test.y)["acc"]
    out = robustness(m, b, mismatch=(0.0, 0.2), input_noise=(0.0, 0.5), bits=(8, 2))
    assert out["robust_mismatch/0"] == plain and out["robust_noise/0"] == plain
    assert out["robust_bits/8"] > plain - 0.02  # 8 bits barely matter on a small MLP
    assert out["robust_bits/2"] < plain and out["robust_noise/0.5"] < plain
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_mismatch_is_a_fixed_lognormal_factor_and_quantisation_has_few_levels(trained):
    m, _ = trained
    (_name, w), *_ = synaptic_weights(m)
    assert w.dim() >= 2 and all(t.dim() >= 2 for _, t in synaptic_weights(m))
    ref = w.detach().clone()
    with perturbed(m, "mismatch", 0.1, seed=3):
        ratio = (w.detach() / ref)[ref != 0].log()
        first = w.detach().clone()
    with perturbed(m, "mismatch", 0.1, seed=3):
        assert torch.equal(w, first)  # the same chip for the same seed
    assert abs(float(ratio.std()) - 0.1) < 0.01 and abs(float(ratio.mean())) < 0.01
    with perturbed(m, "quantize", 4):
        assert len(w.unique()) <= 2**4 - 1
    assert torch.equal(w, ref)
    with pytest.raises(ValueError, match="unknown perturbation"), perturbed(m, "melt", 1):
        pass


def test_protocol_robustness_is_recorded_and_reported(tmp_path):
    from neuroplastic.bench import report

    cfg = {"learner": "bp", "dataset": "digits", "epochs": 1, "params": {"arch": "mlp", "hidden": [16]},
           "protocol": {"robustness": True}}
    out = experiment.run(cfg, progress=False)
    assert out.metrics["robust_mismatch/0"] == out.metrics["test_acc"]
    rows = [{"config": experiment.validate(cfg), "status": "done", "metrics": out.metrics, "history": [],
             "train_seconds": 1.0}]
    head, cells = report.robustness_rows(report.summarize(rows))
    assert "mismatch σ 0.2" in head and "bits 4" in head and len(cells) == 1 and "variant" not in head
    assert report.robustness_rows(report.summarize([dict(rows[0], metrics={"test_acc": 0.5})])) == ([], [])
    other = experiment.validate({**cfg, "params": {"arch": "mlp", "hidden": [32]}})  # a second variant of bp
    head, cells = report.robustness_rows(report.summarize(rows + [dict(rows[0], config=other)]))
    assert head[3] == "variant" and len(cells) == 2 and cells[0][3] != cells[1][3]  # the rows are told apart


def test_robustness_command_reads_saved_models_and_adds_to_the_store(tmp_path, capsys):
    import json

    from neuroplastic import cli
    from neuroplastic.bench.db import ResultsDB

    cfg = experiment.validate({"learner": "bp", "dataset": "digits", "epochs": 1,
                               "params": {"arch": "mlp", "hidden": [16]}})
    h = experiment.config_hash(cfg)
    folder = tmp_path / "runs" / h
    out = experiment.run(cfg, checkpoint_dir=folder, progress=False)
    (folder / "config.json").write_text(json.dumps(cfg))
    db = ResultsDB(tmp_path / "neuroplastic.db")
    db.put_done("s", h, cfg, metrics=out.metrics, history=[], env={}, train_seconds=1.0, wall_seconds=1.0,
                record={"test_acc": out.metrics["test_acc"]})
    db.close()
    assert cli.main(["robustness", "--db", str(tmp_path / "neuroplastic.db")]) == 0
    text = capsys.readouterr().out
    assert "robust_mismatch/0.2" in text and f"{100 * out.metrics['test_acc']:.2f}" in text
    db = ResultsDB(tmp_path / "neuroplastic.db")
    row = db.get(h)
    assert row["metrics"]["robust_mismatch/0"] == out.metrics["test_acc"] and "robust_bits/4" in row["record"]


def test_saved_models_can_have_their_energy_recounted_into_the_store(tmp_path, capsys):
    import json

    from neuroplastic import cli
    from neuroplastic.bench.db import ResultsDB

    cfg = experiment.validate({"learner": "bp", "dataset": "digits", "epochs": 1,
                               "params": {"arch": "mlp", "hidden": [16]}, "protocol": {"energy": False}})
    h = experiment.config_hash(cfg)
    folder = tmp_path / "elsewhere" / h  # a bench run folder recorded in the run's environment
    out = experiment.run(cfg, checkpoint_dir=folder, progress=False)
    assert "energy_inference_pj" not in out.metrics
    (folder / "config.json").write_text(json.dumps(cfg))
    db = ResultsDB(tmp_path / "store.db")
    db.put_done("s", h, cfg, metrics=out.metrics, history=[], env={"run_dir": str(folder)}, train_seconds=1.0,
                wall_seconds=1.0, record={"test_acc": out.metrics["test_acc"]})
    db.close()
    assert cli.main(["robustness", "--what", "energy", "--db", str(tmp_path / "store.db")]) == 0
    assert "ops_inference_mac" in capsys.readouterr().out
    row = ResultsDB(tmp_path / "store.db").get(h)
    assert row["metrics"]["ops_inference_mac"] == 64 * 16 + 16 * 10 and "robust_mismatch/0" not in row["metrics"]
