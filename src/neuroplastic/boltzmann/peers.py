"""Timing of peer implementations on the same data and settings, for the cost studies (scikit-learn is a
benchmark dependency only: ``pip install scikit-learn``)."""

from __future__ import annotations

import time

import numpy as np
import torch


def sklearn_epoch_seconds(x: np.ndarray, n_hidden: int, batch_size: int, lr: float, seed: int) -> dict[str, float]:
    """Wall seconds of one epoch of scikit-learn's ``BernoulliRBM`` (PCD-1, ``batch_size`` chains) on ``x``
    ``[N, D]`` in [0, 1], with as many BLAS threads as torch uses: on the array as given (``float32``, the dtype of
    our run; scikit-learn keeps it) and as ``float64`` (what it computes in for float64 input). Raises ``ImportError``
    naming the package when scikit-learn is absent."""
    try:
        from sklearn.neural_network import BernoulliRBM
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise ImportError("peer_timing needs scikit-learn: pip install scikit-learn") from e
    out = {}
    with threadpool_limits(torch.get_num_threads()):
        for key, arr in (("sklearn_epoch_seconds", np.ascontiguousarray(x, dtype=np.float32)),
                         ("sklearn_f64_epoch_seconds", np.ascontiguousarray(x, dtype=np.float64))):
            rbm = BernoulliRBM(n_components=n_hidden, learning_rate=lr, batch_size=batch_size, n_iter=1,
                               random_state=seed)
            t0 = time.perf_counter()
            rbm.fit(arr)
            out[key] = time.perf_counter() - t0
    out["sklearn_threads"] = float(torch.get_num_threads())
    return out
