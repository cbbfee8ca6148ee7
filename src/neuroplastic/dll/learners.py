"""Learners of the DLL package: ``dll`` (learned Θ), ``dll-fa`` (fixed random Θ) and ``pc`` (baseline).

Importing this module also registers the ``chartext`` dataset (next-character prediction) and the
``lv_cnn_mnist``/``lv_cnn_cifar`` architectures for the foundation's ``bp``/``fa``/``dfa`` learners.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..learners import register
from ..learners.backprop import make_optimizer, make_scheduler
from ..learners.base import Learner, Locality
from ..nn import archs
from . import chartext  # noqa: F401  (registers the chartext dataset)
from .layers import DLLConv2d, DLLLinear
from .models import DLLRNN, to_dll
from .pc import pc_relax, pc_weight_loss, split_blocks

#: Presets of Lv et al. 2025 (Sec. 5 / App.): the network (its name in :data:`neuroplastic.nn.archs.ARCHS`, or
#: ``rnn`` for DLL's recurrent net), activation, Adam learning rate and the batch size the paper used (a run
#: setting: the default of the config's ``batch_size``, see :meth:`DLLLearner.run_defaults`).
PRESETS: dict[str, dict] = {
    "mlp-mnist": {"net": "mlp", "hidden": (1024, 512, 256), "act": "tanh", "lr": 1e-3, "batch_size": 128},
    "mlp-cifar": {"net": "mlp", "hidden": (4096, 2048, 1024, 256), "act": "tanh", "lr": 8e-5,
                  "batch_size": 64},
    "cnn-mnist": {"net": "lv_cnn_mnist", "act": "tanh", "lr": 5e-5, "batch_size": 64},
    "cnn-cifar": {"net": "lv_cnn_cifar", "act": "tanh", "lr": 5e-5, "batch_size": 64},
    # RNNs: Θ at W's scale — N(0, 1) feedback through 28–64 steps of Θ_h overflows (‖Θ_h‖ ≈ √H per step)
    "rnn-smnist": {"net": "rnn", "hidden": (128,), "output": "last", "lr": 1e-3, "batch_size": 128,
                   "theta_std": "w"},
    "rnn-char": {"net": "rnn", "hidden": (256,), "output": "all", "lr": 1e-3, "batch_size": 64, "theta_std": "w"},
    # small MLP for the embedded 8×8 digits (quick suite and tests; not from the paper, lr set for 8 epochs)
    "mlp-small": {"net": "mlp", "hidden": (128, 64), "act": "tanh", "lr": 3e-3, "batch_size": 32},
}
_FF_NETS = ("mlp", "lv_cnn_mnist", "lv_cnn_cifar")


def _resolve(preset: str, hidden, act, lr, allowed_nets) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    cfg = dict(PRESETS[preset])
    if cfg["net"] not in allowed_nets:
        raise ValueError(f"preset {preset!r} ({cfg['net']}) is not available here; allowed: "
                         f"{', '.join(p for p, c in PRESETS.items() if c['net'] in allowed_nets)}")
    if hidden is not None:
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1 or max(hidden) > 65536:
            raise ValueError(f"hidden must be a non-empty list of layer sizes (ints from 1 to 65536), got {hidden!r}")
        cfg["hidden"] = hidden
    if act is not None:
        archs.activation(act)  # validates the name
        cfg["act"] = act
    if lr is not None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        cfg["lr"] = float(lr)
    return cfg


def preset_network(params: dict) -> str | None:
    """The signature (:func:`neuroplastic.nn.archs.signature`) of the feed-forward net a DLL-package learner builds
    from ``params`` (its preset, with ``hidden`` and ``act`` where set): backprop's ``arch`` of the same net has the
    same signature. None for the recurrent presets and for an unknown preset."""
    preset = params.get("preset", "mlp-mnist")
    if preset not in PRESETS or PRESETS[preset]["net"] not in _FF_NETS:
        return None
    cfg = _resolve(preset, params.get("hidden"), params.get("act"), None, _FF_NETS)
    kw = {"hidden": cfg["hidden"]} if cfg["net"] == "mlp" else {}
    return archs.signature(cfg["net"], act=cfg["act"], **kw)


def build_plain(cfg: dict, in_shape: tuple[int, ...], n_classes: int) -> nn.Sequential:
    """The plain (backprop-trainable) feed-forward net of a resolved preset."""
    kw = {"hidden": cfg["hidden"]} if cfg["net"] == "mlp" else {}
    return archs.build(cfg["net"], in_shape, n_classes, act=cfg["act"], **kw)


def _preset_batch_size(params: dict) -> dict:
    preset = params.get("preset", "mlp-mnist")
    return {"batch_size": PRESETS[preset]["batch_size"]} if preset in PRESETS else {}


class DLLLearner(Learner):
    """Dendritic Localized Learning (Lv et al., ICML 2025): every weight layer learns from its somatic error
    ``ξ = x − u`` (apical target minus basal input) in one top-down sweep with learned feedback Θ.

    ``preset``: ``mlp-mnist`` | ``mlp-cifar`` | ``cnn-mnist`` | ``cnn-cifar`` | ``rnn-smnist`` |
    ``rnn-char`` | ``mlp-small``. ``feedback``: ``learned`` (DLL), ``fixed`` (DLL-FA ablation: Θ a fixed
    random matrix) or ``bp`` (Θ ≡ Wᵀ transported: backprop through the same code, for checks).
    ``theta_std``: Θ ~ N(0, theta_std²) at init; ``"w"`` uses W's U(±1/√fan_in) scale; ``None`` (default)
    takes the preset's value: 1.0 for the MLPs/CNNs (the reference code's value; the paper gives none),
    ``"w"`` for the RNNs. ``theta_lr_scale``: η_Θ / η_W (0.1 in the reference code).
    ``theta_rule``: ``paper`` (ΔΘ = −η δ ξᵀ, the default) or ``flipped`` (+η δ ξᵀ, the sign the reference
    code's FC/conv layers use) — the latter only as a clearly labelled variant.
    Optimizer Adam with linear learning-rate decay to 0 over the run (the paper's setting).
    """

    name = "dll"
    paper = "Lv et al., ICML 2025 (arXiv 2501.09976)"
    locality = Locality(True, True, True, "local somatic error x−u; learned feedback Θ, not Wᵀ; one sweep")

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, preset: str = "mlp-mnist",
                 feedback: str = "learned", hidden: tuple[int, ...] | None = None, act: str | None = None,
                 lr: float | None = None, theta_std: float | str | None = None, theta_lr_scale: float = 0.1,
                 theta_rule: str = "paper", optimizer: str = "adam", schedule: str = "linear", weight_decay: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        cfg = _resolve(preset, hidden, act, lr, _FF_NETS + ("rnn",))
        if not theta_lr_scale >= 0:
            raise ValueError(f"theta_lr_scale must be >= 0, got {theta_lr_scale!r}")
        if theta_std is None:
            theta_std = cfg.get("theta_std", 1.0)
        if theta_std == "w":
            theta_std = None
        elif isinstance(theta_std, str) or not theta_std > 0:
            raise ValueError(f"theta_std must be a positive number or 'w' (W's init scale), got {theta_std!r}")
        if theta_rule not in ("paper", "flipped"):
            raise ValueError(f"unknown theta_rule {theta_rule!r}; allowed: paper, flipped")
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, 1.0)  # validates the name
        if schedule not in ("none", "cosine", "linear", "step"):
            raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")
        self.cfg, self.preset, self.feedback = cfg, preset, feedback
        self.task_seq = cfg["net"] == "rnn" and cfg.get("output") == "all"
        gen = torch.Generator().manual_seed(10_000 + seed)  # Θ's own stream (W init below as BP's)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg["net"] == "rnn":
                if len(in_shape) not in (2, 3):  # [T, C] sequence or [1, H, W] image read row by row
                    raise ValueError(f"rnn presets need [T, C] sequences or [1, H, W] images, got {in_shape}")
                n_in = in_shape[-1]
                self.net = DLLRNN(n_in, cfg["hidden"][0], n_classes, output=cfg["output"], feedback=feedback,
                                  theta_std=theta_std, generator=torch.Generator().manual_seed(seed))
            else:
                self.net = to_dll(build_plain(cfg, in_shape, n_classes), feedback, theta_std, gen)
        for m in self.net.modules():
            if isinstance(m, (DLLLinear, DLLConv2d)):
                m.theta_sign = 1.0 if theta_rule == "paper" else -1.0
        self.opt_cfg = (optimizer, cfg["lr"], theta_lr_scale, weight_decay, schedule)

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """DLL's presets (network, activation, learning rate and batch size of Lv et al. 2025)."""
        return {"preset": list(PRESETS)}

    @classmethod
    def network(cls, params: dict) -> str | None:
        """The net of the preset (:func:`preset_network`)."""
        return preset_network(params)

    @classmethod
    def run_defaults(cls, params: dict) -> dict:
        """The batch size the paper used with the preset (128 for the MNIST MLP and sMNIST RNN, 64 otherwise)."""
        return _preset_batch_size(params)

    # -- protocol -----------------------------------------------------------------------------------
    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        optimizer, lr, scale, wd, schedule = self.opt_cfg
        thetas = [p for n, p in self.named_parameters() if n == "B" or n.endswith(".B")]  # Θ: the family's B
        ids = {id(p) for p in thetas}
        weights = [p for p in self.parameters() if id(p) not in ids]
        groups = [{"params": weights, "lr": lr}]
        if thetas:
            groups.append({"params": thetas, "lr": lr * scale, "weight_decay": 0.0})
        self.optimizer = make_optimizer(groups, optimizer, lr, weight_decay=wd)
        self.scheduler = make_scheduler(self.optimizer, schedule, epochs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task_seq:
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return F.cross_entropy(out, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Forward (basal ``u``), then one top-down DLL sweep (the layers' backward) writing ``−ΔW`` and
        ``−ΔΘ`` into ``.grad``; Adam applies both in the same step. ``ξ_L = −∇_{u_L} CE``."""
        out = self.net(x)
        loss = self._loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        acc = (out.argmax(-1) == y).float().mean().item()
        return {"loss": loss.item(), "acc": acc}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Classification: per sample. Next-character task: per character (``loss`` in nats/char)."""
        if not self.task_seq:
            return super().eval_step(x, y)
        out = self.net(x)
        return {"n": float(y.numel()), "correct": float((out.argmax(-1) == y).sum().item()),
                "loss": F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="sum").item()}

    def diagnostics(self) -> dict[str, float]:
        """Per layer with Θ, the feedback family's alignment keys (:func:`~neuroplastic.nn.feedback.alignment`):
        ``angle_deg/i`` = angle(Θ, W), ``norm_ratio/i`` = ‖Θ‖/‖W‖, ``sign_agree/i``, ``pearson/i`` and their means,
        the same keys as FA, KP and SAL log (the report's alignment figure shows them all)."""
        from ..nn.feedback import alignment

        return alignment(self.net)


class PCLearner(Learner):
    """Predictive coding (Whittington & Bogacz 2017) on the same nets as DLL (presets ``mlp-*``/``cnn-*``).

    ``n_steps`` inference steps of size ``gamma`` on the value nodes, then one Adam step on the local
    weight gradients (:mod:`neuroplastic.dll.pc`). Defaults n_steps=20, gamma=0.1 (W&B 2017 relax to
    equilibrium with a small step; 20 × 0.1 is the usual budget in later PC benchmarks).
    """

    name = "pc"
    paper = "Whittington & Bogacz 2017 (Neural Computation 29:1229)"
    locality = Locality(False, True, False, "local prediction errors, but relaxation uses Wᵀ and a second phase")

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, preset: str = "mlp-mnist",
                 hidden: tuple[int, ...] | None = None, act: str | None = None, lr: float | None = None,
                 n_steps: int = 20, gamma: float = 0.1, optimizer: str = "adam", schedule: str = "linear",
                 weight_decay: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        cfg = _resolve(preset, hidden, act, lr, _FF_NETS)
        if n_steps < 1 or not gamma > 0:
            raise ValueError(f"n_steps must be >= 1 and gamma > 0, got {n_steps}, {gamma}")
        make_optimizer([nn.Parameter(torch.zeros(1))], optimizer, 1.0)
        if schedule not in ("none", "cosine", "linear", "step"):
            raise ValueError(f"unknown schedule {schedule!r}; allowed: none, cosine, linear, step")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = build_plain(cfg, in_shape, n_classes)
        self.blocks = split_blocks(self.net)  # the same modules, grouped (no new parameters)
        self.n_steps, self.gamma, self.preset = n_steps, gamma, preset
        self.opt_cfg = (optimizer, cfg["lr"], weight_decay, schedule)

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """DLL's feed-forward presets."""
        return {"preset": [p for p, c in PRESETS.items() if c["net"] in _FF_NETS]}

    @classmethod
    def network(cls, params: dict) -> str | None:
        """The net of the preset (:func:`preset_network`)."""
        return preset_network(params)

    @classmethod
    def run_defaults(cls, params: dict) -> dict:
        """The batch size of DLL's preset (the same nets and settings as DLL)."""
        return _preset_batch_size(params)

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        optimizer, lr, wd, schedule = self.opt_cfg
        self.optimizer = make_optimizer(self.net.parameters(), optimizer, lr, weight_decay=wd)
        self.scheduler = make_scheduler(self.optimizer, schedule, epochs)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            out0 = self.net(x)
            loss0 = F.cross_entropy(out0, y).item()
        xs = pc_relax(self.blocks, x, y, self.n_steps, self.gamma)
        self.optimizer.zero_grad(set_to_none=True)
        pc_weight_loss(self.blocks, x, xs, y).backward()
        self.optimizer.step()
        return {"loss": loss0, "acc": (out0.argmax(1) == y).float().mean().item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_Q = {"dataset": "digits", "preset": "mlp-small", "epochs": 8, "batch_size": 32}
register("dll", DLLLearner, feedback="learned", quick=_Q,
         summary="DLL: somatic error ξ=x−u, learned feedback Θ, one top-down sweep (Lv et al. 2025)")
register("dll-fa", DLLLearner, feedback="fixed", quick=_Q,
         locality=Locality(True, True, True, "DLL with fixed random Θ (ablation)"),
         summary="DLL-FA ablation: DLL with Θ fixed random (Lv et al. 2025)")
register("pc", PCLearner, quick=dict(_Q, epochs=5, params={"n_steps": 5}),
         summary="predictive coding: iterative inference on local prediction errors (Whittington & Bogacz 2017)")
