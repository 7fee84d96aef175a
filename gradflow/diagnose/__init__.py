"""Diagnosis: "why does my LSTM output the same value?" as measured checks, counterfactual remedies, a report.

An application: may import every layer below it (lstm, flow, data, training, sweep, config, collapse), never
plot or cli (the report's figures are passed in by the caller).
"""
