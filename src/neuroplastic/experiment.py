"""Experiment configs: validated, hashed, and run the same way by ``train`` and by the bench harness.

A config is a flat mapping (YAML file or dict)::

    learner: fa            # a registered learner name (neuroplastic learners)
    dataset: mnist         # a registered dataset name (neuroplastic data list)
    preset: lenet5         # architecture/preset: passed as `preset` or `arch`, whichever the learner takes
    params: {lr: 1.0e-3}   # further keyword arguments of the learner (validated against its signature)
    epochs: 20
    batch_size: 128
    seed: 0
    protocol:              # the study's protocol (see PROTOCOL_DEFAULTS): budgets, checkpoints, labels, stages
      budget_minutes: 90
      labels_per_class: [1, 10, 100, all]

An unknown key or a bad value is an error naming it and the allowed values. A caller's mapping is never
mutated. The config hash (SHA-256 of the canonical JSON, 12 hex digits) identifies a run in the results
database and names its checkpoint folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml

from .errors import InputError

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
    "protocol": {},
    "recipe": None,
}
#: The protocol of a study (config key ``protocol``): everything a benchmark fixes beyond the learner and data.
#:
#: - ``budget_minutes``: training time budget; the run ends after the epoch at which the next one would pass it
#:   (status ``budget``, epochs reached recorded; the schedule still spans ``epochs``).
#: - ``checkpoint_every``: also checkpoint every N steps inside an epoch (hour-long Hebbian epochs); exact resume.
#: - ``eval_every``: validation/test evaluation every N epochs (always after the last).
#: - ``labels_per_class``: label-efficiency counts (ints, and ``all``): one record per count — the probe of an
#:   unsupervised learner fitted on that many labels per class, or a supervised learner trained on them.
#: - ``min_steps``: tiny label sets get at least this many updates (more epochs), a rule fixed in advance.
#: - ``hflip``: random horizontal flips of the training images (augmentation stage, seeded, checkpointed).
#: - ``zca``: ZCA whitening fitted on the training split only (data stage): ``false`` off, ``true`` or a mapping
#:   ``{samples, eps, standardize}`` on; ``null`` (default) the learner's paper default (``input_zca``).
#: - ``binarize``: binary data stage (Boltzmann machines): ``null`` off, or ``{mode: stochastic|threshold, seed}`` —
#:   every split binarised once, reproducibly (:func:`neuroplastic.data.transforms.binarize_stage`).
#: - ``probe``: linear-probe options ``{epochs, lr, dropout, batch_size, standardize, flip, eval_every}``
#:   (``null`` entries: the learner's defaults).
#: - ``forward_timing``: after training, time a plain forward pass over this many training samples at the run's
#:   batch size; records ``forward_epoch_seconds`` and ``train_over_forward`` (cost studies).
#: - ``save_model``: write the trained model, probe included, as ``model.pt`` in the run folder.
#: - ``energy``: after training, count the operations of an inference and of one training step per sample and their
#:   energy (:func:`neuroplastic.energy.count_run`; keys ``ops_*``, ``energy_*_pj``).
#: - ``robustness``: after training, test accuracy of the trained model under device mismatch, input noise and weight
#:   quantisation, no retraining (:func:`neuroplastic.robustness.robustness`; keys ``robust_*``).
PROTOCOL_DEFAULTS: dict[str, Any] = {
    "budget_minutes": None,
    "checkpoint_every": None,
    "eval_every": 1,
    "labels_per_class": None,
    "min_steps": 500,
    "hflip": False,
    "zca": None,
    "binarize": None,
    "probe": {},
    "forward_timing": None,
    "save_model": True,
    "robustness": False,
    "energy": True,
}
PROBE_KEYS: dict[str, tuple[type, ...]] = {
    "epochs": (int,), "lr": (float, int), "dropout": (float, int), "batch_size": (int,), "standardize": (bool,),
    "flip": (bool,), "eval_every": (int,),
}
ZCA_KEYS: dict[str, tuple[type, ...]] = {"samples": (int,), "eps": (float, int), "standardize": (bool,)}
ZCA_DEFAULTS: dict[str, Any] = {"samples": 5000, "eps": 1e-3, "standardize": False}
_TYPES: dict[str, tuple[type, ...]] = {
    "learner": (str,), "dataset": (str,), "preset": (str, type(None)), "params": (dict,),
    "epochs": (int,), "batch_size": (int,), "seed": (int,), "val": (int, float),
    "limit_train": (int, type(None)), "limit_test": (int, type(None)), "normalize": (bool,),
    "device": (str,), "deterministic": (bool,), "eval_batch_size": (int,), "protocol": (dict,),
    "recipe": (str, type(None)),
}


#: Limits of what a YAML file may expand to: values after alias expansion, and nesting depth.
YAML_MAX_VALUES = 100_000
YAML_MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-3`` (no decimal point) as a float, as users expect, and refuses
    duplicate keys (YAML would silently keep the last) and nesting deeper than :data:`YAML_MAX_DEPTH`."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > YAML_MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {YAML_MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}",
                                                                key_node.start_mark)
                    seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", __import__("re").X),
    list("-+0123456789."))


def _expanded_size(obj: Any, limit: int) -> None:
    """Raise ``yaml.YAMLError`` when ``obj`` holds more than ``limit`` values once aliases are expanded (an alias
    bomb: a few hundred bytes that expand to billions of values); stops counting at the limit."""
    stack, n = [obj], 0
    while stack:
        o = stack.pop()
        n += 1
        if n > limit:
            raise yaml.YAMLError(f"the document expands to more than {limit:,} values (nested aliases?)")
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)


def yaml_load(text: str):
    """Parse YAML text with :class:`_Loader` (safe: no tags that build objects; ``1e-3`` is a float; duplicate
    keys, nesting deeper than :data:`YAML_MAX_DEPTH` and documents expanding to more than
    :data:`YAML_MAX_VALUES` values are errors)."""
    obj = yaml.load(text, Loader=_Loader)
    _expanded_size(obj, YAML_MAX_VALUES)
    return obj


class ConfigError(InputError):
    """A config key or value is not allowed; the message names it and the allowed values."""


def read_yaml(path: str | os.PathLike, what: str = "config file") -> Any:
    """Parse the YAML file ``path`` (:func:`yaml_load`); a missing file, a folder, non-UTF-8 bytes or bad YAML is a
    :class:`ConfigError` naming the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {str(p)!r} not found")
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} is not a file")
    try:
        return yaml_load(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text (byte {e.start})") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{what} {str(p)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    except ValueError as e:  # a scalar YAML cannot convert (an integer of thousands of digits)
        raise ConfigError(f"{what} {str(p)!r} holds a value that cannot be read: {' '.join(str(e).split())[:200]}"
                          ) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (:func:`read_yaml`) with a clear error if it is not a mapping."""
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping, found {type(cfg).__name__}")
    return cfg


def learner_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a config passes to its learner: ``params``, with ``preset`` as ``preset`` or ``arch``
    (whichever the learner takes) and lists as tuples; ``ConfigError`` for a preset the learner cannot take."""
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


def recipes_dir() -> Path:
    """Folder of the packaged recipes (``neuroplastic/recipes/*.yaml``)."""
    from importlib import resources

    return Path(str(resources.files("neuroplastic") / "recipes"))


def recipe_names() -> list[str]:
    """Names of the packaged recipes: configs that fix a study's learner, data, batch size, epochs, schedule and
    protocol, usable as ``neuroplastic train NAME`` and as ``recipe: NAME`` in any config or suite."""
    d = recipes_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_recipe(name: str) -> dict[str, Any]:
    """The config mapping of recipe ``name`` (an error names the known recipes)."""
    path = recipes_dir() / f"{name}.yaml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(recipe_names()) or '(none)'}")
    cfg = load_yaml(path)
    if cfg.get("recipe") not in (None, name):
        raise ConfigError(f"recipe {name!r} names another recipe; recipes do not nest")
    return cfg


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``a`` updated by ``b``; nested dicts merge key by key (``b`` wins)."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return a validated, defaults-filled copy of ``cfg`` (raises :class:`ConfigError`). With ``recipe: NAME``
    the recipe's config is the base and ``cfg``'s own keys override it (mappings merge key by key)."""
    from . import data, learners

    if isinstance(cfg, dict) and cfg.get("study") is not None:
        return validate_study(cfg)
    unknown = [k for k in cfg if k not in DEFAULTS]
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(DEFAULTS)}")
    if cfg.get("recipe") is not None:
        if not isinstance(cfg["recipe"], str):
            raise ConfigError(f"config key 'recipe' must be str, got {cfg['recipe']!r}")
        base = load_recipe(cfg["recipe"])
        bad = [k for k in base if k not in DEFAULTS]
        if bad:
            raise ConfigError(f"recipe {cfg['recipe']!r}: unknown config key(s) {', '.join(map(repr, bad))}")
        cfg = deep_merge(base, cfg)
    given = set(cfg)
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
    if out["eval_batch_size"] < 1:
        raise ConfigError(f"config key 'eval_batch_size' must be >= 1, got {out['eval_batch_size']}")
    if not 0 <= out["seed"] < 2**63:
        raise ConfigError(f"config key 'seed' must be in [0, 2**63), got {out['seed']}")
    v = out["val"]
    if not (math.isfinite(v) and (0 <= v < 1 if isinstance(v, float) else v >= 0)):
        raise ConfigError(f"config key 'val' must be a fraction in [0, 1) or a count >= 0, got {v!r}")
    for k in ("limit_train", "limit_test"):
        if out[k] is not None and out[k] < 1:
            raise ConfigError(f"config key {k!r} must be >= 1 (or null: all), got {out[k]}")
    try:
        learners.check_params(out["learner"], out["params"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    e = learners.entry(out["learner"])
    try:
        fixed = e.cls.run_defaults({**e.defaults, **learner_kwargs(out)})
    except (KeyError, ValueError) as err:
        raise ConfigError(f"learner {out['learner']!r}: {err.args[0] if err.args else err}") from None
    for k, v in fixed.items():  # the study's run settings where the config does not set them
        if k not in given:
            out[k] = v
    out["protocol"] = validate_protocol(out["protocol"])
    out["device"] = check_device(out["device"])
    return out


#: The keys of a study config (:mod:`neuroplastic.studies`) and their defaults.
STUDY_DEFAULTS: dict[str, Any] = {"study": None, "params": {}, "seed": 0, "device": "cpu"}


def validate_study(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of a study config ``{study, params, seed, device}``: the study exists and takes every
    parameter given. The copy also names the study as ``learner`` and ``dataset: study`` (how the store, the runner
    and the report list it), with ``epochs: 0``."""
    from . import studies

    derived = {"learner": cfg.get("study"), **_STUDY_FIXED}  # what validation adds; a validated config comes back
    unknown = [k for k in cfg if k not in STUDY_DEFAULTS and not (k in derived and cfg[k] == derived[k])]
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(map(repr, unknown))} in a study config; allowed: "
                          f"{', '.join(STUDY_DEFAULTS)}")
    out = {**copy.deepcopy(STUDY_DEFAULTS), **{k: copy.deepcopy(v) for k, v in cfg.items() if k in STUDY_DEFAULTS}}
    if not isinstance(out["study"], str):
        raise ConfigError(f"config key 'study' must be str, got {out['study']!r}")
    try:
        studies.entry(out["study"])
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if not isinstance(out["params"], dict):
        raise ConfigError(f"config key 'params' must be a mapping, got {out['params']!r}")
    if not isinstance(out["seed"], int) or isinstance(out["seed"], bool) or not 0 <= out["seed"] < 2**63:
        raise ConfigError(f"config key 'seed' must be an int in [0, 2**63), got {out['seed']!r}")
    try:
        studies.check_params(out["study"], out["params"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out["device"] = check_device(out["device"])
    return {**out, "learner": out["study"], **_STUDY_FIXED}


_STUDY_FIXED: dict[str, Any] = {"dataset": "study", "epochs": 0, "batch_size": 1, "protocol": {}}


def check_device(device: str) -> str:
    """``device`` if it names a device this machine has (``cpu``, ``cuda``, ``cuda:N``), else a
    :class:`ConfigError` naming the key: an absent CUDA device is refused before any data is loaded."""
    import re

    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", device)
    if m is None:
        raise ConfigError(f"config key 'device' must be 'cpu' or 'cuda[:N]', got {device!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"config key 'device' is {device!r} but this machine has no CUDA device (torch "
                              f"{torch.__version__}); use 'cpu'")
        n = torch.cuda.device_count()
        if m.group(1) is not None and int(m.group(1)) >= n:
            raise ConfigError(f"config key 'device' is {device!r} but this machine has {n} CUDA device(s)")
    return device


def _typed(v: Any, types: tuple[type, ...]) -> bool:
    return isinstance(v, types) and not (isinstance(v, bool) and bool not in types)


def _check_mapping(m: Any, spec: dict[str, tuple[type, ...]], where: str, nullable: bool = True) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise ConfigError(f"config key {where!r} must be a mapping, got {m!r}")
    bad = [k for k in m if k not in spec]
    if bad:
        raise ConfigError(f"unknown key(s) {', '.join(map(repr, bad))} in {where!r}; allowed: {', '.join(spec)}")
    for k, v in m.items():
        if (v is None and nullable) or _typed(v, spec[k]):
            continue
        raise ConfigError(f"config key '{where}.{k}' must be {'/'.join(t.__name__ for t in spec[k])}, got {v!r}")
    return dict(m)


_PROTOCOL_TYPES: dict[str, tuple[type, ...]] = {
    "budget_minutes": (float, int), "checkpoint_every": (int,), "eval_every": (int,), "labels_per_class": (list,),
    "min_steps": (int,), "hflip": (bool,), "zca": (bool, dict), "probe": (dict,), "forward_timing": (int,),
    "save_model": (bool,), "binarize": (dict,), "robustness": (bool,), "energy": (bool,),
}
BINARIZE_KEYS: dict[str, tuple[type, ...]] = {"mode": (str,), "seed": (int,)}


def validate_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """Return a validated, defaults-filled copy of a ``protocol`` mapping (see :data:`PROTOCOL_DEFAULTS`)."""
    p = _check_mapping(protocol, _PROTOCOL_TYPES, "protocol")
    out = copy.deepcopy(PROTOCOL_DEFAULTS)
    out.update({k: v for k, v in copy.deepcopy(p).items() if not (v is None and PROTOCOL_DEFAULTS[k] is not None)})
    positive = {"budget_minutes": out["budget_minutes"], "checkpoint_every": out["checkpoint_every"],
                "eval_every": out["eval_every"], "forward_timing": out["forward_timing"]}
    for k, v in positive.items():
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"config key 'protocol.{k}' must be > 0, got {v!r}")
    if out["min_steps"] < 0:
        raise ConfigError(f"config key 'protocol.min_steps' must be >= 0, got {out['min_steps']!r}")
    counts = out["labels_per_class"]
    if counts is not None:
        if not counts or any(not (c == "all" or (_typed(c, (int,)) and c >= 1)) for c in counts):
            raise ConfigError(f"config key 'protocol.labels_per_class' must be a non-empty list of ints >= 1 "
                              f"and/or 'all', got {counts!r}")
        if len(set(map(str, counts))) != len(counts):
            raise ConfigError(f"config key 'protocol.labels_per_class' repeats a count: {counts!r}")
    out["probe"] = _check_mapping(out["probe"], PROBE_KEYS, "protocol.probe")
    for k in ("epochs", "batch_size", "eval_every"):
        v = out["probe"].get(k)
        if v is not None and v < 1:
            raise ConfigError(f"config key 'protocol.probe.{k}' must be >= 1, got {v!r}")
    for k in ("lr",):
        v = out["probe"].get(k)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"config key 'protocol.probe.{k}' must be > 0, got {v!r}")
    v = out["probe"].get("dropout")
    if v is not None and not 0 <= v < 1:
        raise ConfigError(f"config key 'protocol.probe.dropout' must be in [0, 1), got {v!r}")
    z = out["zca"]
    if isinstance(z, dict) or z is True:
        z = dict(ZCA_DEFAULTS, **_check_mapping({} if z is True else z, ZCA_KEYS, "protocol.zca", nullable=False))
        if z["samples"] < 2 or not z["eps"] >= 0:
            raise ConfigError(f"config key 'protocol.zca' needs samples >= 2 and eps >= 0, got {z!r}")
        out["zca"] = z
    bz = out["binarize"]
    if bz is not None:
        bz = dict({"mode": "stochastic", "seed": 0}, **_check_mapping(bz, BINARIZE_KEYS, "protocol.binarize",
                                                                      nullable=False))
        if bz["mode"] not in ("stochastic", "threshold"):
            raise ConfigError(f"config key 'protocol.binarize.mode' must be stochastic or threshold, got {bz['mode']!r}")
        out["binarize"] = bz
    return out


#: Protocol keys added after records were first hashed: at their default they are not part of the hash, so adding a
#: protocol option never changes the hash (and the stored runs) of the configs written before it.
LATER_PROTOCOL_KEYS = ("binarize", "robustness", "energy")
_HASHED_DEFAULTS = {k: v for k, v in PROTOCOL_DEFAULTS.items() if k not in LATER_PROTOCOL_KEYS}


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a validated config (device, eval batch size and the recipe's name excluded: a
    recipe's resolved content is hashed; a default protocol is left out, so configs written before protocols
    existed keep their hash, and so are :data:`LATER_PROTOCOL_KEYS` at their defaults)."""
    key = {k: v for k, v in cfg.items() if k not in ("device", "eval_batch_size")}
    if isinstance(key.get("protocol"), dict):  # protocol keys added later are left out at their default
        key["protocol"] = {k: v for k, v in key["protocol"].items()
                           if not (k in LATER_PROTOCOL_KEYS and v == PROTOCOL_DEFAULTS[k])}
    if key.get("protocol") in ({}, _HASHED_DEFAULTS):
        key.pop("protocol", None)
    key.pop("recipe", None)  # the resolved content is the experiment; the recipe's name is provenance
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
    AVX2 and an AVX512 host of the same name do not compare), thread count and accelerator of this process, and
    whether the native kernels are on (``native``: the RBM's step, :mod:`~neuroplastic.boltzmann.native`, which
    draws other random numbers than the torch route, and the SAL phase, :mod:`~neuroplastic.sal.native`, which
    runs faster and also draws its own random numbers; ``setup.py`` builds both and ``NEUROPLASTIC_NATIVE=0`` turns both off) and, on a GPU, whether the
    SAL phase replays CUDA graphs (``cuda_graphs``: :mod:`~neuroplastic.sal.neurons`, the same spikes, faster;
    ``NEUROPLASTIC_CUDA_GRAPH=0`` turns it off)."""
    from .boltzmann import native
    from .sal import native as sal_native
    from .sal.neurons import cuda_graphs

    env = {"commit": git_commit(), "torch": torch.__version__, "cpu": cpu_name(),
           "cpu_isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "python": platform.python_version(), "native": native.available() and sal_native.available()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda_graphs"] = cuda_graphs(device)
    return env


@dataclasses.dataclass
class RunOutput:
    """The record of one finished run (what the results database stores).

    ``status``: ``done``, or ``budget`` when the protocol's time budget ended training after ``epochs_done``
    epochs. ``label_runs``: one row per count of the protocol's ``labels_per_class``."""

    config: dict[str, Any]
    hash: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    env: dict[str, Any]
    train_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    n_params: int
    status: str = "done"
    epochs_done: int | None = None
    label_runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def make_learner(cfg: dict[str, Any], bundle: Any, device: str | None = None):
    """The learner of a validated ``cfg`` for ``bundle`` (anything with ``in_shape`` and ``n_classes``; those and
    ``seed`` filled in), on ``device`` (default: the config's)."""
    from . import learners

    kwargs = learner_kwargs(cfg)
    sig = inspect.signature(learners.entry(cfg["learner"]).cls.__init__).parameters
    if "in_shape" in sig:
        kwargs.setdefault("in_shape", bundle.in_shape)
    if "n_classes" in sig:
        kwargs.setdefault("n_classes", bundle.n_classes)
    if "seed" in sig:
        kwargs.setdefault("seed", cfg["seed"])
    return learners.get(cfg["learner"], **kwargs).to(device or cfg["device"])


@contextlib.contextmanager
def _learner_errors(cfg: dict[str, Any]):
    """Turn what a learner's constructor or ``configure`` raises on bad parameters into a one-line
    :class:`ConfigError` naming the learner: a value out of range or of no meaning, or sizes that do not fit in
    memory."""
    try:
        yield
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
        raise ConfigError(f"learner {cfg['learner']!r}: {' '.join(str(e).split())}") from None
    except (RuntimeError, MemoryError) as e:  # an allocation the machine cannot hold: the sizes asked are too big
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        raise ConfigError(f"learner {cfg['learner']!r}: params {cfg['params']} ask for a model that does not fit "
                          f"in memory ({' '.join(str(e).split())[:120]})") from None


def _check_flips(cfg: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Random flips (``protocol.hflip``, ``protocol.probe.flip``) need images: samples of shape (C, H, W)."""
    for key, on in (("protocol.hflip", cfg["protocol"]["hflip"]),
                    ("protocol.probe.flip", cfg["protocol"]["probe"].get("flip"))):
        if on and len(shape) != 3:
            raise ConfigError(f"config key {key!r} needs image data; dataset {cfg['dataset']!r} has samples of shape "
                              f"{tuple(shape)}")


def preflight(cfg: dict[str, Any]) -> None:
    """Check a validated run config as far as its learner, before any data is read or anything trains: build the
    learner on the CPU for the dataset's sample shape (:func:`neuroplastic.data.sample_shape`) and configure its
    optimizer, so a value the constructor refuses (``sal_nets: 0``, ``hidden: [0]``, a preset that does not fit
    the inputs) or a protocol option the data cannot take (``hflip`` on non-images) raises :class:`ConfigError`
    now. A suite checks every open run this way before its first run starts. Torch's random streams are left as
    they were; a dataset whose registration declares no shape is checked when its run is built."""
    from . import data

    if cfg.get("study") is not None:
        return
    shape = data.sample_shape(cfg["dataset"])
    if shape is None:
        return
    _check_flips(cfg, shape)
    sizes = SimpleNamespace(in_shape=shape, n_classes=data.dataset_info(cfg["dataset"]).n_classes)
    with torch.random.fork_rng(devices=[]), _learner_errors(cfg):
        make_learner(cfg, sizes, device="cpu").configure(cfg["epochs"], 1)


def zca_settings(cfg: dict[str, Any], learner: Any) -> dict[str, Any] | None:
    """The ZCA data stage of a run: the protocol's ``zca`` mapping, or (``zca: null``) the learner's paper default
    (``input_zca``, e.g. SoftHebb and Nimmo's presets on colour images); None when off."""
    z = cfg["protocol"]["zca"]
    if z is None:
        return dict(ZCA_DEFAULTS) if getattr(learner, "input_zca", False) else None
    return z or None


def build(cfg: dict[str, Any]):
    """Validate ``cfg`` and return ``(cfg, bundle, learner)`` ready for :func:`neuroplastic.trainer.fit`.

    Data stages of the protocol are applied to the bundle here: ZCA whitening fitted on the training split only
    (:func:`neuroplastic.data.transforms.zca_stage`)."""
    from . import data
    from .data.transforms import binarize_stage, zca_stage
    from .trainer import seed_everything

    cfg = validate(cfg)
    preflight(cfg)  # a refused parameter is reported before the data is read
    seed_everything(cfg["seed"], cfg["deterministic"])
    try:
        bundle = data.prepare(cfg["dataset"], val=cfg["val"], seed=cfg["seed"], limit_train=cfg["limit_train"],
                              limit_test=cfg["limit_test"], normalize=cfg["normalize"], device=cfg["device"])
    except ValueError as e:  # the split sizes: the one ValueError prepare raises on a validated config
        raise ConfigError(f"config key 'val': {e}") from None
    with _learner_errors(cfg):
        learner = make_learner(cfg, bundle)
        learner.configure(cfg["epochs"], 1)  # optimizer settings are checked now, not when training starts
    _check_flips(cfg, bundle.in_shape)
    z = zca_settings(cfg, learner)
    if z is not None:
        zca_stage(bundle, seed=cfg["seed"], **z)
    bz = cfg["protocol"]["binarize"]
    if bz is not None:
        if cfg["normalize"]:
            raise ConfigError("config keys 'normalize' and 'protocol.binarize' exclude each other: binarisation needs "
                              "intensities in [0, 1]")
        binarize_stage(bundle, **bz)
    return cfg, bundle, learner


def _supervised_label_runs(cfg: dict[str, Any], bundle: Any, main: Any, *, checkpoint_dir: Path | None,
                           resume: bool, progress: bool) -> list[dict[str, Any]]:
    """Train a fresh supervised learner on ``n`` labels per class for every count of the protocol (at least
    ``min_steps`` updates; evaluated after the last epoch); ``all`` is the main run ``main``."""
    from .data import per_class_subset
    from .trainer import fit, seed_everything

    proto, rows = cfg["protocol"], []
    for n in proto["labels_per_class"]:
        if n == "all":
            rows.append({"labels_per_class": "all", "n_labels": len(bundle.train), "epochs": cfg["epochs"],
                         "test_acc": main.final.get("test_acc"), "val_acc": main.final.get("val_acc"),
                         "train_seconds": main.train_seconds})
            continue
        idx = per_class_subset(bundle.train.y.cpu(), int(n), cfg["seed"]).to(bundle.train.y.device)
        sub = dataclasses.replace(bundle, train=bundle.train.subset(idx))
        steps = -(-len(idx) // cfg["batch_size"])
        epochs = max(cfg["epochs"], -(-proto["min_steps"] // steps))
        seed_everything(cfg["seed"], cfg["deterministic"])
        learner = make_learner(cfg, sub)
        res = fit(learner, sub, epochs=epochs, batch_size=cfg["batch_size"], seed=cfg["seed"], progress=progress,
                  eval_every=epochs, eval_batch_size=cfg["eval_batch_size"], hflip=proto["hflip"],
                  checkpoint_dir=None if checkpoint_dir is None else checkpoint_dir / f"labels_{n}", resume=resume)
        rows.append({"labels_per_class": int(n), "n_labels": len(idx), "epochs": epochs,
                     "test_acc": res.final.get("test_acc"), "val_acc": res.final.get("val_acc"),
                     "train_seconds": res.train_seconds})
    return rows


def run(cfg: dict[str, Any], *, checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
        progress: bool = True, log: Any = None, figures_dir: str | os.PathLike | None = None,
        callbacks: tuple = ()) -> RunOutput:
    """Build and train one config by its protocol; return its :class:`RunOutput` (final-epoch metrics). With
    ``checkpoint_dir`` the run checkpoints there (every epoch, and every ``protocol.checkpoint_every`` steps),
    resumes from it with ``resume``, and (``protocol.save_model``) writes the trained model with its probe as
    ``model.pt``. With ``figures_dir``, the learner's :meth:`~neuroplastic.learners.base.Learner.figures` are
    written there."""
    from .trainer import TimeBudget, fit

    t0 = time.perf_counter()
    if cfg.get("study") is not None:
        return _run_study(validate(cfg), figures_dir, t0)
    cfg, bundle, learner = build(cfg)
    env = environment(cfg["device"])  # as the run starts: a commit made while it trains is not the one it ran
    proto = cfg["protocol"]
    cbs = list(callbacks) + ([TimeBudget(proto["budget_minutes"])] if proto["budget_minutes"] else [])
    counts = proto["labels_per_class"]
    res = fit(learner, bundle, epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"],
              checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
              eval_batch_size=cfg["eval_batch_size"], log=log, callbacks=cbs, eval_every=proto["eval_every"],
              checkpoint_every=proto["checkpoint_every"], hflip=proto["hflip"], probe=proto["probe"],
              labels_per_class=None if learner.supervised else counts, min_steps=proto["min_steps"],
              forward_timing=proto["forward_timing"], checkpoint_meta={"config_hash": config_hash(cfg)})
    ckdir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if proto["save_model"] and ckdir is not None:
        save_model(learner, ckdir / MODEL_FILE)
    label_runs = res.label_runs
    if counts and learner.supervised:
        label_runs = _supervised_label_runs(cfg, bundle, res, checkpoint_dir=ckdir, resume=resume,
                                            progress=progress)
    metrics = {k: v for k, v in res.final.items() if k != "probe_history"}
    extra = getattr(learner, "final_metrics", None)
    if callable(extra):
        metrics.update(extra(bundle))
    if proto["energy"]:
        from .energy import count_run

        try:  # a count is a bonus: a learner the counter cannot follow must not lose a finished run
            metrics.update(count_run(learner, bundle, batch_size=cfg["batch_size"]))
        except Exception as e:  # noqa: BLE001
            metrics["energy_error"] = f"{type(e).__name__}: {e}"
            print(f"{cfg['learner']}: energy not counted: {metrics['energy_error']}", file=sys.stderr)
    if proto["robustness"]:
        from .robustness import robustness

        metrics.update(robustness(learner, bundle, seed=cfg["seed"], batch_size=cfg["eval_batch_size"]))
    if figures_dir is not None:
        try:  # pictures are a bonus: a failure to draw must not lose a finished run
            learner.figures(bundle, Path(figures_dir))
        except Exception as e:  # noqa: BLE001
            metrics["figures_error"] = f"{type(e).__name__}: {e}"
            print(f"{cfg['learner']}: pictures not drawn: {metrics['figures_error']}", file=sys.stderr)
    history = res.history + [dict(r, stage="probe") for r in res.final.get("probe_history", [])]
    return RunOutput(cfg, config_hash(cfg), metrics, history, env, res.train_seconds,
                     time.perf_counter() - t0, res.peak_memory_mb, learner.n_params(), res.status,
                     res.epochs_done, label_runs)


def _run_study(cfg: dict[str, Any], figures_dir: str | os.PathLike | None, t0: float) -> RunOutput:
    """Run a validated study config (:mod:`neuroplastic.studies`) as a run of the store: its metrics, its curves as
    history, its pictures in ``figures_dir``."""
    from . import studies
    from .trainer import peak_memory_mb, reset_peak_memory, seed_everything

    device = torch.device(cfg["device"])
    env = environment(cfg["device"])
    seed_everything(cfg["seed"])
    reset_peak_memory(device)
    start = time.perf_counter()
    out = studies.run(cfg["study"], cfg["params"], cfg["seed"], figures_dir)
    seconds = time.perf_counter() - start
    return RunOutput(cfg, config_hash(cfg), dict(out.metrics), list(out.history), env, seconds,
                     time.perf_counter() - t0, peak_memory_mb(device), 0, "done", 0, [])


#: File name of a trained model (weights and probe) in a run folder.
MODEL_FILE = "model.pt"


def save_model(learner: Any, path: str | os.PathLike) -> None:
    """Write a trained learner's weights and its linear probe (if fitted) atomically to ``path``: tensors and
    plain values only, read back with ``torch.load(weights_only=True)`` (no code runs on loading)."""
    from .trainer import atomic_save

    probe = getattr(learner, "probe", None)
    state = {k: v for k, v in learner.state_dict().items() if not k.startswith("probe.")}
    out: dict[str, Any] = {"model": state, "probe": None}
    if probe is not None:
        out["probe"] = {"state": probe.state_dict(), "in_features": probe.linear.in_features,
                        "n_classes": probe.linear.out_features, "dropout": float(probe.dropout.p),
                        "standardize": bool(probe.standardize)}
    atomic_save(out, path)


def load_model(learner: Any, path: str | os.PathLike) -> Any:
    """Load :func:`save_model`'s file into ``learner`` (probe included); returns the learner in eval mode."""
    from .probe import LinearProbe
    from .trainer import load_state_file

    state = load_state_file(path, next(iter(learner.parameters()), torch.empty(0)).device, ("model",))
    try:
        learner.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ConfigError(f"{path}: the weights do not fit this config's learner ({first[:160]})") from None
    p = state.get("probe")
    if p is not None:
        probe = LinearProbe(p["in_features"], p["n_classes"], p["dropout"], p["standardize"])
        probe.load_state_dict(p["state"])
        learner.probe = probe.to(next(iter(learner.parameters()), torch.empty(0)).device).eval()
    return learner.eval()


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every (dotted) key whose value differs between two validated configs, ignoring what
    the hash ignores (device, eval batch size, recipe name)."""
    skip = ("device", "eval_batch_size", "recipe")
    a, b = _flat({k: v for k, v in old.items() if k not in skip}), _flat({k: v for k, v in new.items() if k not in skip})
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if json.dumps(a.get(k), default=str) != json.dumps(b.get(k), default=str)]


def check_resume(folder: str | os.PathLike, cfg: dict[str, Any]) -> None:
    """Refuse to resume the run in ``folder`` with another config: its saved ``config.yaml``/``config.json`` must
    hash as ``cfg`` does, else a :class:`ConfigError` names the keys that differ. Nothing is written."""
    folder = Path(folder)
    saved = next((folder / n for n in ("config.yaml", "config.json") if (folder / n).is_file()), None)
    if saved is None:
        return
    old = validate({**load_yaml(saved), "device": cfg["device"]})  # a GPU run may resume on another device
    if config_hash(old) != config_hash(cfg):
        raise ConfigError(f"{str(folder)!r} holds a run of another config; --resume continues only the same config "
                          f"(differs: {'; '.join(config_diff(old, cfg))})")


def load_trained(folder: str | os.PathLike, device: str = "cpu"):
    """Rebuild a learner from a run folder (``neuroplastic train --out`` or a bench run): ``config.yaml`` or
    ``config.json`` plus ``model.pt`` (weights and probe; else the last epoch's ``checkpoint.pt``, without probe).
    Returns ``(learner, bundle, cfg)``; an unsupervised learner with a saved probe predicts."""
    folder = Path(folder)
    cfg_file = next((folder / n for n in ("config.yaml", "config.json") if (folder / n).is_file()), None)
    weights = next((folder / n for n in (MODEL_FILE, "checkpoint.pt") if (folder / n).is_file()), None)
    if cfg_file is None or weights is None:
        raise ConfigError(f"{str(folder)!r}: expected config.yaml (or config.json) and model.pt (or checkpoint.pt): "
                          "the --out folder of `neuroplastic train` or a bench run folder")
    cfg = load_yaml(cfg_file)
    cfg["device"] = device
    cfg, bundle, learner = build(cfg)
    # the run's schedule (steps per epoch as the trainer had it), so that what depends on it — energy shared over an
    # epoch, a further training step — is as in the run; the weights are loaded after
    learner.configure(cfg["epochs"], max(1, (len(bundle.train) + cfg["batch_size"] - 1) // cfg["batch_size"]))
    if weights.name == MODEL_FILE:
        load_model(learner, weights)
    else:
        from .trainer import load_state_file

        state = load_state_file(weights, device, ("learner",))
        if not isinstance(state["learner"], dict) or "model" not in state["learner"]:
            raise ConfigError(f"{weights}: not a checkpoint of this library (no learner model state)")
        learner.load_state_dict(state["learner"]["model"])
        learner.eval()
    return learner, bundle, cfg


def last_epochs_mean(history: list[dict[str, Any]], key: str, n: int = 5) -> float | None:
    """The mean of ``key`` over the last ``n`` training epochs of ``history`` (rows with an ``epoch`` and no
    ``stage``); None unless each of those epochs has a finite value."""
    rows = [h for h in history if "epoch" in h and h.get("stage") is None]
    vals = [h.get(key) for h in rows[-n:]]
    if len(vals) < n or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
        return None
    return statistics.fmean(vals)


def record(out: RunOutput, *, command: str, status: str | None = None) -> dict[str, Any]:
    """The standard results record of a run (the store's unit; the exported ``benchmarks/results/<section>.json`` files hold them).

    Keys: ``learner, dataset, preset, seed, epochs, status`` (``done`` or ``budget``), ``epochs_done,
    test_acc`` (fraction, final epoch), ``last5_test_acc`` (the mean test accuracy of the last 5 epochs, as
    Gierlich et al. 2025 report theirs; only when the run tested every one of them), ``val_acc, train_seconds,
    samples_per_s, commit, cpu, cpu_isa, threads, torch, command, hash, protocol``, ``limit_train`` and
    ``limit_test`` where the run used part of the data, plus every extra scalar metric the run reported.
    """
    cfg = out.config
    preset = cfg.get("preset") or cfg["params"].get("preset") or cfg["params"].get("arch") or "default"
    rec: dict[str, Any] = {
        "learner": cfg["learner"], "dataset": cfg["dataset"], "preset": preset, "seed": cfg["seed"],
        "epochs": cfg["epochs"], "epochs_done": out.epochs_done, "status": status or out.status,
        "test_acc": out.metrics.get("test_acc"),
        "val_acc": out.metrics.get("val_acc"), "train_seconds": round(out.train_seconds, 3),
        "wall_seconds": round(out.wall_seconds, 3), "peak_memory_mb": round(out.peak_memory_mb, 1),
        "n_params": out.n_params, "samples_per_s": out.metrics.get("samples_per_s"),
        "commit": out.env.get("commit"), "cpu": out.env.get("cpu"), "cpu_isa": out.env.get("cpu_isa"),
        "threads": out.env.get("threads"), "torch": out.env.get("torch"), "native": out.env.get("native"),
        "device": cfg["device"], "gpu": out.env.get("gpu"), "command": command, "hash": out.hash,
        "params": cfg["params"], "batch_size": cfg["batch_size"], "date": time.strftime("%Y-%m-%d"),
    }
    if out.env.get("cuda_graphs") is not None:
        rec["cuda_graphs"] = out.env["cuda_graphs"]
    if (last := last_epochs_mean(out.history, "test_acc")) is not None:
        rec["last5_test_acc"] = last
    if cfg.get("recipe"):
        rec["recipe"] = cfg["recipe"]
    for k in ("limit_train", "limit_test"):  # a run on part of the data says so (full data: no key)
        if cfg.get(k) is not None:
            rec[k] = cfg[k]
    if cfg.get("protocol") not in (None, {}, PROTOCOL_DEFAULTS):
        rec["protocol"] = {k: v for k, v in cfg["protocol"].items() if v != PROTOCOL_DEFAULTS.get(k)}
    if out.label_runs:
        rec["labels_per_class"] = "all"
    for k, v in out.metrics.items():
        if k not in rec and isinstance(v, (int, float, str, bool)):
            rec[k] = v
    return rec


def records(out: RunOutput, *, command: str) -> list[dict[str, Any]]:
    """Every record of a run: the main one (:func:`record`), then one per label count of the protocol's
    ``labels_per_class`` (its ``test_acc``/``val_acc``, ``labels_per_class``, ``n_labels``)."""
    main = record(out, command=command)
    recs = [main]
    for r in out.label_runs:
        if r["labels_per_class"] == "all":
            continue
        recs.append(dict(main, **{k: v for k, v in r.items()}))
    return recs


def write_json_atomic(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON to ``path`` by write-then-rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)
