"""Regression tests of the hardening issue: nothing the library reads runs code, no silently wrong resume, hostile
YAML refused quickly, values with the wrong meaning refused, bad input one line (exit 2) and internal errors
apart (exit 1, traceback in a log), Markdown that cannot inject, no temporaries left by a kill."""

from __future__ import annotations

import time

import pytest
import torch
import yaml

from neuroplastic import cli, experiment, trainer
from neuroplastic.experiment import ConfigError


def _run(capsys, argv) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


class _Payload:
    """Unpickling this writes a file: proof that a load ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_checkpoint_runs_no_code_on_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "bp-digits", "--epochs", "1", "--out", "run", "-q"]) == 0
    torch.save({"learner": _Payload(str(tmp_path / "pwned")), "epoch": 0}, tmp_path / "run" / trainer.CHECKPOINT)
    code, err = _run(capsys, ["train", "bp-digits", "--epochs", "2", "--out", "run", "--resume", "-q"])
    assert code != 0 and not (tmp_path / "pwned").exists()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_resume_with_another_config_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "bp-digits", "--epochs", "2", "--out", "run", "-q"]) == 0
    before = (tmp_path / "run" / "config.yaml").read_text()
    code, err = _run(capsys, ["train", "bp-digits", "--epochs", "2", "--set", "params.lr=0.5", "--out", "run",
                              "--resume", "-q"])
    assert code == 2 and "params.lr: 0.001 -> 0.5" in err
    assert (tmp_path / "run" / "config.yaml").read_text() == before
    # the checkpoint itself carries the config hash: a folder whose config.yaml was swapped is refused too
    cfg = experiment.validate(yaml.safe_load(before))
    other = experiment.validate({**cfg, "seed": 5})
    from neuroplastic import data

    bundle = data.prepare("digits", val=0.1, seed=0)
    learner = experiment.make_learner(other, bundle)
    with pytest.raises(ValueError, match="config_hash"):
        trainer.fit(learner, bundle, epochs=2, batch_size=32, checkpoint_dir=tmp_path / "run", resume=True,
                    progress=False, checkpoint_meta={"config_hash": experiment.config_hash(other)})


def test_train_never_overwrites_a_users_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("# mine\nlearner: bp\n")
    code, err = _run(capsys, ["train", "bp-digits", "--epochs", "1", "--out", ".", "-q"])
    assert code == 2 and "config.yaml" in err
    assert (tmp_path / "config.yaml").read_text() == "# mine\nlearner: bp\n"
    (tmp_path / "afile").write_text("x")
    code, err = _run(capsys, ["train", "bp-digits", "--out", "afile", "-q"])
    assert code == 2 and "afile" in err


@pytest.mark.parametrize("text, words", [
    ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)), "expands"),
    ("learner: bp\nlearner: fa\n", "duplicate key 'learner'"),
    ("a: " + "[" * 500 + "]" * 500 + "\n", "nesting deeper"),
])
def test_hostile_yaml_is_refused_quickly_naming_the_file(tmp_path, text, words):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=words) as e:
        experiment.load_yaml(p)
    assert "c.yaml" in str(e.value) and time.perf_counter() - t0 < 5


def test_undecodable_or_folder_config_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin.yaml").write_bytes(b"learner: b\xe9p\n")
    code, err = _run(capsys, ["train", "latin.yaml"])
    assert code == 2 and "latin.yaml" in err and "UTF-8" in err
    (tmp_path / "d.yaml").mkdir()
    code, err = _run(capsys, ["train", "d.yaml"])
    assert code == 2 and "d.yaml" in err


@pytest.mark.parametrize("extra, key", [
    ({"params": {"hidden": [0]}}, "hidden"), ({"params": {"hidden": [-3]}}, "hidden"),
    ({"params": {"hidden": "64"}}, "hidden"), ({"params": {"hidden": 64}}, "hidden"),
    ({"params": {"hidden": [10**9]}}, "hidden"), ({"val": 1.5}, "val"), ({"val": -1}, "val"),
    ({"limit_train": -5}, "limit_train"), ({"limit_test": 0}, "limit_test"),
    ({"eval_batch_size": 0}, "eval_batch_size"), ({"seed": -1}, "seed"), ({"seed": float("inf")}, "seed"),
])
def test_values_with_the_wrong_meaning_are_config_errors(extra, key):
    for learner in ("bp", "brsf"):
        with pytest.raises(ConfigError, match=key):
            experiment.build({"learner": learner, "dataset": "digits", **extra})


def test_flips_on_non_images_are_config_errors():
    with pytest.raises(ConfigError, match="protocol.hflip"):
        experiment.build({"learner": "bp", "dataset": "context-mini", "protocol": {"hflip": True}})


@pytest.mark.parametrize("cfg, words", [
    ({"learner": "sal", "dataset": "mnist", "params": {"sal_nets": 0}}, ["'sal'", "sal_nets", "got 0"]),
    ({"learner": "bp", "dataset": "cifar-10", "preset": "mlp", "params": {"hidden": [0]}}, ["'bp'", "hidden"]),
    ({"learner": "bp", "dataset": "mnist", "params": {"optimizer": "sgd", "lr": -1.0}}, ["'bp'", "lr"]),
])
def test_refused_values_are_reported_before_any_data_is_read(cfg, words, tmp_path, monkeypatch):
    """With no data at the root, the error is the refused value (the sample shape comes from the registry), and
    torch's random stream is where it was."""
    monkeypatch.setenv("NEUROPLASTIC_DATA", str(tmp_path / "empty"))
    torch.manual_seed(7)
    state = torch.get_rng_state()
    with pytest.raises(ConfigError) as e:
        experiment.preflight(experiment.validate(cfg))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ConfigError, match=words[1]):  # and so does building the run
        experiment.build(cfg)
    experiment.preflight(experiment.validate({**cfg, "params": {}}))  # the defaults pass


def test_the_sample_shape_known_before_reading_is_the_one_the_data_has():
    """Every registered dataset knows its sample shape without its files (declared, or made by its generator),
    and for those that need no files it equals the prepared bundle's."""
    from neuroplastic import data

    for name in data.dataset_names():
        info = data.dataset_info(name)
        shape = data.sample_shape(name)
        assert shape is not None and all(n >= 1 for n in shape), name
        if info.generated or info.embedded:
            assert shape == data.prepare(name, val=0.1).in_shape, name


def test_internal_errors_exit_1_with_the_traceback_in_a_log(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def broken(*a, **k):
        raise KeyError("a bug, not the user's input")

    monkeypatch.setattr(experiment, "run", broken)
    code, err = _run(capsys, ["train", "bp-digits", "--epochs", "1", "--out", "o", "-q"])
    assert code == 1 and "internal error" in err and len(err.strip().splitlines()) == 1
    [log] = list((tmp_path / "results" / "logs").glob("error-train-*.log"))
    assert "Traceback" in log.read_text() and "a bug" in log.read_text()


def test_markdown_report_escapes_names_and_errors(tmp_path):
    from neuroplastic.bench.db import ResultsDB
    from neuroplastic.bench.report import md_escape, write_report

    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert md_escape("[click](http://x)") == "\\[click\\]\\(http://x\\)"
    db = ResultsDB(tmp_path / "db.sqlite")
    cfg = experiment.validate({"learner": "bp", "dataset": "digits"})
    db.add_runs("s", [("h1", cfg)])
    db.claim("h1")
    db.fail("h1", "ValueError: <script>alert(1)</script> ![x](http://evil/p.png)")
    db.close()
    write_report(tmp_path / "db.sqlite", tmp_path / "rep", ("md",))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<script>" not in md and "![x](http" not in md and "&lt;script&gt;" in md


def test_a_killed_write_leaves_no_temporary_behind(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f"checkpoint.pt.tmp{p.pid}"
        live.write_bytes(b"partial")
        dead = tmp_path / "checkpoint.pt.tmp999999999"
        dead.write_bytes(b"partial")
        (tmp_path / "records.json.tmp999999998").write_text("[")
        gone = trainer.remove_stale_temporaries(tmp_path)
        assert sorted(g.name for g in gone) == ["checkpoint.pt.tmp999999999", "records.json.tmp999999998"]
        assert live.exists()  # a live writer's temporary is left alone
    finally:
        p.kill()
        p.wait()


def test_divergence_inside_a_learner_names_epoch_and_step():
    from neuroplastic import data, learners
    from neuroplastic.learners.base import NonFiniteError

    bundle = data.prepare("context-mini", val=0, seed=0, limit_train=40)
    m = learners.get("snn-mode", in_shape=bundle.in_shape, n_classes=bundle.n_classes, n_hidden=16, n_modes=2,
                     lr=1e6)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match=r"epoch 1 step 1"):
        trainer.fit(m, bundle, epochs=1, batch_size=8, progress=False)


def test_claims_hold_leases_so_a_reused_pid_or_renamed_host_cannot_keep_a_dead_run(tmp_path, capsys):
    """A running row claimed by a live PID of another process (PID reuse) or another host name is reclaimed once
    its lease expires; a live worker's heartbeat keeps it; a resumed crash uses up no attempt."""
    from neuroplastic.bench.db import ResultsDB

    db = ResultsDB(tmp_path / "db.sqlite")
    cfg = experiment.validate({"learner": "bp", "dataset": "digits"})
    db.add_runs("s", [("a", cfg), ("b", cfg | {"seed": 1})])
    assert db.claim("a", pid=1)  # pid 1 is alive (init): as if a dead worker's pid had been reused
    assert not db.claim("a")  # live pid, lease valid: not claimable
    assert db.heartbeat("a", pid=1)
    with db._tx() as c:  # the dead worker never renews: its lease runs out
        c.execute("UPDATE runs SET lease=? WHERE hash='a'", (time.time() - 1,))
    assert db.claim("a") and db.get("a")["attempts"] == 1  # resumed: the crash did not use up an attempt
    assert not db.heartbeat("a", pid=1)  # the old claimant lost it
    assert not db.finish("a", metrics={}, history=[], env={}, train_seconds=0, wall_seconds=0, record={}, pid=1)
    db.claim("b")
    with db._tx() as c:  # claimed under another host name, then the host was renamed (containers)
        c.execute("UPDATE runs SET host='old-name', lease=? WHERE hash='b'", (time.time() - 1,))
    assert db.claim("b")
    db.close()
    code, err = _run(capsys, ["bench", "quick", "--max-attempts", "-1", "--db", str(tmp_path / "x.db")])
    assert code == 2 and "--max-attempts" in err


def test_reliability_campaign_records_its_counts_and_export_renders_them(tmp_path, capsys, monkeypatch):
    """``neuroplastic reliability`` (all categories but the slow kills, which tests/test_faults.py covers) ends with
    no bad outcome, records one row per category in the store, and ``results export`` renders the section."""
    monkeypatch.chdir(tmp_path)
    cats = ["config", "yaml", "dataset", "files read back", "resume", "cli"]
    argv = ["reliability", "--cases", "60", "--db", "store.db"] + [x for c in cats for x in ("--only", c)]
    code = cli.main(argv)
    from neuroplastic.bench.db import ResultsDB

    rows = ResultsDB(tmp_path / "store.db").imported("reliability")["reliability"]
    assert code == 0, [(r["category"], r["examples"]) for r in rows if r["examples"]]  # the first bad case of each
    assert [r["category"] for r in rows] == cats
    for r in rows:
        assert r["cases"] > 0 and r["cases"] == sum(r[k] for k in ("accepted", "clear_errors", "tracebacks",
                                                                    "silent_wrong", "data_lost", "code_executed"))
        assert r["tracebacks"] == r["silent_wrong"] == r["data_lost"] == r["code_executed"] == 0, r["examples"]
        assert r["commit"] and r["cpu"] and "reliability" in r["command"]
    assert cli.main(["results", "--db", "store.db", "export", "--out", "pub"]) == 0
    text = (tmp_path / "pub" / "RESULTS.md").read_text()
    assert "## reliability (`neuroplastic reliability`)" in text and "| files read back | 10 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_an_absent_cuda_device_is_a_config_error_before_any_data_is_loaded(device, capsys):
    with pytest.raises(ConfigError, match="no CUDA device"):
        experiment.build({"learner": "bp", "dataset": "mnist", "device": device})  # mnist: no data needed to fail
    code, err = _run(capsys, ["bench", "quick", "--device", device, "--dry-run"])
    assert code == 2 and "no CUDA device" in err and len(err.strip().splitlines()) == 1
