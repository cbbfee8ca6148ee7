"""Boltzmann-machine learners: RBMs (``rbm``: Bernoulli, centred, CD/PCD/PT; ``grbm``: Gaussian visible units), deep
belief nets (``dbn``) and machines with loops (``bm``).

All are unsupervised: ``train_step(x, None)`` gathers data and model statistics and applies
:func:`~neuroplastic.boltzmann.machines.correlation_rule` through the optimizer; the linear probe then reads the
hidden activities. Each step does only what the update needs: monitoring (reconstruction error,
pseudo-likelihood, a quick AIS log-likelihood of the validation split) is measured by :meth:`monitor` at the
trainer's evaluation epochs, and honest likelihoods (AIS with the standard schedule, reverse AIS, or exact
enumeration for small models) once after training by :meth:`final_metrics`.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import torch

from ..data.transforms import binarize
from ..learners import Locality, register
from ..learners.backprop import make_optimizer, make_scheduler
from ..learners.base import Learner, check_range
from .machines import (
    PCD,
    RBM,
    BoltzmannMachine,
    GaussianRBM,
    ParallelTempering,
    ais_log_z,
    ais_schedule,
    base_rate_biases,
    bernoulli,
    empirical_distribution,
    enumerate_states,
    exact_log_marginal_bm,
    exact_log_z_rbm,
    init_from_data,
    kl_divergence,
    rbm_update,
    reverse_ais_log_z,
    state_codes,
)

_LOCALITY = Locality(True, True, False, "undirected synapses (nothing transported), Hebbian correlations of the "
                     "two units a weight joins; but a data phase and a model (negative/sleep) phase")
_BINARIZE = ("stochastic", "threshold", "none")
_SAMPLERS = ("cd", "pcd", "pt")
_SCHEDULES = ("constant", "linear")
#: Largest model whose likelihood is computed exactly by enumeration (units of the enumerated side).
EXACT_UNITS = 20


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _check_common(n_hidden: int, n_chains: int, lr: float, momentum: float, weight_decay: float) -> None:
    check_range("n_hidden", n_hidden, 1, 65536)
    check_range("n_chains", n_chains, 1, 65536)
    check_range("lr", lr, 0, lo_open=True)
    check_range("momentum", momentum, 0, 1, hi_open=True)
    check_range("weight_decay", weight_decay, 0)


def _schedule(optimizer: torch.optim.Optimizer, kind: str, epochs: int):
    """``linear``: the learning rate decays linearly to 0 over the planned epochs; ``constant``: none (the shared
    :func:`~neuroplastic.learners.backprop.make_scheduler`)."""
    return make_scheduler(optimizer, "none" if kind == "constant" else kind, epochs)


def binary_rows(x: torch.Tensor, mode: str, generator: torch.Generator | None = None, *, seed: int = 0,
                ) -> torch.Tensor:
    """Inputs as binary rows ``[N, D]``: ``stochastic`` (Bernoulli draws of the intensities — from ``generator`` for
    a training batch, dynamic binarisation; else from a generator seeded ``seed``: a split binarised once, the
    binarized-MNIST protocol of Salakhutdinov & Murray 2008), ``threshold`` (at 0.5), ``none`` (used as given:
    already binary)."""
    flat = x.flatten(1)
    if mode == "none":
        return flat
    flat = flat.clamp(0, 1)
    if mode == "threshold":
        return binarize(flat, "threshold")
    return binarize(flat, "stochastic", generator=generator, seed=seed)


class RBMLearner(Learner):
    r"""Bernoulli RBM, centred by default, trained by CD-k, PCD or parallel tempering (Hinton 2002; Tieleman 2008;
    Desjardins et al. 2010; centring: Melchior, Fischer & Wiskott, JMLR 2016).

    Defaults follow Melchior et al.'s centred binary RBM on MNIST (PyDeep ``RBM_MNIST_big``): 500 hidden units,
    PCD-1 with 100 chains, plain SGD lr 0.01, offsets :math:`\mu, \lambda` as sliding means of the data's visible
    and hidden activities (rate ``offset_rate`` 0.01) — after each update the biases are moved so that the offset
    change leaves the distribution unchanged (:meth:`RBM.set_offsets`). Initialisation from the first batch:
    :math:`b = \operatorname{logit}\bar v`, :math:`\mu = \bar v`, :math:`\lambda = 0.5`.

    ``binarization``: inputs in [0, 1] are binarised per batch (``stochastic``, from the learner's generator;
    ``threshold`` at 0.5) or used as they are (``none``: data already binary, e.g. by the protocol's
    ``binarize`` stage). ``sparsity_target``: the hidden units' mean activity is pulled towards it with weight
    ``sparsity_cost`` (:func:`~neuroplastic.boltzmann.machines.sparsity_grad`; Lee et al. 2008; ``None``: off).
    ``ais``: the schedule of the final AIS estimate (``paper``: ≈14,500 temperatures, ``fast``, ``none``), with
    ``reverse_ais`` beside it; ``monitor``: a quick AIS log-likelihood of the validation
    split at every evaluation epoch (the curve over training). ``peer_timing``: also time one epoch of
    scikit-learn's ``BernoulliRBM`` on the same data and settings (benchmarks; needs scikit-learn).
    """

    name = "rbm"
    paper = "Hinton 2002 (CD); Tieleman 2008 (PCD); Melchior et al. 2016 (centring); Salakhutdinov & Murray 2008 (AIS)"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, n_hidden: int = 500, sampler: str = "pcd",
                 k: int = 1, n_chains: int = 100, n_temps: int = 10, centred: bool = True, offset_rate: float = 0.01,
                 lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0, lr_schedule: str = "constant",
                 init_std: float = 0.01, binarization: str = "stochastic", ais: str = "fast", ais_chains: int = 100,
                 reverse_ais: bool = True, monitor: str = "fast", monitor_samples: int = 2000,
                 sparsity_target: float | None = None, sparsity_cost: float = 0.1,
                 peer_timing: bool = False, seed: int = 0) -> None:
        super().__init__()
        _check_choice("binarization", binarization, _BINARIZE)
        if sparsity_target is not None:
            check_range("sparsity_target", sparsity_target, 0, 1, lo_open=True, hi_open=True)
        check_range("sparsity_cost", sparsity_cost, 0)
        _check_choice("sampler", sampler, _SAMPLERS)
        _check_choice("lr_schedule", lr_schedule, _SCHEDULES)
        _check_choice("ais", ais, ("paper", "fast", "none"))
        _check_choice("monitor", monitor, ("fast", "none"))
        _check_common(n_hidden, n_chains, lr, momentum, weight_decay)
        check_range("k (Gibbs steps)", k, 1, 10000)
        check_range("n_temps", n_temps, 2, 1000)
        check_range("offset_rate", offset_rate, 0, 1)
        check_range("init_std", init_std, 0)
        check_range("ais_chains", ais_chains, 1, 65536)
        check_range("monitor_samples", monitor_samples, 1)
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        self.rbm = RBM(self.n_visible, n_hidden, init_std=init_std, generator=self.gen)
        if sampler == "pt":
            self.sampler = ParallelTempering(self.n_visible, n_hidden, n_chains, k, n_temps)
        else:
            self.sampler = PCD(self.n_visible, n_hidden, n_chains, k, persistent=sampler == "pcd")
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        if sparsity_target is not None:  # running mean activity of the hidden units (the penalty's q), from the target
            self.register_buffer("activity", torch.full((n_hidden,), sparsity_target))
        self.sparsity_target, self.sparsity_cost = sparsity_target, sparsity_cost
        self.centred, self.offset_rate, self.binarization = centred, offset_rate, binarization
        self.lr, self.momentum, self.weight_decay, self.lr_schedule = lr, momentum, weight_decay, lr_schedule
        self.ais, self.ais_chains, self.reverse_ais, self.monitor_kind = ais, ais_chains, reverse_ais, monitor
        self.monitor_samples, self.peer_timing, self.seed = monitor_samples, peer_timing, seed
        self.batch_size = 100
        self._epoch_t0: float | None = None
        self.epoch_seconds = 0.0
        self.epochs_done = 0
        self.monitor_log: list[dict[str, float]] = []

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = make_optimizer(self.rbm.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)
        self.scheduler = _schedule(self.optimizer, self.lr_schedule, epochs)

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        if self._epoch_t0 is None:
            self._epoch_t0 = time.perf_counter()
            self.batch_size = len(x)
        v = binary_rows(x, self.binarization, self.gen)
        if not bool(self.initialised):
            init_from_data(self.rbm, v, self.centred)
            self.initialised.fill_(True)
        sparsity = None if self.sparsity_target is None else (self.activity, self.sparsity_target, self.sparsity_cost)
        rbm_update(self.rbm, self.sampler, self.optimizer, v, self.gen, self.offset_rate if self.centred else 0.0,
                   sparsity)
        return {}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        if self._epoch_t0 is not None:
            self.epoch_seconds = time.perf_counter() - self._epoch_t0
        self._epoch_t0 = None
        self.epochs_done = epoch + 1
        out = super().end_epoch(epoch)
        if isinstance(self.sampler, ParallelTempering) and float(self.sampler.swaps[1]) > 0:
            out["pt_swap_rate"] = float(self.sampler.swaps[0] / self.sampler.swaps[1])
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`p(h=1|x)` with the intensities as mean-field visible values."""
        return self.rbm.p_h(x.flatten(1).clamp(0, 1))

    def diagnostics(self) -> dict[str, float]:
        return {"weight_norm": float(self.rbm.W.detach().norm())}

    def _split(self, bundle, name: str, seed: int) -> torch.Tensor:
        return binary_rows(getattr(bundle, name).x, self.binarization, seed=seed)

    @torch.no_grad()
    def monitor(self, bundle) -> dict[str, float]:
        """On up to ``monitor_samples`` validation samples (training samples without a validation split):
        reconstruction error :math:`\\lVert v - p(v|p(h|v))\\rVert^2`, pseudo-log-likelihood
        :math:`n_v \\log\\sigma(F(\\tilde v) - F(v))` (one random bit flipped; as scikit-learn) and, with
        ``monitor: fast``, the log-likelihood by a quick AIS (1,450 temperatures, 100 chains)."""
        name = "val" if bundle.val is not None else "train"
        v = self._split(bundle, name, 2)[: self.monitor_samples]
        g = torch.Generator().manual_seed(self.seed + 777)
        out = {f"{name}_recon_error": float(((self.rbm.p_v(self.rbm.p_h(v)) - v) ** 2).sum(1).mean()),
               f"{name}_pseudo_ll": float(pseudo_log_likelihood(self.rbm, v, g).mean())}
        if self.monitor_kind == "fast":
            v_train = self._split(bundle, "train", 0)
            log_z, _ = ais_log_z(self.rbm, base_rate_biases(v_train), ais_schedule("fast"), 100, g)
            out[f"{name}_ll_ais_fast"] = float((-self.rbm.free_energy(v)).mean()) - log_z
        self.monitor_log.append({"epoch": self.epochs_done, **out})
        return out

    def training_state(self) -> dict:
        return {**super().training_state(), "monitor_log": list(self.monitor_log)}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.monitor_log = list(state.get("monitor_log", []))

    @torch.no_grad()
    def final_metrics(self, bundle) -> dict[str, float]:
        """Mean test (and training) log-likelihood in nats on a fixed binarisation of the data (stochastic: train
        seed 0, test seed 1): exact by enumeration when a layer has at most 20 units (``log_likelihood``,
        ``exact_ll``; with ≤ 20 visible units also the exact ``kl_data_model``), forward AIS otherwise — and beside
        the exact value, when both exist, as a check (``log_z_ais``, ``ais_minus_exact``) — with reverse AIS
        (``log_likelihood_reverse``; chains started from 1,000 Gibbs steps after training samples). With
        ``peer_timing``: scikit-learn's epoch time on the same data and settings, and ``epoch_over_sklearn``."""
        n_v, n_h = self.rbm.W.shape
        out: dict[str, float] = {"free_params": n_v * n_h + n_v + n_h}
        v_train, v_test = self._split(bundle, "train", 0), self._split(bundle, "test", 1)
        mean_neg_f = float((-self.rbm.free_energy(v_test)).mean())
        exact = min(n_v, n_h) <= EXACT_UNITS
        if exact:
            log_z = float(exact_log_z_rbm(self.rbm))
            out.update(log_likelihood=mean_neg_f - log_z, log_z=log_z, exact_ll=1)
            if self.n_visible <= EXACT_UNITS:
                out["kl_data_model"] = _kl_to_data(v_train, self.rbm.free_energy, log_z)
        if self.ais != "none":
            g = torch.Generator().manual_seed(self.seed + 12345)
            base, betas = base_rate_biases(v_train), ais_schedule(self.ais)
            log_z_a, se = ais_log_z(self.rbm, base, betas, self.ais_chains, g)
            out.update(log_z_ais=log_z_a, log_z_se=se, ais_temperatures=len(betas))
            if exact:
                out["ais_minus_exact"] = log_z_a - out["log_z"]
            else:
                out.update(log_likelihood=mean_neg_f - log_z_a, log_z=log_z_a,
                           train_log_likelihood=float((-self.rbm.free_energy(v_train[:10000])).mean()) - log_z_a)
            if self.reverse_ais:
                idx = torch.randperm(len(v_train), generator=g)[: self.ais_chains]
                start, _ = self.rbm.gibbs(v_train[idx.to(v_train.device)], 1000, g)
                log_z_r, se_r = reverse_ais_log_z(self.rbm, base, start, betas, g)
                out.update(log_likelihood_reverse=mean_neg_f - log_z_r, log_z_reverse=log_z_r, log_z_reverse_se=se_r)
        if self.peer_timing:
            from .peers import sklearn_epoch_seconds

            x = bundle.train.x.flatten(1).clamp(0, 1) if self.binarization != "none" else bundle.train.x.flatten(1)
            peer = sklearn_epoch_seconds(x.cpu().numpy(), self.rbm.W.shape[1], self.batch_size, self.lr, self.seed)
            out.update(peer)
            out["rbm_epoch_seconds"] = self.epoch_seconds
            out["epoch_over_sklearn"] = self.epoch_seconds / peer["sklearn_epoch_seconds"]
        return out

    def figures(self, bundle, out_dir) -> list:
        """Filters (the weights of 100 hidden units as images), a grid of model samples (the persistent chains
        after 1,000 more Gibbs steps) and the log-likelihood curve over training when it was monitored."""
        from .figures import rbm_figures

        return rbm_figures(self, bundle, Path(out_dir))


def pseudo_log_likelihood(rbm: RBM, v: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""Stochastic pseudo-log-likelihood per sample (Besag 1975; scikit-learn's ``score_samples``): one random
    bit :math:`i` flipped, :math:`n_v \log\sigma(F(\tilde v) - F(v))`, ``[N]``."""
    idx = torch.randint(v.shape[1], (len(v),), generator=generator).to(v.device)
    flipped = v.clone()
    rows = torch.arange(len(v), device=v.device)
    flipped[rows, idx] = 1 - flipped[rows, idx]
    return v.shape[1] * torch.nn.functional.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v))


def _kl_to_data(v: torch.Tensor, free_energy, log_z: float) -> float:
    """Exact :math:`D_{KL}` from the empirical distribution of the binary rows ``v`` to the model
    (:math:`\\log p = -F - \\log Z`)."""
    states = enumerate_states(v.shape[1], v.device, v.dtype)
    return float(kl_divergence(empirical_distribution(v), (-free_energy(states) - log_z).double()))


class GaussianRBMLearner(Learner):
    """Gaussian–Bernoulli RBM for real-valued inputs (Hinton & Salakhutdinov 2006; Cho, Ilin & Raiko 2011), trained by
    CD-k or PCD; unit variances by default (standardise the data: config ``normalize: true``), learned with
    ``learn_variance``. Exact test log-likelihood (by enumeration of the hidden states) when ``n_hidden <= 20``."""

    name = "grbm"
    paper = "Hinton & Salakhutdinov 2006; Cho, Ilin & Raiko 2011"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, n_hidden: int = 256, sampler: str = "cd",
                 k: int = 1, n_chains: int = 100, lr: float = 0.001, momentum: float = 0.9,
                 weight_decay: float = 0.0, learn_variance: bool = False, lr_schedule: str = "constant",
                 seed: int = 0) -> None:
        super().__init__()
        _check_choice("sampler", sampler, ("cd", "pcd"))
        _check_choice("lr_schedule", lr_schedule, _SCHEDULES)
        _check_common(n_hidden, n_chains, lr, momentum, weight_decay)
        check_range("k (Gibbs steps)", k, 1, 10000)
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        self.rbm = GaussianRBM(self.n_visible, n_hidden, learn_variance=learn_variance, generator=self.gen)
        self.sampler = PCD(self.n_visible, n_hidden, n_chains, k, persistent=sampler == "pcd")
        self.lr, self.momentum, self.weight_decay, self.lr_schedule = lr, momentum, weight_decay, lr_schedule

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = make_optimizer(self.rbm.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)
        self.scheduler = _schedule(self.optimizer, self.lr_schedule, epochs)

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        rbm_update(self.rbm, self.sampler, self.optimizer, x.flatten(1), self.gen)
        return {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`p(h=1|x)`."""
        return self.rbm.p_h(x.flatten(1))

    @torch.no_grad()
    def monitor(self, bundle) -> dict[str, float]:
        """Reconstruction error :math:`\\lVert v - \\mathbb E[v|p(h|v)]\\rVert^2` on up to 2,000 validation samples."""
        ds = bundle.val if bundle.val is not None else bundle.train
        v = ds.x.flatten(1)[:2000]
        return {"recon_error": float(((self.rbm.mean_v(self.rbm.p_h(v)) - v) ** 2).sum(1).mean())}

    @torch.no_grad()
    def final_metrics(self, bundle) -> dict[str, float]:
        if self.rbm.W.shape[1] > EXACT_UNITS:
            return {}
        from .machines import exact_log_z_grbm

        log_z = float(exact_log_z_grbm(self.rbm))
        v = bundle.test.x.flatten(1)
        return {"log_likelihood": float((-self.rbm.free_energy(v)).mean()) - log_z, "exact_ll": 1}


class DBNLearner(Learner):
    """Deep belief net by greedy layer-wise stacking of RBMs (Hinton, Osindero & Teh 2006): the planned epochs are
    split evenly between the layers; layer ``l`` is an RBM (centred PCD, as :class:`RBMLearner`) trained on
    :math:`p(h_{l-1}|\\cdot)` of the frozen layers below. Features: the top layer's :math:`p(h|\\cdot)` after a
    mean-field up-pass. Samples: Gibbs in the top RBM, then a down-pass of :math:`p(v|h)`."""

    name = "dbn"
    paper = "Hinton, Osindero & Teh 2006"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, layers: tuple[int, ...] = (500, 500),
                 k: int = 1, n_chains: int = 100, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 offset_rate: float = 0.01, binarization: str = "stochastic", seed: int = 0) -> None:
        super().__init__()
        _check_choice("binarization", binarization, _BINARIZE)
        if not layers or len(layers) > 8:
            raise ValueError(f"layers must list 1 to 8 hidden-layer sizes, got {list(layers)!r}")
        for n in layers:
            _check_common(n, n_chains, lr, momentum, weight_decay)
        check_range("k (Gibbs steps)", k, 1, 10000)
        check_range("offset_rate", offset_rate, 0, 1)
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        sizes = [self.n_visible, *layers]
        self.rbms = torch.nn.ModuleList(RBM(a, b, generator=self.gen) for a, b in itertools.pairwise(sizes))
        self.samplers = torch.nn.ModuleList(PCD(a, b, n_chains, k) for a, b in itertools.pairwise(sizes))
        self.register_buffer("layer", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros(len(layers), dtype=torch.bool))
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.offset_rate, self.binarization = offset_rate, binarization
        self.epochs = 1

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.epochs = max(epochs, 1)
        self.optimizers = [make_optimizer(r.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)
                           for r in self.rbms]
        self.optimizer = self.optimizers[int(self.layer)]

    def training_state(self) -> dict:
        state = super().training_state()
        state["optimizers"] = [o.state_dict() for o in self.optimizers]
        return state

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        for o, s in zip(self.optimizers, state.get("optimizers", [])):
            o.load_state_dict(s)
        self.optimizer = self.optimizers[int(self.layer)]

    def _up(self, v: torch.Tensor, top: int) -> torch.Tensor:
        for r in self.rbms[:top]:
            v = r.p_h(v)
        return v

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        v0 = binary_rows(x, self.binarization, self.gen)
        ly = int(self.layer)
        rbm, sampler = self.rbms[ly], self.samplers[ly]
        with torch.no_grad():
            v = self._up(v0, ly)
            if ly > 0:
                v = bernoulli(v, self.gen)
        if not bool(self.initialised[ly]):
            init_from_data(rbm, v)
            self.initialised[ly] = True
        rbm_update(rbm, sampler, self.optimizers[ly], v, self.gen, self.offset_rate)
        return {}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        trained = float(self.layer)
        per_layer = self.epochs / len(self.rbms)
        nxt = min(int((epoch + 1) / per_layer), len(self.rbms) - 1)
        if nxt != int(self.layer):
            self.layer.fill_(nxt)
            self.optimizer = self.optimizers[nxt]
        return {"layer": trained}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Top-layer :math:`p(h|\\cdot)` after a mean-field up-pass of the intensities."""
        return self._up(x.flatten(1).clamp(0, 1), len(self.rbms))

    @torch.no_grad()
    def sample(self, n: int, steps: int = 1000) -> torch.Tensor:
        """``n`` samples: ``steps`` Gibbs steps in the top RBM from its persistent chains, then a down-pass of
        :math:`p(\\cdot|h)` (probabilities at the visible layer), ``[n, n_visible]``."""
        top, chains = self.rbms[-1], self.samplers[-1]
        v = chains.v[:n] if bool(chains.ready) else bernoulli(torch.full((n, top.W.shape[0]), 0.5), self.gen)
        v, _ = top.gibbs(v, steps, self.gen)
        for i in range(len(self.rbms) - 2, -1, -1):
            p = self.rbms[i].p_v(v)
            v = p if i == 0 else bernoulli(p, self.gen)
        return v

    def figures(self, bundle, out_dir) -> list:
        """A grid of samples of the DBN."""
        from .figures import sample_grid

        return [sample_grid(self.sample(64), self.in_shape, Path(out_dir) / "samples.png", f"{self.name}: samples")]


class BMLearner(Learner):
    """Boltzmann machine with loops (any symmetric graph: ``full``, ``visible``, ``bipartite``), trained by the
    correlation rule with persistent Gibbs chains for the model phase and clamped Gibbs sweeps for the data phase
    (Ackley, Hinton & Sejnowski 1985; persistent chains after Tieleman 2008); sweeps update the colour classes of
    the graph together. Exact log-likelihood and :math:`D_{KL}(\\text{data}\\,\\|\\,\\text{model})` (by enumeration)
    when the machine has at most 20 units."""

    name = "bm"
    paper = "Ackley, Hinton & Sejnowski 1985"
    locality = _LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int = 10, n_hidden: int = 16, graph: str = "full",
                 sweeps: int = 1, data_sweeps: int = 2, n_chains: int = 64, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 1e-4, lr_schedule: str = "constant", init_std: float = 0.01,
                 binarization: str = "stochastic", seed: int = 0) -> None:
        super().__init__()
        _check_choice("binarization", binarization, _BINARIZE)
        _check_choice("graph", graph, ("full", "visible", "bipartite"))
        _check_choice("lr_schedule", lr_schedule, _SCHEDULES)
        check_range("n_hidden", n_hidden, 0, 65536)
        _check_common(max(n_hidden, 1), n_chains, lr, momentum, weight_decay)
        check_range("sweeps", sweeps, 1, 10000)
        check_range("data_sweeps", data_sweeps, 1, 10000)
        check_range("init_std", init_std, 0)
        if graph == "bipartite" and n_hidden == 0:
            raise ValueError("graph 'bipartite' needs n_hidden >= 1")
        self.in_shape = tuple(in_shape)
        self.n_visible = math.prod(in_shape)
        self.gen = torch.Generator().manual_seed(seed)
        self.bm = BoltzmannMachine(self.n_visible, n_hidden, graph, init_std=init_std, generator=self.gen)
        self.sweeps, self.data_sweeps, self.binarization = sweeps, data_sweeps, binarization
        self.lr, self.momentum, self.weight_decay, self.lr_schedule = lr, momentum, weight_decay, lr_schedule
        self.register_buffer("chains", torch.zeros(n_chains, self.n_visible + n_hidden))
        self.register_buffer("chains_ready", torch.zeros((), dtype=torch.bool))

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = make_optimizer(self.bm.parameters(), "sgd", self.lr, self.momentum, self.weight_decay)
        self.scheduler = _schedule(self.optimizer, self.lr_schedule, epochs)

    def _clamped(self, v: torch.Tensor) -> torch.Tensor:
        x = torch.cat([v, bernoulli(torch.full((len(v), self.bm.n_hidden), 0.5, device=v.device), self.gen)], 1)
        if self.bm.n_hidden:
            for _ in range(self.data_sweeps):
                x = self.bm.sweep(x, self.gen, clamp_visible=True)
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        v = binary_rows(x, self.binarization, self.gen)
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
        return {}

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field hidden activities given the clamped input (5 damped fixed-point iterations); the visible
        units themselves for a machine without hidden units."""
        v = x.flatten(1).clamp(0, 1)
        nv = self.n_visible
        if not self.bm.n_hidden:
            return v
        h = torch.full((len(v), self.bm.n_hidden), 0.5, device=v.device)
        for _ in range(5):
            a = v @ self.bm.W[:nv, nv:] + h @ self.bm.W[nv:, nv:] + self.bm.b[nv:]
            h = 0.5 * h + 0.5 * torch.sigmoid(a)
        return h

    @torch.no_grad()
    def final_metrics(self, bundle) -> dict[str, float]:
        """Exact mean test log-likelihood and :math:`D_{KL}` from the training data's empirical distribution to
        the model (nats), by enumeration (at most 20 units)."""
        n = self.bm.W.shape[0]
        free = {"free_params": int(self.bm.mask.sum().item()) // 2 + n}
        if n > EXACT_UNITS:
            return free
        v_test = binary_rows(bundle.test.x, self.binarization, seed=1)
        v_train = binary_rows(bundle.train.x, self.binarization, seed=0)
        states = enumerate_states(self.n_visible, v_test.device, v_test.dtype)
        log_p = exact_log_marginal_bm(self.bm, states).double()
        return {**free, "log_likelihood": float(log_p[state_codes(v_test)].mean()),
                "kl_data_model": float(kl_divergence(empirical_distribution(v_train), log_p)), "exact_ll": 1}


register("rbm", RBMLearner, summary="restricted Boltzmann machine (centred), CD/PCD/PT, AIS and reverse-AIS likelihood",
         quick={"dataset": "digits", "params": {"n_hidden": 100, "lr": 0.05, "ais": "fast"},
                "protocol": {"probe": {"epochs": 60}}, "epochs": 5, "batch_size": 32})
register("grbm", GaussianRBMLearner, summary="Gaussian-Bernoulli RBM for real-valued inputs, CD/PCD",
         quick={"dataset": "digits", "normalize": True, "params": {"n_hidden": 100, "lr": 0.001},
                "protocol": {"probe": {"epochs": 60}}, "epochs": 5, "batch_size": 32})
register("dbn", DBNLearner, summary="deep belief net: greedily stacked centred RBMs",
         quick={"dataset": "digits", "params": {"layers": [100, 100], "lr": 0.05},
                "protocol": {"probe": {"epochs": 60}}, "epochs": 4, "batch_size": 32})
register("bm", BMLearner, summary="Boltzmann machine with loops (any symmetric graph), persistent Gibbs",
         quick={"dataset": "digits", "params": {"n_hidden": 16, "lr": 0.05}, "protocol": {"probe": {"epochs": 60}},
                "epochs": 3, "batch_size": 32})
