"""Boltzmann machines: the local correlation rule; RBMs (centred, Bernoulli or Gaussian; CD, PCD, parallel
tempering); deep belief nets; machines with loops; exact enumeration, AIS and reverse AIS; a scikit-learn-style
estimator."""

from .estimator import BernoulliRBM
from .machines import (
    PCD,
    RBM,
    BoltzmannMachine,
    GaussianRBM,
    ParallelTempering,
    ais_log_weights,
    ais_log_z,
    ais_schedule,
    base_rate_biases,
    correlation_rule,
    empirical_distribution,
    exact_log_marginal_bm,
    exact_log_z_bm,
    exact_log_z_grbm,
    exact_log_z_rbm,
    graph_colouring,
    kl_divergence,
    make_graph,
    reverse_ais_log_weights,
    reverse_ais_log_z,
    state_codes,
)

__all__ = [
    "PCD",
    "RBM",
    "BernoulliRBM",
    "BoltzmannMachine",
    "GaussianRBM",
    "ParallelTempering",
    "ais_log_weights",
    "ais_log_z",
    "ais_schedule",
    "base_rate_biases",
    "correlation_rule",
    "empirical_distribution",
    "exact_log_marginal_bm",
    "exact_log_z_bm",
    "exact_log_z_grbm",
    "exact_log_z_rbm",
    "graph_colouring",
    "kl_divergence",
    "make_graph",
    "reverse_ais_log_weights",
    "reverse_ais_log_z",
    "state_codes",
]
