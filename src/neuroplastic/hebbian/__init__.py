"""Hebbian CNNs trained by unsupervised local rules (Journé et al., ICLR 2023; Nimmo & Mondragón 2025).

``rules`` (one object per rule, shared by conv and linear layers), ``layers`` (:class:`HebbConv2d`,
:class:`HebbLinear`, :class:`Triangle`), ``models`` (architecture presets), ``learners`` (registered
``hebbian-*`` learners and the ``hebbian-cnn-bp`` baseline), ``viz`` (filters, receptive fields, UMAP,
winner statistics).
"""

from .layers import HebbConv2d, HebbLinear, Triangle
from .models import PRESETS, HebbNet, build
from .rules import BCM, RULES, HardWTA, HebbRule, KrotovHopfield, Oja, PlainHebb, SoftHebb, make_rule

__all__ = [
           "BCM",
           "PRESETS",
           "RULES",
           "HardWTA",
           "HebbConv2d",
           "HebbLinear",
           "HebbNet",
           "HebbRule",
           "KrotovHopfield",
           "Oja",
           "PlainHebb",
           "SoftHebb",
           "Triangle",
           "build",
           "make_rule",
]
