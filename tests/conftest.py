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
