"""Registry of studies: experiments that are not a learner trained on a dataset — the SAL two-neuron and
sampling-network studies, for instance — run by ``neuroplastic bench`` like any other run.

A study config is ``{study: NAME, params: {...}, seed: N}`` (and optionally ``device``); its parameters are checked
against the study function's signature before anything runs. The store keeps it as a run whose ``learner`` is the
study's name and whose ``dataset`` is ``study``: its metrics, per-step history (the curves) and pictures appear in the
report and in RESULTS.md through the same suites, targets and records as the learners'. A study is short (minutes)
and is not checkpointed: an interrupted study starts again.

A study function takes keyword parameters and ``seed`` and returns :class:`StudyOutput`; its ``figures`` hook draws
the pictures from that output.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Study", "StudyOutput", "check_params", "entry", "names", "register"]

#: Modules that register studies when imported.
_MODULES = ("neuroplastic.sal.studies",)


@dataclasses.dataclass
class StudyOutput:
    """What a study returns: scalar ``metrics`` (the record's), ``history`` rows (curves, one dict per step of the
    study, each with ``epoch``), and ``data`` (anything the pictures need; not stored)."""

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Study:
    """A registered study: its function, paper, one-line summary and pictures hook."""

    name: str
    fn: Callable[..., StudyOutput]
    paper: str
    summary: str
    figures: Callable[[StudyOutput, Path], list[Path]] | None = None


_REGISTRY: dict[str, Study] = {}
_loaded = False


def register(name: str, fn: Callable[..., StudyOutput], *, paper: str, summary: str,
             figures: Callable[[StudyOutput, Path], list[Path]] | None = None) -> Callable[..., StudyOutput]:
    """Register study ``fn`` (keyword parameters and ``seed``; returns :class:`StudyOutput`) under ``name``."""
    if "seed" not in inspect.signature(fn).parameters:
        raise TypeError(f"study {name!r}: the function must take a seed")
    if name in _REGISTRY and _REGISTRY[name].fn is not fn:
        raise ValueError(f"study name {name!r} is already registered")
    _REGISTRY[name] = Study(name, fn, paper, summary, figures)
    return fn


def _load() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(mod)
        _loaded = True


def names() -> list[str]:
    """All registered study names, sorted."""
    _load()
    return sorted(_REGISTRY)


def entry(name: str) -> Study:
    """The registered study ``name``; unknown names raise ``KeyError`` listing the known ones."""
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown study {name!r}; known studies: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def check_params(name: str, params: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming any parameter the study's function does not take (and the ones it does)."""
    sig = inspect.signature(entry(name).fn).parameters
    allowed = [p for p in sig if p != "seed"]
    bad = [k for k in params if k not in allowed]
    if bad:
        raise ValueError(f"study {name!r} has no parameter(s) {', '.join(map(repr, bad))}; "
                         f"allowed: {', '.join(allowed)}")


def run(name: str, params: dict[str, Any], seed: int, figures_dir: str | Path | None = None) -> StudyOutput:
    """Run study ``name``; with ``figures_dir``, draw its pictures there (a failure to draw is recorded in the
    metrics as ``figures_error``, the run is kept)."""
    s = entry(name)
    out = s.fn(seed=seed, **params)
    if figures_dir is not None and s.figures is not None:
        try:
            Path(figures_dir).mkdir(parents=True, exist_ok=True)
            s.figures(out, Path(figures_dir))
        except Exception as e:  # noqa: BLE001 - pictures are a bonus
            out.metrics["figures_error"] = f"{type(e).__name__}: {e}"
    return out
