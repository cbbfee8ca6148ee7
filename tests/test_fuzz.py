"""Property-based fuzzing of config validation and model construction (issue #19).

Every generated config, for every registered learner, either builds (``experiment.build``: validation, data,
learner, optimizer) or raises the library's :class:`ConfigError` with a message that names a key. Any other
exception is a traceback a user would see, and fails the test with the falsifying config.

The property runs in a child process whose address space is capped (``RLIMIT_AS``), so a huge size is refused
by the allocator at once on any machine (whatever its overcommit policy) instead of being built for real; the
library must turn that into a config error too. Derandomised (the same examples on every run) and bounded well
under 60 s on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

EXAMPLES = 500

CHILD = textwrap.dedent('''
    import math, resource, sys, time, types, typing
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import torch
    torch.set_num_threads(1)
    from hypothesis import HealthCheck, given, settings, strategies as st
    from neuroplastic import experiment, learners
    from neuroplastic.experiment import ConfigError

    NAMES = learners.names()
    DATASETS = ["digits", "xor", "two-moons", "gaussians", "context-mini", "context", "nope"]
    WORDS = ["", "x", "relu", "tanh", "sgd", "adam", "cosine", "linear", "none", "step", "softhebb", "optimal",
             "mlp", "lenet5", "small_cnn", "lv_cnn_mnist", "bp", "fa", "kp", "paper", "fast", "w", "stochastic",
             "threshold", "bfloat16", "float32", "mlp-mnist", "bernoulli16", "rate", "auto", "fast_sigmoid",
             "classification", "sequence", "all", "cuda", "cuda:1", "cpu", "1e-3", "\\u00e9\\u0000"]
    ints = st.one_of(st.integers(-3, 70), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**63, -2**63, 10**12]))
    floats = st.one_of(st.floats(-2, 2), st.sampled_from([0.0, 1e-9, 1e12, 1e308, float("nan"), float("inf"),
                                                          -float("inf")]))
    scalars = st.one_of(st.none(), st.booleans(), ints, floats, st.sampled_from(WORDS))
    junk = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.sampled_from(["a", "lr", "n"]),
                                                                                 scalars, max_size=2))

    def for_hint(hint):
        origin = typing.get_origin(hint)
        if origin in (typing.Union, types.UnionType):
            return st.one_of([for_hint(h) for h in typing.get_args(hint)])
        if hint is type(None):
            return st.none()
        if hint is bool:
            return st.booleans()
        if hint is int:
            return ints
        if hint is float:
            return st.one_of(floats, ints)
        if hint is str:
            return st.sampled_from(WORDS)
        if origin is tuple:
            return st.lists(ints, max_size=4)
        return junk

    @st.composite
    def configs(draw):
        name = draw(st.sampled_from(NAMES))
        hints = typing.get_type_hints(learners.entry(name).cls.__init__)
        allowed = learners.allowed_params(name)
        keys = draw(st.lists(st.sampled_from(allowed), max_size=4, unique=True))
        params = {k: draw(st.one_of(for_hint(hints.get(k)), junk) if draw(st.booleans()) else for_hint(hints.get(k)))
                  for k in keys}
        cfg = {"learner": name, "dataset": draw(st.sampled_from(DATASETS)), "limit_train": 40, "limit_test": 20,
               "epochs": 1, "params": params}
        top = {"epochs": ints, "batch_size": ints, "seed": st.one_of(ints, floats), "val": st.one_of(ints, floats),
               "limit_train": st.one_of(st.none(), ints), "limit_test": st.one_of(st.none(), ints),
               "eval_batch_size": ints, "normalize": scalars, "device": st.sampled_from(WORDS), "preset": scalars,
               "recipe": st.one_of(st.none(), st.sampled_from(WORDS + experiment.recipe_names())),
               "protocol": st.dictionaries(st.sampled_from(list(experiment.PROTOCOL_DEFAULTS) + ["nope"]), junk,
                                           max_size=2),
               "params": junk, "nope": scalars}
        for k in draw(st.lists(st.sampled_from(list(top)), max_size=3, unique=True)):
            cfg[k] = draw(top[k])
        return cfg

    KEYS = set(experiment.DEFAULTS) | set(experiment.PROTOCOL_DEFAULTS) | {"arch", "architecture", "recipe"}
    seen = {"built": 0, "refused": 0}

    @settings(max_examples=int(sys.argv[1]), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(configs())
    def check(cfg):
        try:
            experiment.build(cfg)
            seen["built"] += 1
        except ConfigError as e:
            msg = str(e)
            names = KEYS | set(learners.allowed_params(cfg["learner"])) if cfg["learner"] in NAMES else KEYS
            assert "\\n" not in msg, f"multi-line config error: {msg!r}"
            assert any(k in msg for k in names), f"config error naming no key: {msg!r}"
            seen["refused"] += 1

    t0 = time.time()
    check()
    print(f"built {seen['built']}, refused {seen['refused']}, tracebacks 0, {time.time() - t0:.1f} s")
''')


def test_every_generated_config_builds_or_is_a_config_error_naming_a_key():
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(EXAMPLES)], capture_output=True, text=True, check=False,
                          timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "tracebacks 0" in out
    built, refused = (int(w.rstrip(",")) for w in out.split()[1:4:2])
    assert built > EXAMPLES // 20 and refused > EXAMPLES // 4, out  # both outcomes exercised
