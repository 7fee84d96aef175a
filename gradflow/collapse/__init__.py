"""Output collapse: verdicts against the best constant predictor, onsets, and the collapse-map sweep.

An application: may import every layer below it (lstm, flow, data, training, sweep, config), never plot or cli.
"""
