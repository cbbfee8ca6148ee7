"""Spike-based alignment learning (SAL) — Gierlich, Baumbach, Kungl, Max & Petrovici 2025 (arXiv 2503.02642):
feedback weights learned from the spike timing of stochastic spiking neurons.

- :mod:`~neuroplastic.sal.neurons`: discrete-time stochastic units, ``φ(u) = σ(u − ln τ_ref)``, rectangular PSPs
  and absolute refractoriness, many networks in parallel (:class:`SpikingNet`);
- :mod:`~neuroplastic.sal.rule`: the SAL window and pairings (:func:`sal_step`, :func:`sal_pairs`,
  :class:`SALTrace`), plasticity noise, the noise floor of a phase and the bias of its fixed point
  (:func:`phase_noise`, :func:`noise_floor`, :func:`fixed_point_bias`) and the best angle a run's phases allow
  (:func:`averaging_bound`), and the angle a schedule of phases reaches (:func:`relaxation_angle`);
- :mod:`~neuroplastic.sal.studies`: the two-neuron study;
- :mod:`~neuroplastic.sal.learners`: the deep network whose dense layers' feedback is learned by SAL phases
  (learner ``sal``).

The feedback matrices SAL learns in a deep network are mode ``sal`` of the one feedback family
(:mod:`neuroplastic.nn.feedback`).
"""

from .neurons import SpikingNet, firing_probability
from .rule import (
           PAIRINGS,
           WINDOWS,
           SALRule,
           SALTrace,
           averaging_bound,
           fixed_point_bias,
           noise_floor,
           phase_noise,
           plasticity_noise,
           relaxation_angle,
           sal_pairs,
           sal_step,
)
from .studies import flow_field, two_neurons

__all__ = ["PAIRINGS", "WINDOWS", "SALRule", "SALTrace", "SpikingNet", "averaging_bound", "firing_probability",
           "fixed_point_bias", "flow_field", "noise_floor", "phase_noise", "plasticity_noise", "relaxation_angle",
           "sal_pairs", "sal_step", "two_neurons"]
