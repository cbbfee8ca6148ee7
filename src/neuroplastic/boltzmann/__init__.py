"""Boltzmann machines: the local correlation rule, RBMs (CD/PCD), fully connected machines, AIS."""

from .machines import (
                       RBM,
                       FullBM,
                       ais_log_z,
                       ais_schedule,
                       base_rate_biases,
                       correlation_rule,
                       exact_log_z_full,
                       exact_log_z_rbm,
)

__all__ = ["RBM", "FullBM", "ais_log_z", "ais_schedule", "base_rate_biases", "correlation_rule",
           "exact_log_z_full", "exact_log_z_rbm"]
