"""Data: sequence tasks (seed setting, recall, adding problem), user ``.npz`` data and model weight files.

May import :mod:`gradflow.lstm` (a weight file becomes an LSTM model); nothing above it.
"""
