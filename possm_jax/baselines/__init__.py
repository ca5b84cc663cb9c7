"""Baseline decoders on binned counts (docs/benchmarks.md). The Wiener filter is numpy only."""

from possm_jax.baselines.wiener import WienerFilter, fit_wiener, lagged_design, r2_score, ridge_solutions

__all__ = ["WienerFilter", "fit_wiener", "lagged_design", "r2_score", "ridge_solutions"]
