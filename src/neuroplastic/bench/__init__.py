"""Benchmark harness: suites (YAML grids of configs), the SQLite results database, the worker pool and
reports.

>>> from neuroplastic.bench import suite
>>> s = suite.load("quick")          # every registered learner with a quick config
>>> "bp" in [cfg["learner"] for _, cfg in s.runs]
True

Command line: ``neuroplastic bench SUITE`` and ``neuroplastic report`` (see :mod:`neuroplastic.cli`).
"""

from .db import DEFAULT_PATH, ResultsDB
from .suite import Suite, SuiteError

__all__ = ["DEFAULT_PATH", "ResultsDB", "Suite", "SuiteError"]
