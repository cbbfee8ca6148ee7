"""The Ray backend: a 12-run suite on a local Ray instance started by the test gives the same metrics as the local
process pool (same seeds), and the store is written by the head process alone."""

import io

import pytest

from neuroplastic.bench import runner, suite
from neuroplastic.bench.db import ResultsDB

pytest.importorskip("ray", reason="the Ray backend needs the dist extra (pip install 'neuroplastic[dist]'); "
                                  "make test installs it")

SPEC = {"name": "ray12", "grid": {"learner": ["bp", "fa", "kp", "dfa"], "seed": [0, 1, 2]},
        "base": {"dataset": "digits", "epochs": 2, "batch_size": 64, "val": 0.1,
                 "params": {"arch": "mlp", "hidden": [16], "lr": 0.01}}}
TIMING = ("seconds", "samples_per_s", "peak_memory")


def _metrics(db_path):
    db = ResultsDB(db_path)
    rows = db.runs("ray12")
    db.close()
    assert len(rows) == 12 and all(r["status"] == "done" for r in rows)
    return {r["hash"]: ({k: v for k, v in r["metrics"].items() if not any(t in k for t in TIMING)},
                        [{k: v for k, v in h.items() if not any(t in k for t in TIMING)} for h in r["history"]])
            for r in rows}


def test_a_suite_on_local_ray_equals_the_process_pool(tmp_path):
    s = suite.expand(SPEC)
    kw = {"results_dir": tmp_path / "res", "out": io.StringIO(), "report": False, "threads": 1, "command": "test"}
    ray_counts = runner.run_suite(s, db_path=tmp_path / "ray.db", jobs=2, backend="ray", **kw)
    assert ray_counts["done"] == 12
    pool_counts = runner.run_suite(s, db_path=tmp_path / "pool.db", jobs=2, **dict(kw, results_dir=tmp_path / "p"))
    assert pool_counts["done"] == 12
    on_ray, in_pool = _metrics(tmp_path / "ray.db"), _metrics(tmp_path / "pool.db")
    assert on_ray == in_pool
    assert len({m["test_acc"] for m, _ in on_ray.values()}) > 1  # the runs differ: a real comparison
    # a second bench on Ray finds nothing open
    again = runner.run_suite(s, db_path=tmp_path / "ray.db", jobs=2, backend="ray", **kw)
    assert again == ray_counts


def test_bench_rejects_an_address_without_ray_backend(tmp_path, capsys):
    from neuroplastic import cli

    assert cli.main(["bench", "quick", "--address", "auto", "--db", str(tmp_path / "x.db")]) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err
