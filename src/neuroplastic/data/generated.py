"""Seeded generated classification tasks, registered by name: quick, need no files, identical every run.

Both splits come from fixed seeds (train: ``TRAIN_SEED``, test: ``TEST_SEED``), so a run's ``seed``
changes the model and the batch order but never the data — results stay comparable across seeds, as
with the embedded digits. Inputs are ``float32 [N, D]`` features, labels ``int64 [N]``.

Registered tasks:

* ``gaussians``: :math:`k = 4` isotropic Gaussian blobs in :math:`d = 8` dimensions,
  :math:`x = \\mu_y + \\sigma\\varepsilon`, :math:`\\mu_c \\sim \\mathcal N(0, I)` scaled to norm 3,
  :math:`\\sigma = 1`.
* ``xor``: :math:`x \\sim U[-1, 1]^2`, :math:`y = [x_1 x_2 > 0]` (not linearly separable).
* ``two-moons``: two interleaving half circles with Gaussian noise :math:`\\sigma = 0.1`
  (as scikit-learn's ``make_moons``).
* ``bars-stripes-3x3``: the 14 bars-and-stripes patterns of a 3×3 grid (MacKay 2003), each equally often — a
  distribution with higher-order structure, small enough to enumerate (Boltzmann machines).
* ``ising-loops-10``: exact samples of a 10-unit sparse Ising model whose graph has loops (a ring with chords).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .core import ArrayDataset, DatasetInfo, register_dataset

TRAIN_SEED = 1234
TEST_SEED = 4321


def gaussian_centers(k: int, d: int, radius: float = 3.0, seed: int = 0) -> torch.Tensor:
    r"""``k`` centres :math:`\mu_c = r\,g_c/\lVert g_c\rVert`, :math:`g_c \sim \mathcal N(0, I_d)`: ``[k, d]``."""
    mu = torch.randn(k, d, generator=torch.Generator().manual_seed(seed))
    return radius * mu / mu.norm(dim=1, keepdim=True).clamp_min(1e-12)


def make_gaussians(n: int, k: int = 4, d: int = 8, sigma: float = 1.0, radius: float = 3.0,
                   seed: int = 0, centers_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` points from ``k`` Gaussian blobs in ``d`` dimensions, classes balanced (round-robin).

    .. math:: y_i = i \bmod k,\quad x_i = \mu_{y_i} + \sigma\,\varepsilon_i,\quad
              \mu_c = r\,g_c/\lVert g_c\rVert,\ g_c \sim \mathcal N(0, I_d)

    The centres depend only on ``centers_seed`` (shared by train and test), the samples on ``seed``.
    """
    if n < 1 or k < 2 or d < 1 or sigma <= 0:
        raise ValueError(f"make_gaussians: need n >= 1, k >= 2, d >= 1, sigma > 0; got {n}, {k}, {d}, {sigma}")
    mu = gaussian_centers(k, d, radius, centers_seed)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    y = y[torch.randperm(n, generator=g)]
    x = mu[y] + sigma * torch.randn(n, d, generator=g)
    return x, y


def make_xor(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""XOR: :math:`x \sim U[-1,1]^2`, :math:`y = [x_1 x_2 > 0]`."""
    if n < 1:
        raise ValueError(f"make_xor: n must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    return x, (x[:, 0] * x[:, 1] > 0).long()


def make_moons(n: int, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Two moons: class 0 on :math:`(\cos t, \sin t)`, class 1 on :math:`(1 - \cos t, \tfrac12 - \sin t)`,
    :math:`t \sim U[0, \pi]`, plus :math:`\mathcal N(0, \text{noise}^2 I)`."""
    if n < 1 or noise < 0:
        raise ValueError(f"make_moons: need n >= 1 and noise >= 0, got {n}, {noise}")
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    y = y[torch.randperm(n, generator=g)]
    t = torch.rand(n, generator=g) * math.pi
    x = torch.where((y == 0).unsqueeze(1), torch.stack([t.cos(), t.sin()], 1),
                    torch.stack([1 - t.cos(), 0.5 - t.sin()], 1))
    return x + noise * torch.randn(n, 2, generator=g), y


def bars_and_stripes(side: int = 3) -> torch.Tensor:
    """The :math:`2^{s+1} - 2` distinct bars-and-stripes patterns of an ``side``×``side`` grid (every row equal —
    vertical bars — or every column equal — horizontal stripes; all-off and all-on once), flat ``[K, side²]``."""
    rows = ((torch.arange(2**side).unsqueeze(1) >> torch.arange(side)) & 1).float()  # [2^s, s]
    bars = rows.unsqueeze(1).expand(-1, side, -1).reshape(2**side, -1)  # each row equal to the code
    stripes = rows.unsqueeze(2).expand(-1, -1, side).reshape(2**side, -1)  # each column equal to the code
    return torch.cat([bars, stripes[1:-1]])


def make_bars_and_stripes(n: int, seed: int = 0, side: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` samples of bars-and-stripes, every pattern exactly ``n / K`` times (``n`` a multiple of :math:`K =
    2^{s+1}-2`), shuffled; label 0 for bars (the all-off and all-on patterns included), 1 for stripes."""
    pats = bars_and_stripes(side)
    k = len(pats)
    if n < k or n % k:
        raise ValueError(f"make_bars_and_stripes: n must be a positive multiple of {k}, got {n}")
    labels = torch.cat([torch.zeros(2**side), torch.ones(k - 2**side)]).long()
    idx = torch.arange(n) % k
    idx = idx[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    return pats[idx], labels[idx]


#: Edges of the ``ising-loops-10`` target: a ring over 10 units and three chords (loops of odd and even length).
ISING_EDGES = [(i, (i + 1) % 10) for i in range(10)] + [(0, 4), (2, 7), (3, 8)]


def ising_target(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Couplings and fields of the ``ising-loops-10`` target over binary units :math:`x \in \{0,1\}^{10}`,
    :math:`p(x) \propto \exp(b^\top x + \sum_{(i,j)} w_{ij} x_i x_j)` on :data:`ISING_EDGES`:
    :math:`|w_{ij}| \sim U(1, 2)` with random signs, :math:`b_i = -\tfrac12\sum_j w_{ij} + U(-0.3, 0.3)` (balanced
    units). Returns ``(W [10, 10] symmetric, b [10])``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    w = torch.zeros(10, 10)
    for i, j in ISING_EDGES:
        mag = 1 + torch.rand(1, generator=g).item()
        sign = 1.0 if torch.rand(1, generator=g).item() < 0.5 else -1.0
        w[i, j] = w[j, i] = sign * mag
    b = -0.5 * w.sum(1) + (torch.rand(10, generator=g) * 0.6 - 0.3)
    return w, b


def make_ising(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` exact samples of :func:`ising_target` (by enumerating its 1,024 states); label: the first unit."""
    w, b = ising_target()
    states = ((torch.arange(1024).unsqueeze(1) >> torch.arange(10)) & 1).float()
    logp = states @ b + 0.5 * ((states @ w) * states).sum(1)
    idx = torch.multinomial(torch.softmax(logp, 0), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    x = states[idx]
    return x, x[:, 0].long()


def register_generated(name: str, make: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
                       n_classes: int, description: str, n_train: int, n_test: int) -> DatasetInfo:
    """Register a generated task: ``make(n, seed) -> (x, y)``; train/test from the fixed seeds."""

    def load(root=None, download: bool = False, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        classes = tuple(str(i) for i in range(n_classes))
        xtr, ytr = make(n_train, TRAIN_SEED)
        xte, yte = make(n_test, TEST_SEED)
        return ArrayDataset(xtr, ytr, name, classes), ArrayDataset(xte, yte, name, classes)

    load.__name__ = f"load_{name.replace('-', '_')}"
    load.__doc__ = f"{description} (generated; ``root``, ``download`` and ``seed`` are ignored)."
    return register_dataset(DatasetInfo(name, load, n_classes, description, generated=True))


register_generated("gaussians", lambda n, s: make_gaussians(n, seed=s), 4,
                   "4 Gaussian blobs in 8-D (σ=1, centres at radius 3), 2000/1000", 2000, 1000)
register_generated("xor", lambda n, s: make_xor(n, seed=s), 2, "2-D XOR on U[-1,1]², 1000/1000", 1000, 1000)
register_generated("two-moons", lambda n, s: make_moons(n, seed=s), 2,
                   "2-D two moons, noise 0.1, 1000/1000", 1000, 1000)
register_generated("bars-stripes-3x3", lambda n, s: make_bars_and_stripes(n, seed=s), 2,
                   "3x3 bars and stripes, the 14 patterns equally often, 1400/140", 1400, 140)
register_generated("ising-loops-10", lambda n, s: make_ising(n, seed=s), 2,
                   "exact samples of a 10-unit Ising model on a ring with chords, 20000/5000", 20000, 5000)
