"""Configuration: one TOML vocabulary, one reader, typed and validated tables for every command.

May import :mod:`gradflow.lstm`, :mod:`gradflow.flow`, :mod:`gradflow.data` and :mod:`gradflow.training`
(for the names of activations, schemes, optimisers); nothing of the applications.
"""
