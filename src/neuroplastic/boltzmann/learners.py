"""Boltzmann-machine learners: an RBM (CD-k / PCD) and a fully connected machine with loops.

Both are unsupervised: ``train_step(x, None)`` binarises the batch, gathers data and model statistics
and applies :func:`~neuroplastic.boltzmann.machines.correlation_rule` through the optimizer; the linear
probe then reads :math:`p(h|v)`. The RBM also reports an AIS estimate of the test log-likelihood.
"""

from __future__ import annotations

import math

import torch

from ..data.transforms import binarize
from ..learners import Locality, register
from ..learners.backprop import make_optimizer
from ..learners.base import Learner, check_range
from .machines import RBM, FullBM, ais_log_z, ais_schedule, base_rate_biases, exact_log_marginal_full

_LOCALITY = Locality(True, True, False, "undirected synapses (nothing transported), Hebbian correlations of the "
                     "two units a weight joins; but a data phase and a model (negative/sleep) phase")
_BINARIZE = ("stochastic", "threshold")


def _check_common(n_hidden: int, n_chains: int, lr: float, momentum: float, weight_decay: float) -> None:
    check_range("n_hidden", n_hidden, 1, 65536)
    check_range("n_chains", n_chains, 1, 65536)
    check_range("lr", lr, 0, lo_open=True)
    check_range("momentum", momentum, 0, 1, hi_open=True)
    check_range("weight_decay", weight_decay, 0)


class RBMLearner(Learner):
    """Bernoulli RBM trained by CD-k or persistent CD (Hinton 2002; Tieleman 2008).

    Defaults: 500 hidden units, PCD-1, SGD lr 0.01 with momentum 0.9 and weight decay 2e-4, 100 persistent
    chains (Hinton 2010, "A practical guide to training RBMs"; PCD per Tieleman 2008, and Melchior et al.
    JMLR 2016 report −84.86 nats on binarized MNIST with a centred PCD-1 RBM of 500 hidden units).
    Inputs in [0, 1] are binarised per batch (``stochastic``: dynamic binarisation from the learner's
    generator; ``threshold``: at 0.5). ``ais``: ``paper`` (≈14,500 temperatures), ``fast`` (≈1,000) or
    ``none`` — the AIS estimate of the mean test log-likelihood in nats is reported by ``final_metrics``.
    """

    name = "rbm"
    paper = "Hinton 2002 (CD); Tieleman 2008 (PCD); Salakhutdinov & Murray 2008 (AIS)"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, n_hidden: int = 500, k: int = 1,
                 persistent: bool = True, n_chains: int = 100, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 2e-4, binarization: str = "stochastic", ais: str = "fast",
                 ais_chains: int = 100, seed: int = 0) -> None:
        super().__init__()
        if binarization not in _BINARIZE:
            raise ValueError(f"unknown binarization {binarization!r}; allowed: {', '.join(_BINARIZE)}")
        if ais not in ("paper", "fast", "none"):
            raise ValueError(f"unknown ais {ais!r}; allowed: paper, fast, none")
        _check_common(n_hidden, n_chains, lr, momentum, weight_decay)
        check_range("k (Gibbs steps)", k, 1)
        check_range("ais_chains", ais_chains, 1)
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        self.rbm = RBM(self.n_visible, n_hidden, generator=self.gen)
        self.k, self.persistent, self.binarization = k, persistent, binarization
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.ais, self.ais_chains, self.seed = ais, ais_chains, seed
        self.register_buffer("chains", torch.zeros(n_chains, self.n_visible))
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.bool))

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = make_optimizer(self.rbm.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)

    def _binary(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).clamp(0, 1)
        if self.binarization == "threshold":
            return binarize(x, "threshold")
        return binarize(x, "stochastic", generator=self.gen)

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        v = self._binary(x)
        with torch.no_grad():
            if self.persistent:
                if not bool(self.chains_ready):
                    idx = torch.randint(len(v), (len(self.chains),), generator=self.gen).to(v.device)
                    self.chains.copy_(v[idx])
                    self.chains_ready.fill_(True)
                v_model, _ = self.rbm.gibbs(self.chains, self.k, self.gen)
                self.chains.copy_(v_model)
            else:
                v_model, _ = self.rbm.gibbs(v, self.k, self.gen)
            self.rbm.accumulate_grad(v, v_model)
        self.optimizer.step()
        with torch.no_grad():
            recon = ((self.rbm.p_v(self.rbm.p_h(v)) - v) ** 2).sum(1).mean()
        return {"loss": float(recon)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`p(h=1|x)` with the intensities as mean-field visible values."""
        return self.rbm.p_h(x.flatten(1).clamp(0, 1))

    def diagnostics(self) -> dict[str, float]:
        return {"weight_norm": float(self.rbm.W.detach().norm())}

    @torch.no_grad()
    def final_metrics(self, bundle) -> dict[str, float]:
        """AIS estimate of ``log Z`` and the mean test log-likelihood (nats) on a fixed binarisation of the
        test set (stochastic, seed 0; the standard binarized-MNIST protocol binarises once)."""
        if self.ais == "none":
            return {}
        v_train = binarize(bundle.train.x.flatten(1).clamp(0, 1), "stochastic", seed=0)
        v_test = binarize(bundle.test.x.flatten(1).clamp(0, 1), "stochastic", seed=1)
        g = torch.Generator().manual_seed(self.seed + 12345)
        log_z, se = ais_log_z(self.rbm, base_rate_biases(v_train), ais_schedule(self.ais), self.ais_chains, g)
        ll = float((-self.rbm.free_energy(v_test)).mean()) - log_z
        return {"log_likelihood": ll, "log_z": log_z, "ais_rel_se": se, "ais_temperatures": len(ais_schedule(self.ais))}


class FullBMLearner(Learner):
    """Fully connected Boltzmann machine with loops (visible and hidden units all connected), trained by
    the correlation rule with persistent Gibbs chains for the model phase and clamped Gibbs sweeps for the
    data phase (Ackley, Hinton & Sejnowski 1985; persistent chains after Tieleman 2008).

    Exact mean test log-likelihood (by enumeration) is reported when ``n_visible + n_hidden <= 20``.
    """

    name = "bm"
    paper = "Ackley, Hinton & Sejnowski 1985"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, n_hidden: int = 16, sweeps: int = 1,
                 n_chains: int = 64, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 1e-4,
                 binarization: str = "stochastic", seed: int = 0) -> None:
        super().__init__()
        if binarization not in _BINARIZE:
            raise ValueError(f"unknown binarization {binarization!r}; allowed: {', '.join(_BINARIZE)}")
        _check_common(n_hidden, n_chains, lr, momentum, weight_decay)
        check_range("sweeps", sweeps, 1)
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        self.bm = FullBM(self.n_visible, n_hidden, generator=self.gen)
        self.sweeps, self.binarization = sweeps, binarization
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.register_buffer("chains", torch.zeros(n_chains, self.n_visible + n_hidden))
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.bool))

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = make_optimizer(self.bm.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)

    def _clamped(self, v: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(len(v), self.bm.n_hidden, device=v.device)
        x = torch.cat([v, h], 1)
        for _ in range(self.sweeps + 1):
            x = self.bm.sweep(x, self.gen, clamp_visible=True)
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        flat = x.flatten(1).clamp(0, 1)
        v = binarize(flat, "threshold") if self.binarization == "threshold" else binarize(flat, "stochastic",
                                                                                          generator=self.gen)
        with torch.no_grad():
            x_data = self._clamped(v)
            if not bool(self.chains_ready):
                idx = torch.randint(len(v), (len(self.chains),), generator=self.gen).to(v.device)
                self.chains.copy_(self._clamped(v[idx]))
                self.chains_ready.fill_(True)
            x_model = self.chains
            for _ in range(self.sweeps):
                x_model = self.bm.sweep(x_model, self.gen)
            self.chains.copy_(x_model)
            self.bm.accumulate_grad(x_data, x_model)
        self.optimizer.step()
        with torch.no_grad():
            self.bm.W.fill_diagonal_(0.0)
            gap = float(self.bm.energy(x_data).mean() - self.bm.energy(x_model).mean())
        return {"loss": gap}

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field hidden activities given the clamped input (5 damped fixed-point iterations)."""
        v = x.flatten(1).clamp(0, 1)
        nv = self.n_visible
        h = torch.full((len(v), self.bm.n_hidden), 0.5, device=v.device)
        for _ in range(5):
            a = v @ self.bm.W[:nv, nv:] + h @ self.bm.W[nv:, nv:] + self.bm.b[nv:]
            h = 0.5 * h + 0.5 * torch.sigmoid(a)
        return h

    @torch.no_grad()
    def final_metrics(self, bundle) -> dict[str, float]:
        if self.bm.W.shape[0] > 20:
            return {}
        v_test = binarize(bundle.test.x.flatten(1).clamp(0, 1), "stochastic", seed=1)
        return {"log_likelihood": float(exact_log_marginal_full(self.bm, v_test).mean()), "exact_ll": 1}


register("rbm", RBMLearner, summary="restricted Boltzmann machine, CD-k/PCD, AIS log-likelihood",
         quick={"dataset": "digits", "params": {"n_hidden": 100, "lr": 0.05, "ais": "fast"},
                "protocol": {"probe": {"epochs": 60}}, "epochs": 5, "batch_size": 32})
register("bm", FullBMLearner, summary="fully connected Boltzmann machine with loops, persistent Gibbs",
         quick={"dataset": "digits", "params": {"n_hidden": 16, "lr": 0.05}, "protocol": {"probe": {"epochs": 60}},
                "epochs": 3, "batch_size": 32})
