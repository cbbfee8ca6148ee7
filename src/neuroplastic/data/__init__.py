"""Datasets: official-format readers, a data root, checksums, generated tasks and transforms.

>>> from neuroplastic import data
>>> bundle = data.prepare("digits", val=0.1, seed=0)
>>> bundle.in_shape, bundle.n_classes
((1, 8, 8), 10)
"""

from __future__ import annotations

import importlib

from .core import (
    ArrayDataset,
    DataBundle,
    DatasetError,
    DatasetInfo,
    batches,
    data_root,
    dataset_info,
    dataset_names,
    load,
    per_class_subset,
    prepare,
    register_dataset,
    sample_shape,
    split_validation,
)

# Modules that register datasets when imported (absent ones are skipped while they are being built).
for _mod in ("digits", "idx", "cifar", "generated", "context"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_mod}":
            raise

__all__ = ["ArrayDataset", "DataBundle", "DatasetError", "DatasetInfo", "batches", "data_root",
           "dataset_info", "dataset_names", "load", "per_class_subset", "prepare", "register_dataset", "sample_shape",
           "split_validation"]
