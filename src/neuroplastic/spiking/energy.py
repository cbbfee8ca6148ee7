r"""Operations per inference of the spiking mode networks: the spiking case of :mod:`neuroplastic.energy`.

A spiking network on event-driven hardware spends an *accumulate* (AC) per spike and target synapse; a rate (ANN)
network spends a *multiply-accumulate* (MAC) per weight and step. The simulation runs filtered spike traces through
dense products, so :class:`~neuroplastic.energy.OpCounter` would count what a GPU does, not what the hardware does;
the learners report this count through ``count_inference_ops`` instead, and :mod:`neuroplastic.energy` turns it
into energy with the same per-operation figures as every other learner (one stored-weight read per operation).

Counting (per sample, ``T`` steps, ``N`` hidden units, ``P`` modes, ``C`` outputs):

* input layer: binary (spike-coded) inputs: :math:`N` ACs per input spike; analog inputs: :math:`T N_\text{in} N` MACs.
* recurrent, spiking: by linearity the filter commutes with the weights, :math:`W\,\mathrm{filter}(s) =
  \mathrm{filter}(W s)`, so a spike costs :math:`N` ACs (full rank) or :math:`P` ACs into the mode
  space (modes), plus per step :math:`P + NP` MACs to scale by :math:`\lambda` and expand by :math:`\xi_\text{in}`.
* recurrent, rate: :math:`T(2NP+P)` MACs (modes) or :math:`TN^2` (full rank).
* readout: :math:`NC` MACs once (classification from :math:`\max_t r_t`) or :math:`TNC` (per-step output).
"""

from __future__ import annotations

from ..energy import OpCount

__all__ = ["count_ops"]


def count_ops(*, steps: int, n_in: int, n_hidden: int, n_out: int, n_modes: int | None, spiking: bool,
              input_spikes: float | None, hidden_spikes: float, per_step_readout: bool) -> OpCount:
    """Operations per inference (see the module docstring).

    ``n_modes=None`` means full rank. ``input_spikes``: mean input spikes per sample for spike-coded
    inputs (``None`` for analog inputs, counted as dense MACs). ``hidden_spikes``: mean hidden spikes per
    sample (ignored for rate networks).

    >>> count_ops(steps=1, n_in=2, n_hidden=3, n_out=1, n_modes=None, spiking=True, input_spikes=1.0,
    ...           hidden_spikes=2.0, per_step_readout=False)
    OpCount(mac=3.0, ac=9.0, reads=12.0)
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
    return OpCount(float(mac), float(ac), float(mac + ac))  # every operation uses a stored weight
