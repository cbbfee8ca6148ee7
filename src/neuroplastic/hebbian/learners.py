"""Registered Hebbian learners: ``hebbian-cnn`` (any preset), ``hebbian-<preset>`` shortcuts, and the
``hebbian-cnn-bp`` baseline (the same network trained end to end by backprop).

Protocol (Journé et al., ICLR 2023; Nimmo & Mondragón 2025): one unsupervised epoch in which every Hebbian
layer learns at once from a single forward pass per batch; then the network is frozen and the trainer fits
the standard linear probe (:mod:`neuroplastic.probe`) on cached features.
"""

from __future__ import annotations

import torch
from torch import nn

from ..learners.backprop import cross_entropy_step
from ..learners.base import Learner, Locality
from . import models

__all__ = ["HebbianCNN", "HebbianCNNBP"]

_HEBB_LOCALITY = Locality(True, True, True,
                          "local rule: each layer's pre- and post-synaptic activity in one forward pass, no error")


class HebbianCNN(Learner):
    r"""Hebbian CNN trained by unsupervised local rules, read out by a linear probe.

    Each batch: one forward pass with every Hebbian layer ``plastic``; each layer writes :math:`-\Delta w`
    (normalised by :math:`\max|\Delta w|`, times the rule's per-unit rate) into ``weight.grad`` and an SGD
    optimizer with the layer's base rate :math:`\eta_0` (param group per layer) applies
    :math:`w \leftarrow w + \eta_0\,\Delta w`. Dale's-law sign constraints are re-imposed after each step.

    Args:
        preset: an architecture preset of :mod:`neuroplastic.hebbian.models` (default ``softhebb``).
        width: channel multiplier (1 = the paper's widths).
        rule: override the rule of every layer (``hard``, ``softhebb``, ``bcm``, ``krotov``, ``oja``, ``hebb``).
        cosine, dog: override the cosine activation / surround inhibition of the preset.
        dale: fraction of excitatory inputs for a Dale's-law constraint (``None``: off).
        lr_scale: multiplies every layer's base rate.
        out_norm: standardise the output features per channel with running statistics gathered during the
            unsupervised epoch (``BatchNorm(affine=False)``; default: the preset's — on for the cosine/BCM
            presets, whose features are cosines of order 0.01 that a linear probe trained by Adam at 1e-3
            would otherwise need tens of thousands of steps to scale up).
        update_dtype: precision of the update's correlation product, ``float32`` or ``bfloat16``
            (:func:`~neuroplastic.hebbian.layers.update_dtype`; default: the weights' float32). ``bfloat16``
            halves the update's GEMM time on CPUs with AVX512-BF16/AMX; weights, forward pass and
            normalisation stay float32.

    The protocol around the learner is not its code (config key ``protocol``): ZCA whitening of colour inputs is
    a data stage fitted on the training split (``input_zca`` says whether the preset's paper whitens, the default
    of ``protocol.zca``); random flips of the training images are ``protocol.hflip``; the probe's epochs and flips
    are ``protocol.probe`` (default epochs: the preset's, 50 for SoftHebb and 20 for Nimmo's).
    """

    name = "hebbian-cnn"
    paper = "Nimmo & Mondragón 2025 (arXiv 2501.17266); Journé et al., ICLR 2023 (SoftHebb)"
    locality = _HEBB_LOCALITY
    supervised = False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, preset: str = "softhebb", width: float = 1.0,
                 rule: str | None = None, cosine: bool | None = None, dog: bool | None = None,
                 dale: float | None = None, lr_scale: float = 1.0, out_norm: bool | None = None,
                 update_dtype: str | None = None, seed: int = 0) -> None:
        super().__init__()
        info = models.preset_info(preset)
        if not lr_scale > 0:
            raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
        self.preset = preset
        self.in_shape = tuple(in_shape)
        self.n_classes = n_classes
        self.net = models.build(info, self.in_shape, width=width, rule=rule, cosine=cosine, dog=dog, dale=dale,
                                update_dtype=update_dtype, seed=seed)
        self.lr_scale = float(lr_scale)
        use_norm = info.out_norm if out_norm is None else bool(out_norm)
        c = self.net.out_shape[0]
        self.out_bn = (nn.BatchNorm1d(c, affine=False) if len(self.net.out_shape) == 1
                       else nn.BatchNorm2d(c, affine=False)) if use_norm else None
        self.probe_epochs = int(info.probe_epochs)
        self.probe_standardize = bool(info.probe_standardize)
        #: the preset's paper whitens colour inputs (the default of the ZCA data stage, ``protocol.zca``)
        self.input_zca = bool(info.zca and len(self.in_shape) == 3 and self.in_shape[0] == 3)

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """Architecture presets of :mod:`neuroplastic.hebbian.models`."""
        return {"preset": sorted(models.PRESETS)}

    @classmethod
    def run_defaults(cls, params: dict) -> dict:
        """One unsupervised epoch (every recipe of both papers) at the preset's batch size (10 SoftHebb, 64 Nimmo)."""
        return {"epochs": 1, "batch_size": models.preset_info(params.get("preset", "softhebb")).batch_size}

    # ----------------------------------------------------------------------------------------------
    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        groups = [{"params": [m.weight], "lr": lr * self.lr_scale} for _, m, lr in self.net.hebb_layers()]
        self.optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=0.0)
        self.scheduler = None

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        """One local update of every Hebbian layer (``y`` is ignored: unsupervised)."""
        if self.optimizer is None:
            raise RuntimeError(f"{self.name}: call configure() before train_step()")
        self.optimizer.zero_grad(set_to_none=True)
        self.net.set_plastic(True)
        try:
            with torch.no_grad():
                out = self.net(x)
                if self.out_bn is not None:
                    self.out_bn(out)  # running statistics only
        finally:
            self.net.set_plastic(False)
        self.optimizer.step()
        for _, m, _ in self.net.hebb_layers():
            m.constrain_()
        return {}

    def figures(self, bundle, out_dir) -> list:
        """First-layer filters, receptive fields (projected gradient ascent, 100 steps here; 500 in the
        paper and in ``neuroplastic analyze hebbian``), UMAP if available, winner frequencies."""
        from .viz import report_figures

        made = report_figures(self, bundle, out_dir, rf_steps=100, max_points=1000)
        return [p for p in made.values() if p is not None]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen representation: the last stage's pooled output, flattened ``[N, D]``."""
        self.net.set_plastic(False)
        out = self.net(x)
        if self.out_bn is not None:
            out = self.out_bn(out)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def diagnostics(self) -> dict[str, float]:
        """Per Hebbian layer: fraction of dead units (never won) and mean weight norm."""
        out = {}
        for i, (_, m, _) in enumerate(self.net.hebb_layers()):
            if float(m.positions_seen) > 0:
                out[f"dead_frac_{i}"] = float((m.win_counts == 0).float().mean())
            out[f"wnorm_{i}"] = float(m.weight.detach().flatten(1).norm(dim=1).mean())
        return out

    def final_metrics(self, bundle) -> dict[str, float]:
        """Winner statistics of the unsupervised epoch (dead units per layer, largest win share)."""
        out = {}
        for i, (_, m, _) in enumerate(self.net.hebb_layers()):
            f = m.winner_frequency()
            out[f"dead_units_{i}"] = int((m.win_counts == 0).sum())
            out[f"max_win_share_{i}"] = float(f.max()) if len(f) else 0.0
        return out


class HebbianCNNBP(Learner):
    """The same network as :class:`HebbianCNN` (same preset and widths) trained end to end by backprop.

    Head ``Dropout(0.5) → Linear`` as in the probe; Adam 1e-3, cross-entropy (Nimmo & Mondragón 2025's
    baseline). The Hebbian layers run with ``plastic`` off, i.e. as ordinary differentiable convolutions.
    """

    name = "hebbian-cnn-bp"
    paper = "Nimmo & Mondragón 2025 (backprop baseline of the same net)"
    locality = Locality(False, False, False, "exact gradient: transports W^T and a global error in a second phase")
    supervised = True

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, preset: str = "softhebb", width: float = 1.0,
                 cosine: bool | None = None, dog: bool | None = None, lr: float = 1e-3, dropout: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__()
        if not lr > 0 or not 0 <= dropout < 1:
            raise ValueError(f"need lr > 0 and 0 <= dropout < 1, got lr={lr}, dropout={dropout}")
        self.preset = preset
        self.net = models.build(preset, tuple(in_shape), width=width, cosine=cosine, dog=dog, seed=seed)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(self.net.out_features, n_classes))
        self.lr = float(lr)

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """Architecture presets of :mod:`neuroplastic.hebbian.models`."""
        return {"preset": sorted(models.PRESETS)}

    @classmethod
    def exact(cls, params: dict) -> bool:
        """Always exact: plain backprop through the Hebbian network's layers."""
        return True

    @classmethod
    def run_defaults(cls, params: dict) -> dict:
        """Nimmo & Mondragón's backprop baseline: 20 epochs at batch 64."""
        return {"epochs": 20, "batch_size": 64}

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        self.scheduler = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return cross_entropy_step(self.optimizer, self(x), y)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the convolutional trunk (for pictures)."""
        return self.net(x).flatten(1)


from ..learners import register

# Quick suite: the presets at their default (input-adapted) widths on the digits, probe 20 epochs; the
# SoftHebb preset keeps its batch of 10. `hebbian-cnn` is `hebbian-softhebb` under its generic name, so it
# is not run twice.
_QUICK = {"dataset": "digits", "epochs": 1, "batch_size": 32, "protocol": {"probe": {"epochs": 20}}}
register("hebbian-cnn", HebbianCNN, summary="Hebbian CNN (preset: softhebb, optimal, optimal-ref, hard, soft, bcm, "
         "depthwise, residual, stl10, krotov) + linear probe")
register("hebbian-cnn-bp", HebbianCNNBP, summary="the Hebbian CNN architecture trained end to end by backprop",
         baseline=True, quick={"dataset": "digits", "preset": "softhebb", "epochs": 5, "batch_size": 32,
                "params": {"width": 0.25}})
for _p in ("softhebb", "optimal", "optimal-ref", "hard", "bcm", "depthwise", "residual", "krotov"):
    _q = {**_QUICK, "batch_size": 10} if _p == "softhebb" else dict(_QUICK)
    register(f"hebbian-{_p}", HebbianCNN, summary=f"Hebbian CNN, preset {_p}: {models.PRESETS[_p].summary}",
             quick=_q, preset=_p)
