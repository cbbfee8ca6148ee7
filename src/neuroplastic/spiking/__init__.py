"""Spiking mode-based networks (Lin & Huang 2024, arXiv 2310.14621; Phys. Rev. E 110:024306).

Building blocks (:mod:`.surrogate`, :mod:`.neurons`, :mod:`.filters`, :mod:`.encoders`), the mode-based
recurrent network (:mod:`.mode_rnn`), the registered learners ``snn-mode``, ``snn-fullrank``,
``rnn-mode`` (:mod:`.learners`), the energy proxy (:mod:`.energy`) and analysis/plots (:mod:`.analysis`,
``python -m neuroplastic.spiking.analysis --help``).
"""

from .encoders import bernoulli_encode, constant_current, encode
from .filters import DoubleExpFilter, SingleExpFilter, reset_net
from .mode_rnn import LIFRecurrence, ModeRNN, mode_importance
from .neurons import LIF, lif_first_spike_step
from .surrogate import ATan, FastSigmoid, Triangle, spike

__all__ = [
           "LIF",
           "ATan",
           "DoubleExpFilter",
           "FastSigmoid",
           "LIFRecurrence",
           "ModeRNN",
           "SingleExpFilter",
           "Triangle",
           "bernoulli_encode",
           "constant_current",
           "encode",
           "lif_first_spike_step",
           "mode_importance",
           "reset_net",
           "spike",
]
