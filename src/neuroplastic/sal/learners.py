"""The SAL deep network (Gierlich et al. 2025): SGD on the forward weights, feedback ``B`` of the dense layers learned
from spike timing in a phase before every epoch.

Before each SGD epoch the dense layers' ``W``, ``B`` and biases are loaded into a spiking copy (populations: the
first dense layer's inputs, then every dense layer's outputs; forward projections ``W_l`` and feedback projections
``B_lᵀ``; no data input — the first population gets top-down input only, with zero bias; ReLU and batch norm are
not part of the copy). ``R`` copies run in parallel for ``blocks`` blocks of ``block_steps`` steps; after each
block every ``B_l`` moves by

.. math::  B_l \\mathrel{+}= \\eta_\\text{SAL}\\; \\frac{\\Delta P_l^\\top}{R \\cdot \\text{block\\_steps} / \\tau_\\text{ref}}

with :math:`\\Delta P_l` the block's summed SAL update of the feedback projection (pre = layer ``l``'s units, post =
its inputs; :func:`~neuroplastic.sal.rule.sal_pairs`), normalised by the phase length in refractory periods (the
authors' code divides by 20 whatever the block length; ``η_SAL = 0.4`` with our normalisation equals their 0.04 with
theirs at 200·τ_ref steps; ``sal_lr`` is one rate or one per dense layer, as the authors' code allows: each
layer's ``B`` follows its ``W`` with its own speed and noise). ``sal_lr_decay`` ``d`` (not in the paper; 0,
the default, is its constant rate): phase ``n`` runs at
:math:`\\eta_n = \\eta_\\text{SAL} / (1 + d\\,(n - 1))`, Robbins and Monro's falling rate, so late phases
average the earlier phases' estimates of ``W`` rather than replace them; from a rate whose first phase closes
most of the distance to ``W`` and with ``d`` near that fraction, ``B`` tends to the mean of all phases'
estimates, whose noise falls as :math:`1/\\sqrt n`, while a constant rate's stays at its floor
(:func:`~neuroplastic.sal.rule.averaging_bound`). The convolutions use fixed random feedback (``conv_mode``,
as in every non-BP method of the paper's comparison). ``plasticity_noise``: fixed amplitudes ``1 + ε`` per
synapse and direction (ε ~ N(0, σ) truncated at ±1.5σ); ``synaptic_noise``: the spiking copy's weights deviate
from the network's by fresh Gaussian noise of σ times each matrix's standard deviation at every phase.
``loss="double_softmax"``: the authors' code's loss (softmax before the cross-entropy,
:class:`~neuroplastic.learners.backprop.SupervisedNet`), a labelled variant; the default is the plain
cross-entropy.

``refractory``: the copy's units cannot spike for this many steps after a spike (default ``τ_ref``, Gierlich et
al.'s absolute refractory period and their code's; ``τ_ref − 1`` is Buesing et al.'s neural sampling, the
neurons' only behaviour before this option existed: every SAL record made before it used ``τ_ref − 1``). With
``τ_ref − 1`` a unit at its limit holds its PSP on without a break and its spikes carry no timing, and the noise-free
fixed point of a phase lies 7.7 / 11.4 / 7.5° from ``B = W`` (fc1 / fc2 / fc3 of a trained MNIST net); with ``τ_ref``,
1.6 / 5.2 / 2.5° (:class:`~neuroplastic.sal.neurons.SpikingNet`; suite sal-floor's note).

``sal_bnorm="initial"`` (not in the paper; ``"free"``, the default, is the paper's rule): after every phase each
dense layer's ``B`` keeps the direction SAL gave it and is rescaled to the Frobenius norm it had at initialisation,

.. math::  B_l \\leftarrow B_l \\, \\lVert B_l^{(0)}\\rVert_F \\,/\\, \\lVert B_l\\rVert_F ,

so the error sent down grows no larger than through FA's fixed ``B`` while ``W`` grows (angle, sign agreement and
Pearson r are scale-free, so alignment is measured as before). Why: on CIFAR-10 with the plain cross-entropy SAL's
training loss rose and the run collapsed after epoch 27 as ``‖B‖`` followed the growing ``‖W‖`` (sal-cifar10-flip-40);
with this rescaling the same run did not collapse (suite sal-cifar10-bnorm; on MNIST, where ``W`` hardly grows in 6
epochs, it changes little: sal-mnist-bnorm; over 20 epochs it closed 82 % of the FA-to-bound gap where the paper's
rule closed 47 %: sal-mnist-long-bnorm). With 1,280 networks per phase at a SAL rate of 1.25-1.5 it brought every
FC angle below 10° on CIFAR-10 and closed the FA-to-bound gap (sal-cifar10-bnorm-rate; at rate 1.0 fc3 lagged
behind ``W``: sal-cifar10-many-bnorm). Unlike the authors' double softmax it leaves the loss, and so FA and
the bound, untouched and has no dead zone. FA's fixed random ``B`` is drawn alike and so has a norm of the same size:
FA and this variant differ in ``B``'s direction only. Logged as ``sal_bnorm_gain/i``, the factor the phase's ``B`` was rescaled by.

``sal_max_gain`` (not in the paper; ``None``, the default, is the paper's copy): SAL's restoring force vanishes at a
unit that fires at its refractory limit — its spike train is then regular, so the pairs a weight causes are offset
by pairs the refractory clock makes, and ``B`` random-walks (two neurons, ``W`` = 1: B's mean drift per refractory
period is +0.12 at B = −1 and −0.16 at B = 3 when both fire at about 0.65 of the limit, within ±0.016 over that
range when either fires at ≥ 0.96 of it; measured with ``refractory = τ_ref − 1``, and the test of it holds with
either setting). Forward weights large enough to drive the copy's units there can be
capped: dense layer ``l`` enters the copy scaled by :math:`s_l = \\min(1, G / g_l)`, :math:`g_l = \\lVert
W_l\\rVert_F / \\sqrt{n_\\text{out}}` (the RMS norm of a unit's input weights; PyTorch's initialisation gives
:math:`1/\\sqrt 3 \\approx 0.58`): ``W_l``, ``B_l`` and the biases of its units times ``s_l``. The copy learns
:math:`\\Delta(s_l B_l)`, so ``B_l`` moves by the update divided by ``s_l``: the fixed point ``B = W`` is unchanged,
the copy's rates stay in range, but weaker synapses shape the spike timing less, so a phase's noise relative to
``W`` grows. Logged as ``sal_scale/i``.

``sal_burn_in`` (not in the paper; 0, the default, is its phase, which sums from the copy's first step): the copy
first runs this many steps that advance its state and the SAL traces but enter no sum (a pair whose later spike
falls in the first block counts there, as at any block boundary). Each phase starts the copy at rest (every unit
free, no PSP); the sums of a long chain (the paper's 10,000 steps per network) hardly see that start, those of a
short one do: with 3,200 networks of 1,000 steps each (the same samples as 320 × 10,000) the MNIST run diverged
where 320 × 10,000 aligned (suites sal-mnist-wide and sal-mnist-many), and a burn-in of 100 steps narrowed that
difference without closing it (sal-mnist-wide's note): the main cause was the steps after each move of ``B``
(``sal_settle``).

``sal_settle`` (not in the paper; 0, the default, is its phase): after every update of ``B`` inside a phase (between
two blocks) the copy runs this many steps that advance its state and the SAL traces but enter no sum, as the
burn-in does before the first block. Why: a move of ``B`` changes every unit's input at once, the copy's rates relax
to the new weights over two or three refractory periods, and SAL's sums over those steps sample the rates' change
rather than the weights. Measured from the state where sal-mnist-wide's phase stalled (a fresh MNIST net after
three of its 200-step blocks, 3,200 networks, ``B`` then held): in the first 10 steps after the move fc1's update
was 9 times the size of a stationary 10-step window's (its pull towards ``W`` 4.0 against 0.19), in steps 10-20
twice, from step 30 on the same as ever; chains restarted from rest showed a smaller start transient and no
dependence on their age from 200 steps on (sal-mnist-wide's note). A 2,000-step block dilutes those steps tenfold
against a 200-step one; with 30 settling steps (and 30 of burn-in) 3,200 × 200 tracked 320 × 2,000 within a degree
over a first phase and three epochs, where without them it stalled (the same note; suite sal-mnist-wide-settle).

``sal_persist`` (not in the paper; ``False``, the default, is its phase, which starts every network at rest): each
phase's copy goes on from the chain state the last phase left (:meth:`SpikingNet.chain_state`: every unit's
refractory countdown, from which its PSP follows; the potentials are recomputed from the new weights), as persistent
contrastive divergence keeps its Gibbs chains. Why: once ``B`` is aligned the copy's loops are near symmetric and
relax from rest more slowly than a short burn-in (sal-mnist-wide-settle: from that run's final state fc1's pull
towards ``W`` was 0.015 with 30 burn-in steps, 0.025 with 300 and 0.030 with 2,000-step chains), so the sums of
short chains started from rest carry a bias that long ones dilute. The SAL traces are not carried over: pairs
across two phases (whose weights differ by an epoch of SGD and a phase of SAL) are not counted, and the burn-in
(best at least the window's cut) refills the traces and lets the rates settle to the moved weights. The chains
travel with the training state (:meth:`training_state`), not with the weights; a phase of another number of
networks starts from rest. With them sal-mnist-wide-settle's phase brought every FC layer below 10° on MNIST (fc1 /
fc2 / fc3 8.9-9.4 / 5.5-5.6 / 2.0-2.8°, seeds 0-2 on the CPU; without them 12.8 / 7.5 / 2.6°, seed 0), fc1's pull at
the last phase 0.053 in seed 0 (without 0.016; sal-mnist-many's 2,000-step chains 0.057) (suite
sal-mnist-wide-persist).

``sal_ideal_pull`` q (learner ``sal-ideal``, :class:`SALIdeal`: a diagnostic, not SAL, and not local): the phase
is replaced by its noise-free, bias-free limit, what a phase with pull q would do with infinitely many samples and
its fixed point at ``B = W``,

.. math::  B_l \\leftarrow B_l + q\\,(W_l - B_l) ,

copied from ``W`` (weight transport, so its locality is declared C1 ✘), then, with ``sal_bnorm="initial"``,
rescaled to ``B``'s initial norm. With q = 1 and the norm free it is backprop with the feedback a once-per-epoch
copy of the weights. It isolates what once-per-epoch alignment costs when ``W`` moves
between phases (the lag: an angle of about the movement per epoch over q) from the phase's sampling noise and
bias (suite sal-cifar10-lag).

On the CPU the phase runs on the native route when it is built (:mod:`neuroplastic.sal.native`: the same dynamics
and sums, event by event in C, its uniforms drawn in C; about three times as fast as the torch route's dense products
on a 2-core CPU); elsewhere, or with ``NEUROPLASTIC_NATIVE=0``, on the torch route.

``sal_precision="bfloat16"`` (not in the paper; ``"float32"``, the default, is its arithmetic): the phase runs on the
dense route (:class:`~neuroplastic.sal.native.DensePhase`, CPU and native kernel needed): every step's potentials are
two dense products of bfloat16 operands (float32 accumulation, a bfloat16 result), the SAL sums one product per chunk
of steps, the spikes drawn by the native kernel. Why: on a CPU with matrix units (AMX) dense bfloat16 products outrun
the event-driven float32 route, whose work is already only that of the spikes; the issue's cost target (a phase at most
half an SGD epoch) is out of reach of the float32 phase beside a bfloat16 SGD epoch (suite sal-mnist-100-bf16). The
rounding (weights, potentials, the window's terms) changes which spikes are drawn, so it is a labelled option whose
effect on alignment and accuracy is measured, not assumed. All-pairs only, without plasticity noise.

Each phase also measures how far it can align ``B``: the networks run in two halves whose updates are summed
apart, so the phase's sampling noise is known (:func:`~neuroplastic.sal.rule.phase_noise`), and with the fraction
of the distance to ``W`` the phase closed it gives the stationary angle of the noisy relaxation
(:func:`~neuroplastic.sal.rule.noise_floor`; with ``sal_bnorm="initial"`` that of ``B`` held at its norm,
:func:`~neuroplastic.sal.rule.relaxation_floor`, higher the further that norm is below ``W``'s): logged per dense
layer ``i`` (the alignment keys' index) as ``sal_noise/i``, ``sal_pull/i`` and ``sal_floor_deg/i``. The update
itself is the same sum. ``sal_estimate/i`` is the noise of the phase's estimate of ``W`` (noise / pull, whatever the
rate), and ``sal_bound_deg/i`` the smallest angle the run's phases so far could have reached under any schedule of
SAL rates had ``W`` stood still (:func:`~neuroplastic.sal.rule.averaging_bound`): an angle near it needs more
samples per phase, not another rate.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import torch

from ..energy import OpCount, ops_watched
from ..learners import Locality, register
from ..learners.backprop import SupervisedNet
from ..learners.base import check_range, say
from ..nn.feedback import FeedbackLinear, feedback_layers, feedback_stats
from . import native as sal_native
from .neurons import SpikingNet, check_refractory
from .rule import (
    PAIRINGS,
    WINDOWS,
    SALRule,
    SALTrace,
    averaging_bound,
    noise_floor,
    phase_noise,
    sal_block,
    sal_event_ops,
    sal_pairs,
)
from .rule import plasticity_noise as draw_plasticity_noise

__all__ = ["BNORMS", "SAL_PRECISIONS", "SALIdeal", "SALNet"]

#: what happens to ``B``'s norm after a phase: ``free`` (the paper's rule) or ``initial`` (held at its initial norm)
BNORMS = ("free", "initial")
#: the phase's arithmetic: ``float32`` (the native or torch route) or ``bfloat16`` (the dense route, a labelled option)
SAL_PRECISIONS = ("float32", "bfloat16")

_LOCALITY = Locality(True, False, False, "B is never copied from W: each feedback synapse learns from the spike "
                     "timing of the two units it joins; but SGD still routes the output error down through B "
                     "in a separate backward phase (C2 ✘, C3 ✘ as for FA)")

#: the locality of the diagnostic :class:`SALIdeal`: B is pulled towards a copy of W
_IDEAL_LOCALITY = Locality(False, False, False, "sal-ideal (a diagnostic): B is pulled towards a copy of W once "
                           "per epoch (weight transport), and SGD routes the output error down through B (C2 ✘, C3 ✘)")


class SALNet(SupervisedNet):
    """A feed-forward classifier whose dense layers send errors back through ``B`` learned by SAL phases.

    Defaults follow the paper's deep-network study: ``arch="sal_cnn"``, SGD lr 0.01 with momentum 0.9, conv
    layers with fixed random feedback; a phase of ``sal_blocks`` = 5 blocks of ``sal_block_steps`` = 2,000 steps
    (200·τ_ref) over ``sal_nets`` = 32 parallel networks before every epoch, ``τ_ref`` = 10, exponential window
    cut at 2τ_ref, all-pairs, no burn-in (``sal_burn_in``: steps run first and summed nowhere; module
    docstring), no settling steps after each update of ``B`` (``sal_settle``), every phase from rest
    (``sal_persist``) and float32 arithmetic (``sal_precision``). Logs per dense layer the
    feedback family's alignment keys and the phase's rate.
    """

    name = "sal"
    paper = "Gierlich, Baumbach, Kungl, Max & Petrovici 2025 (arXiv 2503.02642)"
    locality = _LOCALITY
    extra_modes = ("sal",)

    @classmethod
    def exact(cls, params: dict) -> bool:
        """Never exact: the dense layers' feedback B is learned from spike timing."""
        return False

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, arch: str = "sal_cnn",
                 hidden: tuple[int, ...] = (256,), act: str | None = None, channels: tuple[int, ...] | None = None,
                 conv_mode: str = "fa", optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float | None = None, schedule: str = "none", feedback_scale: float | None = None,
                 sal_lr: float | list[float] = 0.4, sal_blocks: int = 5, sal_block_steps: int = 2000,
                 sal_nets: int = 32, tau_ref: int = 10, sal_window: str = "exponential", sal_pairing: str = "all",
                 sal_cut: int | None = None, plasticity_noise: float = 0.0, synaptic_noise: float = 0.0,
                 sal_max_gain: float | None = None, sal_bnorm: str = "free", loss: str = "ce",
                 refractory: int | None = None, sal_lr_decay: float = 0.0, sal_ideal_pull: float | None = None,
                 sal_burn_in: int = 0, sal_settle: int = 0, sal_persist: bool = False, channels_last: bool = False,
                 precision: str = "float32", sal_precision: str = "float32", seed: int = 0) -> None:
        rates = [float(sal_lr)] if isinstance(sal_lr, (int, float)) else [float(v) for v in sal_lr]
        for v in rates:
            check_range("sal_lr", v, 0)
        check_range("sal_lr_decay", sal_lr_decay, 0, 1e6)
        check_range("sal_blocks", sal_blocks, 0, 1000)
        check_range("sal_block_steps", sal_block_steps, 1, 1_000_000)
        check_range("sal_burn_in", sal_burn_in, 0, 1_000_000)
        check_range("sal_settle", sal_settle, 0, 1_000_000)
        check_range("sal_nets", sal_nets, 1, 4096)
        check_range("tau_ref", tau_ref, 1, 1000)
        refractory = check_refractory(refractory, tau_ref)
        check_range("plasticity_noise", plasticity_noise, 0, 1)
        check_range("synaptic_noise", synaptic_noise, 0, 10)
        if sal_max_gain is not None:
            check_range("sal_max_gain", sal_max_gain, 1e-6, 1e6)
        if sal_ideal_pull is not None:
            check_range("sal_ideal_pull", sal_ideal_pull, 1e-6, 1)
        if sal_bnorm not in BNORMS:
            raise ValueError(f"sal_bnorm must be one of {', '.join(BNORMS)}, got {sal_bnorm!r}")
        if sal_precision not in SAL_PRECISIONS:
            raise ValueError(f"sal_precision must be one of {', '.join(SAL_PRECISIONS)}, got {sal_precision!r}")
        if sal_precision == "bfloat16" and (sal_pairing != "all" or plasticity_noise > 0):
            raise ValueError("sal_precision bfloat16 (the dense route) sums all pairs without plasticity noise: "
                             f"got sal_pairing {sal_pairing!r}, plasticity_noise {plasticity_noise}")
        if sal_window not in WINDOWS or sal_pairing not in PAIRINGS:
            raise ValueError(f"sal_window must be one of {', '.join(WINDOWS)} and sal_pairing one of "
                             f"{', '.join(PAIRINGS)}, got {sal_window!r}, {sal_pairing!r}")
        super().__init__(in_shape, n_classes, arch=arch, mode="sal", hidden=hidden, act=act, channels=channels,
                         optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         feedback_scale=feedback_scale, conv_mode=conv_mode, loss=loss, channels_last=channels_last,
                         precision=precision, seed=seed)
        self.name, self.paper, self.locality = type(self).name, SALNet.paper, type(self).locality
        self.rule = SALRule(tau=float(tau_ref), cut=sal_cut or 2 * tau_ref, window=sal_window, pairing=sal_pairing)
        self.sal_cfg = {"blocks": int(sal_blocks), "block_steps": int(sal_block_steps),
                        "nets": int(sal_nets), "tau_ref": int(tau_ref), "synaptic_noise": float(synaptic_noise),
                        "max_gain": None if sal_max_gain is None else float(sal_max_gain), "bnorm": sal_bnorm,
                        "refractory": refractory, "lr_decay": float(sal_lr_decay),
                        "ideal_pull": None if sal_ideal_pull is None else float(sal_ideal_pull),
                        "burn_in": int(sal_burn_in), "settle": int(sal_settle), "persist": sal_persist,
                        "precision": sal_precision}
        self.sal_gen = torch.Generator().manual_seed(seed + 0x5A1)
        if not self._dense():
            raise ValueError(f"arch {arch!r} has no dense layers for SAL to learn the feedback of")
        if len(rates) not in (1, len(self._dense())):
            raise ValueError(f"sal_lr needs one rate or one per dense layer ({len(self._dense())}), got {len(rates)}")
        self.sal_cfg["lr"] = rates * len(self._dense()) if len(rates) == 1 else rates  # one rate per dense layer
        noise_gen = torch.Generator().manual_seed(seed + 0x5A2)
        for i, m in enumerate(self._dense()):  # fixed amplitudes per synapse and direction (None: no noise)
            for tag in ("hebb", "anti"):
                amp = draw_plasticity_noise(tuple(m.weight.shape), plasticity_noise, noise_gen) \
                    if plasticity_noise > 0 else None
                self.register_buffer(f"noise_{tag}_{i}", amp)
        # ‖B_l⁽⁰⁾‖_F, kept with the weights so a resumed run rescales to the same norms (sal_bnorm="initial")
        self.register_buffer("b_norm0", torch.tensor([float(m.B.detach().double().norm()) for m in self._dense()],
                                                     dtype=torch.float64))
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.steps_per_epoch = 1
        self.last_phase: dict[str, float] = {}
        #: one row per phase: the dense layers' angle(B, W) after it, then their noise floors, then their estimate
        #: noises (:func:`~neuroplastic.sal.rule.noise_floor`; -1: none)
        self.phase_log = torch.zeros(0, 3 * len(self._dense()), dtype=torch.float64)
        self._sgd_seconds = 0.0  # wall time of this epoch's SGD steps (for sal_cost_ratio)
        #: with ``sal_persist``, the copy's chain state at the end of the last phase (:meth:`SpikingNet.chain_state`)
        self.chains: torch.Tensor | None = None

    @classmethod
    def choices(cls) -> dict[str, list[str]]:
        """The supervised net's choices plus SAL's window, pairing and what happens to ``B``'s norm after a phase."""
        return {**super().choices(), "sal_window": list(WINDOWS), "sal_pairing": list(PAIRINGS),
                "sal_bnorm": list(BNORMS), "sal_precision": list(SAL_PRECISIONS)}

    def _dense(self) -> list[FeedbackLinear]:
        return [m for m in self.net.modules() if isinstance(m, FeedbackLinear) and m.mode == "sal"]

    def dense_index(self) -> list[int]:
        """Each dense layer's index among the net's feedback layers: the ``i`` of its alignment keys."""
        index = {id(m): i for i, m in enumerate(feedback_layers(self.net))}
        return [index[id(m)] for m in self._dense()]

    def dense_angles(self) -> list[float]:
        """angle(B, W) in degrees of every dense layer (:func:`~neuroplastic.nn.feedback.feedback_stats`)."""
        return [feedback_stats(m.B.detach(), m.weight.detach())["angle_deg"] for m in self._dense()]

    def copy_scale(self, layer: FeedbackLinear) -> float:
        r"""The factor :math:`s = \min(1, G / g)` by which ``layer`` enters the spiking copy (``sal_max_gain`` ``G``;
        :math:`g = \lVert W\rVert_F / \sqrt{n_\text{out}}`, see the module docstring); 1 without a cap."""
        cap = self.sal_cfg["max_gain"]
        if cap is None:
            return 1.0
        gain = (float(layer.weight.detach().double().pow(2).sum()) / layer.out_features) ** 0.5
        return min(1.0, cap / gain) if gain > 0 else 1.0

    def configure(self, epochs: int, steps_per_epoch: int) -> None:
        super().configure(epochs, steps_per_epoch)
        self.steps_per_epoch = max(1, int(steps_per_epoch))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Before the first step of every epoch a SAL phase (:meth:`sal_phase`), then one SGD step. The phase's
        firing rate and wall time (``sal_rate``, ``sal_phase_seconds``) join the epoch's log row."""
        if int(self.steps_done) % self.steps_per_epoch == 0 and self.sal_cfg["blocks"] > 0:
            self.last_phase = self.sal_phase()
            self._sgd_seconds = 0.0
        self.steps_done += 1
        t0 = time.perf_counter()
        out = super().train_step(x, y)
        self._sgd_seconds += time.perf_counter() - t0
        return out

    def count_training_ops(self, x: torch.Tensor, y: torch.Tensor):
        """Per training sample: one SGD step (mid-epoch, no phase) plus the epoch's SAL phase shared over the epoch's
        ``steps_per_epoch × batch`` samples. The phase is counted event by event, as the native route runs it and an
        event-driven circuit would (:meth:`_phase`), not by the products of its simulation. Called on a copy."""
        from ..energy import count_step

        phase = self._phase()[1] if self.sal_cfg["blocks"] > 0 else OpCount()
        if int(self.steps_done) % self.steps_per_epoch == 0:
            self.steps_done += 1  # a step inside the epoch: its phase is the one counted above
        return count_step(self, self.train_step, x, y).per(len(x)) + phase.per(self.steps_per_epoch * len(x))

    def sal_phase(self) -> dict[str, float]:
        r"""One SAL phase on the dense layers (see the module docstring); returns the mean firing rate per unit and
        step, the phase's wall time and, per population, the fraction of units (over all networks) that fire at
        :math:`\geq 0.9/(\text{refractory} + 1)`, at least 90 % of the refractory limit, where spike timing carries
        less of the weights' effect: ``sal_saturated/i`` for dense layer ``i``'s outputs, ``sal_saturated_input``
        for the first dense layer's inputs."""
        return self._phase()[0]

    @torch.no_grad()
    def _phase(self) -> tuple[dict[str, float], OpCount]:
        r""":meth:`sal_phase`'s log and the phase's operations, counted from its spikes as an event-driven circuit does
        the work: the potentials' updates at every PSP's start and end (:meth:`SpikingNet.event_ops`, one stored
        weight read per accumulate) over all steps, burn-in and settling included, and the SAL sums
        (:func:`~neuroplastic.sal.rule.sal_event_ops`) over the blocks' steps."""
        t0 = time.perf_counter()
        cfg = self.sal_cfg
        if cfg["ideal_pull"] is not None:
            return self._ideal_phase(t0), OpCount()
        dense = self._dense()
        dev = dense[0].weight.device
        sizes = [dense[0].in_features] + [m.out_features for m in dense]
        sigma = cfg["synaptic_noise"]

        def noisy(w: torch.Tensor) -> torch.Tensor:
            if sigma == 0:
                return w
            n = torch.randn(w.shape, generator=self.sal_gen).to(dev)
            return w + sigma * float(w.std()) * n

        scales = [self.copy_scale(m) for m in dense]  # s_l: 1 unless sal_max_gain caps the layer's gain
        weights = [noisy(m.weight.detach()) * s for m, s in zip(dense, scales)]
        feedback = [noisy(m.B.detach()) * s for m, s in zip(dense, scales)]  # the copy's B: updated during the phase
        projections: dict[tuple[int, int], torch.Tensor] = {}
        for l, (w, b) in enumerate(zip(weights, feedback), start=1):
            projections[(l - 1, l)] = w
            projections[(l, l - 1)] = b.t()  # a view: the copy sees every block's update
        biases = [torch.zeros(sizes[0], device=dev)] + [m.bias.detach() * s if m.bias is not None
                                                        else torch.zeros(m.out_features, device=dev)
                                                        for m, s in zip(dense, scales)]
        r, tau = cfg["nets"], cfg["tau_ref"]
        gen = self.sal_gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=self.sal_gen)))
        net = SpikingNet(sizes, projections, biases, n_nets=r, tau_ref=tau, refractory=cfg["refractory"],
                         generator=gen, device=dev)
        if cfg["persist"] and self.chains is not None and tuple(self.chains.shape) == (r, sum(sizes)):
            net.set_chain_state(self.chains.to(dev))  # the last phase's chains go on (module docstring)
        traces = [SALTrace(self.rule, (r, n), device=dev) for n in sizes]
        # all pairs without plasticity noise: each projection's update is one product (sal_block)
        one_product = self.rule.pairing == "all" and self.noise_hebb_0 is None
        chunk = min(200, cfg["block_steps"])
        norm = r * cfg["block_steps"] / tau
        # the networks in two halves, their updates summed apart: the difference measures the update's noise
        halves = [slice(0, r // 2), slice(r // 2, r)] if r > 1 else [slice(0, r)]
        counts = tuple(h.stop - h.start for h in halves)
        b_before = [m.B.detach().clone() for m in dense]
        rates = self.phase_rates(len(self.phase_log) + 1)
        noise_sq = [0.0] * len(dense)
        fired_all = torch.zeros(r, sum(sizes), device=dev)  # spikes per network and unit over the phase
        free_all = torch.zeros_like(fired_all)  # the same over the steps summed nowhere (burn-in, settling)
        spans = list(itertools.pairwise(itertools.accumulate(sizes, initial=0)))
        fired, free = [fired_all[:, a:b] for a, b in spans], [free_all[:, a:b] for a, b in spans]
        dense_route = cfg["precision"] == "bfloat16"
        if dense_route and not (sal_native.available() and dev.type == "cpu"):
            raise RuntimeError("sal_precision bfloat16 needs the native SAL kernel and the CPU")
        dense_phase = sal_native.DensePhase(net, weights, feedback, self.rule, halves[-1].start or r, chunk) \
            if dense_route else None
        native = sal_native.NativePhase(net, weights, feedback, self.rule, halves[-1].start or r) \
            if self.native_route() and not dense_route else None

        def advance(total: int) -> None:
            """``total`` steps that advance the copy and its traces, summed nowhere (burn-in, settling)."""
            if dense_phase is not None:  # in its chunks, the weights loaded once
                dense_phase.run(total, free_all)
                return
            discard = (*native.sums(), free_all) if native is not None and total else None
            for start in range(0, total, chunk):
                steps = min(chunk, total - start)
                if discard is not None:
                    native.run(steps, *discard)
                    continue
                for tr, sp, f in zip(traces, net.run(steps), free):
                    tr.block_terms(sp, pre=False) if one_product else tr.traces(sp)
                    f += sp.sum(0)

        advance(cfg["burn_in"])
        for block in range(cfg["blocks"]):
            say(f"SAL phase: block {block + 1}/{cfg['blocks']} of {r} networks x {cfg['block_steps']} steps")
            if block:  # B has just moved: the copy's rates relax first (module docstring)
                advance(cfg["settle"])
            dP = [[torch.zeros(n_lo, n_up, device=dev) for _ in halves] for n_lo, n_up in itertools.pairwise(sizes)]
            if native is not None:  # the same sums, event by event in C (sal.native)
                hebb, anti = native.sums()
                for start in range(0, cfg["block_steps"], chunk):
                    native.run(min(chunk, cfg["block_steps"] - start), hebb, anti, fired_all)
                for l in range(len(dense)):
                    nz = (getattr(self, f"noise_hebb_{l}"), getattr(self, f"noise_anti_{l}"))
                    for k in range(len(halves)):
                        h, a = hebb[l][k].t(), anti[l][k]
                        if nz[0] is not None:
                            h, a = h * nz[0].t(), a * nz[1].t()
                        dP[l][k] = self.rule.amplitude * (h - a)
            if dense_phase is not None:  # the dense bfloat16 route (sal.native.DensePhase)
                sums = [[torch.zeros(n_lo, n_up) for _ in halves] for n_lo, n_up in itertools.pairwise(sizes)]
                dense_phase.run(cfg["block_steps"], fired_all, sums)
                dP = [[self.rule.amplitude * d for d in per] for per in sums]
            for start in range(0, cfg["block_steps"] if native is None and dense_phase is None else 0, chunk):
                s = net.run(min(chunk, cfg["block_steps"] - start))  # [T, R, N] per population
                for f, sp in zip(fired, s):
                    f += sp.sum(0)
                if one_product:  # feedback projection l -> l-1: pre = layer l, post = layer l-1
                    terms = [tr.block_terms(sp, pre=i > 0) for i, (tr, sp) in enumerate(zip(traces, s))]
                    for l in range(1, len(sizes)):
                        for k, h in enumerate(halves):
                            dP[l - 1][k] += sal_block(terms[l][1][:, h], terms[l - 1][0][:, h],
                                                      amplitude=self.rule.amplitude)
                    continue
                x = [tr.traces(sp) for tr, sp in zip(traces, s)]
                for l in range(1, len(sizes)):
                    nz = (getattr(self, f"noise_hebb_{l - 1}"), getattr(self, f"noise_anti_{l - 1}"))
                    noise = None if nz[0] is None else (nz[0].t(), nz[1].t())
                    for k, h in enumerate(halves):
                        dP[l - 1][k] += sal_pairs(s[l][:, h], s[l - 1][:, h], x[l][:, h], x[l - 1][:, h],
                                                  amplitude=self.rule.amplitude, noise=noise)
            for l, m in enumerate(dense):
                step = rates[l] * sum(dP[l]).t() / norm  # in the copy's units: Δ(s_l B_l)
                m.B.add_(step, alpha=1 / scales[l])
                feedback[l].add_(step)
                if len(halves) == 2:
                    noise_sq[l] += phase_noise(*(rates[l] * d.t() * tau / cfg["block_steps"] for d in dP[l]),
                                               counts) / scales[l] ** 2
        out: dict[str, float] = {}
        index = self.dense_index()
        if len(halves) == 2:
            for l, m in enumerate(dense):
                out.update({f"sal_{k}/{index[l]}": v for k, v in
                            noise_floor(b_before[l], m.B.detach(), m.weight.detach(), noise_sq[l],
                                        held=cfg["bnorm"] == "initial").items()})
        out.update(self._hold_norms())
        floors = [out.get(f"sal_floor_deg/{i}", -1.0) for i in index]
        estimates = [out.get(f"sal_estimate/{i}", -1.0) for i in index]
        self.phase_log = torch.cat([self.phase_log, torch.tensor([self.dense_angles() + floors + estimates],
                                                                 dtype=torch.float64)])
        for l, i in enumerate(index):  # the best angle the phases so far allow, had W stood still
            if math.isfinite(bound := self.phase_bound(l, len(self.phase_log))):
                out[f"sal_bound_deg/{i}"] = bound
        steps = cfg["blocks"] * cfg["block_steps"]
        limit = steps / (cfg["refractory"] + 1)  # the most spikes a unit can fire in the phase
        saturated = [float((f >= 0.9 * limit).float().mean()) for f in fired]
        out.update({"sal_saturated_input": saturated[0],
                    **{f"sal_saturated/{index[l]}": v for l, v in enumerate(saturated[1:])}})
        if cfg["max_gain"] is not None:
            out.update({f"sal_scale/{index[l]}": s for l, s in enumerate(scales)})
        if cfg["persist"]:
            if dense_phase is not None:
                dense_phase.store_state()
            self.chains = net.chain_state()
        summed = [float(f.sum(dtype=torch.float64)) for f in fired]  # spikes per population in the blocks
        psp = net.event_ops([s + float(f.sum(dtype=torch.float64)) for s, f in zip(summed, free)])
        ops = OpCount(ac=psp + sum(sal_event_ops(summed[l], summed[l - 1], sizes[l], sizes[l - 1])
                                   for l in range(1, len(sizes))), reads=psp)
        return {**out, "sal_rate": sum(summed) / max(sum(sizes) * r * steps, 1),
                "sal_phase_seconds": time.perf_counter() - t0}, ops

    def _ideal_phase(self, t0: float) -> dict[str, float]:
        r"""``sal_ideal_pull`` q's stand-in for the phase (module docstring): :math:`B_l \leftarrow B_l + q\,(W_l -
        B_l)` in every dense layer, logged in the phase log like a phase (no noise floor or estimate: -1)."""
        n = len(self._dense())
        for m in self._dense():
            m.B.add_(m.weight.detach() - m.B.detach(), alpha=self.sal_cfg["ideal_pull"])
        out = self._hold_norms()
        self.phase_log = torch.cat([self.phase_log, torch.tensor([self.dense_angles() + [-1.0] * (2 * n)],
                                                                 dtype=torch.float64)])
        return {**out, "sal_phase_seconds": time.perf_counter() - t0}

    def _hold_norms(self) -> dict[str, float]:
        r"""With ``sal_bnorm="initial"``, every dense layer's ``B`` rescaled to its initial Frobenius norm,
        :math:`B_l \leftarrow B_l \lVert B_l^{(0)}\rVert_F / \lVert B_l\rVert_F` (module docstring); the gains
        as ``sal_bnorm_gain/i``. Nothing with ``"free"``, the paper's rule."""
        if self.sal_cfg["bnorm"] != "initial":
            return {}
        out = {}
        for l, (m, i) in enumerate(zip(self._dense(), self.dense_index())):
            now = float(m.B.detach().double().norm())
            gain = float(self.b_norm0[l]) / now if now > 0 else 1.0
            m.B.mul_(gain)
            out[f"sal_bnorm_gain/{i}"] = gain
        return out

    def native_route(self) -> bool:
        """Whether the phase runs on the native CPU route (:mod:`neuroplastic.sal.native`: the same dynamics and
        sums, event by event, its own random numbers): built, not turned off by ``NEUROPLASTIC_NATIVE=0``, the net on
        the CPU, and no operation counter watching (:func:`~neuroplastic.energy.ops_watched`: it must see the phase's work)."""
        return sal_native.available() and self._dense()[0].weight.device.type == "cpu" and not ops_watched()

    def phase_rates(self, phase: int) -> list[float]:
        r"""The SAL rate of every dense layer in phase ``phase`` (1 = the first), falling as Robbins and
        Monro's :math:`\eta_n = \eta / (1 + d\,(n - 1))` with ``sal_lr_decay`` ``d`` (0, the default and the
        paper's: constant). The phase number is the length of the phase log, which travels with the weights: a
        resumed run goes on at the rate it stopped at."""
        return [lr / (1 + self.sal_cfg["lr_decay"] * (phase - 1)) for lr in self.sal_cfg["lr"]]

    def phase_bound(self, layer: int, phases: int) -> float:
        """:func:`~neuroplastic.sal.rule.averaging_bound` of dense layer ``layer``'s estimate noises over the first
        ``phases`` rows of the phase log (those without an estimate left out); ``nan`` when none has one."""
        est = self.phase_log[:phases, 2 * len(self._dense()) + layer]
        return averaging_bound(est[est > 0].tolist())

    def get_extra_state(self) -> torch.Tensor:
        """The phase log (:attr:`phase_log`) travels with the weights, so a resumed run draws the whole curve."""
        return self.phase_log

    def set_extra_state(self, state: torch.Tensor) -> None:
        """Load a phase log; one saved before it held the estimate noises gets them as -1 (none)."""
        log = state.to(torch.float64).cpu()
        n = len(self._dense())
        if log.shape[1] == 2 * n:
            log = torch.cat([log, torch.full((len(log), n), -1.0, dtype=torch.float64)], dim=1)
        self.phase_log = log

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As :meth:`torch.nn.Module.load_state_dict`; weights saved before the phase log existed load with an
        empty log, and before ``b_norm0`` existed with this net's own (the same seed draws the same initial ``B``)."""
        if "_extra_state" not in state_dict:
            state_dict = {**state_dict, "_extra_state": self.phase_log[:0]}
        if "b_norm0" not in state_dict:
            state_dict = {**state_dict, "b_norm0": self.b_norm0.clone()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def training_state(self) -> dict[str, Any]:
        """As the supervised net's, plus the copy's chains (``sal_persist``; ``None`` without): a resumed run goes
        on from the state the last phase left, as an uninterrupted one does. Not in the weights (``state_dict``): a
        saved model's phases start from rest."""
        return {**super().training_state(), "sal_chains": None if self.chains is None else self.chains.cpu()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`training_state`; a checkpoint without chains (saved before the option, or without it)
        starts the next phase from rest."""
        super().load_training_state(state)
        self.chains = state.get("sal_chains")

    def figures(self, bundle: Any, out_dir: Any) -> list:
        """Beside ``feedback.png``: ``sal_alignment.png``, per dense layer the angle(B, W) after every phase
        (solid), the noise floor that phase predicts (dashed, :func:`~neuroplastic.sal.rule.noise_floor`) and the
        smallest angle the phases so far allow under any rate schedule (dotted,
        :func:`~neuroplastic.sal.rule.averaging_bound`): an angle resting on its floor is limited by the phase's
        sampling noise, one above it by a bias; a floor near the bound leaves nothing for a rate schedule to gain."""
        from pathlib import Path

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        made = super().figures(bundle, out_dir)
        log, n = self.phase_log, len(self._dense())
        if len(log) == 0:
            return made
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        xs = list(range(1, len(log) + 1))
        for l in range(n):
            line, = ax.plot(xs, log[:, l].tolist(), marker="o", ms=3, label=f"dense layer {l + 1}: angle(B, W)")
            floor = [v if v >= 0 else float("nan") for v in log[:, n + l].tolist()]  # -1: no floor that phase
            ax.plot(xs, floor, ls="--", color=line.get_color(), label=f"dense layer {l + 1}: noise floor")
            bound = [self.phase_bound(l, k) for k in xs]
            ax.plot(xs, bound, ls=":", color=line.get_color(), label=f"dense layer {l + 1}: bound of any rate")
        ax.axhline(10, color="gray", lw=0.8, ls=":")
        ax.set(xlabel="SAL phase (one before every epoch)", ylabel="degrees", ylim=(0, 90),
               title="SAL: angle after each phase, noise floor, bound of the phases so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / "sal_alignment.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return [*made, path]

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """The epoch's diagnostics plus the SAL phase's rate and wall time, the SGD steps' wall time and the cost
        ratio ``sal_cost_ratio`` = phase seconds / SGD seconds of the epoch (issue target: ≤ 0.5)."""
        out = {**super().end_epoch(epoch), **self.last_phase}
        sgd = self._sgd_seconds
        if sgd > 0 and "sal_phase_seconds" in self.last_phase:
            out.update(sgd_seconds=sgd, sal_cost_ratio=self.last_phase["sal_phase_seconds"] / sgd)
        return out


class SALIdeal(SALNet):
    r"""SAL's phase replaced by its noise-free, bias-free limit :math:`B_l \leftarrow B_l + q\,(W_l - B_l)` before
    every SGD epoch (``sal_ideal_pull`` q; with ``sal_bnorm="initial"`` then rescaled to ``B``'s initial norm): a
    diagnostic with weight transport, not a local rule (C1 ✘). It measures what once-per-epoch alignment costs
    when ``W`` moves between phases, apart from a phase's sampling noise and bias (module docstring; suite
    sal-cifar10-lag). Gierlich et al. 2025's deep-net protocol otherwise (SGD lr 0.01, momentum 0.9, conv layers
    with fixed random feedback)."""

    name = "sal-ideal"
    locality = _IDEAL_LOCALITY

    def __init__(self, in_shape: tuple[int, ...], n_classes: int, sal_ideal_pull: float = 1.0,
                 sal_bnorm: str = "free", arch: str = "sal_cnn", hidden: tuple[int, ...] = (256,),
                 act: str | None = None, channels: tuple[int, ...] | None = None, conv_mode: str = "fa",
                 optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9, weight_decay: float | None = None,
                 schedule: str = "none", feedback_scale: float | None = None, loss: str = "ce",
                 channels_last: bool = False, precision: str = "float32", seed: int = 0) -> None:
        super().__init__(in_shape, n_classes, arch=arch, hidden=hidden, act=act, channels=channels,
                         conv_mode=conv_mode, optimizer=optimizer, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, schedule=schedule, feedback_scale=feedback_scale, loss=loss,
                         sal_bnorm=sal_bnorm, sal_ideal_pull=sal_ideal_pull, channels_last=channels_last,
                         precision=precision, seed=seed)


register("sal", SALNet, summary="spike-based alignment learning: dense-layer feedback B learned from spike timing "
         "in phases before every SGD epoch (conv layers: fixed random feedback)",
         # the quick suite's budget of bp and the FA family (digits, one hidden layer of 128, 10 epochs, batch 32),
         # so that `make run`'s table compares them on equal terms; a small phase (8 networks, 2 blocks of 200 steps)
         quick={"dataset": "digits", "params": {"arch": "mlp", "hidden": [128], "sal_nets": 8,
                                                "sal_blocks": 2, "sal_block_steps": 200},
                "epochs": 10, "batch_size": 32}, sal_ideal_pull=None)
register("sal-ideal", SALIdeal, summary="a diagnostic: SAL's phase replaced by B <- B + q (W - B) once per epoch "
         "(weight transport), the noise-free limit of a phase")

