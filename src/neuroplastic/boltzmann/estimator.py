"""A scikit-learn-style estimator for Bernoulli RBMs, beside the learner protocol: ``fit``/``partial_fit`` (return
``self``), ``transform``, ``gibbs``, ``sample``, ``score_samples``, ``get_params``/``set_params``; fitted state with
trailing underscores; NumPy arrays or tensors in, the same kind out; CPU or CUDA; picklable.

The training step is :func:`~neuroplastic.boltzmann.machines.rbm_update`, the one the ``rbm`` learner uses.

>>> import numpy as np
>>> X = (np.random.default_rng(0).random((200, 16)) < 0.3).astype(np.float32)
>>> est = BernoulliRBM(n_components=8, n_iter=2, batch_size=20, random_state=0).fit(X)
>>> est.transform(X).shape
(200, 8)
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from ..learners.backprop import make_optimizer
from .learners import pseudo_log_likelihood
from .machines import PCD, RBM, ParallelTempering, init_from_data, rbm_update


class BernoulliRBM:
    r"""Bernoulli RBM estimator (centred by default; PCD, CD or parallel tempering), with scikit-learn's interface
    and names (``n_components``, ``learning_rate``, ``batch_size``, ``n_iter``, ``random_state``;
    ``components_`` is :math:`W^\top` ``[n_components, n_features]``).

    Energy, conditionals and rule: :class:`~neuroplastic.boltzmann.machines.RBM` (centred RBM of Melchior et al.
    2016 when ``centered``), :func:`~neuroplastic.boltzmann.machines.rbm_update`. ``random_state``: an int seeds a
    ``torch.Generator``; ``None`` draws the seed from NumPy's global generator (as scikit-learn does).
    Inputs are values in [0, 1] (binary data, or probabilities used as they are).
    """

    def __init__(self, n_components: int = 256, learning_rate: float = 0.01, batch_size: int = 100,
                 n_iter: int = 10, k: int = 1, sampler: str = "pcd", n_chains: int | None = None,
                 n_temps: int = 10, centered: bool = True, offset_rate: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, random_state: int | None = None, device: str = "cpu",
                 verbose: bool = False) -> None:
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.k = k
        self.sampler = sampler
        self.n_chains = n_chains
        self.n_temps = n_temps
        self.centered = centered
        self.offset_rate = offset_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- scikit-learn's parameter protocol ------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as scikit-learn's ``get_params``."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params: Any) -> BernoulliRBM:
        """Set constructor arguments (unknown names raise ``ValueError`` naming them and the allowed ones)."""
        bad = [p for p in params if p not in self._param_names()]
        if bad:
            raise ValueError(f"unknown parameter(s) {', '.join(bad)} for BernoulliRBM; allowed: "
                             f"{', '.join(self._param_names())}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"BernoulliRBM({', '.join(changed)})"

    # -- pickling (torch generators are not picklable: keep their state) ---------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for k in ("generator_", "optimizer_"):
            state.pop(k, None)
        if hasattr(self, "generator_"):
            state["_generator_state"] = self.generator_.get_state()
            state["_optimizer_state"] = self.optimizer_.state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gen_state = state.pop("_generator_state", None)
        opt_state = state.pop("_optimizer_state", None)
        self.__dict__.update(state)
        if gen_state is not None:
            self.generator_ = torch.Generator()
            self.generator_.set_state(gen_state)
            self.optimizer_ = self._optimizer()
            self.optimizer_.load_state_dict(opt_state)

    # -- fitting --------------------------------------------------------------------------------------------
    def _dev(self) -> torch.device:
        return torch.device(self.device)

    def _validate(self) -> None:
        checks = [("n_components", self.n_components, 1), ("batch_size", self.batch_size, 1), ("n_iter", self.n_iter, 0),
                  ("k", self.k, 1), ("n_temps", self.n_temps, 2)]
        for name, v, lo in checks:
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.sampler not in ("cd", "pcd", "pt"):
            raise ValueError(f"unknown sampler {self.sampler!r}; allowed: cd, pcd, pt")
        if self._dev().type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} is not available on this machine")

    def _as_tensor(self, X: Any) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X)
        if t.dim() != 2:
            raise ValueError(f"X must be 2-D [n_samples, n_features], got shape {tuple(t.shape)}")
        t = t.to(self._dev(), torch.float32)
        if hasattr(self, "n_features_in_") and t.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {t.shape[1]} features, the RBM was fitted with {self.n_features_in_}")
        if t.numel() and (bool((t < 0).any()) or bool((t > 1).any()) or not bool(torch.isfinite(t).all())):
            raise ValueError("X must hold values in [0, 1]")
        return t

    @staticmethod
    def _like(out: torch.Tensor, X: Any) -> Any:
        return out if isinstance(X, torch.Tensor) else out.detach().cpu().numpy()

    def _optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.rbm_.parameters(), "sgd", self.learning_rate, self.momentum, self.weight_decay)

    def _start(self, v: torch.Tensor) -> None:
        self._validate()
        seed = self.random_state if self.random_state is not None else int(np.random.randint(2**31 - 1))
        dev = self._dev()
        self.generator_ = torch.Generator(device="cpu").manual_seed(int(seed))
        n_features = v.shape[1]
        self.rbm_ = RBM(n_features, self.n_components, generator=self.generator_).to(dev)
        chains = self.n_chains or self.batch_size
        self.sampler_ = (ParallelTempering(n_features, self.n_components, chains, self.k, self.n_temps)
                         if self.sampler == "pt" else
                         PCD(n_features, self.n_components, chains, self.k, persistent=self.sampler == "pcd")).to(dev)
        self.optimizer_ = self._optimizer()
        self.n_features_in_ = n_features
        init_from_data(self.rbm_, v, self.centered)
        self.n_iter_ = 0

    def _batch(self, v: torch.Tensor) -> None:
        rbm_update(self.rbm_, self.sampler_, self.optimizer_, v, self.generator_,
                   self.offset_rate if self.centered else 0.0)

    def fit(self, X: Any, y: Any = None) -> BernoulliRBM:
        """Fit from scratch: ``n_iter`` passes over ``X`` ``[n_samples, n_features]`` in shuffled batches."""
        for attr in ("n_features_in_", "rbm_"):
            self.__dict__.pop(attr, None)
        v = self._as_tensor(X)
        self._start(v)
        for it in range(self.n_iter):
            order = torch.randperm(len(v), generator=self.generator_).to(v.device)
            for i in range(0, len(v), self.batch_size):
                self._batch(v[order[i:i + self.batch_size]])
            self.n_iter_ = it + 1
            if self.verbose:
                print(f"[BernoulliRBM] iteration {it + 1}, pseudo-likelihood = {self.score_samples(X).mean():.2f}")
        return self

    def partial_fit(self, X: Any, y: Any = None) -> BernoulliRBM:
        """One update on the batch ``X`` (scikit-learn's ``partial_fit``); the first call initialises the model."""
        v = self._as_tensor(X)
        if not hasattr(self, "rbm_"):
            self._start(v)
        self._batch(v)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "rbm_"):
            raise RuntimeError("this BernoulliRBM is not fitted yet: call fit or partial_fit first")

    @property
    def components_(self) -> np.ndarray:
        """:math:`W^\\top`, ``[n_components, n_features]``."""
        self._check_fitted()
        return self.rbm_.W.detach().T.cpu().numpy()

    @property
    def intercept_hidden_(self) -> np.ndarray:
        """Hidden biases of the equivalent uncentred RBM, :math:`c - W^\\top\\mu`."""
        self._check_fitted()
        return self.rbm_.uncentred()[2].detach().cpu().numpy()

    @property
    def intercept_visible_(self) -> np.ndarray:
        """Visible biases of the equivalent uncentred RBM, :math:`b - W\\lambda`."""
        self._check_fitted()
        return self.rbm_.uncentred()[1].detach().cpu().numpy()

    @torch.no_grad()
    def transform(self, X: Any) -> Any:
        """:math:`p(h=1|X)`, ``[n_samples, n_components]``."""
        self._check_fitted()
        return self._like(self.rbm_.p_h(self._as_tensor(X)), X)

    @torch.no_grad()
    def gibbs(self, v: Any) -> Any:
        """One Gibbs step from ``v`` (scikit-learn's ``gibbs``): a binary sample ``[n_samples, n_features]``."""
        self._check_fitted()
        out, _ = self.rbm_.gibbs(self._as_tensor(v), 1, self.generator_)
        return self._like(out, v)

    @torch.no_grad()
    def sample(self, n_samples: int = 100, n_steps: int = 1000) -> np.ndarray:
        """``n_samples`` model samples after ``n_steps`` Gibbs steps from the persistent chains (or uniform noise)."""
        self._check_fitted()
        start = self.sampler_.v if self.sampler_.v.dim() == 2 else self.sampler_.v[0]
        idx = torch.randint(len(start), (n_samples,), generator=self.generator_).to(start.device)
        out, _ = self.rbm_.gibbs(start[idx], n_steps, self.generator_)
        return out.cpu().numpy()

    @torch.no_grad()
    def score_samples(self, X: Any) -> Any:
        """Stochastic pseudo-log-likelihood per sample (one random bit flipped), as scikit-learn's."""
        self._check_fitted()
        return self._like(pseudo_log_likelihood(self.rbm_, self._as_tensor(X), self.generator_), X)

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)
