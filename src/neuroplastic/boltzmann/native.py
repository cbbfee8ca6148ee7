r"""The native CPU route of the Bernoulli RBM's PCD-1 step: the same update as :func:`~neuroplastic.boltzmann.
machines.rbm_update` (Tieleman 2008; centred, Melchior, Fischer & Wiskott 2016), fused into one job of C
(``_native.c``, built by ``setup.py`` when a C compiler is present) run by torch's own OpenMP threads (as many as
torch uses: the threads that spin after torch's work, e.g. gathering the batch, take the step's work, so nothing
competes for a core), so that the step does the products' work and little else.

One step on data :math:`v_d` (``[B, D]``, 0/1) with chains holding :math:`p(h|v_c)` (``[C, H]``):

.. math::
    h_c \sim \mathrm{Bernoulli}(p(h|v_c)),\quad v_m \sim \mathrm{Bernoulli}(\sigma(b - W\lambda + W h_c)),\\
    P = \sigma(c - W^\top\mu + [v_d; v_m] W),\\
    \Delta W = \tfrac{1}{B} v_d^\top (P_d - \lambda) - \tfrac{1}{C} v_m^\top (P_m - \lambda)
    - \mu(\bar P_d - \bar P_m)^\top,\ \Delta b = \bar v_d - \bar v_m,\ \Delta c = \bar P_d - \bar P_m,

SGD :math:`\theta \mathrel{+}= \eta\,\Delta\theta`; then the offsets slide at rate :math:`\nu` as
:meth:`~neuroplastic.boltzmann.machines.RBM.set_offsets` moves them on the torch route (Melchior et al. 2016,
Alg. 1), with the new weights: :math:`\Delta\mu = \nu(\bar v_d - \mu)`, :math:`\Delta\lambda = \nu(\bar P_d -
\lambda)`, :math:`b \mathrel{+}= W\Delta\lambda`, :math:`c \mathrel{+}= W^\top\Delta\mu`, keeping the
distribution. They are moved inside the job, not by ``set_offsets``, whose two products would cost more than
the move. The products of 0/1 units are sums of the rows they select (the same route
as :func:`~neuroplastic.boltzmann.machines.binary_matmul`); :math:`W h_c` too, since the chains' hidden units are
0/1, by the method of four Russians (Arlazarov et al. 1970: per block, a table of the sums of every subset of each
group of 4 rows; one addition per group). Its random numbers are counter-based (``_native.c``), keyed by two draws from the learner's generator per
step, so a run is reproducible and resumes exactly; they are not torch's stream, so the two routes give different
(equally distributed) samples. The result does not depend on the number of threads. ``NEUROPLASTIC_NATIVE=0``
turns the route off.
"""

from __future__ import annotations

import os
import threading

import torch

from ..energy import ops_watched

_ABI = 5  # the interface of _native.c this module calls (its NATIVE_ABI)

try:
    from . import _native
except ImportError:  # built without a C compiler: the torch route
    _native = None
if getattr(_native, "ABI", None) != _ABI:  # a stale build (a rebuild failed): the torch route
    _native = None

__all__ = ["available", "pcd_step", "sgd_rate", "step_keys", "threads"]

_local = threading.local()


def available() -> bool:
    """Whether the native kernels are built and not turned off by ``NEUROPLASTIC_NATIVE=0``."""
    return _native is not None and os.environ.get("NEUROPLASTIC_NATIVE", "1") != "0"


def sgd_rate(rbm, sampler, optimizer, v: torch.Tensor | None, sparsity) -> float | None:
    """The learning rate when the native step applies to this update, else ``None``: a Bernoulli :class:`RBM` on the
    CPU in float32 (parameters, offsets and chains), persistent PCD-1 chains already started, a float32 data batch
    ``v`` ``[B, D]`` (whether it is 0/1 is checked by :func:`pcd_step`), no sparsity term, and plain SGD on exactly
    the RBM's parameters (one group; no momentum, weight decay, Nesterov or maximise)."""
    from .machines import PCD, RBM

    if not available() or v is None or sparsity is not None or not isinstance(rbm, RBM):
        return None
    if not (isinstance(sampler, PCD) and sampler.persistent and sampler.k == 1 and bool(sampler.ready)):
        return None
    w = rbm.W
    if w.device.type != "cpu" or v.dim() != 2:
        return None
    if not all(t.dtype == torch.float32 and t.is_contiguous()
               for t in (w, rbm.b, rbm.c, rbm.mu, rbm.lam, sampler.v, sampler.ph, v)):
        return None
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return None
    g = optimizer.param_groups[0]
    if g["momentum"] != 0 or g["weight_decay"] != 0 or g.get("nesterov") or g.get("maximize"):
        return None
    if {id(p) for p in g["params"]} != {id(rbm.W), id(rbm.b), id(rbm.c)} or ops_watched():
        return None
    return float(g["lr"])


def step_keys(generator: torch.Generator | None) -> tuple[int, int]:
    """The two keys of a step's random numbers (chains' hidden, then visible samples), drawn from ``generator``."""
    k = torch.randint(0, 2**62, (2,), generator=generator)
    return int(k[0]), int(k[1])


def _work(nd: int, nc: int, d: int, h: int, nt: int) -> dict[str, torch.Tensor]:
    """Scratch tensors of one step's shapes, kept per thread between steps."""
    key = (nd, nc, d, h, nt)
    cache = getattr(_local, "work", None)
    if cache is None or cache[0] != key:
        n, g, f, i32 = nd + nc, (h + 3) // 4, {"dtype": torch.float32}, {"dtype": torch.int32}
        cache = (key, {"X": torch.empty(n, d, dtype=torch.uint8), "vbar": torch.empty(d, **f),
                       "dmu": torch.empty(d, **f), "dlam": torch.empty(h, **f),
                       "hcode": torch.empty(nc, g, dtype=torch.uint8),
                       "ridx": torch.empty(n, d, **i32), "rcnt": torch.empty(n, **i32),
                       "cidx": torch.empty(d, n, **i32), "ccnt": torch.empty(d, **i32),
                       "blk": torch.empty(nt, max(d, 4 * g), 16, **f), "tile": torch.empty(nt, n, 16, **f),
                       "tab": torch.empty(nt, g, 16, 16, **f)})
        _local.work = cache
    return cache[1]


def threads() -> int:
    """The step's thread count: torch's (``torch.set_num_threads``), at most 64 (``_native.c`` runs on one where it
    finds no OpenMP runtime)."""
    return max(1, min(64, torch.get_num_threads()))


@torch.no_grad()
def pcd_step(rbm, sampler, v: torch.Tensor, lr: float, offset_rate: float, generator: torch.Generator | None) -> bool:
    """One PCD-1 step of ``rbm`` on the batch ``v`` (float32 ``[B, D]``) in place, the offsets' move at rate
    ``offset_rate`` included: the parameters, offsets and the chains of ``sampler`` (module docstring), on
    :func:`threads` threads (the result does not depend on their number). Returns ``False``, having changed nothing,
    when ``v`` is not all 0/1. Call only where :func:`sgd_rate` gave ``lr``."""
    nd, d = v.shape
    nc, h = sampler.ph.shape
    nt = threads()
    work = _work(nd, nc, d, h, nt)
    X = work["X"]
    if not _native.binary_u8(v.data_ptr(), v.numel(), X.data_ptr()):
        return False
    k_hidden, k_visible = step_keys(generator)
    _native.pcd_step(X.data_ptr(), nd, nc, d, h, sampler.ph.data_ptr(), sampler.v.data_ptr(), rbm.W.data_ptr(),
                     rbm.b.data_ptr(), rbm.c.data_ptr(), rbm.mu.data_ptr(), rbm.lam.data_ptr(), float(lr),
                     float(offset_rate), k_hidden, k_visible,
                     *(work[k].data_ptr() for k in ("vbar", "dmu", "dlam", "hcode", "ridx", "rcnt", "cidx", "ccnt",
                                                    "blk", "tile", "tab")), nt)
    for p in (rbm.W, rbm.b, rbm.c):
        p.grad = None
    return True
