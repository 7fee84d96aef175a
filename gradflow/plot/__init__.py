"""Figures drawn from stored results, never recomputed: the only package that imports matplotlib.

Chooses no backend at import (the CLI selects a non-interactive one). May import every layer below it.
"""
