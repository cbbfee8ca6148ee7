"""Studies as runs of the store: validated configs, bench runs them and records their metrics, curves and pictures,
and the report lists them beside the learners."""

import io

import pytest
import torch

from neuroplastic import experiment, studies
from neuroplastic.bench import report, runner, suite
from neuroplastic.bench.db import ResultsDB
from neuroplastic.experiment import ConfigError

TWO = {"study": "sal-two-neurons", "params": {"runs": 3, "blocks": 4, "block_steps": 300}, "seed": 0}


def test_study_configs_are_validated_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown study 'nope'.*sal-two-neurons"):
        experiment.validate({"study": "nope"})
    with pytest.raises(ConfigError, match="no parameter.*'blockz'.*allowed: runs"):
        experiment.validate({"study": "sal-two-neurons", "params": {"blockz": 3}})
    with pytest.raises(ConfigError, match="unknown key.*'epochs'"):
        experiment.validate({"study": "sal-two-neurons", "epochs": 5})
    with pytest.raises(ConfigError, match="seed"):
        experiment.validate({"study": "sal-two-neurons", "seed": -1})
    cfg = experiment.validate(TWO)
    assert cfg["learner"] == "sal-two-neurons" and cfg["dataset"] == "study"
    assert experiment.validate(cfg) == cfg  # validating twice changes nothing (the store re-validates)
    assert experiment.config_hash(cfg) == experiment.config_hash(experiment.validate(dict(TWO)))
    assert {"sal-two-neurons", "sal-sampling"} <= set(studies.names())


def test_bench_runs_studies_into_the_store_with_curves_pictures_and_a_report(tmp_path):
    spec = {"name": "studies", "cells": [TWO, {"study": "sal-two-neurons", "params": {**TWO["params"], "both": True}},
                                         {"study": "sal-sampling", "params": {"runs": 2, "epochs": 4, "sleep_steps": 100,
                                                                              "eval_every": 2, "eval_steps": 500}}],
            "grid": {"seed": [0]}}
    s = suite.expand(spec)
    counts = runner.run_suite(s, db_path=tmp_path / "r.db", results_dir=tmp_path / "res", command="test",
                              out=io.StringIO(), threads=1, jobs=1, report=False)
    assert counts["done"] == 3
    db = ResultsDB(tmp_path / "r.db")
    rows = {r["config"]["params"].get("both", r["config"]["study"]): r for r in db.runs("studies")}
    db.close()
    one, both = rows["sal-two-neurons"], rows[True]
    assert 0 <= one["metrics"]["converged_fraction"] <= 1 and "mean_error_max" in both["metrics"]
    assert [h["epoch"] for h in one["history"]] == [0, 1, 2, 3, 4] and one["history"][0]["gap_ratio_max"] == 1.0
    assert rows["sal-sampling"]["metrics"]["dkl_sal"] > 0
    assert (tmp_path / "res" / "runs" / one["hash"] / "figures" / "two_neurons.png").is_file()
    report.write_report(tmp_path / "r.db", tmp_path / "rep", ("md", "html"))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| sal-two-neurons | study |" in md and "two\\_neurons" in md
    assert runner.run_suite(s, db_path=tmp_path / "r.db", results_dir=tmp_path / "res", out=io.StringIO(),
                            threads=1, jobs=1, report=False)["done"] == 3  # nothing reruns


def test_two_neuron_study_draws_a_flow_towards_the_diagonal():
    from neuroplastic.sal.studies import two_neuron_study

    out = two_neuron_study(runs=2, blocks=1, block_steps=100, flow_grid=3, flow_steps=20_000, seed=0)
    at, flow = out.data["flow_at"], out.data["flow"]  # grid of (w12, w21); drift of (w12, w21)
    far = (at[:, 0] - at[:, 1]).abs() > 1.5
    assert far.sum() == 2
    assert torch.all(torch.sign(flow[far, 1]) == torch.sign(at[far, 0] - at[far, 1]))  # w21 moves towards w12
