"""Vmapped training: every variant of a grid trained at once with per-variant optax hyperparameters.

May import :mod:`gradflow.lstm`, :mod:`gradflow.flow` and :mod:`gradflow.data`.
"""
