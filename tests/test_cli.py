"""Command line: --help everywhere, clean one-line errors with exit status 2, train/report/data/learners."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
import yaml

from neuroplastic import cli

COMMANDS = [["train"], ["bench"], ["report"], ["export"], ["data"], ["data", "list"], ["data", "verify"],
            ["data", "download"], ["learners"], []]
QUICK = ["--learner", "bp", "--dataset", "digits", "--preset", "mlp", "--epochs", "1", "--set", "params.hidden=[16]"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test process: these tiny models gain nothing from more, and a shared loaded
    machine loses a lot."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage: neuroplastic" in capsys.readouterr().out


def test_entry_point_runs():
    exe = [sys.executable, "-m", "neuroplastic.cli"]
    p = subprocess.run(exe + ["--help"], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0 and "bench" in p.stdout and "learners" in p.stdout


def _err(capsys, argv) -> str:
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 2, out
    assert "Traceback" not in out.err and len(out.err.strip().splitlines()) == 1
    return out.err


@pytest.mark.parametrize("argv, names", [
    (["train", "--learner", "no-such-learner"], ["no-such-learner", "bp"]),
    (["train", *QUICK, "--set", "epochz=3"], ["epochz", "epochs"]),
    (["train", *QUICK, "--set", "epochs=abc"], ["epochs", "abc"]),
    (["train", *QUICK, "--set", "params.optimizer=nesterov"], ["nesterov", "sgd"]),
    (["train", *QUICK, "--set", "params.nope=1"], ["nope", "hidden"]),
    (["train", *QUICK, "--set", "novalue"], ["novalue"]),
    (["train", *QUICK, "--dataset", "no-such-data"], ["no-such-data", "digits"]),
    (["train", "missing-config.yaml"], ["missing-config.yaml"]),
    (["train", "no-such-preset"], ["no-such-preset", "bp-digits"]),
    (["bench", "no-such-suite"], ["no-such-suite", "quick"]),
    (["bench", "quick", "--where", "seed", "--dry-run"], ["--where", "seed"]),
    (["train", "sal-cnn-mnist-80nets", "--set", "params.sal_nets=0"], ["sal_nets", "got 0"]),
    (["data", "verify", "no-such-data"], ["no-such-data", "digits"]),
    (["report", "--energy", "flops=1"], ["--energy", "flops=1"]),
    (["report", "--energy", "mac=-2"], ["--energy", "mac_pj"]),
    (["export", "tensorboard", "--db", "missing.db"], ["missing.db"]),
])
def test_bad_input_exits_2_naming_it(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _err(capsys, argv)
    for n in names:
        assert n in err
    assert not list(tmp_path.glob("results/train/*"))  # a run that could not start leaves nothing behind


def test_corrupt_files_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("learner: [bp\n")
    assert "bad.yaml" in _err(capsys, ["train", "bad.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert "mapping" in _err(capsys, ["train", "list.yaml"])
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"name": "s", "grid": {"learner": ["bp"]}, "extra": 1}))
    assert "'extra'" in _err(capsys, ["bench", "suite.yaml", "--db", "x.db"])
    (tmp_path / "bad.db").write_bytes(b"not sqlite" * 200)
    assert "bad.db" in _err(capsys, ["report", "--db", "bad.db"])
    assert "missing.db" in _err(capsys, ["report", "--db", "missing.db"])


def test_train_writes_record_and_history_and_resumes(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert cli.main(["train", "bp-digits", "--epochs", "2", "--set", "params.hidden=[16]", "--set", "params.lr=0.01",
                     "--out", str(out), "-q"]) == 0
    rec = json.loads((out / "records.json").read_text())[0]
    hist = json.loads((out / "history.json").read_text())
    assert rec["learner"] == "bp" and rec["epochs"] == 2 and rec["params"]["lr"] == 0.01
    assert rec["params"]["hidden"] == [16] and 0.0 <= rec["test_acc"] <= 1.0
    assert rec["command"].startswith("neuroplastic train bp-digits")
    assert [h["epoch"] for h in hist] == [1, 2]
    assert "last5_test_acc" not in rec  # 2 epochs: no mean of the last 5
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 2
    # the same out folder without --resume is refused; with --resume the finished run is not retrained
    assert "--resume" in _err(capsys, ["train", "bp-digits", "--epochs", "2", "--out", str(out)])
    assert cli.main(["train", "bp-digits", "--epochs", "2", "--set", "params.hidden=[16]", "--set",
                     "params.lr=0.01", "--out", str(out), "--resume", "-q"]) == 0
    assert json.loads((out / "history.json").read_text()) == hist


def test_train_that_diverges_keeps_its_curve(capsys, tmp_path, monkeypatch, diverging_learner):
    monkeypatch.chdir(tmp_path)
    diverging_learner("zz-diverges-cli", epoch=2, value=float("nan"))
    assert cli.main(["train", "--learner", "zz-diverges-cli", "--dataset", "digits", "--epochs", "3",
                     "--out", "o", "-q"]) == 1
    err = capsys.readouterr().err
    assert "run stopped" in err and "loss is nan at epoch 2 step 1" in err and "1 finished epochs" in err
    assert [h["epoch"] for h in json.loads((tmp_path / "o" / "history.json").read_text())] == [1]
    assert (tmp_path / "o" / "checkpoint.pt").exists()


def test_train_from_yaml_with_dotted_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"learner": "bp", "dataset": "digits", "epochs": 1,
                                                     "params": {"hidden": [8], "lr": 0.1}}))
    assert cli.main(["train", "c.yaml", "--set", "params.lr=0.002", "--seed", "4", "--out", "o", "-q"]) == 0
    rec = json.loads((tmp_path / "o" / "records.json").read_text())[0]
    assert rec["params"] == {"hidden": [8], "lr": 0.002} and rec["seed"] == 4


def test_parse_set_values():
    assert cli.parse_set(["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=null", "f=adam", "params.lr=1e-3"]) == [
        ("a", 1), ("b", 0.5), ("c", True), ("d", [1, 2]), ("e", None), ("f", "adam"), ("params.lr", 1e-3)]


def test_learners_lists_bp_with_paper_and_criteria(capsys):
    assert cli.main(["learners"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("bp "))
    assert "Rumelhart" in line and "✘" in line
    assert "C1" in out and "C2" in out and "C3" in out
    assert cli.main(["learners", "dll"]) == 0  # each preset's network, as backprop's arch names it
    assert re.search(r"^ +cnn-cifar +lv_cnn_cifar\(act=tanh\)$", capsys.readouterr().out, re.MULTILINE)


def test_data_list_and_verify(capsys, tmp_path):
    assert cli.main(["data", "--data-root", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and any(x.startswith("digits") and "embedded" in x for x in out.splitlines())
    assert cli.main(["data", "verify", "digits"]) == 0


def test_bench_dry_run_and_report(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["bench", "quick", "--dry-run"]) == 0
    assert " bp digits" in capsys.readouterr().out
    (tmp_path / "two.yaml").write_text(yaml.safe_dump({"name": "two", "cells": [{"params": {"lr": 0.1}},
                                                                              {"params": {"lr": 0.2}}],
                                                      "base": {"learner": "bp", "dataset": "digits", "epochs": 1}}))
    assert cli.main(["bench", "two.yaml", "--dry-run"]) == 0  # the cells of one learner told apart
    listed = capsys.readouterr().out
    assert "variant" in listed and "params.lr=0.1" in listed and "params.lr=0.2" in listed
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "s", "grid": {"learner": ["bp"], "seed": [0, 1]},
                                                    "base": {"dataset": "digits", "epochs": 1,
                                                             "params": {"hidden": [8]}}}))
    assert cli.main(["bench", "s.yaml", "--jobs", "1", "--threads", "1", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "bp" in out and "± " in out and "2 done" in out
    assert "epoch 1/1" not in out  # quick epochs print no epoch line, only each run's result
    assert cli.main(["bench", "s.yaml", "--dry-run"]) == 0
    assert "last epoch" not in capsys.readouterr().out  # every run done
    spec = yaml.safe_load((tmp_path / "s.yaml").read_text())
    spec["grid"]["seed"].append(2)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    from neuroplastic.bench import suite as suite_mod

    h = suite_mod.load(str(tmp_path / "s.yaml")).runs[-1][0]
    (tmp_path / "results" / "runs" / h).mkdir(parents=True)
    (tmp_path / "results" / "runs" / h / "progress.log").write_text("t  epoch 1/3  val_acc 50.00%\nt  epoch 2/3  x\n")
    assert cli.main(["bench", "s.yaml", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert re.search(rf"^{h} +bp digits/default seed 2 +1 +new +t  epoch 2/3  x$", listed, re.MULTILINE)
    from neuroplastic.bench.db import ResultsDB

    db = ResultsDB(tmp_path / "results" / "neuroplastic.db")  # seed 2 published by an earlier session's export
    db.import_records("pub", [{"hash": h, "learner": "bp", "dataset": "digits", "seed": 2, "test_acc": 0.9}])
    db.close()
    assert cli.main(["bench", "s.yaml", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert re.search(rf"^{h} +bp digits/default seed 2 +1 +new +pub +t  epoch 2/3  x$", listed, re.MULTILINE)
    assert "1 of 3 runs have a published record" in listed and "published in" in listed
    assert cli.main(["report", "--format", "json", "--out", "r.json"]) == 0
    recs = json.loads((tmp_path / "r.json").read_text())
    assert len(recs) == 2 and {r["seed"] for r in recs} == {0, 1}
    assert cli.main(["report", "--suite", "s"]) == 0
    assert (tmp_path / "results" / "report" / "report.html").exists()
    assert "'nope'" in _err(capsys, ["report", "--suite", "nope"])


def test_analyze_spiking_from_a_train_output_folder(tmp_path):
    from neuroplastic.cli import main

    out = tmp_path / "run"
    assert main(["train", "--learner", "snn-mode", "--dataset", "context-mini", "--epochs", "1",
                 "--set", "params.n_hidden=32", "--set", "limit_train=64", "--set", "limit_test=32",
                 "--out", str(out), "-q"]) == 0
    assert main(["analyze", "spiking", str(out), "--out", str(tmp_path / "an"), "--trials", "8",
                 "--limit", "16"]) == 0
    assert (tmp_path / "an" / "spectrum.png").exists() and (tmp_path / "an" / "summary.json").exists()


def test_analyze_rejects_unknown_system(capsys):
    from neuroplastic.cli import main

    with pytest.raises(SystemExit) as e:
        main(["analyze", "nosuch"])
    assert e.value.code == 2


def test_analyze_hebbian_from_a_train_output_folder(tmp_path):
    from neuroplastic.cli import main

    out = tmp_path / "run"
    assert main(["train", "--learner", "hebbian-softhebb", "--dataset", "digits", "--epochs", "1",
                 "--set", "limit_train=200", "--out", str(out), "-q"]) == 0
    assert main(["analyze", "hebbian", str(out), "--out", str(tmp_path / "an"), "--rf-steps", "5",
                 "--points", "50"]) == 0
    assert (tmp_path / "an" / "filters.png").exists() and (tmp_path / "an" / "winner_frequency.png").exists()


def test_analyze_sal_runs_phases_at_fixed_w_from_a_train_output_folder(tmp_path, capsys):
    import json

    from neuroplastic.cli import main

    out = tmp_path / "run"
    assert main(["train", "--learner", "sal", "--dataset", "digits", "--preset", "mlp", "--epochs", "1",
                 "--set", "params.hidden=[16]", "--set", "params.sal_nets=4", "--set", "params.sal_blocks=1",
                 "--set", "params.sal_block_steps=100", "--set", "limit_train=64", "--out", str(out), "-q"]) == 0
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "an"), "--phases", "2", "--nets", "4",
                 "8"]) == 0
    s = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert [(r["start"], r["nets"], len(r["phases"])) for r in s["rows"]] == [
        ("trained", 4, 3), ("trained", 8, 3), ("transpose", 4, 3), ("transpose", 8, 3)]
    first = s["rows"][2]["phases"]
    assert all(v == pytest.approx(0, abs=1e-3) for k, v in first[0].items())  # B = W: angle 0 before a phase
    assert all(v > 0 for k, v in first[1].items() if k.startswith("angle_deg"))  # the noise moves it off
    assert (tmp_path / "an" / "sal_floor.png").exists()
    layers = s["rows"][0]["layers"]  # the run's own phase: its bound, from its history.json
    assert {f"run_bound_deg/{i}" for i in layers} <= set(s["last"]), s["last"]
    assert {f"movement_deg/{i}" for i in layers} <= set(s["last"]), s["last"]  # its phase log against its epochs
    # each row's own phases (the trained start's: from B = W there is no pull)
    assert all(f"sal_bound_deg/{i}" in s["rows"][0]["phases"][1] for i in layers)
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "bias"), "--phases", "0", "--bias", "--nets",
                 "4"]) == 0
    s = json.loads((tmp_path / "bias" / "summary.json").read_text())
    assert s["rows"] == [] and [r["nets"] for r in s["bias"]] == [4]
    for i in s["bias"][0]["layers"]:
        row = {k: s["last"][f"bias/4/{k}/{i}"] for k in ("drift", "noise", "corr", "pull")}
        assert row["drift"] >= 0 and row["noise"] > 0 and -1 <= row["corr"] <= 1 and row["pull"] > 0, row
    assert not (tmp_path / "bias" / "sal_floor.png").exists()
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "biasb"), "--phases", "0", "--bias", "--nets",
                 "4", "--bias-at", "trained"]) == 0  # from B = r W, r the trained B's norm ratio
    sb = json.loads((tmp_path / "biasb" / "summary.json").read_text())
    assert sb["bias_at"] == "trained" and all(0 < r for r in sb["bias"][0]["ratio"])
    assert all(f"bias/4/bias_deg/{i}" in sb["last"] for i in sb["bias"][0]["layers"]), sb["last"]
    assert s["refractory"] == 10  # the run's: tau_ref
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "bias9"), "--phases", "0", "--bias", "--nets",
                 "4", "--refractory", "9"]) == 0
    s9 = json.loads((tmp_path / "bias9" / "summary.json").read_text())
    assert s9["refractory"] == 9 and s9["last"] != s["last"]  # other neurons, other spikes
    capsys.readouterr()
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "bias8"), "--phases", "0", "--bias",
                 "--refractory", "8"]) != 0
    assert "--refractory must be" in capsys.readouterr().err and not (tmp_path / "bias8").exists()
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "an0"), "--phases", "0"]) == 0
    s0 = json.loads((tmp_path / "an0" / "summary.json").read_text())  # no phases: the run's own bound and movement
    own = ("run_", "phases_for", "after_phase", "movement", "floor_deg", "excess")
    assert s0["rows"] == s0["bias"] == [] and s0["last"] == {k: v for k, v in s["last"].items() if k.startswith(own)}
    assert not (tmp_path / "an0" / "sal_floor.png").exists()
    assert main(["analyze", "sal", str(out), "--out", str(tmp_path / "an"), "--phases", "-1"]) != 0
    assert "phases must be >= 0" in capsys.readouterr().err
    fa = tmp_path / "fa"
    assert main(["train", "--learner", "fa", "--dataset", "digits", "--preset", "mlp", "--epochs", "1",
                 "--set", "limit_train=64", "--out", str(fa), "-q"]) == 0
    capsys.readouterr()
    assert main(["analyze", "sal", str(fa), "--out", str(tmp_path / "an2")]) != 0
    assert "needs a sal run" in capsys.readouterr().err and not (tmp_path / "an2").exists()


def test_help_imports_no_torch_and_version_and_data_root_after_the_action(capsys, tmp_path):
    """`--help` builds the parser without importing torch (fast); `--version`; `data list --data-root X`."""
    code = ("import sys; from neuroplastic.cli import build_parser; p = build_parser(); "
            "h = p.format_help(); assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and "neuroplastic 0." in capsys.readouterr().out
    assert cli.main(["data", "list", "--data-root", str(tmp_path)]) == 0
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize("system", ["spiking", "hebbian", "sal"])
def test_analyze_help_names_the_real_program(system, capsys):
    with pytest.raises(SystemExit):
        cli.main(["analyze", system, "--help"])
    assert capsys.readouterr().out.startswith(f"usage: neuroplastic analyze {system}")
