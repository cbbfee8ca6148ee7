"""The reliability campaign: hostile and careless input, tried as an attacker and a careless user would, counted.

``neuroplastic reliability`` runs every category below on this machine and records one row per category in the
results store (section ``reliability``; ``neuroplastic results export`` renders it in RESULTS.md). Each case ends
in exactly one outcome:

* ``accepted`` — valid input that worked (config fuzzing draws valid configs too);
* ``clear error`` — refused with the library's one-line error (``ConfigError``/``InputError``/``DatasetError``,
  CLI exit 2), before anything was written;
* ``traceback`` — any other exception, a CLI exit 1, or a case that did not return in time (must be 0);
* ``silent wrong`` — malformed input accepted, or a changed config resumed, or a refusal that wrote files first
  (must be 0);
* ``data lost`` — a killed run whose finished results are missing, duplicated or different from an
  uninterrupted run's (must be 0);
* ``code executed`` — a planted pickle or YAML tag ran code (must be 0).

Categories: ``config`` (random configs over every registered learner, in a child process with a capped address
space so that huge sizes meet the allocator at once), ``yaml`` (bombs, duplicates, depth, encodings, tags),
``dataset`` (malformed IDX and CIFAR sets and special files: verify and load must both refuse), ``files read
back`` (planted checkpoints and models), ``resume`` (another config), ``cli`` (paths and values a careless user
types) and ``kills`` (``bench`` SIGKILLed at random moments, then finished).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

TITLE = ("Hostile and careless input, counted by `neuroplastic reliability` (one row per category; every case "
         "ends in exactly one outcome). Tracebacks, silent wrong results, data lost and code executed must be 0.")
OUTCOMES = ("accepted", "clear_errors", "tracebacks", "silent_wrong", "data_lost", "code_executed")
CATEGORIES = ("config", "yaml", "dataset", "files read back", "resume", "cli", "kills")


class Tally:
    """Outcome counts of one category, with the first example of every bad outcome (for the record)."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.examples: dict[str, str] = {}
        self.t0 = time.time()

    def add(self, outcome: str, example: str = "") -> None:
        """Count one case as ``outcome`` (one of :data:`OUTCOMES`)."""
        self.counts[outcome] += 1
        if outcome not in ("accepted", "clear_errors") and outcome not in self.examples:
            self.examples[outcome] = example[:300]

    def row(self) -> dict[str, Any]:
        """The category's record: cases and outcome counts."""
        return {"category": self.category, "cases": sum(self.counts.values()), **self.counts,
                "seconds": round(time.time() - self.t0, 1), "examples": self.examples}


def _one_line(msg: str) -> bool:
    return bool(msg.strip()) and "\n" not in msg.strip() and "Traceback" not in msg


def _classify(fn: Callable[[], Any], errors: tuple[type[BaseException], ...]) -> tuple[str, str]:
    """Run ``fn``: ``accepted``, ``clear_errors`` (one of ``errors`` with a one-line message) or ``tracebacks``."""
    try:
        fn()
        return "accepted", ""
    except errors as e:
        return ("clear_errors", "") if _one_line(str(e)) else ("tracebacks", f"multi-line: {e}")
    except Exception as e:  # noqa: BLE001 - the campaign counts what escapes
        return "tracebacks", f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------------
# config fuzzing (in a child process: ``python -m neuroplastic.reliability fuzz N SEED``)
_WORDS = ["", "x", "relu", "tanh", "sgd", "adam", "cosine", "linear", "none", "step", "softhebb", "optimal", "mlp",
          "lenet5", "small_cnn", "lv_cnn_mnist", "bp", "fa", "kp", "paper", "fast", "w", "stochastic", "threshold",
          "bfloat16", "mlp-mnist", "bernoulli16", "rate", "auto", "classification", "sequence", "all", "cuda",
          "cpu", "1e-3", "\u00e9\u0000"]
_INTS = [-7, -1, 0, 1, 2, 3, 5, 8, 16, 64, 1000, 2**31 - 1, 2**31, 2**63, 10**12]
_FLOATS = [0.0, 1e-9, 1e-3, 0.1, 0.5, 0.99, 1.0, 1.5, -0.5, 1e12, float("nan"), float("inf"), -float("inf")]


def _draw(rng: random.Random, hint: Any = None, depth: int = 0) -> Any:
    """A value for a parameter annotated ``hint``: of that type most of the time, anything otherwise."""
    origin = typing.get_origin(hint)
    if hint is not None and rng.random() < 0.75:
        if origin in (typing.Union, types.UnionType):
            return _draw(rng, rng.choice(typing.get_args(hint)), depth)
        if hint is type(None):
            return None
        if hint is bool:
            return rng.random() < 0.5
        if hint is int:
            return rng.choice(_INTS)
        if hint is float:
            return rng.choice(_FLOATS + _INTS[:6])
        if hint is str:
            return rng.choice(_WORDS)
        if origin is tuple:
            return [rng.choice(_INTS[:10]) for _ in range(rng.randint(0, 3))]
    r = rng.random()
    if r < 0.8 or depth:
        return rng.choice([None, True, False, *_INTS, *_FLOATS, *_WORDS])
    if r < 0.9:
        return [_draw(rng, None, 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "lr", "n"]): _draw(rng, None, 1)}


def random_config(rng: random.Random) -> dict[str, Any]:
    """A random config over the registered learners, their parameters (typed by their annotations most of the
    time) and the top-level and protocol keys, on small offline data."""
    from . import experiment, learners

    name = rng.choice(learners.names())
    hints = typing.get_type_hints(learners.entry(name).cls.__init__)
    allowed = learners.allowed_params(name)
    params = {k: _draw(rng, hints.get(k)) for k in rng.sample(allowed, rng.randint(0, min(4, len(allowed))))}
    cfg: dict[str, Any] = {"learner": name, "dataset": rng.choice(["digits", "xor", "two-moons", "gaussians",
                                                                   "context-mini", "nope"]),
                           "limit_train": 40, "limit_test": 20, "epochs": 1, "params": params}
    top = ["epochs", "batch_size", "seed", "val", "limit_train", "limit_test", "eval_batch_size", "normalize",
           "device", "preset", "recipe", "protocol", "nope"]
    for k in rng.sample(top, rng.randint(0, 3)):
        if k == "protocol":
            cfg[k] = {rng.choice([*experiment.PROTOCOL_DEFAULTS, "nope"]): _draw(rng)}
        elif k == "recipe":
            cfg[k] = rng.choice([None, "nope", *experiment.recipe_names()])
        else:
            cfg[k] = _draw(rng)
    return cfg


def fuzz_configs(n: int, seed: int) -> dict[str, Any]:
    """Build ``n`` random configs with :func:`~neuroplastic.experiment.build`; every one must build or raise a
    one-line ``ConfigError`` naming a key. Returns the tally's row."""
    import torch

    from . import experiment, learners
    from .experiment import ConfigError

    torch.set_num_threads(1)
    tally = Tally("config")
    rng = random.Random(seed)
    keys = set(experiment.DEFAULTS) | set(experiment.PROTOCOL_DEFAULTS) | {"arch", "architecture"}
    for _ in range(n):
        cfg = random_config(rng)
        try:
            experiment.build(cfg)
            tally.add("accepted")
        except ConfigError as e:
            names = keys | set(learners.allowed_params(cfg["learner"]))
            ok = _one_line(str(e)) and any(k in str(e) for k in names)
            tally.add("clear_errors" if ok else "tracebacks", f"{cfg}: unclear error {e}")
        except Exception as e:  # noqa: BLE001
            tally.add("tracebacks", f"{cfg}: {type(e).__name__}: {e}")
    return tally.row()


def _fuzz_child(n: int, seed: int, memory_gb: int = 3) -> dict[str, Any]:
    code = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_gb} << 30, {memory_gb} << 30)); "
            f"import json; from neuroplastic.reliability import fuzz_configs; "
            f"print('ROW' + json.dumps(fuzz_configs({n}, {seed})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=1800)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("ROW")), None)
    if line is None:
        return {**Tally("config").row(), "cases": n, "tracebacks": n,
                "examples": {"tracebacks": (proc.stderr or proc.stdout)[-300:]}}
    return json.loads(line[3:])


# --------------------------------------------------------------------------------------------------
# YAML
def hostile_yaml() -> list[tuple[str, bytes]]:
    """Named hostile config files: alias bombs, duplicate keys, deep nesting, bad encodings, code tags, junk."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    return [
        ("alias bomb", bomb.encode()),
        ("duplicate key", b"learner: bp\nlearner: fa\n"),
        ("duplicate nested key", b"learner: bp\nparams: {lr: 0.1, lr: 0.2}\n"),
        ("deep nesting", ("a: " + "[" * 5000 + "]" * 5000 + "\n").encode()),
        ("deep mapping", ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v\n").encode()),
        ("latin-1 bytes", "learner: bp\n# caf\u00e9\n".encode("latin-1")),
        ("binary junk", bytes(range(256)) * 4),
        ("python object tag", b"learner: !!python/object/apply:os.system ['touch PWNED']\n"),
        ("python name tag", b"learner: !!python/name:os.system\n"),
        ("top-level list", b"- learner\n- bp\n"),
        ("top-level scalar", b"bp\n"),
        ("empty", b""),
        ("huge integer", b"learner: bp\nseed: " + b"9" * 5000 + b"\n"),
        ("tab indentation", b"learner: bp\nparams:\n\tlr: 0.1\n"),
        ("unknown key", b"learner: bp\nlearning_rate: 0.1\n"),
        ("wrong type", b"learner: bp\nepochs: ten\n"),
        ("NaN seed", b"learner: bp\nseed: .nan\n"),
        ("null learner", b"learner: null\n"),
    ]


def yaml_cases(root: Path) -> dict[str, Any]:
    """Every hostile file through ``read_yaml`` + ``validate`` (as ``train FILE`` does): refused on one line, in under
    5 s of CPU, without running code; plus a directory and a missing file given as the config path."""
    from .errors import InputError
    from .experiment import load_yaml, validate

    tally = Tally("yaml")
    for name, raw in hostile_yaml():
        path = root / f"{name.replace(' ', '_')}.yaml"
        path.write_bytes(raw)
        t0 = time.process_time()  # CPU seconds: an expansion bomb burns them, a busy machine's waits do not
        outcome, why = _classify(lambda p=path: validate(load_yaml(p)), (InputError,))
        if time.process_time() - t0 > 5:
            outcome, why = "tracebacks", f"{name}: took {time.process_time() - t0:.0f} CPU s"
        if outcome == "accepted":
            outcome, why = "silent_wrong", f"{name}: accepted"
        if (root / "PWNED").exists() or Path("PWNED").exists():
            outcome, why = "code_executed", name
        tally.add(outcome, f"{name}: {why}")
    for name, path in (("a directory as config", root), ("a missing config", root / "absent.yaml")):
        outcome, why = _classify(lambda p=path: validate(load_yaml(p)), (InputError, OSError))
        tally.add(outcome if outcome != "accepted" else "silent_wrong", f"{name}: {why}")
    return tally.row()


# --------------------------------------------------------------------------------------------------
# dataset files
def _idx_raw(arr: np.ndarray, code: int = 0x08, dims: tuple[int, ...] | None = None) -> bytes:
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}[code]
    dims = arr.shape if dims is None else dims
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">i4").tobytes() + arr.astype(dtype).tobytes()


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 7, seed: int = 0) -> None:
    """A valid, decompressed MNIST-format set of random 28×28 images (the four official file names)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(_idx_raw(rng.integers(0, 256, (n_train, 28, 28))))
    (folder / "train-labels-idx1-ubyte").write_bytes(_idx_raw(np.arange(n_train) % 10))
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_raw(rng.integers(0, 256, (n_test, 28, 28))))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_raw((np.arange(n_test) * 3) % 10))


#: Ways to damage an IDX set (:func:`break_idx`).
MALFORMED_IDX = ("negative label", "float label", "int32 label", "label out of range", "labels 2-D", "fewer labels",
                 "test shape differs", "images 2-D", "float images", "negative dimension", "overflowing dimensions",
                 "truncated", "bad magic", "trailing bytes", "directory", "fifo", "symlink to /dev/zero",
                 "gzip bomb", "corrupt gzip")


def break_idx(kind: str, folder: Path) -> None:
    """Damage the valid set of :func:`write_idx_set` in ``folder`` in one way of :data:`MALFORMED_IDX`."""
    labels, images = folder / "train-labels-idx1-ubyte", folder / "train-images-idx3-ubyte"
    rng = np.random.default_rng(1)
    n = 12
    if kind == "negative label":
        labels.write_bytes(_idx_raw(np.array([-1] + [0] * (n - 1)), 0x09))
    elif kind == "float label":
        labels.write_bytes(_idx_raw(np.full(n, 1.5), 0x0D))
    elif kind == "int32 label":
        labels.write_bytes(_idx_raw(np.arange(n) % 10, 0x0C))
    elif kind == "label out of range":
        labels.write_bytes(_idx_raw(np.full(n, 10)))
    elif kind == "labels 2-D":
        labels.write_bytes(_idx_raw(np.zeros((n, 1))))
    elif kind == "fewer labels":
        labels.write_bytes(_idx_raw(np.zeros(n - 1)))
    elif kind == "test shape differs":
        (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_raw(rng.integers(0, 256, (7, 32, 32))))
    elif kind == "images 2-D":
        images.write_bytes(_idx_raw(rng.integers(0, 256, (n, 784))))
    elif kind == "float images":
        images.write_bytes(_idx_raw(rng.random((n, 28, 28)), 0x0D))
    elif kind == "negative dimension":
        images.write_bytes(_idx_raw(np.zeros(0), dims=(-n, 28, 28)))
    elif kind == "overflowing dimensions":
        images.write_bytes(_idx_raw(np.zeros(0), dims=(2**31 - 1,) * 4))
    elif kind == "truncated":
        images.write_bytes(images.read_bytes()[:-3])
    elif kind == "bad magic":
        images.write_bytes(b"\x01" + images.read_bytes()[1:])
    elif kind == "trailing bytes":
        images.write_bytes(images.read_bytes() + b"\x00")
    elif kind == "directory":
        images.unlink()
        images.mkdir()
    elif kind == "fifo":
        images.unlink()
        os.mkfifo(images)
    elif kind == "symlink to /dev/zero":
        images.unlink()
        images.symlink_to("/dev/zero")
    elif kind == "gzip bomb":
        images.unlink()
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(300 << 20), 1))
    elif kind == "corrupt gzip":
        raw = gzip.compress(images.read_bytes())
        images.unlink()
        (folder / "train-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])
    else:
        raise ValueError(f"unknown damage {kind!r}; known: {', '.join(MALFORMED_IDX)}")


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()`` in a daemon thread; raises ``TimeoutError`` if it has not returned after ``seconds``."""
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        raise TimeoutError(f"did not return within {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def dataset_cases(root: Path) -> dict[str, Any]:
    """Every malformed IDX set (as a decompressed KMNIST copy: format checks only, no checksum to catch it first)
    and special files in a CIFAR folder, through ``data verify`` and loading: both must refuse with a
    ``DatasetError`` (verify saying "ok" or a load succeeding is silent wrong)."""
    from . import data
    from .data import download as dl
    from .data.core import DatasetError

    tally = Tally("dataset")
    for kind in MALFORMED_IDX:
        base = root / kind.replace(" ", "_").replace("/", "_")
        write_idx_set(base / "kmnist")
        break_idx(kind, base / "kmnist")
        for what, fn in (("verify", lambda b=base: dl.verify("kmnist", b)),
                         ("load", lambda b=base: data.load("kmnist", b))):
            try:
                result = _within(30, fn)
                bad = what == "load" or not result
                tally.add("silent_wrong" if bad else "clear_errors", f"{kind}: {what} accepted it")
            except DatasetError as e:
                tally.add("clear_errors" if _one_line(str(e)) else "tracebacks", f"{kind}: {e}")
            except Exception as e:  # noqa: BLE001
                tally.add("tracebacks", f"{kind} ({what}): {type(e).__name__}: {e}")
    folder = root / "cifar" / "cifar-10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(bytes(3073 * 2))
    (folder / "test_batch.bin").write_bytes(bytes(3073))
    for kind in ("fifo", "symlink to /dev/zero", "directory", "truncated", "missing", "not official"):
        target = folder / "data_batch_1.bin"
        if target.is_dir():
            target.rmdir()
        elif target.exists() or target.is_symlink():
            target.unlink()
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "symlink to /dev/zero":
            target.symlink_to("/dev/zero")
        elif kind == "directory":
            target.mkdir()
        elif kind == "truncated":
            target.write_bytes(bytes(3073 * 2 - 5))
        elif kind == "not official":
            target.write_bytes(bytes(3073 * 2))
        for what, fn in (("verify", lambda: dl.verify("cifar-10", root / "cifar")),
                         ("load", lambda: data.load("cifar-10", root / "cifar"))):
            try:
                result = _within(30, fn)
                tally.add("silent_wrong" if (what == "load" or not result) else "clear_errors",
                          f"cifar {kind}: {what} accepted it")
            except DatasetError as e:
                tally.add("clear_errors" if _one_line(str(e)) else "tracebacks", f"cifar {kind}: {e}")
            except Exception as e:  # noqa: BLE001
                tally.add("tracebacks", f"cifar {kind} ({what}): {type(e).__name__}: {e}")
    return tally.row()


# --------------------------------------------------------------------------------------------------
# files read back, resume, CLI
class _Payload:
    """Unpickling this creates a file: proof that a load ran code."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _cli(argv: list[str]) -> tuple[int, str]:
    """``neuroplastic ARGV`` in this process: exit status and stderr."""
    from . import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse usage errors
            code = int(e.code or 0)
    return code, err.getvalue()


def _cli_outcome(code: int, err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    usage = len(lines) == 2 and lines[0].startswith("usage:") and "error:" in lines[1]  # argparse's own
    if code == 2 and (_one_line(err) or usage):
        return "clear_errors"
    return "accepted" if code == 0 else "tracebacks"


def files_cases(root: Path) -> dict[str, Any]:
    """Planted pickles where the library reads checkpoints and models back (``train --resume``, ``analyze``-style
    reloading, a bench run folder): no code may run, and each must be a one-line refusal."""
    import torch
    import yaml

    from . import experiment, trainer
    from .bench import suite
    from .bench.db import ResultsDB
    from .errors import InputError

    tally = Tally("files read back")
    marker = root / "PWNED"
    with _cwd(root):
        assert _cli(["train", "bp-digits", "--epochs", "1", "--out", "run", "-q"])[0] == 0
        payloads = {
            "checkpoint.pt payload": (trainer.CHECKPOINT, {"learner": _Payload(str(marker)), "epoch": 0}),
            "checkpoint.pt top-level payload": (trainer.CHECKPOINT, _Payload(str(marker))),
            "model.pt payload": (experiment.MODEL_FILE, {"learner": _Payload(str(marker))}),
        }
        for name, (fname, obj) in payloads.items():
            for how, argv in (("train --resume", ["train", "bp-digits", "--epochs", "2", "--out", "run",
                                                  "--resume", "-q"]),):
                saved = {f: (Path("run") / f).read_bytes() for f in (trainer.CHECKPOINT, experiment.MODEL_FILE)
                         if (Path("run") / f).exists()}
                torch.save(obj, Path("run") / fname)
                code, err = _cli(argv)
                outcome = "code_executed" if marker.exists() else _cli_outcome(code, err)
                if outcome == "accepted" and fname != trainer.CHECKPOINT:
                    outcome = "clear_errors"  # train --resume does not read model.pt: nothing to refuse
                tally.add(outcome, f"{name} via {how}: exit {code} {err[-200:]}")
                outcome2, why = _classify(lambda: experiment.load_trained("run"), (Exception,))
                if marker.exists():
                    outcome2 = "code_executed"
                elif outcome2 == "accepted" and fname == experiment.MODEL_FILE:
                    outcome2 = "silent_wrong"
                tally.add(outcome2 if outcome2 != "accepted" else "clear_errors", f"{name} via load_trained: {why}")
                for f, raw in saved.items():
                    (Path("run") / f).write_bytes(raw)
                marker.unlink(missing_ok=True)
        saved = (Path("run") / experiment.MODEL_FILE).read_bytes()
        torch.save({"model": {"w": torch.zeros(3)}, "probe": None}, Path("run") / experiment.MODEL_FILE)
        outcome, why = _classify(lambda: experiment.load_trained("run"), (InputError,))
        tally.add(outcome if outcome != "accepted" else "silent_wrong", f"model.pt of another model: {why}")
        (Path("run") / experiment.MODEL_FILE).write_bytes(saved)
        # a bench run folder holding a planted checkpoint: the run is refused (failed, one line), no code runs
        spec = {"name": "planted", "grid": {"seed": [0]}, "base": {"learner": "bp", "dataset": "digits",
                                                                 "preset": "mlp", "epochs": 1}}
        Path("planted.yaml").write_text(yaml.safe_dump(spec))
        (h, _), = suite.expand(spec).runs
        (Path("res") / "runs" / h).mkdir(parents=True)
        torch.save({"learner": _Payload(str(marker)), "epoch": 0}, Path("res") / "runs" / h / trainer.CHECKPOINT)
        code, err = _cli(["bench", "planted.yaml", "--db", "planted.db", "--results-dir", "res", "--no-report"])
        row = ResultsDB("planted.db").get(h)
        if marker.exists():
            tally.add("code_executed", "bench resuming a planted checkpoint")
        elif row["status"] == "failed" and _one_line(row["error"] or ""):
            tally.add("clear_errors")
        else:
            tally.add("silent_wrong" if row["status"] == "done" else "tracebacks",
                      f"bench with a planted checkpoint: {row['status']} {row['error']}")
        Path("junk.yaml").write_bytes(b"\x80\x81 not yaml")
        for name, argv in (("records import of a junk file", ["results", "import", "junk.yaml", "--db", "x.db"]),
                           ("a corrupt store", ["results", "export", "--db", "junk.yaml", "--out", "exp"])):
            code, err = _cli(argv)
            tally.add(_cli_outcome(code, err) if code != 0 else "silent_wrong", f"{name}: exit {code} {err[-200:]}")
    return tally.row()


def resume_cases(root: Path) -> dict[str, Any]:
    """``train --resume`` with another config: refused, naming the keys, before anything in the folder changes."""
    tally = Tally("resume")
    with _cwd(root):
        assert _cli(["train", "bp-digits", "--epochs", "2", "--out", "run", "-q"])[0] == 0
        for change in (["--set", "params.lr=0.5"], ["--set", "seed=3"], ["--set", "batch_size=16"],
                       ["--learner", "fa"], ["--set", "params.hidden=[32]"], ["--set", "protocol.hflip=true"]):
            before = {p.name: p.read_bytes() for p in Path("run").iterdir() if p.is_file()}
            code, err = _cli(["train", "bp-digits", "--epochs", "2", "--out", "run", "--resume", "-q", *change])
            after = {p.name: p.read_bytes() for p in Path("run").iterdir() if p.is_file()}
            if before != after:
                tally.add("silent_wrong", f"{change}: the folder changed (exit {code})")
            else:
                tally.add(_cli_outcome(code, err) if code != 0 else "silent_wrong", f"{change}: exit {code} {err}")
    return tally.row()


def cli_cases(root: Path) -> dict[str, Any]:
    """Paths and values a careless user types: each a one-line error (exit 2), none a traceback."""
    tally = Tally("cli")
    with _cwd(root):
        Path("a_file").write_text("x")
        Path("cfg_dir").mkdir(exist_ok=True)
        cases = [
            ["train", "cfg_dir"], ["train", "absent.yaml"], ["train", "bp-digits", "--out", "a_file"],
            ["train", "bp-digits", "--device", "cuda:9"], ["train", "bp-digits", "--set", "params.hidden=[0]"],
            ["train", "bp-digits", "--set", "val=1.5"], ["train", "bp-digits", "--set", "seed=.inf"],
            ["train", "bp-digits", "--set", "nope=1"], ["train", "bp-digits", "--epochs", "-1"],
            ["bench", "no-such-suite"], ["bench", "quick", "--results-dir", "a_file"],
            ["bench", "quick", "--where", "nonsense"], ["bench", "quick", "--max-attempts", "0"],
            ["bench", "cfg_dir"], ["report", "--db", "a_file", "--out", "rep"], ["data", "verify", "nope"],
            ["learners", "nope"], ["results", "export", "--out", "a_file", "--db", "absent.db"],
            ["train", "--learner", "brsf", "--set", "params.hidden=[0]"],
            ["train", "--learner", "bm", "--set", "params.n_chains=-1"],
        ]
        for argv in cases:
            code, err = _cli(argv)
            outcome = _cli_outcome(code, err)
            tally.add(outcome if outcome != "accepted" else "silent_wrong", f"{' '.join(argv)}: exit {code} {err}")
    return tally.row()


# --------------------------------------------------------------------------------------------------
# kills
_KILL_SUITE = {"name": "reliability-kills", "grid": {"learner": ["bp"], "seed": [0, 1, 2, 3]},
               "base": {"learner": "bp", "dataset": "digits", "preset": "mlp", "params": {"hidden": [256]},
                        "epochs": 4, "batch_size": 8, "protocol": {"checkpoint_every": 50}}}


def kill_cases(root: Path, kills: int, seed: int) -> dict[str, Any]:
    """``bench`` (two workers) SIGKILLed ``kills`` times at random moments while training, the dead claims' PIDs
    then reused by a live process, and a last bench to finish: every run must end done once, with one record,
    the metrics of an uninterrupted run, and no temporary file left."""
    import sqlite3

    import yaml

    from . import experiment
    from .bench import suite
    from .bench.db import ResultsDB

    tally = Tally("kills")
    rng = random.Random(seed)
    spec_path = root / "kills.yaml"
    spec_path.write_text(yaml.safe_dump(_KILL_SUITE))
    db_path, res = root / "kills.db", root / "kills-results"
    cmd = [sys.executable, "-m", "neuroplastic.cli", "bench", str(spec_path), "--db", str(db_path), "--results-dir",
           str(res), "--jobs", "2", "--threads", "1", "--no-report", "--retry-failed", "--max-attempts", "100"]

    def running() -> int:
        try:
            with sqlite3.connect(db_path, timeout=10) as con:
                return con.execute("SELECT count(*) FROM runs WHERE status='running'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    done_kills = 0
    for _ in range(kills * 3):
        if done_kills >= kills:
            break
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not running():
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            done_kills += 1
        proc.wait()
        with sqlite3.connect(db_path, timeout=10) as con:  # the dead claims' PIDs reused; the leases run out
            con.execute("UPDATE runs SET pid=?, lease=? WHERE status='running'", (os.getpid(), time.time() - 1))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False, timeout=1800)
    runs = suite.expand(_KILL_SUITE).runs
    db = ResultsDB(db_path)
    rows = db.runs("reliability-kills")
    for h, cfg in runs:
        mine = [r for r in rows if r["hash"] == h]
        if len(mine) != 1 or mine[0]["status"] != "done" or len(mine[0].get("records") or []) != 1:
            tally.add("data_lost", f"{h}: {len(mine)} rows, status {mine[0]['status'] if mine else None}")
            continue
        clean = experiment.run(cfg, progress=False)
        same = mine[0]["metrics"]["test_acc"] == clean.metrics["test_acc"] and \
            [e["val_acc"] for e in mine[0]["history"]] == [e["val_acc"] for e in clean.history]
        tally.add("accepted" if same else "data_lost", f"{h}: metrics differ from an uninterrupted run")
    db.close()
    left = [p for p in res.rglob("*") if ".tmp" in p.name]
    if left:
        tally.add("data_lost", f"temporaries left: {left[:3]}")
    row = tally.row()
    row["kills"] = done_kills
    return row


# --------------------------------------------------------------------------------------------------
def run_campaign(*, cases: int = 2000, kills: int = 5, seed: int = 0, categories: tuple[str, ...] = CATEGORIES,
                 progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run the campaign's ``categories``; one row per category (see the module docstring)."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        from .errors import InputError

        raise InputError(f"unknown categories {', '.join(unknown)}; known: {', '.join(CATEGORIES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="neuroplastic-reliability-") as tmp:
        root = Path(tmp)
        for cat in categories:
            if progress:
                progress(cat)
            sub = root / cat.replace(" ", "_")
            sub.mkdir()
            if cat == "config":
                row = _fuzz_child(cases, seed)
            elif cat == "kills":
                row = kill_cases(sub, kills, seed)
            else:
                row = {"yaml": yaml_cases, "dataset": dataset_cases, "files read back": files_cases,
                       "resume": resume_cases, "cli": cli_cases}[cat](sub)
            rows.append(row)
    return rows

