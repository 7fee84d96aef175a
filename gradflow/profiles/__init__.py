"""Lag-profile sweeps: a config's grid of variants as a sweep job, run into the resumable store.

An application: may import lstm, flow, data, sweep and config; never plot or cli.
"""
