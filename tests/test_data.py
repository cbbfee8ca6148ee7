"""Datasets: official-format readers on tiny fixture files, checksums, errors, download, transforms."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from neuroplastic import data, reliability
from neuroplastic.data import DatasetError, cifar, generated, idx
from neuroplastic.data import download as dl
from neuroplastic.data import transforms as T


# ------------------------------------------------------------------------------------------------
# transforms
def test_rate_encode_mean_matches_probability_and_seed():
    p = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]])
    g = torch.Generator().manual_seed(0)
    s = T.rate_encode(p, 4000, generator=g)
    assert s.shape == (4000, 1, 5)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(s.mean(0), p, atol=0.03)
    assert s[:, 0, 0].sum() == 0 and s[:, 0, 4].sum() == 4000
    s2 = T.rate_encode(p, 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)
    s3 = T.rate_encode(p, 4000, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(s, s3)


def test_rate_encode_uint8_and_bad_input():
    x = torch.tensor([[0, 255]], dtype=torch.uint8)
    s = T.rate_encode(x, 10, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.float32 and s[:, 0, 0].sum() == 0 and s[:, 0, 1].sum() == 10
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        T.rate_encode(torch.tensor([[1.5]]), 3)
    with pytest.raises(ValueError, match="steps"):
        T.rate_encode(torch.tensor([[0.5]]), 0)


def test_poisson_encode_rate():
    x = torch.full((2, 3), 0.5)
    s = T.poisson_encode(x, 20000, dt=1e-3, max_rate=100.0, generator=torch.Generator().manual_seed(0))
    assert s.shape == (20000, 2, 3)
    # p = 0.5 * 100 Hz * 1 ms = 0.05
    assert abs(s.mean().item() - 0.05) < 0.005
    with pytest.raises(ValueError, match="max_rate"):
        T.poisson_encode(x, 5, dt=0.1, max_rate=100.0)


def test_binarize_threshold_and_stochastic_seeded():
    x = torch.tensor([[0.2, 0.5, 0.51, 0.9]])
    assert T.binarize(x).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert T.binarize(x, threshold=0.1).tolist() == [[1.0, 1.0, 1.0, 1.0]]
    big = torch.rand(50, 100, generator=torch.Generator().manual_seed(3))
    a = T.binarize(big, "stochastic")
    b = T.binarize(big, "stochastic")
    assert torch.equal(a, b)  # fixed default seed
    c = T.binarize(big, "stochastic", seed=1)
    assert not torch.equal(a, c)
    assert abs(a.mean().item() - big.mean().item()) < 0.03
    with pytest.raises(ValueError, match="mode"):
        T.binarize(x, "fuzzy")


def test_channel_stats_and_standardize():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 3, 4, 4), generator=g, dtype=torch.uint8)
    mean, std = T.channel_stats(x)
    xf = x.float() / 255
    assert torch.allclose(mean, xf.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std, xf.transpose(0, 1).reshape(3, -1).std(1), atol=1e-6)
    z = T.standardize(x, mean, std)
    m2, s2 = T.channel_stats(z)
    assert torch.allclose(m2, torch.zeros(3), atol=1e-5) and torch.allclose(s2, torch.ones(3), atol=1e-5)
    # hand case
    assert T.standardize(torch.tensor([[1.0, 3.0]]), torch.tensor([1.0, 1.0]),
                         torch.tensor([1.0, 2.0])).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="std"):
        T.standardize(torch.ones(2, 2), 0.0, 0.0)


def test_flatten():
    assert T.flatten(torch.zeros(5, 3, 2, 2)).shape == (5, 12)


def test_zca_whitens_images():
    g = torch.Generator().manual_seed(0)
    # correlated data: 3 channels x 2 x 2 = 12 features
    base = torch.randn(4000, 12, generator=g, dtype=torch.float64)
    mix = torch.randn(12, 12, generator=g, dtype=torch.float64)
    x = (base @ mix).float().reshape(-1, 3, 2, 2) + 5.0
    zca = T.ZCA(eps=1e-6).fit(x)
    assert zca.mean_.shape == (12,) and zca.W_.shape == (12, 12)
    assert torch.allclose(zca.W_, zca.W_.t(), atol=1e-5)  # ZCA matrix is symmetric
    z = zca.transform(x)
    assert z.shape == x.shape
    zf = z.reshape(len(z), -1).double()
    cov = (zf - zf.mean(0)).t() @ (zf - zf.mean(0)) / len(zf)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=1e-3)
    with pytest.raises(ValueError, match="shape"):
        zca.transform(torch.zeros(2, 12))
    with pytest.raises(RuntimeError, match="before fit"):
        T.ZCA().transform(x)
    z2 = T.ZCA().load_state_dict(zca.state_dict()).transform(x)
    assert torch.equal(z, z2)


def test_zca_standardize_whitens_the_correlation_matrix():
    """``standardize=True``: W = diag(σ+ε)⁻¹ R^(-1/2) with R the correlation matrix (the authors' ZCA); it still
    whitens, differs from plain ZCA when the pixel scales differ, and survives a state round trip."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(5000, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64))
    x = (x * torch.tensor([1.0, 3.0, 0.2, 1.0, 5.0, 0.5], dtype=torch.float64)).float()
    zs = T.ZCA(eps=0.0, standardize=True).fit(x)
    xc = (x.double() - x.double().mean(0))
    cov = xc.t() @ xc / len(x)
    sd = cov.diagonal().sqrt()
    ev, u = torch.linalg.eigh(cov / sd[:, None] / sd[None, :])
    expect = (1 / sd)[:, None] * ((u * ev.rsqrt()) @ u.t())
    assert torch.allclose(zs.W_.double(), expect, atol=1e-4)
    zf = zs.transform(x).double()
    assert torch.allclose((zf - zf.mean(0)).t() @ (zf - zf.mean(0)) / len(zf), torch.eye(6, dtype=torch.float64),
                          atol=1e-3)
    assert not torch.allclose(zs.W_, T.ZCA(eps=0.0).fit(x).W_, atol=1e-2)
    z2 = T.ZCA().load_state_dict(zs.state_dict())
    assert z2.standardize and torch.equal(z2.transform(x), zs.transform(x))


def test_zca_eps_shrinks_small_directions():
    # along a direction of variance lam, whitened variance is lam / (lam + eps)
    x = torch.stack([torch.tensor([1.0, -1.0]).repeat(50), torch.zeros(100)], 1) * 0.1  # var 0.01, 0
    zf = T.ZCA(eps=0.01).fit_transform(x)
    assert abs(zf[:, 0].pow(2).mean().item() - 0.01 / 0.02) < 1e-4
    assert zf[:, 1].abs().max() == 0


# ------------------------------------------------------------------------------------------------
# helpers: tiny files in the official formats


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(dl, "urlopen", refuse)


def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def make_idx(folder: Path, n_train=12, n_test=7, gz=True, seed=0):
    """Write the four IDX files; returns {stem: (raw bytes, written bytes)} and the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10}
    out = {}
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        written = gzip.compress(raw) if gz else raw
        (folder / (stem + (".gz" if gz else ""))).write_bytes(written)
        out[stem] = (raw, written)
    return out, arrays


def trust_idx(monkeypatch, name, files, decompressed=True):
    spec = idx.SPECS[name]
    for stem, (raw, written) in files.items():
        if decompressed:
            monkeypatch.setitem(spec.sha256, stem, sha(raw))
        else:
            monkeypatch.setitem(spec.sha256, stem, None)
            monkeypatch.setitem(spec.gz_sha256, stem, sha(written))


# ------------------------------------------------------------------------------------------------
# IDX
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loads_gz_and_raw(tmp_path, monkeypatch, gz):
    files, arrays = make_idx(tmp_path / "mnist", gz=gz)
    trust_idx(monkeypatch, "mnist", files)
    train, test = data.load("mnist", tmp_path)
    assert train.x.shape == (12, 1, 28, 28) and train.x.dtype == torch.uint8
    assert data.sample_shape("mnist") == tuple(train.x.shape[1:])  # what a run is checked against before reading
    assert test.x.shape == (7, 1, 28, 28) and train.y.dtype == torch.int64
    assert np.array_equal(train.x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert dl.verify("mnist", tmp_path) == [] and dl.status("mnist", tmp_path) == "ok"


def test_data_root_from_environment(tmp_path, monkeypatch):
    files, _ = make_idx(tmp_path / "mnist")
    trust_idx(monkeypatch, "mnist", files)
    monkeypatch.setenv("NEUROPLASTIC_DATA", str(tmp_path))
    assert len(data.load("mnist")[0]) == 12


def test_mnist_checksum_mismatch_names_file(tmp_path):
    make_idx(tmp_path / "mnist")  # fixture content is not the official MNIST
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*train-images-idx3-ubyte\.gz"):
        data.load("mnist", tmp_path)
    problems = dl.verify("mnist", tmp_path)
    assert len(problems) == 4 and all("checksum mismatch" in p for p in problems)


def test_idx_truncated_gz_is_rejected(tmp_path, monkeypatch):
    files, _ = make_idx(tmp_path / "mnist")
    trust_idx(monkeypatch, "mnist", files)
    p = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        data.load("mnist", tmp_path)


@pytest.mark.parametrize("damage,msg", [(lambda b: b[:-5], "truncated"), (lambda b: b"\x01" + b[1:], "magic"),
                                        (lambda b: b + b"\x00", "corrupt")])
def test_idx_corrupt_raw_file_never_loads(tmp_path, monkeypatch, damage, msg):
    files, _ = make_idx(tmp_path / "fashion-mnist", gz=False)
    trust_idx(monkeypatch, "fashion-mnist", files, decompressed=False)  # decompressed copies: format checks only
    p = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(DatasetError, match=msg):
        data.load("fashion-mnist", tmp_path)


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_fashion_and_kmnist_verify_gz_checksums(tmp_path, monkeypatch, name):
    files, arrays = make_idx(tmp_path / name)
    with pytest.raises(DatasetError, match=r"checksum mismatch .*\.gz"):
        data.load(name, tmp_path)  # official .gz checksums: the fixtures do not match
    trust_idx(monkeypatch, name, files, decompressed=False)
    train, test = data.load(name, tmp_path)
    assert train.classes == idx.SPECS[name].classes and len(train.classes) == 10
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_label_out_of_range(tmp_path, monkeypatch):
    folder = tmp_path / "kmnist"
    files, _ = make_idx(folder, gz=False)
    bad = idx_bytes(np.full(12, 10))
    (folder / "train-labels-idx1-ubyte").write_bytes(bad)
    files["train-labels-idx1-ubyte"] = (bad, bad)
    trust_idx(monkeypatch, "kmnist", files, decompressed=False)
    with pytest.raises(DatasetError, match="labels go up to 10"):
        data.load("kmnist", tmp_path)


def _within(seconds: float, fn):
    """``fn()``'s result or exception, failing the test if it has not returned after ``seconds``."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (blocked on a FIFO or reading forever?)"
    return box


@pytest.mark.parametrize("kind", reliability.MALFORMED_IDX)
def test_malformed_idx_sets_are_refused_alike_by_verify_and_load(tmp_path, monkeypatch, kind):
    """#19 item 5: every malformed set is a DatasetError naming the dataset from both ``data verify`` and
    loading — never "ok", an IndexError, a numpy error, a hang or an endless read."""
    folder = tmp_path / "kmnist"
    make_idx(folder, gz=False)
    for stem in idx.STEMS:  # format checks only: no checksum may catch the damage first
        monkeypatch.setitem(idx.SPECS["kmnist"].sha256, stem, None)
        monkeypatch.setitem(idx.SPECS["kmnist"].gz_sha256, stem, None)
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1 << 20)
    assert dl.verify("kmnist", tmp_path) == []
    reliability.break_idx(kind, folder)
    loaded = _within(20, lambda: data.load("kmnist", tmp_path))
    assert isinstance(loaded.get("error"), DatasetError), loaded
    msg = str(loaded["error"])
    assert msg.startswith("kmnist") and "\n" not in msg
    problems = _within(20, lambda: dl.verify("kmnist", tmp_path))["value"]
    assert problems and all(p.startswith("kmnist") for p in problems)
    cli = _within(20, lambda: data.load("kmnist", tmp_path))  # and again: nothing was left half-read
    assert isinstance(cli.get("error"), DatasetError)


def test_fashion_mnist_pins_the_decompressed_content(tmp_path, monkeypatch):
    """A decompressed Fashion-MNIST copy is checked by checksum, not by format alone; a re-compressed copy
    of the right content is accepted (the wrapper is not what is pinned)."""
    files, _ = make_idx(tmp_path / "fashion-mnist", gz=False)
    with pytest.raises(DatasetError, match="checksum mismatch .*decompressed"):
        data.load("fashion-mnist", tmp_path)
    assert idx.SPECS["fashion-mnist"].sha256["train-images-idx3-ubyte"].startswith("c59f468a")
    for stem, (raw, _) in files.items():
        (tmp_path / "fashion-mnist" / stem).unlink()
        (tmp_path / "fashion-mnist" / (stem + ".gz")).write_bytes(gzip.compress(raw, compresslevel=1))
        monkeypatch.setitem(idx.SPECS["fashion-mnist"].sha256, stem, sha(raw))
    assert len(data.load("fashion-mnist", tmp_path)[0]) == 12


def test_cifar_refuses_special_files_and_negative_labels(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "bin", cifar_arrays("cifar-10"))
    trust_cifar(monkeypatch, fmt, files)
    write_cifar(tmp_path / "cifar-10", fmt, files, "folder")
    folder = tmp_path / "cifar-10" / fmt.folder
    assert dl.verify("cifar-10", tmp_path) == []
    target = folder / fmt.train[0]
    target.unlink()
    os.mkfifo(target)
    box = _within(20, lambda: data.load("cifar-10", tmp_path))
    assert isinstance(box.get("error"), DatasetError) and "not a regular file" in str(box["error"])
    target.unlink()
    target.symlink_to("/dev/zero")
    box = _within(20, lambda: dl.verify("cifar-10", tmp_path))
    assert "not a regular file" in box["value"][0]
    target.unlink()
    target.mkdir()
    with pytest.raises(DatasetError, match="is a directory"):
        data.load("cifar-10", tmp_path)
    with pytest.raises(DatasetError, match="negative label"):
        from neuroplastic.data.core import check_labels
        check_labels(np.array([3, -1]), 10, "cifar-10: x")


def test_idx_missing_file_message(tmp_path):
    with pytest.raises(DatasetError) as e:
        data.load("fashion-mnist", tmp_path)
    msg = str(e.value)
    assert "fashion-mnist" in msg and str(tmp_path / "fashion-mnist") in msg and "download=True" in msg
    assert dl.status("fashion-mnist", tmp_path).startswith("fashion-mnist: missing")


# ------------------------------------------------------------------------------------------------
# CIFAR
def cifar_arrays(dataset, seed=0):
    """{file: (images [n,3,32,32], fine labels, coarse labels)} for the official file names."""
    rng = np.random.default_rng(seed)
    n_classes = 10 if dataset == "cifar-10" else 100
    names = ([f"b{i}" for i in range(1, 6)] + ["test"]) if dataset == "cifar-10" else ["train", "test"]
    out = {}
    for k, nm in enumerate(names):
        n = 3 + k % 2
        out[nm] = (rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8),
                   rng.integers(0, n_classes, n), rng.integers(0, 20, n))
    return out


def cifar_files(dataset, kind, arrays):
    """{member name: bytes} of the official layout."""
    fmt = cifar.FORMATS[dataset][0 if kind == "bin" else 1]
    n_classes = fmt.n_classes
    names = [f"class{i}" for i in range(n_classes)]
    files = {}
    for fname, key in zip(fmt.files, arrays):
        x, y, yc = arrays[key]
        if kind == "bin":
            lab = y[:, None] if dataset == "cifar-10" else np.stack([yc, y], 1)
            files[fname] = np.concatenate([lab.astype(np.uint8), x.reshape(len(x), -1)], 1).tobytes()
        else:
            flat = x.reshape(len(x), -1)  # CIFAR-10: arrays as Python 2 wrote them; CIFAR-100: numpy-native
            d = {"batch_label": "fixture", "data": _Py2Array(flat) if dataset == "cifar-10" else flat,
                 "filenames": [f"img{i}.png" for i in range(len(x))]}
            if dataset == "cifar-10":
                d["labels"] = [int(v) for v in y]
            else:
                d["fine_labels"], d["coarse_labels"] = [int(v) for v in y], [int(v) for v in yc]
            files[fname] = pickle.dumps(d, protocol=2)
    if kind == "bin":
        files[fmt.meta] = ("\n".join(names) + "\n\n").encode()
    else:
        key = "label_names" if dataset == "cifar-10" else "fine_label_names"
        files[fmt.meta] = pickle.dumps({key: names, "num_cases_per_batch": 3}, protocol=2)
    return fmt, files


def trust_cifar(monkeypatch, fmt, files):
    for name, raw in files.items():
        key = f"{fmt.folder}/{name}"
        if key in cifar.DIGESTS:
            algo = cifar.DIGESTS[key][0]
            monkeypatch.setitem(cifar.DIGESTS, key, (algo, hashlib.new(algo, raw).hexdigest()))


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def write_cifar(base: Path, fmt, files, layout):
    base.mkdir(parents=True, exist_ok=True)
    if layout == "folder":
        (base / fmt.folder).mkdir()
        for n, raw in files.items():
            (base / fmt.folder / n).write_bytes(raw)
    else:
        (base / fmt.archive).write_bytes(tar_gz({f"{fmt.folder}/{n}": raw for n, raw in files.items()}))


@pytest.mark.parametrize("dataset", ["cifar-10", "cifar-100"])
@pytest.mark.parametrize("kind", ["bin", "py"])
@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_cifar_loads_every_format_and_layout(tmp_path, monkeypatch, dataset, kind, layout):
    arrays = cifar_arrays(dataset)
    fmt, files = cifar_files(dataset, kind, arrays)
    trust_cifar(monkeypatch, fmt, files)
    base = tmp_path / dataset if (kind == "bin") == (layout == "folder") else tmp_path  # both placements
    write_cifar(base, fmt, files, layout)
    train, test = data.load(dataset, tmp_path)
    keys = list(arrays)
    n_train_files = len(fmt.train)
    xs = np.concatenate([arrays[k][0] for k in keys[:n_train_files]])
    ys = np.concatenate([arrays[k][1] for k in keys[:n_train_files]])
    assert train.x.dtype == torch.uint8 and train.x.shape == (len(xs), 3, 32, 32)
    assert data.sample_shape(dataset) == tuple(train.x.shape[1:])
    assert np.array_equal(train.x.numpy(), xs) and train.y.tolist() == ys.tolist()
    assert np.array_equal(test.x.numpy(), arrays[keys[-1]][0]) and test.y.tolist() == arrays[keys[-1]][1].tolist()
    assert train.classes == tuple(f"class{i}" for i in range(fmt.n_classes))
    assert dl.verify(dataset, tmp_path) == []


def test_cifar_binary_record_layout_by_hand(tmp_path, monkeypatch):
    # one record: label 7, then the R plane (all 1), G plane (row index), B plane (column index)
    hw = np.arange(32)
    rec = np.concatenate([[7], np.ones(1024), np.repeat(hw, 32), np.tile(hw, 32)]).astype(np.uint8)
    fmt = cifar.FORMATS["cifar-10"][0]
    files = {n: rec.tobytes() for n in fmt.files}
    trust_cifar(monkeypatch, fmt, files)
    write_cifar(tmp_path / "cifar-10", fmt, files, "folder")
    train, test = data.load("cifar-10", tmp_path)
    x = test.x[0]
    assert test.y.tolist() == [7] and len(train) == 5
    assert (x[0] == 1).all() and x[1, 5, 9] == 5 and x[2, 5, 9] == 9
    assert train.classes == cifar.CIFAR10_CLASSES  # no meta file: the fixed CIFAR-10 names


def test_cifar_checksum_mismatch_names_file(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "bin", cifar_arrays("cifar-10"))
    write_cifar(tmp_path / "cifar-10", fmt, files, "tar")
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*data_batch_1\.bin"):
        data.load("cifar-10", tmp_path)
    fmt, files = cifar_files("cifar-100", "py", cifar_arrays("cifar-100"))
    write_cifar(tmp_path / "cifar-100", fmt, files, "folder")
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*cifar-100-python/(meta|train).*md5"):
        data.load("cifar-100", tmp_path)


@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_cifar_truncated_bin_is_rejected(tmp_path, monkeypatch, layout):
    fmt, files = cifar_files("cifar-10", "bin", cifar_arrays("cifar-10"))
    files["test_batch.bin"] = files["test_batch.bin"][:-100]
    trust_cifar(monkeypatch, fmt, files)  # even with a matching checksum, a partial record is refused
    write_cifar(tmp_path / "cifar-10", fmt, files, layout)
    with pytest.raises(DatasetError, match=r"test_batch\.bin\]? is truncated"):
        data.load("cifar-10", tmp_path)


def test_cifar_truncated_record_multiple_caught_by_checksum(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "bin", cifar_arrays("cifar-10"))
    trust_cifar(monkeypatch, fmt, files)
    files["data_batch_2.bin"] = files["data_batch_2.bin"][:3073]  # one whole record left
    write_cifar(tmp_path / "cifar-10", fmt, files, "folder")
    with pytest.raises(DatasetError, match="checksum mismatch for .*data_batch_2.bin"):
        data.load("cifar-10", tmp_path)


def test_cifar_truncated_archive_and_missing_member(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "py", cifar_arrays("cifar-10"))
    trust_cifar(monkeypatch, fmt, files)
    write_cifar(tmp_path, fmt, files, "tar")
    p = tmp_path / fmt.archive
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated archive"):
        data.load("cifar-10", tmp_path)
    p.unlink()
    del files["data_batch_3"]
    write_cifar(tmp_path, fmt, files, "folder")
    with pytest.raises(DatasetError, match="lacks data_batch_3"):
        data.load("cifar-10", tmp_path)


def test_cifar_missing_message(tmp_path):
    with pytest.raises(DatasetError) as e:
        data.load("cifar-100", tmp_path)
    msg = str(e.value)
    for part in ("cifar-100", "cifar-100-binary.tar.gz", str(tmp_path / "cifar-100"), "https://www.cs.toronto.edu",
                 "download=True"):
        assert part in msg
    assert dl.verify("cifar-100", tmp_path) and dl.status("cifar-100", tmp_path).startswith("cifar-100: not found")


class _Py2Array:
    """Pickles like a numpy array written by Python 2 (the official CIFAR pickles): raw data as a str."""

    def __init__(self, arr):
        self.arr = arr

    def __reduce__(self):
        state = (1, self.arr.shape, self.arr.dtype, False, self.arr.tobytes().decode("latin1"))
        return (cifar._numpy_global("_reconstruct"), (np.ndarray, (0,), b"b"), state)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_is_restricted(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "py", cifar_arrays("cifar-10"))
    files["data_batch_1"] = pickle.dumps({"data": _Evil(), "labels": []}, protocol=2)
    trust_cifar(monkeypatch, fmt, files)
    write_cifar(tmp_path, fmt, files, "folder")
    with pytest.raises(DatasetError, match="refusing to load global"):
        data.load("cifar-10", tmp_path)
    # Python-2 style arrays, protocol 4 (bytes stored natively) and numpy arrays still load
    arr = np.arange(12, dtype=np.uint8).reshape(2, 6)
    d = cifar.safe_unpickle(pickle.dumps({"data": _Py2Array(arr), "labels": [1, 2]}, protocol=2), "t")
    assert np.array_equal(d["data"], arr) and d["data"].dtype == np.uint8
    arr = np.arange(6, dtype=np.uint8)
    assert np.array_equal(cifar.safe_unpickle(pickle.dumps({"a": arr, "b": [1, "x"]}, protocol=4), "t")["a"], arr)


def test_cifar_label_out_of_range(tmp_path, monkeypatch):
    arrays = cifar_arrays("cifar-10")
    arrays["test"][1][0] = 10
    fmt, files = cifar_files("cifar-10", "bin", arrays)
    trust_cifar(monkeypatch, fmt, files)
    write_cifar(tmp_path, fmt, files, "folder")
    with pytest.raises(DatasetError, match="labels go up to 10"):
        data.load("cifar-10", tmp_path)


# ------------------------------------------------------------------------------------------------
# download (network mocked)
class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, table: dict[str, bytes], log: list | None = None):
    def fake_urlopen(req, timeout=None):
        url = req.full_url
        if log is not None:
            log.append(url)
        if url not in table:
            raise URLError("no route to host")
        return FakeResponse(table[url])
    monkeypatch.setattr(dl, "urlopen", fake_urlopen)


def test_fetch_checks_checksum_and_leaves_nothing_on_mismatch(tmp_path, monkeypatch):
    payload = b"hello dataset" * 1000
    serve(monkeypatch, {"http://x/f.bin": payload})
    dest = tmp_path / "sub" / "f.bin"
    dl.fetch("http://x/f.bin", dest, dataset="toy", sha256=sha(payload), progress=False)
    assert dest.read_bytes() == payload
    dest.unlink()
    with pytest.raises(DatasetError, match=r"toy: checksum mismatch for f\.bin"):
        dl.fetch("http://x/f.bin", dest, dataset="toy", sha256=sha(b"other"), progress=False)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    with pytest.raises(DatasetError, match=r"toy: checksum mismatch"):
        dl.fetch("http://x/f.bin", dest, dataset="toy", md5="0" * 32, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_fetch_without_network_names_dataset_url_and_folder(tmp_path, monkeypatch):
    serve(monkeypatch, {})
    dest = tmp_path / "kmnist" / "train-images-idx3-ubyte.gz"
    with pytest.raises(DatasetError) as e:
        dl.fetch("http://codh.example/train-images-idx3-ubyte.gz", dest, dataset="kmnist", progress=False)
    msg = str(e.value)
    assert "kmnist" in msg and "http://codh.example/train-images-idx3-ubyte.gz" in msg and str(dest.parent) in msg
    assert list(dest.parent.iterdir()) == []


def test_download_idx_end_to_end(tmp_path, monkeypatch):
    src = tmp_path / "server"
    files, arrays = make_idx(src)
    trust_idx(monkeypatch, "fashion-mnist", files, decompressed=False)
    mirror = idx.SPECS["fashion-mnist"].mirrors[0]
    log = []
    serve(monkeypatch, {mirror + stem + ".gz": written for stem, (raw, written) in files.items()}, log)
    root = tmp_path / "root"
    train, _ = data.load("fashion-mnist", root, download=True)
    assert len(log) == 4 and all(u.startswith(mirror) for u in log)
    assert train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    dl.download("fashion-mnist", root)  # already there and valid: nothing fetched
    assert len(log) == 4


def test_download_idx_rejects_bad_file(tmp_path, monkeypatch):
    files, _ = make_idx(tmp_path / "server")
    mirror = idx.SPECS["kmnist"].mirrors[0]
    serve(monkeypatch, {mirror + stem + ".gz": written for stem, (raw, written) in files.items()})
    with pytest.raises(DatasetError, match="checksum mismatch for train-images-idx3-ubyte.gz"):
        dl.download("kmnist", tmp_path / "root")  # official checksums: the fixtures are rejected
    assert not any((tmp_path / "root" / "kmnist").iterdir())


def test_download_cifar_end_to_end(tmp_path, monkeypatch):
    fmt, files = cifar_files("cifar-10", "bin", cifar_arrays("cifar-10"))
    trust_cifar(monkeypatch, fmt, files)
    archive = tar_gz({f"{fmt.folder}/{n}": raw for n, raw in files.items()})
    monkeypatch.setitem(cifar.FORMATS, "cifar-10",
                        (dataclasses.replace(fmt, archive_sha256=sha(archive)), cifar.FORMATS["cifar-10"][1]))
    serve(monkeypatch, {fmt.url: archive})
    root = tmp_path / "root"
    train, _ = data.load("cifar-10", root, download=True)
    assert len(train) == 5 * 3 + 2 and (root / "cifar-10" / fmt.folder / "data_batch_1.bin").is_file()
    assert not (root / "cifar-10" / fmt.archive).exists()
    assert dl.status("cifar-10", root) == "ok"


def test_extract_tar_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_gz({"../outside.txt": b"x"}))
    with pytest.raises(DatasetError, match="outside"):
        dl.extract_tar(archive, tmp_path / "dest", dataset="evil")
    assert not (tmp_path / "outside.txt").exists()


def test_status_of_generated_and_embedded():
    assert dl.status("gaussians") == "generated" and dl.status("digits") == "embedded"
    assert dl.verify("xor") == []
    with pytest.raises(KeyError, match="known datasets"):
        dl.status("nope")


# ------------------------------------------------------------------------------------------------
# generated tasks
def test_generated_tasks_are_fixed_and_shaped():
    for name, d, k in (("gaussians", 8, 4), ("xor", 2, 2), ("two-moons", 2, 2)):
        tr, te = data.load(name, seed=0)
        tr2, _ = data.load(name, seed=5)
        assert tr.x.dtype == torch.float32 and tr.x.shape[1] == d and te.x.shape[1] == d
        assert torch.equal(tr.x, tr2.x)  # the data do not depend on the run seed
        assert not torch.equal(tr.x[: len(te)], te.x[: len(tr)])  # train and test differ
        assert set(tr.y.unique().tolist()) == set(range(k)) and data.dataset_info(name).n_classes == k
        assert tr.y.bincount().min() * k >= 0.9 * len(tr)  # balanced


def test_generated_rules():
    x, y = generated.make_xor(500, seed=1)
    assert torch.equal(y, ((x[:, 0] > 0) == (x[:, 1] > 0)).long())
    x, y = generated.make_moons(400, noise=0.0, seed=1)
    assert torch.allclose(x[y == 0].norm(dim=1), torch.ones(int((y == 0).sum())), atol=1e-5)
    # Gaussian blobs: class means estimate the true centres to within a few sigma/sqrt(n); the nearest
    # true centre (the Bayes rule for equal isotropic covariances) beats chance by far
    tr, te = data.load("gaussians")
    mu = generated.gaussian_centers(4, 8, 3.0, 0)
    assert torch.allclose(mu.norm(dim=1), torch.full((4,), 3.0))
    est = torch.stack([tr.x[tr.y == c].mean(0) for c in range(4)])
    assert (est - mu).abs().max() < 4 / (500 ** 0.5)
    bayes = (torch.cdist(te.x, mu).argmin(1) == te.y).float().mean().item()
    plugin = (torch.cdist(te.x, est).argmin(1) == te.y).float().mean().item()
    assert bayes > 0.75 and abs(bayes - plugin) < 0.03
    with pytest.raises(ValueError, match="k >= 2"):
        generated.make_gaussians(10, k=1)


# ------------------------------------------------------------------------------------------------
# core: batch iterator and validation split
def test_batches_cover_everything_deterministically():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    order = lambda s: torch.cat([b[1] for b in data.batches(x, y, 3, shuffle=True,
                                                            generator=torch.Generator().manual_seed(s))])
    assert sorted(order(0).tolist()) == list(range(10))
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    sizes = [len(b[0]) for b in data.batches(x, y, 3, shuffle=True, drop_last=True)]
    assert sizes == [3, 3, 3]
    for bx, by in data.batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(2)):
        assert torch.equal(bx[:, 0].long(), by)  # x and y stay paired
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(x, y, 0))


def test_validation_split_disjoint_and_seeded():
    ds = data.ArrayDataset(torch.arange(100).unsqueeze(1), torch.arange(100), "t")
    tr, va = data.split_validation(ds, 0.2, seed=3)
    assert len(tr) == 80 and len(va) == 20
    assert set(tr.y.tolist()).isdisjoint(va.y.tolist()) and set(tr.y.tolist()) | set(va.y.tolist()) == set(range(100))
    _, va2 = data.split_validation(ds, 0.2, seed=3)
    assert torch.equal(va.y, va2.y)
    assert not torch.equal(va.y, data.split_validation(ds, 0.2, seed=4)[1].y)
    assert len(data.split_validation(ds, 7)[1]) == 7


def test_prepare_generated_bundle():
    b = data.prepare("xor", val=100, seed=0)
    assert len(b.val) == 100 and len(b.train) == 900 and b.in_shape == (2,) and b.n_classes == 2


# ------------------------------------------------------------------------------------------------
# real data (slow)
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "cifar-10"])
def test_real_dataset_label_counts(name):
    root = os.environ.get("NEUROPLASTIC_DATA")
    if not root or dl.status(name, root).startswith(f"{name}: not found") or "missing" in dl.status(name, root):
        pytest.skip(f"{name} not under NEUROPLASTIC_DATA={root!r}")
    train, test = data.load(name, root)
    if name == "mnist":
        assert train.y.bincount().tolist() == MNIST_TRAIN and test.y.bincount().tolist() == MNIST_TEST
        assert train.x.shape == (60000, 1, 28, 28)
    else:
        assert train.y.bincount().tolist() == [5000] * 10 and test.y.bincount().tolist() == [1000] * 10
        assert train.x.shape == (50000, 3, 32, 32)
        mean, std = T.channel_stats(train.x)
        assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-4)
        assert torch.allclose(std, torch.tensor([0.2470, 0.2435, 0.2616]), atol=1e-4)
