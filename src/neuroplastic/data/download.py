"""Fetching official dataset files, checksums, and the per-dataset ``download``/``verify``/``status`` entry points.

Downloads stream to a temporary file next to the destination while hashing, and are renamed into place
only when the checksum matches, so an interrupted or corrupted download never leaves a file that looks
complete. Where there is no network the error names the dataset, the URL and the folder to put the
files in by hand. Tests never touch the network (they replace :func:`urlopen`).

>>> from neuroplastic.data import download as dl
>>> dl.status("digits")
'embedded'
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request, urlopen

from .core import DatasetError, data_root, dataset_info

__all__ = ["digest_bytes", "digest_file", "download", "extract_tar", "fetch", "fetch_any", "status", "verify"]

_CHUNK = 1 << 20
USER_AGENT = "neuroplastic-dataset-downloader"


def digest_bytes(data: bytes, algo: str = "sha256") -> str:
    """Hex digest of ``data`` (``algo``: ``"sha256"`` or ``"md5"``)."""
    return hashlib.new(algo, data).hexdigest()


def digest_file(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress(total: int | None, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled,
                leave=False)


def fetch(url: str, dest: str | os.PathLike, *, dataset: str, sha256: str | None = None,
          md5: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (a file path), checking the SHA-256 and/or MD5 of the bytes received.

    The bytes go to a temporary file in ``dest``'s folder and are renamed to ``dest`` only when the
    checksums match; on a mismatch or a network error the temporary file is removed and a
    :class:`DatasetError` names the dataset, the file and the URL.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    try:
        try:
            response = urlopen(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout)
        except (URLError, OSError, ValueError) as e:
            raise DatasetError(
                f"{dataset}: could not download {url} ({e}). Without network, fetch the file elsewhere and "
                f"put it at {dest} (folder {dest.parent}), or point --data-root / NEUROPLASTIC_DATA at a "
                f"folder that holds it") from None
        with response, os.fdopen(fd, "wb") as out:
            fd = -1
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            bar = _progress(int(length) if length else None, dest.name, progress)
            try:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    for h in hashes.values():
                        h.update(block)
                    if bar is not None:
                        bar.update(len(block))
            except (URLError, OSError) as e:
                raise DatasetError(f"{dataset}: download of {url} failed part-way ({e}); nothing was kept. "
                                   f"Try again, or put the file at {dest} by hand") from None
            finally:
                if bar is not None:
                    bar.close()
        for algo, want in (("sha256", sha256), ("md5", md5)):
            if want is not None and hashes[algo].hexdigest() != want.lower():
                raise DatasetError(
                    f"{dataset}: checksum mismatch for {dest.name} downloaded from {url} ({algo} "
                    f"{hashes[algo].hexdigest()}, expected {want}); the file was not kept")
        os.replace(tmp, dest)
        return dest
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


def fetch_any(urls: Iterable[str], dest: str | os.PathLike, *, dataset: str, **kwargs) -> Path:
    """:func:`fetch` from the first mirror that works; a checksum mismatch is not retried elsewhere."""
    errors = []
    urls = list(urls)
    for url in urls:
        try:
            return fetch(url, dest, dataset=dataset, **kwargs)
        except DatasetError as e:
            if "checksum mismatch" in str(e):
                raise
            errors.append(str(e))
    raise DatasetError(f"{dataset}: every mirror failed for {Path(dest).name}:\n  " + "\n  ".join(errors))


def _is_within(base: Path, target: Path) -> bool:
    base, target = base.resolve(), target.resolve()
    return target == base or base in target.parents


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike, *, dataset: str) -> list[Path]:
    """Extract a (gzipped) tar archive into ``dest``, refusing links and paths outside ``dest``.

    Returns the extracted regular files. A truncated or corrupt archive raises :class:`DatasetError`.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for m in tar.getmembers():
                if not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{dataset}: {archive} holds a link or special file {m.name!r}; refused")
                if Path(m.name).is_absolute() or not _is_within(dest, dest / m.name):
                    raise DatasetError(f"{dataset}: {archive} holds a path outside the target: {m.name!r}")
                members.append(m)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **kwargs)
            out = [dest / m.name for m in members if m.isfile()]
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{dataset}: {archive} is a corrupt or truncated archive ({e}); delete it and "
                           f"download again") from None
    return out


# --------------------------------------------------------------------------------------------------
# per-dataset entry points (used by ``neuroplastic data ...``)
def download(name: str, root: str | os.PathLike | None = None) -> None:
    """Fetch the official files of dataset ``name`` into ``<root>/<name>/`` and verify them.

    Generated and embedded datasets need nothing. Files already present and valid are kept.
    """
    info = dataset_info(name)
    if info.generated or info.embedded:
        return
    if info.download is None:
        raise DatasetError(f"{name}: no automatic download; put the official files under "
                           f"{data_root(root) / name}")
    info.download(data_root(root))


def verify(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """Problems with dataset ``name`` under the data root (missing files, checksum mismatches, bad
    formats); an empty list means every file is present and verified."""
    info = dataset_info(name)
    if info.generated or info.embedded or info.verify is None:
        return []
    return list(info.verify(data_root(root)))


def status(name: str, root: str | os.PathLike | None = None) -> str:
    """One word or line for ``neuroplastic data list``: ``generated``, ``embedded``, ``ok`` or the
    first problem found."""
    info = dataset_info(name)
    if info.generated:
        return "generated"
    if info.embedded:
        return "embedded"
    if info.verify is None:
        return "unknown (no verifier)"
    problems = verify(name, root)
    if not problems:
        return "ok"
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more
