"""neuroplastic: biologically plausible, local learning rules beside backprop, measured the same way."""

__version__ = "0.1.0"
