"""Gradient flow: the exact renormalised Jacobian engine, profile summaries, gate saturation, variant batches.

Owns lag profiles ``log10 ||dh_T/dh_{T-k}||`` (by lag, index 0 = lag 1), per-step loss gradients,
horizons and decay rates, and the vmapped evaluation of a grid of variants. May import :mod:`gradflow.lstm`.
"""
