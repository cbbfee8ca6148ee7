"""MNIST-family datasets in the IDX format (LeCun et al. 1998): MNIST, Fashion-MNIST, KMNIST.

Files are read from ``<data root>/<dataset>/`` gzipped (``*.gz``) or not, with their official names
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``). Checksums:

* MNIST: SHA-256 of the *decompressed* content (gzip wrappers differ between mirrors, the content does
  not), so both the gzipped and the decompressed files are verified.
* Fashion-MNIST (Xiao et al. 2017): likewise the SHA-256 of the decompressed content; the official
  ``.gz`` SHA-256 is kept for downloads.
* KMNIST (Clanuwat et al. 2018): the SHA-256 of the official ``.gz`` files (as pinned by torchvision /
  tensorflow-datasets). No checksum of its decompressed files is published, so a decompressed copy is
  checked for format only.

Every file is read only if it is a regular file of sane size (:func:`~neuroplastic.data.core.read_file`),
decompressed with a bound, and checked as loading checks it: magic number, dimensions, unsigned-byte
images of one shape in both splits, unsigned-byte labels within the classes. ``data verify`` runs exactly
the loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from .core import ArrayDataset, DatasetError, DatasetInfo, check_labels, read_file, register_dataset

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")

MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


@dataclasses.dataclass(frozen=True)
class IdxSpec:
    """An MNIST-family dataset: official mirrors, class names and checksums.

    ``sha256``: SHA-256 of the decompressed files by stem (``None``: unknown). ``gz_sha256``: SHA-256
    of the official ``.gz`` files by stem (used where the decompressed one is unknown, and for
    downloads). Both dicts are mutable on purpose (tests patch them for fixture files).
    """

    name: str
    description: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    sha256: dict[str, str | None]
    gz_sha256: dict[str, str | None]


SPECS: dict[str, IdxSpec] = {
    "mnist": IdxSpec(
        "mnist", "MNIST handwritten digits, 60k/10k, 28×28", tuple(str(i) for i in range(10)),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        MNIST_FILES, dict.fromkeys(STEMS)),
    "fashion-mnist": IdxSpec(
        "fashion-mnist", "Fashion-MNIST clothing images, 60k/10k, 28×28",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
        {"train-images-idx3-ubyte": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
         "train-labels-idx1-ubyte": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "t10k-images-idx3-ubyte": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
         "t10k-labels-idx1-ubyte": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"}),
    "kmnist": IdxSpec(
        "kmnist", "Kuzushiji-MNIST cursive Japanese characters, 60k/10k, 28×28",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        dict.fromkeys(STEMS),
        {"train-images-idx3-ubyte": "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
         "train-labels-idx1-ubyte": "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         "t10k-images-idx3-ubyte": "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
         "t10k-labels-idx1-ubyte": "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"}),
}


#: Largest decompressed IDX file accepted (MNIST's training images are 47 MB).
MAX_IDX_BYTES = 256 << 20


def gunzip(raw: bytes, where: str, max_bytes: int | None = None) -> bytes:
    """Decompress gzip data (one or more members) to at most ``max_bytes``: a corrupt, truncated or
    decompression-bomb file raises :class:`DatasetError` naming ``where``."""
    max_bytes = MAX_IDX_BYTES if max_bytes is None else max_bytes
    out, rest = [], raw
    total = 0
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = d.decompress(rest, max_bytes - total + 1)
            total += len(chunk)
            if total > max_bytes or d.unconsumed_tail:
                raise DatasetError(f"{where}: decompresses to more than {max_bytes} bytes, larger than any "
                                   f"official file; refused")
            if not d.eof:
                raise EOFError("compressed stream ended early")
            out.append(chunk)
            rest = d.unused_data.lstrip(b"\0")  # gzip allows zero padding between members
    except (zlib.error, EOFError) as e:
        raise DatasetError(f"{where} is a corrupt or truncated gzip file ({e}); delete it and download "
                           f"again") from None
    return b"".join(out)


def parse_idx(raw: bytes, where: str) -> np.ndarray:
    """Parse IDX bytes (magic ``0 0 type ndim``, big-endian int32 dims, data) into an array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{where}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{where}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    if any(d < 0 for d in dims):
        raise DatasetError(f"{where}: negative dimension in the IDX header {dims}")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{where}: truncated or corrupt IDX file ({len(raw)} bytes, expected {expected} "
                           f"for shape {dims})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _how_to_get(dataset: str, folder: Path) -> str:
    return (f"Put the official files in {folder}, set --data-root / NEUROPLASTIC_DATA to a folder holding "
            f"{dataset}/, or use download=True (neuroplastic data download {dataset}) where there is network")


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` if present, else ``folder/stem.gz``, else ``None``."""
    for path in (folder / stem, folder / (stem + ".gz")):
        if path.exists() or path.is_symlink():
            return path
    return None


def read_idx_bytes(path: Path, sha256: str | None, dataset: str, gz_sha256: str | None = None) -> bytes:
    """Read one IDX file (gunzipping ``*.gz``) and verify it: the SHA-256 of the decompressed content
    when known, else (for a ``.gz``) the SHA-256 of the compressed file. Returns the IDX bytes."""
    raw = read_file(path, dataset)
    if path.suffix == ".gz":
        if sha256 is None and gz_sha256 is not None and hashlib.sha256(raw).hexdigest() != gz_sha256:
            raise DatasetError(f"{dataset}: checksum mismatch for {path} (SHA-256 of the .gz differs from the "
                               f"official file; a re-compressed copy is not accepted — store it decompressed "
                               f"or download again)")
        raw = gunzip(raw, f"{dataset}: {path}")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise DatasetError(f"{dataset}: checksum mismatch for {path} (SHA-256 of the decompressed "
                           f"content differs from the official file); delete it and download again")
    return raw


def read_idx_file(folder: Path, stem: str, sha256: str | None, dataset: str,
                  gz_sha256: str | None = None) -> np.ndarray:
    """Read ``stem`` or ``stem.gz`` from ``folder``, verify it (see :func:`read_idx_bytes`), parse it."""
    path = find_idx_file(folder, stem)
    if path is None:
        raise DatasetError(f"{dataset}: file {stem}[.gz] not found in {folder}. " + _how_to_get(dataset, folder))
    return parse_idx(read_idx_bytes(path, sha256, dataset, gz_sha256), f"{dataset}: {path}")


def load_idx_dataset(name: str, files: dict[str, str | None], root: Path, classes: tuple[str, ...],
                     gz_files: dict[str, str | None] | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """Load the four IDX files of an MNIST-family dataset from ``root/name`` as uint8 ``[N, 1, H, W]``."""
    folder = Path(root) / name
    gz_files = gz_files or {}
    out = []
    for split in ("train", "t10k"):
        xs, ys = f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"
        x = read_idx_file(folder, xs, files.get(xs), name, gz_files.get(xs))
        y = read_idx_file(folder, ys, files.get(ys), name, gz_files.get(ys))
        where_x, where_y = f"{name}: {find_idx_file(folder, xs)}", f"{name}: {find_idx_file(folder, ys)}"
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DatasetError(f"{where_x}: images should be unsigned bytes [N, H, W], found {x.dtype} "
                               f"{x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise DatasetError(f"{where_y}: labels should be unsigned bytes [N], found {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DatasetError(f"{name}: {split} has {len(x)} images but {len(y)} labels")
        check_labels(y, len(classes), where_y)
        if out and tuple(x.shape[1:]) != tuple(out[0].x.shape[2:]):
            raise DatasetError(f"{where_x}: test images are {tuple(x.shape[1:])} but training images are "
                               f"{tuple(out[0].x.shape[2:])}; the files do not belong together")
        out.append(ArrayDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)),
                                name, classes))
    return out[0], out[1]


def verify_idx(name: str, root: Path) -> list[str]:
    """Problems with the IDX files of dataset ``name`` under ``root`` (empty list: all present and valid).

    Every file is checked on its own (presence, checksum, format), then the whole set is loaded with the
    loader's own checks, so ``verify`` accepts exactly what loading accepts."""
    spec = SPECS[name]
    folder = Path(root) / name
    problems = []
    for stem in STEMS:
        path = find_idx_file(folder, stem)
        if path is None:
            problems.append(f"{name}: missing {folder / stem}[.gz]")
            continue
        try:
            parse_idx(read_idx_bytes(path, spec.sha256.get(stem), name, spec.gz_sha256.get(stem)),
                      f"{name}: {path}")
        except DatasetError as e:
            problems.append(str(e))
    if not problems:
        try:
            load_idx_dataset(name, spec.sha256, root, spec.classes, spec.gz_sha256)
        except DatasetError as e:
            problems.append(str(e))
    return problems


def download_idx(name: str, root: Path) -> None:
    """Fetch the four official ``.gz`` files of ``name`` into ``root/name`` (skipping valid ones), verified."""
    from .download import fetch_any

    spec = SPECS[name]
    folder = Path(root) / name
    for stem in STEMS:
        path = find_idx_file(folder, stem)
        if path is not None:
            try:
                read_idx_bytes(path, spec.sha256.get(stem), name, spec.gz_sha256.get(stem))
                continue
            except DatasetError:
                pass  # fetch a fresh copy below
        dest = folder / (stem + ".gz")
        # where the decompressed checksum is known it is checked below (mirrors re-compress the files)
        gz_sha = spec.gz_sha256.get(stem) if spec.sha256.get(stem) is None else None
        fetch_any([m + stem + ".gz" for m in spec.mirrors], dest, dataset=name, sha256=gz_sha)
        try:
            read_idx_bytes(dest, spec.sha256.get(stem), name, None)
        except DatasetError:
            dest.unlink()
            raise


def _loader(name: str):
    def load(root: Path, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        spec = SPECS[name]
        if download and verify_idx(name, root):
            download_idx(name, root)
        return load_idx_dataset(name, spec.sha256, root, spec.classes, spec.gz_sha256)

    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"{SPECS[name].description}: ``(train, test)`` as uint8 ``[N, 1, 28, 28]``."
    return load


def load_mnist(root: Path, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """MNIST: 60,000 train / 10,000 test 28×28 handwritten digits."""
    return _loader("mnist")(root, download, seed)


def _register(name: str, loader) -> None:
    register_dataset(DatasetInfo(name, loader, len(SPECS[name].classes), SPECS[name].description,
                                 verify=lambda root, _n=name: verify_idx(_n, Path(root)),
                                 download=lambda root, _n=name: download_idx(_n, Path(root)),
                                 in_shape=(1, 28, 28)))


_register("mnist", load_mnist)
load_fashion_mnist = _loader("fashion-mnist")
load_kmnist = _loader("kmnist")
_register("fashion-mnist", load_fashion_mnist)
_register("kmnist", load_kmnist)
