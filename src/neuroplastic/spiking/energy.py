r"""Energy proxy per inference: synaptic operations counted from actual spikes vs multiply-accumulates.

A spiking network on event-driven hardware spends an *accumulate* (AC) per spike and target synapse;
a rate (ANN) network spends a *multiply-accumulate* (MAC) per weight and step. The proxy is

.. math:: E = n_\text{AC}\,E_\text{AC} + n_\text{MAC}\,E_\text{MAC}

with 45 nm, 32-bit floating-point costs :math:`E_\text{AC} = 0.9` pJ (add) and :math:`E_\text{MAC} = 4.6` pJ
(3.7 pJ multiply + 0.9 pJ add) from Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, the figures used across the SNN literature. Neuron state updates and memory traffic
are not counted (a proxy, not a hardware estimate).

Counting (per sample, ``T`` steps, ``N`` hidden units, ``P`` modes, ``C`` outputs):

* input layer: binary (spike-coded) inputs: :math:`N` ACs per input spike; analog inputs: :math:`T N_\text{in} N` MACs.
* recurrent, spiking: by linearity the filter commutes with the weights, :math:`W\,\mathrm{filter}(s) =
  \mathrm{filter}(W s)`, so a spike costs :math:`N` ACs (full rank) or :math:`P` ACs into the mode
  space (modes), plus per step :math:`P + NP` MACs to scale by :math:`\lambda` and expand by :math:`\xi_\text{in}`.
* recurrent, rate: :math:`T(2NP+P)` MACs (modes) or :math:`TN^2` (full rank).
* readout: :math:`NC` MACs once (classification from :math:`\max_t r_t`) or :math:`TNC` (per-step output).
"""

from __future__ import annotations

import dataclasses

__all__ = ["E_AC_PJ", "E_MAC_PJ", "OpCount", "count_ops"]

E_AC_PJ = 0.9  #: pJ per 32-bit float add, 45 nm (Horowitz 2014)
E_MAC_PJ = 4.6  #: pJ per 32-bit float multiply-accumulate, 45 nm (Horowitz 2014)


@dataclasses.dataclass
class OpCount:
    """Operations per inference and the energy they imply (pJ)."""

    ac: float
    mac: float

    @property
    def energy_pj(self) -> float:
        """:math:`n_\\text{AC} E_\\text{AC} + n_\\text{MAC} E_\\text{MAC}` in picojoules."""
        return self.ac * E_AC_PJ + self.mac * E_MAC_PJ


def count_ops(*, steps: int, n_in: int, n_hidden: int, n_out: int, n_modes: int | None, spiking: bool,
              input_spikes: float | None, hidden_spikes: float, per_step_readout: bool) -> OpCount:
    """Operations per inference (see the module docstring).

    ``n_modes=None`` means full rank. ``input_spikes``: mean input spikes per sample for spike-coded
    inputs (``None`` for analog inputs, counted as dense MACs). ``hidden_spikes``: mean hidden spikes per
    sample (ignored for rate networks).

    >>> count_ops(steps=1, n_in=2, n_hidden=3, n_out=1, n_modes=None, spiking=True, input_spikes=1.0,
    ...           hidden_spikes=2.0, per_step_readout=False)
    OpCount(ac=9.0, mac=3.0)
    """
    if steps < 1 or n_in < 1 or n_hidden < 1 or n_out < 1:
        raise ValueError("count_ops: steps, n_in, n_hidden and n_out must be >= 1")
    T, N, P = steps, n_hidden, n_modes
    ac = mac = 0.0
    if input_spikes is not None and spiking:
        ac += input_spikes * N
    else:
        mac += T * n_in * N
    if spiking:
        if P is None:
            ac += hidden_spikes * N
        else:
            ac += hidden_spikes * P
            mac += T * (P + N * P)
    else:
        mac += T * ((2 * N * P + P) if P is not None else N * N)
    mac += (T if per_step_readout else 1) * N * n_out
    return OpCount(float(ac), float(mac))
