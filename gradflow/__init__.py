"""gradflow: exact gradient flow in LSTMs, for many model variants at once.

The public API is what this file re-exports; everything the README teaches is ``gradflow.X``. The layers
beneath (see the README's Architecture): :mod:`gradflow.lstm` (the model), :mod:`gradflow.flow` (the
engine), :mod:`gradflow.data`, :mod:`gradflow.training`, :mod:`gradflow.sweep` (infrastructure),
:mod:`gradflow.config`, the applications :mod:`gradflow.profiles`, :mod:`gradflow.collapse`,
:mod:`gradflow.diagnose`, :mod:`gradflow.monitor` (profiles during training), and :mod:`gradflow.plot` (figures;
imported only when a figure is drawn).
"""

from gradflow.collapse.metrics import collapse_metrics
from gradflow.config import Config, ConfigError, load_config, parse_config
from gradflow.data.tasks import Task, adding_task, load_task, recall_task, seed_task, split
from gradflow.data.loading import load_model
from gradflow.diagnose.checks import Diagnosis
from gradflow.diagnose.checks import diagnose_model as diagnose
from gradflow.diagnose.counterfactual import diagnose_setup
from gradflow.flow.engine import (
    NORMS,
    WRT,
    decay_rate,
    horizon,
    lag_norms,
    lag_profile_block,
    loss_grad_norms,
    step_lag_norms,
    step_loss_grad_norms,
)
from gradflow.flow.lag_matrix import lag_matrix
from gradflow.flow.lyapunov import (
    finite_time_exponents,
    lstm_finite_time_exponents,
    lstm_lyapunov_spectrum,
    lyapunov_spectrum,
)
from gradflow.flow.methods import METHODS, LagEstimate, Method, estimate_lag_norms
from gradflow.flow.networks import LayerProfile, ModelProfile, cell_lag_norms, model_profiles
from gradflow.flow.probes import probe_lag_norms
from gradflow.flow.saturation import GATE_NAMES, saturation_fractions
from gradflow.flow.variants import Grid, ModelSpec, init_variants, probe_inputs, profile_variants
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS, LSTMParams, LSTMState, lstm_step, unroll
from gradflow.lstm.gru import GRUParams, gru_step, gru_unroll
from gradflow.lstm.init import SCHEMES, init_lstm
from gradflow.lstm.model import Bidirectional, Head, Layer, Model, final_state, hidden_states, predictions
from gradflow.lstm.module import LSTM
from gradflow.monitor.core import ProfileMonitor
from gradflow.monitor.keras import keras_monitor
from gradflow.monitor.store import open_monitor
from gradflow.monitor.torch import TorchMonitor
from gradflow.profiles.job import profile_job, run_sweep, sweep_results
from gradflow.sweep.job import Job
from gradflow.sweep.results import open_results
from gradflow.training.train import TrainGrid, TrainSpec, train_variants
from gradflow.workflows import collapse_map

__version__ = "0.4.0"

__all__ = [
    "ACTIVATIONS",
    "Bidirectional",
    "Config",
    "ConfigError",
    "Diagnosis",
    "GATE_NAMES",
    "GRUParams",
    "Grid",
    "Head",
    "Job",
    "LSTM",
    "LSTMParams",
    "LSTMState",
    "LagEstimate",
    "Layer",
    "LayerProfile",
    "METHODS",
    "Method",
    "Model",
    "ModelProfile",
    "ModelSpec",
    "NORMS",
    "ProfileMonitor",
    "RECURRENT_ACTIVATIONS",
    "SCHEMES",
    "Task",
    "TorchMonitor",
    "TrainGrid",
    "TrainSpec",
    "WRT",
    "adding_task",
    "cell_lag_norms",
    "collapse_map",
    "collapse_metrics",
    "decay_rate",
    "diagnose",
    "diagnose_setup",
    "estimate_lag_norms",
    "final_state",
    "finite_time_exponents",
    "gru_step",
    "gru_unroll",
    "hidden_states",
    "horizon",
    "init_lstm",
    "init_variants",
    "keras_monitor",
    "lag_matrix",
    "lag_norms",
    "lag_profile_block",
    "load_config",
    "load_model",
    "load_task",
    "loss_grad_norms",
    "lstm_finite_time_exponents",
    "lstm_lyapunov_spectrum",
    "lstm_step",
    "lyapunov_spectrum",
    "model_profiles",
    "open_monitor",
    "open_results",
    "parse_config",
    "predictions",
    "probe_inputs",
    "probe_lag_norms",
    "profile_job",
    "profile_variants",
    "recall_task",
    "run_sweep",
    "saturation_fractions",
    "seed_task",
    "split",
    "step_lag_norms",
    "step_loss_grad_norms",
    "sweep_results",
    "train_variants",
    "unroll",
]
