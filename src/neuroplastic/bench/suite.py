"""Benchmark suites: a YAML file that expands to a list of validated run configs.

A suite::

    name: compare-fa
    description: BP against feedback alignment on MNIST
    grid:                      # cartesian product; any config key (dotted keys reach into params)
      learner: [bp, fa]
      dataset: [mnist]
      preset: [mlp, lenet5]
      seed: [0, 1, 2]
      params.lr: [1.0e-3]
    base: {epochs: 20, batch_size: 128}      # config keys shared by every run
    overrides:                               # per-learner config keys, merged over base
      fa: {params: {lr: 5.0e-4}}
    cells:                                   # optional: config fragments, each crossed with the grid
      - {learner: dll, preset: mlp-mnist}
      - {learner: bp, preset: mlp, params: {hidden: [1024, 512, 256]}}
    sources: [Lv et al., ICML 2025, Table 2]            # where the targets come from
    targets:                                            # what the study must reach (shown in the results)
      - {where: {learner: dll, preset: mlp-mnist}, target: ">= 97.6", paper: "97.57"}
      - {where: {learner: dll}, closes: {from: {learner: fa}, to: {learner: bp}}, target: ">= 80 %"}
                                                        # (x - from) / (to - from) of the means over shared seeds
    cost: {cpu_minutes: 90, basis: "2-core CPU, measured 2026-12"}   # estimated cost, shown by --list
    role: study                # or exploration: varies a study's protocol to learn why a target is missed or what
                               # meets it; its targets are the study's (the results list explorations apart)

Merge order of one run (later wins, dicts such as ``params`` merge key by key): experiment defaults ←
``base`` ← the learner's registry ``quick`` entry (only with ``registry: quick``) ← the cell ←
``overrides[learner]`` ← the grid point. ``registry: quick`` replaces ``grid.learner`` by every registered learner that has a
``quick`` entry (see :func:`neuroplastic.learners.register`); the built-in ``quick`` suite is that.

Every expanded config is checked by :func:`neuroplastic.experiment.validate` and identified by
:func:`neuroplastic.experiment.config_hash`; configs that hash the same are run once.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..experiment import deep_merge

SUITE_KEYS = ("name", "description", "grid", "base", "overrides", "registry", "cells", "sources", "targets", "cost",
              "role")
REGISTRY_MODES = ("quick",)
#: A suite's role: a ``study`` measures what its issue asks for; an ``exploration`` varies a study's protocol (more
#: samples, another loss, a held norm ...) to find out why a target is missed or what meets it.
ROLES = ("study", "exploration")


class SuiteError(InputError):
    """A suite file is missing, malformed or names an unknown key/learner; the message says which."""


@dataclasses.dataclass
class Suite:
    """An expanded suite: ``runs`` holds ``(hash, validated config)`` pairs in grid order."""

    name: str
    description: str
    runs: list[tuple[str, dict[str, Any]]]
    source: str = ""
    sources: list[str] = dataclasses.field(default_factory=list)
    targets: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    cost: dict[str, Any] = dataclasses.field(default_factory=dict)
    role: str = "study"

    def __len__(self) -> int:
        return len(self.runs)

    def meta(self) -> dict[str, Any]:
        """What the results store keeps of the suite for its section: title, sources, targets, cost, role."""
        return {"kind": "suite", "suite": self.name, "title": self.description, "sources": self.sources,
                "targets": self.targets, "cost": self.cost, "role": self.role}

    def where(self, conditions: list[tuple[str, Any]]) -> Suite:
        """The runs whose config matches every ``(dotted key, value)`` of ``conditions`` (e.g. one cell of a
        study: ``learner=dll``, ``seed=0``, ``params.conv_mode=fa``); a run without the key does not match. An
        error names a key no run has or a filter that keeps none."""
        missing = object()

        for key, _ in conditions:
            if all(get_dotted(cfg, key, missing) is missing for _, cfg in self.runs):
                raise SuiteError(f"--where {key}: no such config key in suite {self.name!r}")
        keep = [(h, cfg) for h, cfg in self.runs
                if all((v := get_dotted(cfg, key, missing)) is not missing and (v == value or str(v) == str(value))
                       for key, value in conditions)]
        if not keep:
            desc = ", ".join(f"{k}={v}" for k, v in conditions)
            raise SuiteError(f"suite {self.name!r}: no run matches {desc}")
        return dataclasses.replace(self, runs=keep)


def builtin_dir() -> Path:
    """Folder of the built-in suites (package data ``neuroplastic/bench/suites``)."""
    return Path(str(resources.files("neuroplastic.bench") / "suites"))


def builtin_names() -> list[str]:
    """Names of the built-in suites (``quick``, ...)."""
    d = builtin_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def find(name_or_path: str | os.PathLike) -> Path:
    """Resolve a suite argument: an existing YAML path, else a built-in suite name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    cand = builtin_dir() / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    raise SuiteError(f"no suite file or built-in suite named {str(name_or_path)!r}; "
                     f"built-in suites: {', '.join(builtin_names()) or '(none)'}")


def get_dotted(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    """``cfg['a']['b']`` for the dotted key ``a.b``, or ``default`` where a part is missing."""
    v: Any = cfg
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            return default
        v = v[part]
    return v


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``key`` set; ``a.b=v`` sets ``cfg['a']['b']`` (creating dicts)."""
    head, *rest = key.split(".")
    nested: Any = value
    for part in reversed(rest):
        nested = {part: nested}
    return deep_merge(cfg, {head: nested})


def _check_config_keys(keys: list[str], where: str) -> None:
    from ..experiment import DEFAULTS, STUDY_DEFAULTS

    allowed = {**DEFAULTS, **STUDY_DEFAULTS}  # a study cell (``study: NAME``) is validated as a study config
    bad = [k for k in keys if k.split(".")[0] not in allowed
           or (k.count(".") and k.split(".")[0] not in ("params", "protocol"))]
    if bad:
        raise SuiteError(f"{where}: unknown config key(s) {', '.join(map(repr, bad))}; allowed: "
                         f"{', '.join(allowed)} (and params.<name>, protocol.<name>)")


def _mapping(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SuiteError(f"{where} must be a mapping, found {type(obj).__name__}")
    return obj


def expand(spec: dict[str, Any], *, source: str = "") -> Suite:
    """Validate a suite mapping and expand it to :class:`Suite` (raises :class:`SuiteError`)."""
    from .. import learners
    from ..experiment import ConfigError, config_hash, validate

    if not isinstance(spec, dict):
        raise SuiteError(f"suite {source or '(mapping)'} must be a mapping, found {type(spec).__name__}")
    unknown = [k for k in spec if k not in SUITE_KEYS]
    if unknown:
        raise SuiteError(f"suite {source}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(SUITE_KEYS)}")
    name = spec.get("name") or (Path(source).stem if source else "suite")
    if not isinstance(name, str):
        raise SuiteError(f"suite {source}: 'name' must be a string, got {name!r}")
    where = f"suite {name!r}"
    grid = _mapping(spec.get("grid"), f"{where}: 'grid'")
    base = _mapping(spec.get("base"), f"{where}: 'base'")
    overrides = _mapping(spec.get("overrides"), f"{where}: 'overrides'")
    _check_config_keys(list(grid), f"{where}: grid")
    _check_config_keys(list(base), f"{where}: base")
    cells = spec.get("cells")
    if cells is None:
        cells = [{}]
    if not isinstance(cells, list) or not cells or not all(isinstance(c, dict) for c in cells):
        raise SuiteError(f"{where}: 'cells' must be a non-empty list of mappings")
    for i, c in enumerate(cells):
        _check_config_keys(list(c), f"{where}: cells[{i}]")
    sources = spec.get("sources") or []
    targets = spec.get("targets") or []
    cost = _mapping(spec.get("cost"), f"{where}: 'cost'")
    if not isinstance(sources, list) or not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise SuiteError(f"{where}: 'sources' must be a list and 'targets' a list of mappings")
    for t in targets:
        bad = [k for k in t if k not in ("where", "target", "paper", "metric", "note", "closes")]
        if bad or "target" not in t:
            raise SuiteError(f"{where}: a target needs 'target' and may have where, paper, metric, note, closes; "
                             f"got {t!r}")
        closes = t.get("closes")
        if closes is not None and not (isinstance(closes, dict) and set(closes) == {"from", "to"}
                                       and all(isinstance(v, dict) for v in closes.values())):
            raise SuiteError(f"{where}: a target's 'closes' must be {{from: RUNS, to: RUNS}} (two mappings of "
                             f"record keys), got {closes!r}")
    role = spec.get("role", "study")
    if role not in ROLES:
        raise SuiteError(f"{where}: 'role' must be one of {', '.join(ROLES)}, got {role!r}")
    mode = spec.get("registry")
    quick: dict[str, dict[str, Any]] = {}
    if mode is not None:
        if mode not in REGISTRY_MODES:
            raise SuiteError(f"{where}: 'registry' must be one of {', '.join(REGISTRY_MODES)}, got {mode!r}")
        if "learner" in grid or "learner" in base:
            raise SuiteError(f"{where}: 'registry: {mode}' chooses the learners; remove 'learner' from grid/base")
        quick = {e.name: e.quick for e in learners.entries() if e.quick is not None}
        grid = {"learner": sorted(quick), **grid}
    known = learners.names()
    for lname, ov in overrides.items():
        if lname not in known:
            raise SuiteError(f"{where}: overrides for unknown learner {lname!r}; known learners: {', '.join(known)}")
        _check_config_keys(list(_mapping(ov, f"{where}: overrides[{lname!r}]")), f"{where}: overrides[{lname!r}]")
    axes = [(k, v if isinstance(v, list) else [v]) for k, v in grid.items()]
    for k, vals in axes:
        if not vals:
            raise SuiteError(f"{where}: grid key {k!r} has an empty list")
    runs: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for cell, combo in itertools.product(cells, itertools.product(*(vals for _, vals in axes))):
        point = dict(zip([k for k, _ in axes], combo))
        lname = point.get("learner", cell.get("learner", base.get("learner")))
        for q in quick.get(lname, [{}]):  # a learner may have several quick runs
            cfg = copy.deepcopy(base)
            cfg = deep_merge(cfg, q)
            cfg = deep_merge(cfg, cell)
            if lname in overrides:
                cfg = deep_merge(cfg, overrides[lname] or {})
            for k, v in point.items():
                cfg = set_dotted(cfg, k, v)
            try:
                cfg = validate(cfg)
            except ConfigError as e:
                desc = ", ".join(f"{k}={v}" for k, v in {**cell, **point}.items() if not isinstance(v, dict))
                raise SuiteError(f"{where}, run ({desc}): {e}") from None
            h = config_hash(cfg)
            if h not in seen:
                seen.add(h)
                runs.append((h, cfg))
    return Suite(name, " ".join(str(spec.get("description") or "").split()), runs, source, [str(x) for x in sources],
                 targets, cost, role)


def load(name_or_path: str | os.PathLike) -> Suite:
    """Load and expand a suite by built-in name (``quick``) or YAML path."""
    from ..experiment import ConfigError, read_yaml

    path = find(name_or_path)
    try:
        spec = read_yaml(path, "suite file")
    except ConfigError as e:
        raise SuiteError(str(e)) from None
    return expand(spec, source=str(path))


def listing() -> list[dict[str, Any]]:
    """Every built-in suite with its role, description, number of runs and estimated CPU cost (``bench --list``)."""
    out = []
    for name in builtin_names():
        try:
            s = load(name)
            out.append({"name": name, "role": s.role, "runs": len(s), "description": s.description,
                        "cpu_minutes": s.cost.get("cpu_minutes"), "basis": s.cost.get("basis", "")})
        except SuiteError as e:  # a suite that needs a learner not built here still lists, with the reason
            out.append({"name": name, "role": "?", "runs": 0, "description": f"(not loadable: {e})", "cpu_minutes": None,
                        "basis": ""})
    return out
