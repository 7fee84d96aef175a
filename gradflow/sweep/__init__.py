"""Sweep infrastructure: chunks of a grid, devices, processes, the resumable store, progress, the runner.

A job is data (:class:`gradflow.sweep.job.Job`): the runner and the store consume its description and
know nothing of LSTMs, configs or applications. Imports nothing of gradflow outside this package.
"""
