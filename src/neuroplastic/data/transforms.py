"""Input transforms: scaling, normalisation, ZCA whitening, binarisation and spike encodings.

All functions take batched tensors (first dimension = samples ``N``). ``uint8`` images are read as
``x / 255`` (floats in [0, 1]) — the same convention as :meth:`ArrayDataset.to_float`. Random transforms
draw from an explicit ``torch.Generator`` so a run is reproducible from its seed; the generator may live
on another device than ``x`` (random numbers are drawn on the generator's device and moved).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ZCA", "as_float", "binarize", "binarize_stage", "channel_stats", "flatten", "poisson_encode", "rate_encode",
           "standardize"]


def as_float(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` → ``float32`` in [0, 1] (:math:`x/255`); integer → ``float32``; floats unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        return x.float()
    return x


def _uniform(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) samples of ``shape`` on ``like``'s device, drawn from ``generator`` (any device)."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return u.to(like.device)


def _check_unit(x: torch.Tensor, what: str) -> None:
    if x.numel() and (bool((x < 0).any()) or bool((x > 1).any())):
        raise ValueError(f"{what}: values must lie in [0, 1], found range "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")


def rate_encode(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Bernoulli rate code: ``steps`` independent spike frames with firing probability equal to the input.

    .. math:: s_{t,i} \sim \mathrm{Bernoulli}(x_i), \quad t = 1..T, \qquad \mathbb{E}[s_{t,i}] = x_i

    (the standard rate coding of static images for SNNs, e.g. snnTorch ``spikegen.rate``).

    Args:
        x: intensities ``[N, ...]`` in [0, 1] (``uint8`` is divided by 255).
        steps: number of time steps ``T >= 1``.
        generator: source of randomness (may be on another device than ``x``).

    Returns:
        float tensor ``[T, N, ...]`` of 0/1 spikes, on ``x``'s device.

    >>> rate_encode(torch.tensor([[0.0, 1.0]]), 3).shape
    torch.Size([3, 1, 2])
    """
    if steps < 1:
        raise ValueError(f"rate_encode: steps must be >= 1, got {steps}")
    x = as_float(x)
    _check_unit(x, "rate_encode")
    u = _uniform(torch.Size((steps, *x.shape)), x, generator)
    return (u < x.unsqueeze(0)).to(x.dtype)


def poisson_encode(x: torch.Tensor, steps: int, dt: float = 1e-3, max_rate: float = 100.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Poisson spike trains discretised in bins of ``dt`` seconds (Bernoulli approximation).

    A pixel of intensity :math:`x_i \in [0,1]` fires as a Poisson process of rate
    :math:`r_i = x_i\,r_{\max}`; in a bin of width :math:`\Delta t` it spikes with probability

    .. math:: p_i = r_i\,\Delta t = x_i\, r_{\max}\, \Delta t, \qquad s_{t,i} \sim \mathrm{Bernoulli}(p_i)

    (Diehl & Cook 2015 use rates up to 63.75 Hz and 350 ms; defaults here: 100 Hz, 1 ms bins).
    Requires :math:`r_{\max}\Delta t \le 1`.

    Returns:
        float tensor ``[steps, N, ...]`` of 0/1 spikes.
    """
    if steps < 1:
        raise ValueError(f"poisson_encode: steps must be >= 1, got {steps}")
    if dt <= 0 or max_rate < 0:
        raise ValueError(f"poisson_encode: need dt > 0 and max_rate >= 0, got dt={dt}, max_rate={max_rate}")
    if max_rate * dt > 1:
        raise ValueError(f"poisson_encode: max_rate*dt = {max_rate * dt:g} > 1 is not a probability; "
                         f"use a smaller dt or max_rate")
    x = as_float(x)
    _check_unit(x, "poisson_encode")
    p = x * (max_rate * dt)
    u = _uniform(torch.Size((steps, *x.shape)), x, generator)
    return (u < p.unsqueeze(0)).to(x.dtype)


def binarize(x: torch.Tensor, mode: str = "threshold", threshold: float = 0.5,
             generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    r"""Binary images, as used for RBMs / Boltzmann machines (Hinton 2002; Salakhutdinov & Murray 2008).

    * ``"threshold"``: :math:`b_i = [x_i > \theta]`.
    * ``"stochastic"``: :math:`b_i \sim \mathrm{Bernoulli}(x_i)`, drawn from ``generator`` or, when none
      is given, from a fresh generator seeded with ``seed`` — so the same data give the same binary set.

    Args:
        x: intensities ``[N, ...]`` in [0, 1] (``uint8`` is divided by 255).

    Returns:
        float tensor of 0/1 with the shape of ``x``.

    >>> binarize(torch.tensor([0.2, 0.7]))
    tensor([0., 1.])
    """
    x = as_float(x)
    if mode == "threshold":
        return (x > threshold).to(x.dtype)
    if mode == "stochastic":
        _check_unit(x, "binarize")
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        return (_uniform(x.shape, x, generator) < x).to(x.dtype)
    raise ValueError(f"binarize: mode must be 'threshold' or 'stochastic', got {mode!r}")


def flatten(x: torch.Tensor) -> torch.Tensor:
    """``[N, ...]`` → ``[N, D]`` with :math:`D = \\prod` of the remaining dimensions."""
    if x.dim() < 1:
        raise ValueError("flatten: need a batched tensor [N, ...]")
    return x.reshape(len(x), -1)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-channel mean and standard deviation over samples and pixels.

    .. math:: \mu_c = \frac{1}{NHW}\sum_{n,h,w} x_{nchw}, \qquad
              \sigma_c = \sqrt{\tfrac{1}{NHW-1}\sum_{n,h,w}(x_{nchw}-\mu_c)^2}

    ``x``: images ``[N, C, H, W]`` (or features ``[N, D]``, statistics per feature). ``uint8`` is
    divided by 255 first. Returns ``(mean, std)`` each of shape ``[C]`` (or ``[D]``), float64-accurate.
    """
    x = as_float(x)
    if x.dim() == 4:
        v = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    elif x.dim() == 2:
        v = x.t().double()
    else:
        raise ValueError(f"channel_stats: expected [N, C, H, W] or [N, D], got shape {tuple(x.shape)}")
    return v.mean(1).to(x.dtype), v.std(1).to(x.dtype)


def standardize(x: torch.Tensor, mean, std) -> torch.Tensor:
    r"""Normalise: :math:`\hat x_{nc\cdot} = (x_{nc\cdot} - \mu_c) / \sigma_c`.

    ``mean``/``std`` are scalars, per-channel vectors ``[C]`` (broadcast over ``[N, C, H, W]`` or
    ``[N, C]``), or tensors already broadcastable to ``x``. ``uint8`` is divided by 255 first, so pass
    statistics in [0, 1] units (as from :func:`channel_stats`).
    """
    x = as_float(x)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    if bool((std <= 0).any()):
        raise ValueError("standardize: std must be positive")
    if x.dim() >= 2:
        c = x.shape[1]
        shape = (1, c) + (1,) * (x.dim() - 2)
        if mean.dim() == 1 and mean.numel() == c:
            mean = mean.reshape(shape)
        if std.dim() == 1 and std.numel() == c:
            std = std.reshape(shape)
    return (x - mean) / std


class ZCA:
    r"""ZCA ("zero-phase") whitening of flattened samples (Bell & Sejnowski 1997), as used for CIFAR by
    Nimmo & Mondragón (2025), with :math:`\varepsilon = 10^{-3}`.

    With :math:`X` the ``[N, D]`` flattened training data, :math:`\mu` its mean and
    :math:`\Sigma = \frac{1}{N}(X-\mu)^\top (X-\mu) = U \Lambda U^\top`,

    .. math:: W = U\,(\Lambda + \varepsilon I)^{-1/2}\,U^\top, \qquad \mathrm{zca}(x) = (x - \mu)\,W

    so the whitened data have covariance :math:`\approx I` (exactly :math:`\Lambda(\Lambda+\varepsilon)^{-1}`
    in the eigenbasis) and stay as close as possible to the originals (images still look like images).
    The eigendecomposition is done once in float64 (3,072 dims for CIFAR: ~10 s on 2 CPU cores).

    With ``standardize=True`` each dimension is first divided by :math:`\sigma_d + \varepsilon` (its standard
    deviation), as the authors' code of Nimmo & Mondragón does, so Σ is the correlation matrix and ε acts on
    its spectrum (eigenvalues summing to D) rather than on the raw one; the fitted ``W_`` then folds in the
    scaling, :math:`W = \mathrm{diag}(\sigma+\varepsilon)^{-1}\,U(\Lambda+\varepsilon I)^{-1/2}U^\top`.

    Fitted state: ``mean_`` ``[D]`` and ``W_`` ``[D, D]`` (float32), plus ``shape_`` (one sample's shape).
    ``uint8`` inputs are divided by 255 first, so ε applies to data in [0, 1].

    >>> z = ZCA().fit(torch.randn(100, 3))
    >>> z.transform(torch.randn(5, 3)).shape
    torch.Size([5, 3])
    """

    def __init__(self, eps: float = 1e-3, standardize: bool = False):
        if not eps >= 0:
            raise ValueError(f"ZCA: eps must be >= 0, got {eps}")
        self.eps = float(eps)
        self.standardize = bool(standardize)
        self.mean_: torch.Tensor | None = None
        self.W_: torch.Tensor | None = None
        self.shape_: tuple[int, ...] | None = None

    def fit(self, x: torch.Tensor) -> ZCA:
        """Estimate :math:`\\mu` and :math:`W` from ``x`` ``[N, ...]``; returns ``self``."""
        x = as_float(x)
        if x.dim() < 2 or len(x) < 2:
            raise ValueError(f"ZCA.fit: need at least 2 samples [N, ...], got shape {tuple(x.shape)}")
        xf = flatten(x)
        mean = xf.double().mean(0)
        # covariance: float32 products per chunk of samples, accumulated in float64 (4x faster than a
        # float64 product for CIFAR's 3,072 dims; the centred data are O(1), so float32 loses nothing)
        cov = torch.zeros(xf.shape[1], xf.shape[1], dtype=torch.float64, device=xf.device)
        for i in range(0, len(xf), 8192):
            xc = (xf[i:i + 8192].double() - mean).to(xf.dtype)
            cov += (xc.t() @ xc).double()
        cov /= len(xf)
        scale = None
        if self.standardize:
            scale = 1.0 / (cov.diagonal().clamp_min(0.0).sqrt() + self.eps)
            cov = cov * scale[:, None] * scale[None, :]
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0.0)
        if self.eps == 0 and bool((evals <= 0).any()):
            raise ValueError("ZCA.fit: covariance is singular; use eps > 0")
        w = (evecs * (evals + self.eps).rsqrt()) @ evecs.t()
        if scale is not None:
            w = scale[:, None] * w
        self.mean_ = mean.float()
        self.W_ = w.float()
        self.shape_ = tuple(x.shape[1:])
        return self

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten ``x`` ``[N, ...]`` (same sample shape as in :meth:`fit`); returns float, shape of ``x``."""
        if self.W_ is None:
            raise RuntimeError("ZCA.transform called before fit")
        x = as_float(x)
        if tuple(x.shape[1:]) != self.shape_:
            raise ValueError(f"ZCA.transform: sample shape {tuple(x.shape[1:])} differs from the fitted "
                             f"{self.shape_}")
        w = self.W_.to(device=x.device, dtype=x.dtype)
        m = self.mean_.to(device=x.device, dtype=x.dtype)
        return ((flatten(x) - m) @ w).reshape(x.shape)

    def fit_transform(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`fit` then :meth:`transform` on the same data."""
        return self.fit(x).transform(x)

    def state_dict(self) -> dict:
        """Fitted state, for saving with ``torch.save``."""
        return {"eps": self.eps, "standardize": self.standardize, "mean_": self.mean_, "W_": self.W_,
                "shape_": self.shape_}

    def load_state_dict(self, state: dict) -> ZCA:
        """Restore the state made by :meth:`state_dict`; returns ``self``."""
        self.eps, self.mean_, self.W_ = float(state["eps"]), state["mean_"], state["W_"]
        self.standardize = bool(state.get("standardize", False))
        self.shape_ = tuple(state["shape_"]) if state["shape_"] is not None else None
        return self


def zca_stage(bundle: Any, *, samples: int = 5000, eps: float = 1e-3, standardize: bool = False, seed: int = 0) -> ZCA:
    r"""The ZCA data stage of a protocol: fit :class:`ZCA` on ``samples`` seeded random images of the *training*
    split only (generator seed ``30_000 + seed``), then whiten every split in place, :math:`x \leftarrow (x-\mu)W`
    (Nimmo & Mondragón 2025 whiten CIFAR-10 with :math:`\varepsilon = 10^{-3}`). Deterministic given the seed, so
    a resumed run refits the same transform. Returns the fitted transform."""
    train = bundle.train.x
    g = torch.Generator().manual_seed(30_000 + seed)
    pick = torch.randperm(len(train), generator=g)[:min(samples, len(train))].sort().values
    z = ZCA(eps=eps, standardize=standardize).fit(train[pick.to(train.device)].cpu())
    mean, w = z.mean_.to(train.device), z.W_.to(train.device)
    for ds in (bundle.train, bundle.val, bundle.test):
        if ds is None:
            continue
        flat = ds.x.reshape(len(ds.x), -1)
        out = torch.empty_like(flat)
        for i in range(0, len(flat), 4096):
            out[i:i + 4096] = (flat[i:i + 4096] - mean) @ w
        ds.x = out.view(ds.x.shape)
    return z


def binarize_stage(bundle: Any, *, mode: str = "stochastic", seed: int = 0) -> None:
    r"""The binary data stage of a protocol (Boltzmann machines): every split binarised once, in place, by
    :func:`binarize` — ``stochastic``: :math:`b_i \sim \mathrm{Bernoulli}(x_i)` from generators seeded ``seed``
    (train), ``seed + 1`` (validation), ``seed + 2`` (test), the binarized-MNIST protocol of Salakhutdinov & Murray
    (2008); ``threshold``: :math:`b_i = [x_i > 0.5]`. Independent of the run's seed, so every run sees the same
    binary data."""
    for i, ds in enumerate((bundle.train, bundle.val, bundle.test)):
        if ds is not None:
            ds.x = binarize(ds.x.clamp(0, 1), mode, seed=seed + i)
