"""Dendritic Localized Learning (Lv et al., ICML 2025) and the predictive-coding baseline.

- :mod:`.layers`: DLL linear/conv layers (basal u, apical x, somatic ξ = x − u; learned feedback Θ).
- :mod:`.models`: the paper's MLPs/CNNs (plain torch, converted by :func:`.models.to_dll`) and the DLL RNN.
- :mod:`.pc`: predictive coding (Whittington & Bogacz 2017).
- :mod:`.learners`: registers ``dll``, ``dll-fa``, ``pc`` (and the ``chartext`` dataset).
"""

from .layers import DLLConv2d, DLLLinear, angle_deg, dll_mlp_sweep
from .models import DLLRNN, to_dll

__all__ = ["DLLRNN", "DLLConv2d", "DLLLinear", "angle_deg", "dll_mlp_sweep", "to_dll"]
