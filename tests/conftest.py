import os

import pytest
import torch

# One thread per test process: on 2 shared cores, 2 threads per process were 3-50x slower under load.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NEUROPLASTIC_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set NEUROPLASTIC_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def diverging_learner():
    """``register(name, epoch, value)``: register a test learner ``name``, backprop whose reported loss becomes
    ``value`` (inf, NaN) from the first step of ``epoch`` (1-based), as a diverging run's would; unregistered after
    the test."""
    from neuroplastic import learners
    from neuroplastic.learners.backprop import SupervisedNet

    names = []

    def register(name: str, epoch: int, value: float = float("inf")) -> None:
        class _Diverges(SupervisedNet):
            """Test-only learner whose loss turns non-finite at a chosen epoch."""

            def configure(self, epochs, steps_per_epoch):
                super().configure(epochs, steps_per_epoch)
                self.steps, self.per_epoch = 0, steps_per_epoch

            def train_step(self, x, y):
                self.steps += 1
                out = super().train_step(x, y)
                return {**out, "loss": value} if self.steps > (epoch - 1) * self.per_epoch else out

        learners.register(name, _Diverges, mode="bp")
        names.append(name)

    yield register
    for name in names:
        learners._REGISTRY.pop(name, None)
