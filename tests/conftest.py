import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NEUROPLASTIC_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set NEUROPLASTIC_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
