"""gradflow: exact gradient flow in LSTMs, for many model variants at once.

The public API is what this file re-exports.
"""

from gradflow.flow.engine import WRT, decay_rate, horizon, lag_norms, loss_grad_norms, step_lag_norms, step_loss_grad_norms
from gradflow.lstm.init import SCHEMES, init_lstm
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS, LSTMParams, LSTMState, lstm_step, unroll
from gradflow.lstm.module import LSTM
from gradflow.config import load_config, parse_config
from gradflow.sweep.results import open_results
from gradflow.profiles.job import run_sweep, sweep_results
from gradflow.workflows import collapse_map

__version__ = "0.2.0"

__all__ = [
    "ACTIVATIONS",
    "LSTM",
    "LSTMParams",
    "LSTMState",
    "RECURRENT_ACTIVATIONS",
    "SCHEMES",
    "WRT",
    "collapse_map",
    "decay_rate",
    "horizon",
    "init_lstm",
    "lag_norms",
    "load_config",
    "loss_grad_norms",
    "lstm_step",
    "open_results",
    "parse_config",
    "run_sweep",
    "step_lag_norms",
    "step_loss_grad_norms",
    "sweep_results",
    "unroll",
]
