r"""Registered learners ``snn-mode``, ``snn-fullrank`` and ``rnn-mode`` (Lin & Huang 2024).

One class, :class:`ModeNetLearner`, serves the three variants and both task kinds:

* **classification** (images ``[N, C, H, W]`` in [0, 1], or vectors ``[N, D]``): each sample is
  Bernoulli rate-coded for ``steps`` steps with the learner's own generator (:func:`.encoders.bernoulli_encode`),
  run through the :class:`~.mode_rnn.ModeRNN`, and read out as
  :math:`\text{logits} = W_\text{out}\max_t r_t + b`, trained with cross-entropy on the logits (the
  reference code's softmax-before-cross-entropy is not copied).
* **sequence** (generated tasks ``x`` ``[N, T, C]``, targets ``y`` ``[N, T]``; e.g.
  :mod:`neuroplastic.data.context`): per-step linear output :math:`o_t = W_\text{out} r_t + b`, loss
  :math:`\sqrt{\text{mean}_{n,t}(o_t - y_t)^2}` (the paper's root of the summed squared error, as a
  mean); ``eval_step`` reports decision accuracy (sign of the output averaged over the decision window,
  :func:`neuroplastic.data.context.decisions`) as ``correct`` and the per-trial MSE as ``loss``.

Defaults follow Lin & Huang (2024, arXiv 2310.14621, Phys. Rev. E 110:024306): :math:`N = 200`,
:math:`P = 3`, :math:`T = 50`, :math:`\Delta t = 2` ms, :math:`\tau_s = 10`, :math:`\tau_m = 20`,
:math:`\tau_r = 2`, :math:`\tau_d = 30` ms, threshold 1, refractory 10 ms, fast sigmoid slope 25,
Adam lr :math:`10^{-3}`, gradient-norm clip 20.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..energy import DEFAULT_ENERGY, energy_pj
from ..learners.backprop import make_optimizer, make_scheduler
from ..learners.base import Learner, Locality, check_loss
from .encoders import bernoulli_encode, constant_current, rate_encode
from .energy import count_ops
from .mode_rnn import ModeRNN, _Threads

__all__ = ["ModeNetLearner"]

_LOCALITY = Locality(False, False, False, "BPTT with surrogate gradients: exact transposed weights, a "
                     "global error sent back through time, a separate backward phase")
_TASKS = ("auto", "classification", "sequence")
_CODES = ("bernoulli16", "rate", "current")


class ModeNetLearner(Learner):
    """Spiking (or rate) recurrent network with mode-decomposed or full-rank recurrence, trained by BPTT.

    See the module docstring for tasks, readouts and defaults. ``rank``: ``mode`` | ``full``;
    ``neuron``: ``lif`` | ``tanh``; ``task``: ``auto`` (images/vectors → classification, ``[T, C]``
    samples → sequence) | ``classification`` | ``sequence``; ``code``: input code for classification
    (``bernoulli16`` default, ``rate`` = :func:`neuroplastic.data.transforms.rate_encode`, ``current``);
    ``fast``: hand-written BPTT (else the autograd reference loop); ``prune_ks``: numbers of top modes
    kept in the pruning curve of :meth:`final_metrics` (default 1..P, at most 8 values);
    ``eval_limit``: test samples used by :meth:`final_metrics` (energy, firing, pruning).
    ``threads``: intra-op CPU threads while this learner computes (``None``: leave the caller's setting).
    The default 1 is deliberate: a time step works on small ``[B, N]`` tensors, and on a shared machine
    every multi-threaded op waits for a descheduled OpenMP worker — measured here on 2 busy cores, a quick
    digits step took 7 ms with one thread and 206 ms with two.
    """

    name = "snn-mode"
    paper = "Lin & Huang 2024, Phys. Rev. E 110:024306 (arXiv 2310.14621)"
    locality = _LOCALITY

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, rank: str = "mode", neuron: str = "lif",
                 task: str = "auto", n_hidden: int = 200, n_modes: int = 3, steps: int = 50, dt: float = 2.0,
                 tau_syn: float = 10.0, tau_mem: float = 20.0, tau_rise: float = 2.0, tau_decay: float = 30.0,
                 threshold: float = 1.0, refractory: float = 10.0, slope: float = 25.0,
                 surrogate: str = "fast_sigmoid", code: str = "bernoulli16", optimizer: str = "adam",
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float | None = 20.0,
                 schedule: str = "none", fast: bool = True, prune_ks: tuple[int, ...] | None = None,
                 eval_limit: int = 2000, threads: int | None = 1, seed: int = 0) -> None:
        super().__init__()
        in_shape = tuple(int(d) for d in in_shape)
        if task not in _TASKS:
            raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")
        if code not in _CODES:
            raise ValueError(f"code must be one of {', '.join(_CODES)}, got {code!r}")
        if task == "auto":
            task = "sequence" if len(in_shape) == 2 else "classification"
        if task == "sequence" and len(in_shape) != 2:
            raise ValueError(f"task='sequence' needs samples shaped [T, C], got in_shape={in_shape}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
        if not (lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if schedule not in ("none", "cosine", "linear", "step"):
            raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, lr)  # validate the name early
        self.task, self.code, self.steps, self.seed = task, code, steps, int(seed)
        self.in_shape, self.n_classes = in_shape, n_classes
        n_in = in_shape[-1] if task == "sequence" else math.prod(in_shape)
        n_out = 1 if task == "sequence" else n_classes
        g = torch.Generator().manual_seed(self.seed)
        self.net = ModeRNN(n_in, n_hidden, n_modes, rank, neuron, dt, tau_syn, tau_mem, threshold, refractory,
                           tau_rise, tau_decay, slope, surrogate, fast, g)
        self.readout = nn.Linear(n_hidden, n_out)
        with torch.no_grad():  # W_out ~ N(0, 1/N_out) (Lin & Huang 2024)
            self.readout.weight.copy_(torch.randn(n_out, n_hidden, generator=g) / math.sqrt(n_out))
            self.readout.bias.zero_()
        self.name = {("mode", "lif"): "snn-mode", ("full", "lif"): "snn-fullrank",
                     ("mode", "tanh"): "rnn-mode", ("full", "tanh"): "rnn-fullrank"}[(rank, neuron)]
        self.opt_cfg = (optimizer, lr, weight_decay, schedule)
        self.grad_clip = grad_clip
        self.prune_ks = tuple(prune_ks) if prune_ks is not None else None
        self.eval_limit = int(eval_limit)
        self.encode_gen = torch.Generator().manual_seed(self.seed + 1)
        self.eval_gen = torch.Generator().manual_seed(self.seed + 2)
        self._last_rate = float("nan")
        if threads is not None and not (isinstance(threads, int) and threads >= 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads

    # ----------------------------------------------------------------------------------------------
    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        optimizer, lr, wd, schedule = self.opt_cfg
        self.optimizer = make_optimizer(self.parameters(), optimizer, lr, weight_decay=wd)
        self.scheduler = make_scheduler(self.optimizer, schedule, epochs)

    def _gen(self, attr: str, device: torch.device) -> torch.Generator:
        g = getattr(self, attr)
        if g.device.type != device.type:  # move the stream to the data's device, seeded once
            offset = 1 if attr == "encode_gen" else 2
            g = torch.Generator(device=device).manual_seed(self.seed + offset)
            setattr(self, attr, g)
        return g

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; the input-code generators are first moved to the weights' device."""
        dev = next(self.parameters()).device
        if dev.type != "cpu":
            self._gen("encode_gen", dev)
            self._gen("eval_gen", dev)
        super().load_training_state(state)

    def encode(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        """Inputs as a sequence ``[T, B, n_in]``: rate code of images/vectors, or ``x`` transposed for
        sequence tasks."""
        if self.task == "sequence":
            if x.dim() != 3:
                raise ValueError(f"{self.name}: sequence inputs must be [N, T, C], got {tuple(x.shape)}")
            return x.transpose(0, 1).float()
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"{self.name}: expected samples of shape {self.in_shape}, got {tuple(x.shape[1:])}")
        flat = x.reshape(len(x), -1).float()
        g = self._gen("encode_gen" if train else "eval_gen", x.device)
        if self.code == "bernoulli16":
            return bernoulli_encode(flat, self.steps, g)
        if self.code == "rate":
            return rate_encode(flat, self.steps, g)
        return constant_current(flat, self.steps)

    def outputs(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Network outputs for an encoded sequence: ``(scores, spikes, r)`` with scores ``[B, C]``
        (classification) or ``[B, T]`` (sequence)."""
        r, s = self.net(xs)
        if self.task == "classification":
            return self.readout(r.amax(0)), s, r
        return self.readout(r).squeeze(-1).t(), s, r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(self.encode(x, train=self.training))[0]

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(out, y)
        if y.shape != out.shape:
            raise ValueError(f"{self.name}: targets must be [N, T] = {tuple(out.shape)}, got {tuple(y.shape)}")
        return (out - y).square().mean().sqrt()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with _Threads(self.threads):
            return self._train_step(x, y)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        out, s, _ = self.outputs(self.encode(x, train=True))
        loss = self._loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)
        self.optimizer.step()
        metrics = {"loss": check_loss(loss.detach(), self.name, "in train_step")}
        if self.task == "classification":
            metrics["acc"] = (out.argmax(1) == y).float().mean().item()
        if s is not None:
            self._last_rate = s.mean().item() / (self.net.dt * 1e-3)
            metrics["rate_hz"] = self._last_rate
        return metrics

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, n_classes]`` (classification) or the per-step output ``[N, T]`` (sequence)."""
        with _Threads(self.threads):
            return self.outputs(self.encode(x, train=False))[0]

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        if self.task == "classification":
            return super().eval_step(x, y)
        from ..data.context import decisions

        out = self.predict(x)
        mse = (out - y).square().mean(1)
        return {"n": float(len(y)), "correct": float(decisions(out, y).sum().item()), "loss": float(mse.sum())}

    def diagnostics(self) -> dict[str, float]:
        d = {}
        if self.net.neuron == "lif":
            d["rate_hz"] = self._last_rate
        if self.net.rank == "mode":
            d["lambda_abs_max"] = float(self.net.lam.detach().abs().max())
        return d

    # ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_split(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> dict[str, Any]:
        """Accuracy (or decision accuracy), spike counts and input spikes over a split, per sample."""
        was = self.training
        self.eval()
        n = correct = 0
        hidden_spikes = input_spikes = 0.0
        spikes_per_neuron = torch.zeros(self.net.n_hidden, device=x.device)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            xs = self.encode(xb, train=False)
            out, s, _ = self.outputs(xs)
            if self.task == "classification":
                correct += int((out.argmax(1) == yb).sum())
            else:
                from ..data.context import decisions

                correct += int(decisions(out, yb).sum())
            n += len(xb)
            input_spikes += float(xs.sum())
            if s is not None:
                hidden_spikes += float(s.sum())
                spikes_per_neuron += s.sum((0, 1))
        self.train(was)
        return {"acc": correct / max(n, 1), "n": n, "hidden_spikes": hidden_spikes / max(n, 1),
                "input_spikes": input_spikes / max(n, 1), "spikes_per_neuron": spikes_per_neuron / max(n, 1)}

    @torch.no_grad()
    def pruned_accuracy(self, x: torch.Tensor, y: torch.Tensor, k: int) -> float:
        """Accuracy with only the top-``k`` modes by importance :math:`\\tau_\\mu` kept (the others'
        :math:`\\lambda_\\mu` set to 0); the weights are restored afterwards."""
        if self.net.rank != "mode":
            raise ValueError("pruning needs rank='mode'")
        order = torch.argsort(self.net.mode_importance(), descending=True)
        saved = self.net.lam.detach().clone()
        try:
            self.net.lam[order[k:]] = 0.0
            self.eval_gen.manual_seed(self.seed + 3)  # same input spikes for every k
            return self.evaluate_split(x, y)["acc"]
        finally:
            self.net.lam.copy_(saved)

    def figures(self, bundle, out_dir) -> list:
        """Raster, mode trajectories, |λ| spectrum and pruning curve (:mod:`neuroplastic.spiking.analysis`),
        on a few test samples so the bench harness stays quick."""
        from pathlib import Path

        from .analysis import write_figures

        write_figures(self, bundle, out_dir, trials=min(100, len(bundle.test)), limit=min(500, len(bundle.test)))
        return sorted(Path(out_dir).glob("*.png"))

    def final_metrics(self, bundle: Any) -> dict[str, Any]:
        """Energy proxy per inference, firing statistics, mode spectrum and the pruning curve, measured on
        the first ``eval_limit`` test samples."""
        with _Threads(self.threads):
            return self._final_metrics(bundle)

    def _ops(self, steps: int, input_spikes: float | None, hidden_spikes: float, spiking: bool | None = None):
        """Event-driven operations per inference (:func:`neuroplastic.spiking.energy.count_ops`) for the given mean
        spike counts; ``spiking=False`` gives the same network run as a rate network."""
        net = self.net
        spiking = net.neuron == "lif" if spiking is None else spiking
        binary_in = self.task == "classification" and self.code != "current"
        return count_ops(steps=steps,
                         n_in=net.n_in, n_hidden=net.n_hidden, n_out=self.readout.out_features,
                         n_modes=net.n_modes if net.rank == "mode" else None, spiking=spiking,
                         input_spikes=input_spikes if binary_in else None, hidden_spikes=hidden_spikes,
                         per_step_readout=self.task == "sequence")

    @torch.no_grad()
    def count_inference_ops(self, x: torch.Tensor):
        """Spikes enter the mode space through the filter (module docstring of :mod:`neuroplastic.spiking.energy`),
        so the count comes from the actual spikes of ``x``'s inferences, not from the simulation's products."""
        was = self.training
        self.eval()
        try:
            xs = self.encode(x, train=False)
            _, s, _ = self.outputs(xs)
        finally:
            self.train(was)
        steps = self.steps if self.task == "classification" else x.shape[1]
        return self._ops(steps, float(xs.sum()) / len(x), float(s.sum()) / len(x) if s is not None else 0.0)

    def _final_metrics(self, bundle: Any) -> dict[str, Any]:
        test = bundle.test
        x, y = test.x[:self.eval_limit], test.y[:self.eval_limit]
        net = self.net
        self.eval_gen.manual_seed(self.seed + 3)
        ev = self.evaluate_split(x, y)
        T = self.steps if self.task == "classification" else x.shape[1]
        spiking = net.neuron == "lif"
        binary_in = self.task == "classification" and self.code != "current"
        ops = self._ops(T, ev["input_spikes"], ev["hidden_spikes"])
        rate_ops = self._ops(T, None, 0.0, spiking=False)
        out: dict[str, Any] = {
            "final_eval_acc": ev["acc"], "final_eval_n": ev["n"],
            "recurrent_params": net.n_recurrent_params(),
            "energy_ac_per_inference": ops.ac, "energy_mac_per_inference": ops.mac,
            # arithmetic only (no weight reads), as recorded since the first wave; energy_inference_pj adds the reads
            "energy_pj_per_inference": energy_pj(ops.mac, ops.ac, 0.0),
            "energy_rate_equiv_pj_per_inference": energy_pj(rate_ops.mac, rate_ops.ac, 0.0),
            "energy_pj_per_op": DEFAULT_ENERGY.source,
        }
        if spiking:
            per_neuron_hz = ev["spikes_per_neuron"] / (T * net.dt * 1e-3)
            out.update({"rate_hz_mean": float(per_neuron_hz.mean()), "rate_hz_median": float(per_neuron_hz.median()),
                        "rate_hz_max": float(per_neuron_hz.max()),
                        "silent_fraction": float((ev["spikes_per_neuron"] == 0).float().mean()),
                        "spikes_per_inference": ev["hidden_spikes"]})
            if binary_in:
                out["input_spikes_per_inference"] = ev["input_spikes"]
        if net.rank == "mode":
            imp = net.mode_importance()
            order = torch.argsort(imp, descending=True)
            out["mode_importance_sorted"] = [round(float(v), 6) for v in imp[order]]
            out["lambda_abs_sorted"] = [round(float(v), 6) for v in net.lam.detach().abs().sort(descending=True).values]
            P = net.n_modes
            ks = self.prune_ks or tuple(sorted({1, 2, 3, 5, 10, 20, 50, P} & set(range(1, P + 1))))
            curve = {int(k): self.pruned_accuracy(x, y, int(k)) for k in ks if 1 <= k <= P}
            out["prune_curve"] = curve
            for k, v in curve.items():
                out[f"prune_top{k}_acc"] = v
        return out


from ..learners import register

register("snn-mode", ModeNetLearner, rank="mode", neuron="lif",
         summary="spiking RNN, recurrent W = ξ_in diag(λ) ξ_outᵀ (P modes), BPTT + surrogate gradients",
         quick=[{"dataset": "digits", "params": {"n_hidden": 64, "n_modes": 3, "steps": 20, "lr": 3e-3},
                 "epochs": 8, "batch_size": 32},
                {"dataset": "context-mini", "params": {"n_hidden": 64, "n_modes": 3, "lr": 3e-3},
                 "epochs": 3, "batch_size": 32}])
register("snn-fullrank", ModeNetLearner, rank="full", neuron="lif",
         summary="spiking RNN with full-rank trained recurrent weights (N² parameters), BPTT + surrogate",
         quick={"dataset": "digits", "params": {"n_hidden": 64, "steps": 20, "lr": 3e-3},
                "epochs": 8, "batch_size": 32})
register("rnn-mode", ModeNetLearner, rank="mode", neuron="tanh",
         summary="rate (tanh) RNN with the same mode decomposition, BPTT",
         quick={"dataset": "digits", "params": {"n_hidden": 64, "n_modes": 3, "steps": 20, "lr": 3e-3},
                "epochs": 8, "batch_size": 32})
