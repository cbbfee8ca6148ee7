"""In-memory datasets, the dataset registry, the data root and the shuffled batch iterator.

Data lives in memory as tensors (images as ``uint8 [N, C, H, W]``) and is batched by indexing with a
permutation: no per-sample Python objects, which on 2 CPU cores would make a DataLoader the bottleneck.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

ENV_VAR = "NEUROPLASTIC_DATA"
DEFAULT_ROOT = Path("~/.cache/neuroplastic")


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt or malformed; the message names the dataset, the path and the fix."""


#: Largest dataset file read whole (CIFAR-100's ``train.bin`` is 154 MB, MNIST's images 47 MB).
MAX_FILE_BYTES = 1 << 30


def read_file(path: str | os.PathLike, dataset: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a *regular* file of at most ``max_bytes``, read before anything is parsed.

    A directory, FIFO, device (e.g. a symlink to ``/dev/zero``) or socket in place of a dataset file, and a
    file larger than any official one, raise :class:`DatasetError` naming the path — nothing blocks on a
    FIFO or reads an endless device until memory runs out.
    """
    try:
        st = os.stat(path)  # follows symlinks: the target is what would be read
    except OSError as e:
        raise DatasetError(f"{dataset}: cannot read {path} ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DatasetError(f"{dataset}: {path} is a directory where a data file belongs")
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError(f"{dataset}: {path} is not a regular file (a FIFO, device or socket); refused")
    if st.st_size > max_bytes:
        raise DatasetError(f"{dataset}: {path} is {st.st_size} bytes, larger than any official file "
                           f"({max_bytes} bytes at most); refused")
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise DatasetError(f"{dataset}: {path} grew past {max_bytes} bytes while being read; refused")
    return raw


def check_labels(y, n_classes: int, where: str) -> None:
    """Class labels must be integers in ``[0, n_classes)``: a float, negative or too-large label names the
    file (``where``) instead of being truncated, wrapped or failing later as an ``IndexError``."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where}: labels are {y.dtype}, expected integer class indices")
    if y.ndim != 1:
        raise DatasetError(f"{where}: labels have shape {y.shape}, expected one label per sample")
    if len(y) and int(y.min()) < 0:
        raise DatasetError(f"{where}: negative label {int(y.min())}; the file is corrupt")
    if len(y) and int(y.max()) >= n_classes:
        raise DatasetError(f"{where}: labels go up to {int(y.max())} but there are {n_classes} classes; "
                           f"the file is corrupt")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: the argument, else ``$NEUROPLASTIC_DATA``, else ``~/.cache/neuroplastic``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


@dataclasses.dataclass
class ArrayDataset:
    """A split held as tensors: ``x`` (``uint8`` images ``[N, C, H, W]`` or float features/sequences) and
    ``y`` (``int64`` class labels ``[N]``, or float targets for regression/sequence tasks)."""

    x: torch.Tensor
    y: torch.Tensor
    name: str = ""
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DatasetError(f"{self.name}: {len(self.x)} inputs but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: torch.Tensor) -> ArrayDataset:
        """The samples at indices ``idx``."""
        return ArrayDataset(self.x[idx], self.y[idx], self.name, self.classes)

    def to_float(self) -> ArrayDataset:
        """Images as float32 in [0, 1] (``uint8 / 255``); float data unchanged."""
        x = self.x.float().div_(255.0) if self.x.dtype == torch.uint8 else self.x
        return ArrayDataset(x, self.y, self.name, self.classes)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """Move both tensors to ``device``."""
        return ArrayDataset(self.x.to(device), self.y.to(device), self.name, self.classes)


@dataclasses.dataclass
class DataBundle:
    """Train / validation / test splits of one dataset, ready for the trainer (float inputs)."""

    name: str
    train: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset
    n_classes: int
    task: str = "classification"  # or "sequence" (targets per time step), "regression"

    @property
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return tuple(self.train.x.shape[1:])

    def to(self, device: torch.device | str) -> DataBundle:
        """All splits on ``device``."""
        return dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device),
                                   val=self.val.to(device) if self.val is not None else None)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False,
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x[idx], y[idx])`` batches; shuffled by a permutation drawn from ``generator``."""
    n = len(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        order = torch.randperm(n, generator=generator).to(x.device)
        end = n - n % batch_size if drop_last else n
        for i in range(0, end, batch_size):
            idx = order[i:i + batch_size]
            yield x[idx], y[idx]
    else:
        end = n - n % batch_size if drop_last else n
        for i in range(0, end, batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]


def per_class_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``n`` seeded random samples of every class of ``y`` (all of a class with fewer): the
    labelled subsets of label-efficiency studies (generator seed ``10_000 + seed``, the same subsets for every
    learner of a study)."""
    if n < 1:
        raise ValueError(f"labels per class must be >= 1, got {n}")
    g = torch.Generator().manual_seed(10_000 + seed)
    idx = []
    for c in torch.unique(y).tolist():
        where = torch.nonzero(y == c).flatten()
        idx.append(where[torch.randperm(len(where), generator=g)[:n]])
    return torch.cat(idx).sort().values


def split_validation(ds: ArrayDataset, n_val: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Carve a seeded validation split from ``ds``: ``n_val`` samples, or that fraction if < 1."""
    n = len(ds)
    k = round(n * n_val) if isinstance(n_val, float) and n_val < 1 else int(n_val)
    if not 0 <= k < n:
        raise ValueError(f"validation size {n_val!r} is out of range for {n} samples")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return ds.subset(perm[k:].sort().values), ds.subset(perm[:k].sort().values)


# --------------------------------------------------------------------------------------------------
# registry
@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: ``loader(root, download, seed) -> (train, test)`` and facts for tables."""

    name: str
    loader: Callable[..., tuple[ArrayDataset, ArrayDataset]]
    n_classes: int
    description: str
    generated: bool = False  # made by code, needs no files
    embedded: bool = False  # shipped inside the package
    task: str = "classification"
    verify: Callable[..., list[str]] | None = None  # verify(root) -> list of problems
    download: Callable[..., None] | None = None  # download(root)
    in_shape: tuple[int, ...] | None = None  # one sample's shape, for a file-backed dataset (see sample_shape)


_DATASETS: dict[str, DatasetInfo] = {}
#: Other spellings users type for registered datasets.
ALIASES = {"cifar10": "cifar-10", "cifar100": "cifar-100", "fmnist": "fashion-mnist",
           "fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry (name must be new)."""
    if info.name in _DATASETS:
        raise ValueError(f"dataset {info.name!r} registered twice")
    _DATASETS[info.name] = info
    return info


def dataset_info(name: str) -> DatasetInfo:
    """Registry entry for ``name`` (or an alias such as ``cifar10``); unknown names raise ``KeyError``."""
    name = ALIASES.get(name, name)
    if name not in _DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}")
    return _DATASETS[name]


@functools.cache
def sample_shape(name: str) -> tuple[int, ...] | None:
    """The shape of one input sample of dataset ``name`` as the trainer sees it (``DataBundle.in_shape``), known
    before any file is read: declared by a file-backed dataset's registration (``in_shape``; None where it declares
    none), made once by the loader of a generated or embedded one. Unknown names raise ``KeyError``."""
    info = dataset_info(name)
    if info.in_shape is not None:
        return tuple(info.in_shape)
    if not (info.generated or info.embedded):
        return None
    train, _ = info.loader(root=None, download=False, seed=0)
    return tuple(train.x.shape[1:])


def dataset_names() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_DATASETS)


def load(name: str, root: str | os.PathLike | None = None, *, download: bool = False, seed: int = 0,
         ) -> tuple[ArrayDataset, ArrayDataset]:
    """Load ``(train, test)`` of dataset ``name`` from the data root (see :func:`data_root`)."""
    info = dataset_info(name)
    return info.loader(root=data_root(root), download=download, seed=seed)



def prepare(name: str, root: str | os.PathLike | None = None, *, val: float = 0.1, seed: int = 0,
            download: bool = False, limit_train: int | None = None, limit_test: int | None = None,
            normalize: bool = False, device: str | torch.device = "cpu") -> DataBundle:
    """Load a dataset and return float train/val/test splits for the trainer.

    ``val``: size (or fraction) of the seeded validation split carved from the training set (0 = none).
    ``limit_train``/``limit_test``: keep a seeded subset (for quick runs). ``normalize``: per-channel
    standardisation with the training split's mean and std (images only).
    """
    info = dataset_info(name)
    train, test = load(name, root, download=download, seed=seed)
    if limit_train is not None and limit_train < len(train):
        g = torch.Generator().manual_seed(seed + 1)
        train = train.subset(torch.randperm(len(train), generator=g)[:limit_train].sort().values)
    if limit_test is not None and limit_test < len(test):
        g = torch.Generator().manual_seed(seed + 2)
        test = test.subset(torch.randperm(len(test), generator=g)[:limit_test].sort().values)
    valset = None
    if val:
        train, valset = split_validation(train, val, seed)
    train, test = train.to_float(), test.to_float()
    valset = valset.to_float() if valset is not None else None
    if normalize and train.x.dim() == 4:
        mean = train.x.mean(dim=(0, 2, 3), keepdim=True)
        std = train.x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
        for ds in (train, valset, test):
            if ds is not None:
                ds.x = (ds.x - mean) / std
    bundle = DataBundle(info.name, train, valset, test, info.n_classes, info.task)
    return bundle.to(device)
