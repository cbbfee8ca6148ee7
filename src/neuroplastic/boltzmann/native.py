r"""The native CPU route of the Bernoulli RBM's PCD-1 step: the same update as :func:`~neuroplastic.boltzmann.
machines.rbm_update` (Tieleman 2008; centred, Melchior, Fischer & Wiskott 2016), fused into one pass of C
(``_native.c``, built by ``setup.py`` when a C compiler is present) so that the step does the products' work and
little else.

One step on data :math:`v_d` (``[B, D]``, 0/1) with chains holding :math:`p(h|v_c)` (``[C, H]``):

.. math::
    h_c \sim \mathrm{Bernoulli}(p(h|v_c)),\quad v_m \sim \mathrm{Bernoulli}(\sigma(b - W\lambda + W h_c)),\\
    P = \sigma(c - W^\top\mu + [v_d; v_m] W),\\
    \Delta W = \tfrac{1}{B} v_d^\top (P_d - \lambda) - \tfrac{1}{C} v_m^\top (P_m - \lambda)
    - \mu(\bar P_d - \bar P_m)^\top,\ \Delta b = \bar v_d - \bar v_m,\ \Delta c = \bar P_d - \bar P_m,

SGD :math:`\theta \mathrel{+}= \eta\,\Delta\theta`; then :func:`~neuroplastic.boltzmann.machines.rbm_update`
slides the offsets as on the torch route,
:math:`\mu \mathrel{+}= \nu(\bar v_d - \mu)`, :math:`\lambda \mathrel{+}= \nu(\bar P_d - \lambda)`, with
:math:`b \mathrel{+}= W\Delta\lambda`, :math:`c \mathrel{+}= W^\top\Delta\mu` keeping the distribution
(:meth:`~neuroplastic.boltzmann.machines.RBM.set_offsets`). The products of 0/1 units are sums of the rows they
select (the same route as :func:`~neuroplastic.boltzmann.machines.binary_matmul`); :math:`p(v|h)` stays a torch
product. Its random numbers are counter-based (``_native.c``), keyed by two draws from the learner's generator per
step, so a run is reproducible and resumes exactly; they are not torch's stream, so the two routes give different
(equally distributed) samples. ``NEUROPLASTIC_NATIVE=0`` turns the route off.
"""

from __future__ import annotations

import os
import threading

import torch

_ABI = 2  # the interface of _native.c this module calls (its NATIVE_ABI)

try:
    from . import _native
except ImportError:  # built without a C compiler: the torch route
    _native = None
if getattr(_native, "ABI", None) != _ABI:  # a stale build (a rebuild failed): the torch route
    _native = None

__all__ = ["available", "pcd_step", "sgd_rate", "step_keys"]

_local = threading.local()


def available() -> bool:
    """Whether the native kernels are built and not turned off by ``NEUROPLASTIC_NATIVE=0``."""
    return _native is not None and os.environ.get("NEUROPLASTIC_NATIVE", "1") != "0"


def _dispatch_mode_active() -> bool:
    """Whether a torch dispatch mode (the energy model's operation counter) watches the ops: it must see them."""
    try:
        from torch.utils._python_dispatch import _get_current_dispatch_mode
    except ImportError:
        return True
    return _get_current_dispatch_mode() is not None


def sgd_rate(rbm, sampler, optimizer, v: torch.Tensor | None, sparsity) -> float | None:
    """The learning rate when the native step applies to this update, else ``None``: a Bernoulli :class:`RBM` on the
    CPU in float32, persistent PCD-1 chains already started, a float32 data batch ``v`` ``[B, D]`` (whether it is 0/1
    is checked by :func:`pcd_step`), no sparsity term, and plain SGD on exactly the RBM's parameters (one group; no
    momentum, weight decay, Nesterov or maximise)."""
    from .machines import PCD, RBM

    if not available() or v is None or sparsity is not None or not isinstance(rbm, RBM):
        return None
    if not (isinstance(sampler, PCD) and sampler.persistent and sampler.k == 1 and bool(sampler.ready)):
        return None
    w = rbm.W
    if w.device.type != "cpu" or w.dtype != torch.float32 or v.dtype != torch.float32 or v.dim() != 2:
        return None
    if not all(t.is_contiguous() for t in (w, rbm.b, rbm.c, rbm.mu, rbm.lam, sampler.v, sampler.ph, v)):
        return None
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return None
    g = optimizer.param_groups[0]
    if g["momentum"] != 0 or g["weight_decay"] != 0 or g.get("nesterov") or g.get("maximize"):
        return None
    if {id(p) for p in g["params"]} != {id(rbm.W), id(rbm.b), id(rbm.c)} or _dispatch_mode_active():
        return None
    return float(g["lr"])


def step_keys(generator: torch.Generator | None) -> tuple[int, int]:
    """The two keys of a step's random numbers (chains' hidden, then visible samples), drawn from ``generator``."""
    k = torch.randint(0, 2**62, (2,), generator=generator)
    return int(k[0]), int(k[1])


def _work(n: int, d: int, h: int, c: int) -> dict[str, torch.Tensor]:
    """Scratch tensors of one step's shapes, kept per thread between steps."""
    key = (n, d, h, c)
    cache = getattr(_local, "work", None)
    if cache is None or cache[0] != key:
        f = {"dtype": torch.float32}
        cache = (key, {"X": torch.empty(n, d, dtype=torch.uint8), "h": torch.empty(c, h, dtype=torch.uint8),
                       "P": torch.empty(n, h, **f), "Y": torch.empty(n, h, **f), "dy": torch.empty(h, **f),
                       "pbar": torch.empty(h, **f), "vbar": torch.empty(d, **f),
                       "cols": torch.empty(n * d, dtype=torch.int32), "off": torch.empty(n + 1, dtype=torch.int64),
                       "rows": torch.empty(n * d, dtype=torch.int32), "offT": torch.empty(d + 1, dtype=torch.int64),
                       "cur": torch.empty(d, dtype=torch.int64),
                       "blk": torch.empty(max(d, n) * 16, **f)})
        _local.work = cache
    return cache[1]


@torch.no_grad()
def pcd_step(rbm, sampler, v: torch.Tensor, lr: float, generator: torch.Generator | None,
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One PCD-1 step of ``rbm`` on the batch ``v`` (float32 ``[B, D]``) in place: the parameters and the chains of
    ``sampler`` (module docstring). Returns the batch means :math:`\\bar v_d` and :math:`\\bar P_d` for the offsets'
    move (the caller's, as on the torch route), or ``None``, having changed nothing, when ``v`` is not all 0/1. Call
    only where :func:`sgd_rate` gave ``lr``."""
    W, b, c, mu, lam = rbm.W.data, rbm.b.data, rbm.c.data, rbm.mu, rbm.lam
    nd, d = v.shape
    nc, h = sampler.ph.shape
    work = _work(nd + nc, d, h, nc)
    X = work["X"]
    if not _native.binary_u8(v.data_ptr(), v.numel(), X.data_ptr()):
        return None
    k_hidden, k_visible = step_keys(generator)
    _native.bernoulli(sampler.ph.data_ptr(), sampler.ph.numel(), k_hidden, work["h"].data_ptr())
    a_v = torch.addmm(torch.addmv(b, W, lam, alpha=-1), work["h"].to(W.dtype), W.T)
    c_eff = torch.addmv(c, W.T, mu, alpha=-1)
    _native.pcd_rest(X.data_ptr(), nd, nc, d, h, a_v.data_ptr(), k_visible, W.data_ptr(), b.data_ptr(),
                     c.data_ptr(), c_eff.data_ptr(), mu.data_ptr(), lam.data_ptr(), float(lr),
                     *(work[k].data_ptr() for k in ("P", "Y", "dy", "pbar", "vbar", "cols", "off", "rows", "offT",
                                                    "cur", "blk")))
    sampler.v.copy_(X[nd:])
    sampler.ph.copy_(work["P"][nd:])
    for p in (rbm.W, rbm.b, rbm.c):
        p.grad = None
    return work["vbar"], work["pbar"]
