"""Registry of learners: one name per learning system, one place to build them.

>>> from neuroplastic import learners
>>> m = learners.get("bp", in_shape=(1, 8, 8), n_classes=10, arch="mlp", hidden=(32,))
>>> m.locality.marks()
'✘ ✘ ✘'

Each entry maps a name to a :class:`~neuroplastic.learners.base.Learner` subclass plus fixed keyword
arguments (``fa`` is the feedback-alignment classifier with ``mode="fa"``), its paper and its locality
criteria. Keyword arguments given to :func:`get` are validated against the class signature: an unknown
key is an error naming it and the allowed ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import types
import typing
from typing import Any

from .base import Learner, Locality, NonFiniteError, check_loss

__all__ = [
    "Learner",
    "Locality",
    "NonFiniteError",
    "allowed_params",
    "check_loss",
    "check_params",
    "entries",
    "entry",
    "get",
    "names",
    "register",
]

# Modules that register learners when imported. A module listed here that does not exist yet is
# skipped; any other import error is raised.
_MODULES = (
    "neuroplastic.learners.backprop",
    "neuroplastic.hebbian.learners",
    "neuroplastic.spiking.learners",
    "neuroplastic.dll.learners",
    "neuroplastic.boltzmann.learners",
    "neuroplastic.sal.learners",
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered learner: class, fixed keyword arguments and the facts shown in tables."""

    name: str
    cls: type
    defaults: dict
    paper: str
    locality: Locality
    supervised: bool
    summary: str
    quick: list[dict] | None = None  # config overrides, one per quick-suite run (None: not in it)
    baseline: bool = False  # the backprop reference of its architectures: the report's "vs backprop" column


_REGISTRY: dict[str, Entry] = {}
_loaded = False


def register(name: str, cls: type, *, paper: str | None = None, locality: Locality | None = None,
             summary: str = "", quick: dict | list[dict] | None = None, baseline: bool = False,
             **defaults: Any) -> type:
    """Register ``cls`` (a Learner subclass) under ``name`` with fixed keyword arguments ``defaults``.

    ``quick``: config overrides (``dataset``, ``preset``, ``params``, ``epochs``, ``batch_size``, ...) for
    the ``quick`` bench suite (``make run``: every learner on small offline data, minutes on 2 cores); a
    list gives several quick runs (e.g. an image task and a generated sequence task). ``baseline``: the learner is
    the backprop reference of the architectures (presets) it runs; the report measures others against it.
    """
    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise TypeError(f"register({name!r}): {cls!r} is not a Learner subclass")
    if name in _REGISTRY and _REGISTRY[name].cls is not cls:
        raise ValueError(f"learner name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
    _REGISTRY[name] = Entry(name, cls, dict(defaults), paper or cls.paper, locality or cls.locality,
                            cls.supervised, summary or (cls.__doc__ or "").strip().split("\n")[0],
                            None if quick is None else [dict(q) for q in (quick if isinstance(quick, list)
                                                                         else [quick])], baseline)
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # the module itself is absent: that system is not built yet
            if e.name is None or not mod.startswith(e.name):
                raise
    _loaded = True


def names() -> list[str]:
    """All registered learner names, sorted."""
    _load()
    return sorted(_REGISTRY)


def entries() -> list[Entry]:
    """All registry entries, sorted by name."""
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def entry(name: str) -> Entry:
    """The registry entry for ``name``; unknown names raise ``KeyError`` listing the known ones."""
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown learner {name!r}; known learners: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def allowed_params(name: str) -> list[str]:
    """Keyword arguments ``get(name, ...)`` accepts (the class signature less the fixed defaults)."""
    e = entry(name)
    sig = inspect.signature(e.cls.__init__)
    return [p for p in sig.parameters if p != "self" and p not in e.defaults
            and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]



def param_defaults(name: str) -> dict[str, Any]:
    """The value every keyword argument of ``name``'s learner takes when a config leaves it out: the registry's fixed
    defaults, else the class signature's defaults (arguments without a default are not listed)."""
    e = entry(name)
    return {**e.cls.init_defaults(), **e.defaults}

#: Parameters a config does not set: the data gives ``in_shape``/``n_classes``, the config key ``seed`` the seed.
FILLED_IN = ("in_shape", "n_classes", "seed")
#: Integers a constructor accepts at most (sizes, counts, steps): beyond this a value is a typo, not a model.
MAX_INT = 2**31 - 1


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None: it fits). Understands ``int``, ``float`` (an int
    is accepted; NaN and infinities are not), ``bool``, ``str``, ``None``, unions and ``tuple[int, ...]``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, h) for h in typing.get_args(hint)]
        return None if any(p is None for p in problems) else " or ".join(dict.fromkeys(problems))
    if hint is type(None):
        return None if value is None else "null"
    if hint is bool:
        return None if isinstance(value, bool) else "true/false"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT
        return None if ok else f"an integer (|n| <= {MAX_INT})"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return "a list"
        if len(args) == 2 and args[1] is Ellipsis:
            bad = [v for v in value if _type_problem(v, args[0]) is not None]
            return f"a list of {_type_problem(bad[0], args[0]).removeprefix('an ').removeprefix('a ')}s" if bad \
                else None
        return None
    return None  # an annotation this checker does not know: the constructor checks the value


def _check_known(name: str, keys: Any) -> None:
    """``ValueError`` naming the keys of ``keys`` that learner ``name``'s constructor does not take."""
    allowed = allowed_params(name)
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise ValueError(f"learner {name!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(allowed)}")


def check_params(name: str, params: dict[str, Any], *, where: str = "params") -> None:
    """Check ``params`` for learner ``name`` against its constructor's signature before anything is built: an
    unknown key, a value of the wrong type (by the annotation: ``lr: "fast"``, ``n_hidden: 1.5``, a NaN rate,
    ``hidden: "64"``) or a key the data and config fill in raises ``ValueError`` naming ``where.KEY``.

    The constructors check ranges and meanings (``hidden: [0]``); this is the type layer shared by all."""
    e = entry(name)
    _check_known(name, params)
    filled = [k for k in params if k in FILLED_IN]
    if filled:
        raise ValueError(f"{where}.{filled[0]} is not set in params: "
                         + ("use the config key 'seed'" if filled[0] == "seed" else "the dataset gives it"))
    try:
        hints = typing.get_type_hints(e.cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the checks to the constructor
        return
    for k, v in params.items():
        if k in hints:
            problem = _type_problem(v, hints[k])
            if problem is not None:
                raise ValueError(f"{where}.{k} must be {problem}, got {v!r}")


def get(name: str, **kwargs: Any) -> Learner:
    """Build the learner registered as ``name`` with keyword arguments ``kwargs`` (validated)."""
    e = entry(name)
    _check_known(name, kwargs)
    learner = e.cls(**e.defaults, **kwargs)
    learner.name = name  # records, logs and tables name the learner by its registry name
    return learner
