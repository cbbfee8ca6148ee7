"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), binary *and* python versions, tarball or extracted.

Looked for, in order, under ``<data root>/<dataset>/`` and then directly under ``<data root>``
(``<dataset>`` is ``cifar-10`` or ``cifar-100``):

1. an extracted folder: ``cifar-10-batches-bin/``, ``cifar-10-batches-py/`` (``cifar-100-binary/``,
   ``cifar-100-python/``);
2. an official tarball: ``cifar-10-binary.tar.gz``, ``cifar-10-python.tar.gz``
   (``cifar-100-binary.tar.gz``, ``cifar-100-python.tar.gz``), read member by member without extracting.

Every data file is verified by the checksum of its *extracted* content, wherever it is read from: the
SHA-256 of the ``.bin`` files (CIFAR-10: /work/shared/data/README.md, identical to the values pinned by
torchvision-ruby; CIFAR-100: torchvision-ruby) and the MD5 of the python-version pickles (torchvision;
no SHA-256 of these was established). The python version is read with a restricted unpickler that only
rebuilds dicts, lists, strings, numbers and numpy arrays — never ``pickle.load`` on downloaded files.

Images are ``uint8 [N, 3, 32, 32]`` (the files store R, G, B planes of 32×32 row-major pixels); labels
are the (fine) class indices; class names come from ``batches.meta.txt`` / ``fine_label_names.txt`` or
the ``meta`` pickle. Decoding is vectorised (``np.frombuffer``), so CIFAR-10 loads in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .core import ArrayDataset, DatasetError, DatasetInfo, check_labels, read_file, register_dataset

_PIXELS = 3 * 32 * 32

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True)
class CifarFormat:
    """One distribution of a CIFAR dataset: its folder, archive, URL and member files."""

    dataset: str  # "cifar-10" or "cifar-100"
    kind: str  # "bin" or "py"
    folder: str  # folder inside the archive
    archive: str  # official archive name
    url: str
    archive_sha256: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    n_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        """The data files, train then test."""
        return self.train + self.test


FORMATS: dict[str, tuple[CifarFormat, CifarFormat]] = {
    "cifar-10": (
        CifarFormat("cifar-10", "bin", "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                    tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",), "batches.meta.txt",
                    10),
        CifarFormat("cifar-10", "py", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                    tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta", 10),
    ),
    "cifar-100": (
        CifarFormat("cifar-100", "bin", "cifar-100-binary", "cifar-100-binary.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                    "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
                    ("train.bin",), ("test.bin",), "fine_label_names.txt", 100),
        CifarFormat("cifar-100", "py", "cifar-100-python", "cifar-100-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                    ("train",), ("test",), "meta", 100),
    ),
}

# Checksums of the extracted files, by "<folder>/<file>": (algorithm, hex digest). Mutable so tests can
# register their fixture files.
DIGESTS: dict[str, tuple[str, str]] = {
    "cifar-10-batches-bin/data_batch_1.bin":
        ("sha256", "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5"),
    "cifar-10-batches-bin/data_batch_2.bin":
        ("sha256", "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed"),
    "cifar-10-batches-bin/data_batch_3.bin":
        ("sha256", "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67"),
    "cifar-10-batches-bin/data_batch_4.bin":
        ("sha256", "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48"),
    "cifar-10-batches-bin/data_batch_5.bin":
        ("sha256", "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add"),
    "cifar-10-batches-bin/test_batch.bin":
        ("sha256", "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b"),
    "cifar-10-batches-py/data_batch_1": ("md5", "c99cafc152244af753f735de768cd75f"),
    "cifar-10-batches-py/data_batch_2": ("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
    "cifar-10-batches-py/data_batch_3": ("md5", "54ebc095f3ab1f0389bbae665268c751"),
    "cifar-10-batches-py/data_batch_4": ("md5", "634d18415352ddfa80567beed471001a"),
    "cifar-10-batches-py/data_batch_5": ("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    "cifar-10-batches-py/test_batch": ("md5", "40351d587109b95175f43aff81a1287e"),
    "cifar-10-batches-py/batches.meta": ("md5", "5ff9c542aee3614f3951f8cda6e48888"),
    "cifar-100-binary/train.bin": ("sha256", "f31298fc616915fa142368359df1c4ca2ae984d6915ca468b998a5ec6aeebf29"),
    "cifar-100-binary/test.bin": ("sha256", "d8b1e6b7b3bee4020055f0699b111f60b1af1e262aeb93a0b659061746f8224a"),
    "cifar-100-python/train": ("md5", "16019d7e3df5f24257cddd939b257f8d"),
    "cifar-100-python/test": ("md5", "f0ef6b0ae62326f3e7ffdfab6717acfc"),
    "cifar-100-python/meta": ("md5", "7973b15100ade9c7d40fb424638fde48"),
}


# --------------------------------------------------------------------------------------------------
# restricted unpickling of the python version
def _numpy_global(name: str):
    import importlib

    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {name}")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_global("scalar"),
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_global("scalar"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,  # how protocol-2 pickles store bytes
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only builtin containers/strings/numbers and numpy arrays/dtypes.

    Any other global (functions, classes: the code-execution route of ``pickle``) is refused with
    :class:`pickle.UnpicklingError`. Python-2 strings are decoded as latin-1, as numpy requires.
    """

    def find_class(self, module: str, name: str):
        make = _ALLOWED_GLOBALS.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a CIFAR pickle")
        return make()


def safe_unpickle(raw: bytes, where: str):
    """Unpickle ``raw`` with :class:`SafeUnpickler`; any failure is a :class:`DatasetError` naming ``where``."""
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
        raise DatasetError(f"{where}: cannot read this pickle ({type(e).__name__}: {e}); the file is corrupt, "
                           f"truncated or not a CIFAR python batch") from None


# --------------------------------------------------------------------------------------------------
# locating and reading files
@dataclasses.dataclass(frozen=True)
class _Source:
    fmt: CifarFormat
    path: Path  # the extracted folder or the archive
    is_archive: bool

    def describe(self, name: str) -> str:
        return f"{self.path}[{self.fmt.folder}/{name}]" if self.is_archive else str(self.path / name)


def _candidates(dataset: str, root: Path) -> list[Path]:
    root = Path(root)
    return [root / dataset, root]


def locate(dataset: str, root: Path) -> _Source | None:
    """The first CIFAR source found under ``root`` (extracted folders before archives), or ``None``."""
    for base in _candidates(dataset, root):
        for fmt in FORMATS[dataset]:
            if (base / fmt.folder).is_dir():
                return _Source(fmt, base / fmt.folder, False)
    for base in _candidates(dataset, root):
        for fmt in FORMATS[dataset]:
            if (base / fmt.archive).is_file():
                return _Source(fmt, base / fmt.archive, True)
    return None


def _not_found(dataset: str, root: Path) -> DatasetError:
    fmts = FORMATS[dataset]
    looked = ", ".join(str(b) for b in _candidates(dataset, root))
    names = ", ".join([f.folder + "/" for f in fmts] + [f.archive for f in fmts])
    return DatasetError(
        f"{dataset}: not found: looked for {names} in {looked}. Download {fmts[0].url} (or the python version "
        f"{fmts[1].url}) into {Path(root) / dataset}, set --data-root / NEUROPLASTIC_DATA to a folder holding "
        f"{dataset}/, or use download=True (neuroplastic data download {dataset}) where there is network")


def _read_files(src: _Source, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Bytes of the member files ``names`` (and ``optional`` ones if present) from a folder or tarball."""
    dataset = src.fmt.dataset
    wanted = set(names) | set(optional)
    out: dict[str, bytes] = {}
    if not src.is_archive:
        for n in wanted:
            p = src.path / n
            if p.exists() or p.is_symlink():
                out[n] = read_file(p, dataset)
    else:
        try:
            with tarfile.open(src.path, "r:gz") as tar:
                for m in tar:
                    parent, _, base = m.name.rstrip("/").rpartition("/")
                    if m.isfile() and base in wanted and parent.endswith(src.fmt.folder):
                        f = tar.extractfile(m)
                        data = f.read() if f is not None else b""
                        if len(data) != m.size:
                            raise EOFError(f"member {m.name} is truncated")
                        out[base] = data
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise DatasetError(f"{dataset}: {src.path} is a corrupt or truncated archive ({e}); delete it and "
                               f"download again") from None
    missing = [n for n in names if n not in out]
    if missing:
        where = f"archive {src.path}" if src.is_archive else f"folder {src.path}"
        raise DatasetError(f"{dataset}: {where} lacks {', '.join(missing)}; the copy is incomplete — "
                           f"download {src.fmt.url} again")
    return out


def _check_digest(src: _Source, name: str, raw: bytes) -> None:
    expected = DIGESTS.get(f"{src.fmt.folder}/{name}")
    if expected is None:
        return
    algo, want = expected
    got = hashlib.new(algo, raw).hexdigest()
    if got != want:
        raise DatasetError(f"{src.fmt.dataset}: checksum mismatch for {src.describe(name)} ({algo} {got}, "
                           f"official {want}); the file is corrupt or not the official one — delete it and "
                           f"download again")


def _parse_bin(src: _Source, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    n_label = 1 if src.fmt.dataset == "cifar-10" else 2  # CIFAR-100 records: coarse label, fine label
    rec = n_label + _PIXELS
    if len(raw) == 0 or len(raw) % rec:
        raise DatasetError(f"{src.fmt.dataset}: {src.describe(name)} is truncated or corrupt ({len(raw)} bytes "
                           f"is not a whole number of {rec}-byte records)")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    return arr[:, n_label:].reshape(-1, 3, 32, 32), arr[:, n_label - 1].astype(np.int64)


def _parse_py(src: _Source, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    where = f"{src.fmt.dataset}: {src.describe(name)}"
    d = safe_unpickle(raw, where)
    key = "labels" if src.fmt.dataset == "cifar-10" else "fine_labels"
    if not isinstance(d, dict) or "data" not in d or key not in d:
        raise DatasetError(f"{where}: not a CIFAR python batch (expected a dict with 'data' and {key!r})")
    x, y = d["data"], np.asarray(d[key])  # integer labels are checked by check_labels after parsing
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == _PIXELS):
        raise DatasetError(f"{where}: 'data' should be uint8 [N, {_PIXELS}], found "
                           f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where}: {len(x)} images but labels of shape {y.shape} ({y.dtype})")
    return x.reshape(-1, 3, 32, 32), y


def _parse_meta(src: _Source, raw: bytes | None) -> tuple[str, ...]:
    fmt = src.fmt
    if raw is None:  # not shipped with this copy: CIFAR-10's names are fixed; CIFAR-100 gets indices
        return CIFAR10_CLASSES if fmt.dataset == "cifar-10" else tuple(str(i) for i in range(fmt.n_classes))
    if fmt.kind == "bin":
        names = tuple(s.strip() for s in raw.decode("ascii", "replace").splitlines() if s.strip())
    else:
        d = safe_unpickle(raw, f"{fmt.dataset}: {src.describe(fmt.meta)}")
        key = "label_names" if fmt.dataset == "cifar-10" else "fine_label_names"
        names = tuple(str(s) for s in d.get(key, ())) if isinstance(d, dict) else ()
    if len(names) != fmt.n_classes:
        raise DatasetError(f"{fmt.dataset}: {src.describe(fmt.meta)} lists {len(names)} class names, expected "
                           f"{fmt.n_classes}; the file is corrupt")
    return names


def _read_source(src: _Source) -> tuple[ArrayDataset, ArrayDataset]:
    fmt = src.fmt
    files = _read_files(src, fmt.files, optional=(fmt.meta,))
    meta_raw = files.get(fmt.meta)
    if meta_raw is not None:
        _check_digest(src, fmt.meta, meta_raw)
    classes = _parse_meta(src, meta_raw)
    parse = _parse_bin if fmt.kind == "bin" else _parse_py
    splits = []
    for names in (fmt.train, fmt.test):
        xs, ys = [], []
        for n in names:
            raw = files.pop(n)
            _check_digest(src, n, raw)
            x, y = parse(src, n, raw)
            check_labels(y, fmt.n_classes, f"{fmt.dataset}: {src.describe(n)}")
            xs.append(x)
            ys.append(y.astype(np.int64))
            del raw
        x = torch.from_numpy(np.concatenate(xs))  # concatenate copies: writable, contiguous
        y = torch.from_numpy(np.concatenate(ys))
        splits.append(ArrayDataset(x, y, fmt.dataset, classes))
    return splits[0], splits[1]


# --------------------------------------------------------------------------------------------------
# public entry points
def load_cifar(dataset: str, root: Path, download: bool = False) -> tuple[ArrayDataset, ArrayDataset]:
    """Load ``(train, test)`` of ``"cifar-10"`` or ``"cifar-100"`` from ``root`` (see the module doc)."""
    if dataset not in FORMATS:
        raise KeyError(f"unknown CIFAR dataset {dataset!r}; known: {', '.join(FORMATS)}")
    src = locate(dataset, Path(root))
    if src is None and download:
        download_cifar(dataset, Path(root))
        src = locate(dataset, Path(root))
    if src is None:
        raise _not_found(dataset, Path(root))
    return _read_source(src)


def verify_cifar(dataset: str, root: Path) -> list[str]:
    """Problems with the CIFAR copy that :func:`load_cifar` would read (empty list: present and verified)."""
    src = locate(dataset, Path(root))
    if src is None:
        return [str(_not_found(dataset, Path(root)))]
    try:
        _read_source(src)
    except DatasetError as e:
        return [str(e)]
    return []


def download_cifar(dataset: str, root: Path) -> None:
    """Fetch the official *binary version* archive into ``root/dataset``, check its SHA-256, extract it,
    verify the extracted files and delete the archive."""
    from .download import extract_tar, fetch

    fmt = FORMATS[dataset][0]
    dest = Path(root) / dataset
    archive = fetch(fmt.url, dest / fmt.archive, dataset=dataset, sha256=fmt.archive_sha256)
    try:
        extract_tar(archive, dest, dataset=dataset)
    finally:
        archive.unlink(missing_ok=True)
    src = _Source(fmt, dest / fmt.folder, False)
    try:
        _read_source(src)
    except DatasetError:
        shutil.rmtree(dest / fmt.folder, ignore_errors=True)
        raise


def load_cifar10(root: Path, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10: 50,000 train / 10,000 test 32×32 colour images, 10 classes (uint8 ``[N, 3, 32, 32]``)."""
    return load_cifar("cifar-10", root, download)


def load_cifar100(root: Path, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-100: 50,000 train / 10,000 test 32×32 colour images, 100 fine classes."""
    return load_cifar("cifar-100", root, download)


register_dataset(DatasetInfo("cifar-10", load_cifar10, 10, "CIFAR-10 colour images, 50k/10k, 32×32",
                             verify=lambda root: verify_cifar("cifar-10", Path(root)),
                             download=lambda root: download_cifar("cifar-10", Path(root)),
                             in_shape=(3, 32, 32)))
register_dataset(DatasetInfo("cifar-100", load_cifar100, 100, "CIFAR-100 colour images (fine labels), 50k/10k",
                             verify=lambda root: verify_cifar("cifar-100", Path(root)),
                             download=lambda root: download_cifar("cifar-100", Path(root)),
                             in_shape=(3, 32, 32)))
