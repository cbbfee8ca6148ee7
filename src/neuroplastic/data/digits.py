"""scikit-learn's bundled 8×8 handwritten digits (UCI optdigits test set; 1,797 images, 10 classes).

Shipped inside the package (``data/embedded/digits.csv.gz``, BSD-3-Clause, from scikit-learn) so the
quick benchmark and the tests run with no network and no data root. Pixel values 0–16 are rescaled to
``uint8`` 0–255. The split is fixed (not the run's seed): 1,437 train / 360 test, stratified.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import numpy as np
import torch

from .core import ArrayDataset, DatasetError, DatasetInfo, register_dataset

SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
_SPLIT_SEED = 12345
_N_TEST_PER_CLASS = 36


def _read() -> tuple[torch.Tensor, torch.Tensor]:
    raw = resources.files("neuroplastic.data").joinpath("embedded/digits.csv.gz").read_bytes()
    if hashlib.sha256(raw).hexdigest() != SHA256:
        raise DatasetError("digits: the embedded file neuroplastic/data/embedded/digits.csv.gz is corrupt "
                           "(SHA-256 mismatch); reinstall the package")
    arr = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    if arr.shape != (1797, 65):
        raise DatasetError(f"digits: expected 1797×65 values, found {arr.shape}")
    x = torch.from_numpy(np.rint(arr[:, :64] * (255.0 / 16.0)).astype(np.uint8)).reshape(-1, 1, 8, 8)
    return x, torch.from_numpy(arr[:, 64])


def load_digits(root=None, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Load the embedded digits as ``(train, test)``; ``root``/``download``/``seed`` are ignored."""
    x, y = _read()
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    test_idx = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        test_idx.append(idx[torch.randperm(len(idx), generator=g)[:_N_TEST_PER_CLASS]])
    test_mask = torch.zeros(len(y), dtype=torch.bool)
    test_mask[torch.cat(test_idx)] = True
    classes = tuple(str(i) for i in range(10))
    return (ArrayDataset(x[~test_mask], y[~test_mask], "digits", classes),
            ArrayDataset(x[test_mask], y[test_mask], "digits", classes))


register_dataset(DatasetInfo("digits", load_digits, 10, "scikit-learn 8×8 digits, embedded (1437/360)",
                             embedded=True))
