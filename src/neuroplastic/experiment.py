"""Experiment configs: validated, hashed, and run the same way by ``train`` and by the bench harness.

A config is a flat mapping (YAML file or dict)::

    learner: fa            # a registered learner name (neuroplastic learners)
    dataset: mnist         # a registered dataset name (neuroplastic data list)
    preset: lenet5         # architecture/preset: passed as `preset` or `arch`, whichever the learner takes
    params: {lr: 1.0e-3}   # further keyword arguments of the learner (validated against its signature)
    epochs: 20
    batch_size: 128
    seed: 0

An unknown key or a bad value is an error naming it and the allowed values. A caller's mapping is never
mutated. The config hash (SHA-256 of the canonical JSON, 12 hex digits) identifies a run in the results
database and names its checkpoint folder.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

DEFAULTS: dict[str, Any] = {
    "learner": None,
    "dataset": "digits",
    "preset": None,
    "params": {},
    "epochs": 10,
    "batch_size": 64,
    "seed": 0,
    "val": 0.1,
    "limit_train": None,
    "limit_test": None,
    "normalize": False,
    "device": "cpu",
    "deterministic": True,
    "eval_batch_size": 1000,
}
_TYPES: dict[str, tuple[type, ...]] = {
    "learner": (str,), "dataset": (str,), "preset": (str, type(None)), "params": (dict,),
    "epochs": (int,), "batch_size": (int,), "seed": (int,), "val": (int, float),
    "limit_train": (int, type(None)), "limit_test": (int, type(None)), "normalize": (bool,),
    "device": (str,), "deterministic": (bool,), "eval_batch_size": (int,),
}


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no decimal point) as a float, as users expect."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", __import__("re").X),
    list("-+0123456789."))


def yaml_load(text: str):
    """Parse YAML text with :class:`_Loader` (safe; ``1e-3`` is a float)."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A config key or value is not allowed; the message names it and the allowed values."""


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with a clear error if missing or malformed."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        cfg = yaml_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping, found {type(cfg).__name__}")
    return cfg


def _learner_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    from . import learners

    params = dict(cfg["params"])
    allowed = learners.allowed_params(cfg["learner"])
    if cfg.get("preset") is not None:
        if "preset" in allowed:
            params.setdefault("preset", cfg["preset"])
        elif "arch" in allowed:
            params.setdefault("arch", cfg["preset"])
        else:
            raise ConfigError(f"learner {cfg['learner']!r} takes no preset/arch; remove 'preset'")
    for k, v in list(params.items()):
        if isinstance(v, list):
            params[k] = tuple(v)
    return params


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return a validated, defaults-filled copy of ``cfg`` (raises :class:`ConfigError`)."""
    from . import data, learners

    unknown = [k for k in cfg if k not in DEFAULTS]
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(DEFAULTS)}")
    out = copy.deepcopy(DEFAULTS)
    out.update(copy.deepcopy(cfg))
    if out["learner"] is None:
        raise ConfigError(f"config needs 'learner'; known learners: {', '.join(learners.names())}")
    for k, types in _TYPES.items():
        v = out[k]
        if isinstance(v, bool) and bool not in types:
            raise ConfigError(f"config key {k!r} must be {'/'.join(t.__name__ for t in types)}, got {v!r}")
        if not isinstance(v, types):
            raise ConfigError(f"config key {k!r} must be {'/'.join(t.__name__ for t in types)}, got {v!r}")
    try:
        learners.entry(out["learner"])
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    try:
        data.dataset_info(out["dataset"])
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if out["epochs"] < 0 or out["batch_size"] < 1:
        raise ConfigError(f"epochs must be >= 0 and batch_size >= 1, got {out['epochs']}, {out['batch_size']}")
    allowed = learners.allowed_params(out["learner"])
    bad = [k for k in out["params"] if k not in allowed]
    if bad:
        raise ConfigError(f"learner {out['learner']!r}: unknown parameter(s) {', '.join(map(repr, bad))}; "
                          f"allowed: {', '.join(allowed)}")
    _learner_kwargs(out)
    if out["device"] != "cpu" and not out["device"].startswith("cuda"):
        raise ConfigError(f"config key 'device' must be 'cpu' or 'cuda[:N]', got {out['device']!r}")
    return out


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a validated config (device and eval batch size excluded)."""
    key = {k: v for k, v in cfg.items() if k not in ("device", "eval_batch_size")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def git_commit() -> str:
    """The current git commit of the source tree (``$NEUROPLASTIC_COMMIT`` if set — e.g. for a copy of the
    tree without ``.git`` — else ``git rev-parse``; ``unknown`` outside a checkout)."""
    if os.environ.get("NEUROPLASTIC_COMMIT"):
        return os.environ["NEUROPLASTIC_COMMIT"]
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, check=False,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5, check=False).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def cpu_name() -> str:
    """A human-readable CPU name (``/proc/cpuinfo`` model name, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict[str, Any]:
    """Commit, torch version, CPU and the vector instruction set torch uses on it (``cpu_isa``: timings from an
    AVX2 and an AVX512 host of the same name do not compare), thread count and accelerator of this process."""
    env = {"commit": git_commit(), "torch": torch.__version__, "cpu": cpu_name(),
           "cpu_isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


@dataclasses.dataclass
class RunOutput:
    """The record of one finished run (what the results database stores)."""

    config: dict[str, Any]
    hash: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    env: dict[str, Any]
    train_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    n_params: int


def build(cfg: dict[str, Any]):
    """Validate ``cfg`` and return ``(cfg, bundle, learner)`` ready for :func:`neuroplastic.trainer.fit`."""
    from . import data, learners
    from .trainer import seed_everything

    cfg = validate(cfg)
    seed_everything(cfg["seed"], cfg["deterministic"])
    bundle = data.prepare(cfg["dataset"], val=cfg["val"], seed=cfg["seed"], limit_train=cfg["limit_train"],
                          limit_test=cfg["limit_test"], normalize=cfg["normalize"], device=cfg["device"])
    kwargs = _learner_kwargs(cfg)
    sig = inspect.signature(learners.entry(cfg["learner"]).cls.__init__).parameters
    if "in_shape" in sig:
        kwargs.setdefault("in_shape", bundle.in_shape)
    if "n_classes" in sig:
        kwargs.setdefault("n_classes", bundle.n_classes)
    if "seed" in sig:
        kwargs.setdefault("seed", cfg["seed"])
    learner = learners.get(cfg["learner"], **kwargs).to(cfg["device"])
    return cfg, bundle, learner


def run(cfg: dict[str, Any], *, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = True, log: Any = None, figures_dir: str | os.PathLike | None = None) -> RunOutput:
    """Build and train one config; return its :class:`RunOutput` (final-epoch metrics). With
    ``figures_dir``, the learner's :meth:`~neuroplastic.learners.base.Learner.figures` are written there."""
    from .trainer import fit

    t0 = time.perf_counter()
    cfg, bundle, learner = build(cfg)
    res = fit(learner, bundle, epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"],
              checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
              eval_batch_size=cfg["eval_batch_size"], log=log)
    metrics = {k: v for k, v in res.final.items() if k != "probe_history"}
    extra = getattr(learner, "final_metrics", None)
    if callable(extra):
        metrics.update(extra(bundle))
    if figures_dir is not None:
        try:  # pictures are a bonus: a failure to draw must not lose a finished run
            learner.figures(bundle, Path(figures_dir))
        except Exception as e:  # noqa: BLE001
            metrics["figures_error"] = f"{type(e).__name__}: {e}"
            print(f"{cfg['learner']}: pictures not drawn: {metrics['figures_error']}", file=sys.stderr)
    history = res.history + [dict(r, stage="probe") for r in res.final.get("probe_history", [])]
    return RunOutput(cfg, config_hash(cfg), metrics, history, environment(cfg["device"]), res.train_seconds,
                     time.perf_counter() - t0, res.peak_memory_mb, learner.n_params())


def load_trained(folder: str | os.PathLike, device: str = "cpu"):
    """Rebuild a learner from the ``--out`` folder of ``neuroplastic train`` (``config.yaml`` +
    ``checkpoint.pt``, the last finished epoch); returns ``(learner, bundle, cfg)``."""
    folder = Path(folder)
    if not (folder / "config.yaml").exists() or not (folder / "checkpoint.pt").exists():
        raise ConfigError(f"{str(folder)!r}: expected config.yaml and checkpoint.pt (the --out folder of "
                          "`neuroplastic train`)")
    cfg = load_yaml(folder / "config.yaml")
    cfg["device"] = device
    cfg, bundle, learner = build(cfg)
    state = torch.load(folder / "checkpoint.pt", map_location=device, weights_only=False)
    learner.load_state_dict(state["learner"]["model"])
    learner.eval()
    return learner, bundle, cfg


def record(out: RunOutput, *, command: str, status: str = "done") -> dict[str, Any]:
    """The standard results record of a run (``benchmarks/results/*.json`` holds lists of these).

    Keys: ``learner, dataset, preset, seed, epochs, status, test_acc`` (fraction, final epoch),
    ``val_acc, train_seconds, samples_per_s, commit, cpu, torch, command, hash`` plus every extra scalar
    metric the run reported.
    """
    cfg = out.config
    preset = cfg.get("preset") or cfg["params"].get("preset") or cfg["params"].get("arch") or "default"
    rec: dict[str, Any] = {
        "learner": cfg["learner"], "dataset": cfg["dataset"], "preset": preset, "seed": cfg["seed"],
        "epochs": cfg["epochs"], "status": status, "test_acc": out.metrics.get("test_acc"),
        "val_acc": out.metrics.get("val_acc"), "train_seconds": round(out.train_seconds, 3),
        "wall_seconds": round(out.wall_seconds, 3), "peak_memory_mb": round(out.peak_memory_mb, 1),
        "n_params": out.n_params, "samples_per_s": out.metrics.get("samples_per_s"),
        "commit": out.env.get("commit"), "cpu": out.env.get("cpu"), "torch": out.env.get("torch"),
        "device": cfg["device"], "gpu": out.env.get("gpu"), "command": command, "hash": out.hash,
        "params": cfg["params"], "batch_size": cfg["batch_size"], "date": time.strftime("%Y-%m-%d"),
    }
    for k, v in out.metrics.items():
        if k not in rec and isinstance(v, (int, float, str, bool)):
            rec[k] = v
    return rec


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON to ``path`` by write-then-rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)
