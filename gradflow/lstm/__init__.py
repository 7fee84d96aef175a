"""The LSTM itself: cell, initialisation, ``lax.scan`` unroll, the model representation, the NNX shell.

Owns the math of one recurrent layer (pure functions of a params pytree, one variant, one sequence,
time-major) and the checks of its arguments. Imports nothing of gradflow: every other layer builds on it.
"""
