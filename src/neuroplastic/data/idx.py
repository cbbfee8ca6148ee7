"""MNIST-family datasets in the IDX format (LeCun et al. 1998): MNIST, Fashion-MNIST, KMNIST.

Files are read from ``<data root>/<dataset>/`` gzipped (``*.gz``) or not; the *decompressed* content is
checked against its SHA-256 (gzip wrappers differ between mirrors, the content does not).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

from .core import ArrayDataset, DatasetError, DatasetInfo, register_dataset

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def parse_idx(raw: bytes, where: str) -> np.ndarray:
    """Parse IDX bytes (magic ``0 0 type ndim``, big-endian int32 dims, data) into an array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{where}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{where}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{where}: truncated or corrupt IDX file ({len(raw)} bytes, expected {expected} "
                           f"for shape {dims})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx_file(folder: Path, stem: str, sha256: str | None, dataset: str) -> np.ndarray:
    """Read ``stem`` or ``stem.gz`` from ``folder``; verify the decompressed SHA-256 if given."""
    for path in (folder / stem, folder / (stem + ".gz")):
        if path.exists():
            raw = path.read_bytes()
            if path.suffix == ".gz":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError) as e:
                    raise DatasetError(f"{dataset}: {path} is a corrupt or truncated gzip file ({e}); "
                                       f"delete it and download again") from None
            if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
                raise DatasetError(f"{dataset}: checksum mismatch for {path} (SHA-256 of the decompressed "
                                   f"content differs from the official file); delete it and download again")
            return parse_idx(raw, str(path))
    raise DatasetError(f"{dataset}: file {stem}[.gz] not found in {folder}. Put the official files there, "
                       f"set --data-root / NEUROPLASTIC_DATA to a folder holding {dataset}/, or use "
                       f"download=True (neuroplastic data download {dataset}) where there is network")


def load_idx_dataset(name: str, files: dict[str, str | None], root: Path, classes: tuple[str, ...],
                     ) -> tuple[ArrayDataset, ArrayDataset]:
    """Load the four IDX files of an MNIST-family dataset from ``root/name``."""
    folder = Path(root) / name
    out = []
    for split in ("train", "t10k"):
        x = read_idx_file(folder, f"{split}-images-idx3-ubyte", files.get(f"{split}-images-idx3-ubyte"), name)
        y = read_idx_file(folder, f"{split}-labels-idx1-ubyte", files.get(f"{split}-labels-idx1-ubyte"), name)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{name}: {split} images {x.shape} and labels {y.shape} do not match")
        out.append(ArrayDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)),
                                name, classes))
    return out[0], out[1]


def load_mnist(root: Path, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST: 60,000 train / 10,000 test 28×28 handwritten digits."""
    return load_idx_dataset("mnist", MNIST_FILES, root, tuple(str(i) for i in range(10)))


register_dataset(DatasetInfo("mnist", load_mnist, 10, "MNIST handwritten digits, 60k/10k, 28×28"))
