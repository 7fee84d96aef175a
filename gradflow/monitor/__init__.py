"""Monitors during training: lag profiles on a fixed probe batch every N steps, from Keras, PyTorch and JAX loops.

May import :mod:`gradflow.lstm`, :mod:`gradflow.flow`, :mod:`gradflow.data` and :mod:`gradflow.sweep`; the
frameworks (keras, torch) only inside the functions that need them.
"""
