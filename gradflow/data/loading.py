"""One entry point for the model a user has: a file (``.npz``, PyTorch ``.pt``/``.pth``, Keras ``.keras``) or a live
object (a PyTorch module or state dict, a Keras model, Flax NNX cells and RNNs, a Linen parameter tree), read as
the one model representation, :class:`gradflow.lstm.model.Model`.

The readers live beside this module, one per framework (:mod:`gradflow.data.weights`,
:mod:`gradflow.data.torch_files`, :mod:`gradflow.data.keras_files`, :mod:`gradflow.data.flax_modules`); torch and
keras are imported only when a file or object of theirs is read.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from gradflow.lstm.model import Model

#: File suffixes read, by framework.
SUFFIXES: dict[str, tuple[str, ...]] = {"npz": (".npz",), "torch": (".pt", ".pth", ".ckpt"), "keras": (".keras",)}


def _framework_object(obj, package: str, attribute: str) -> bool:
    """Whether ``obj`` is an instance of ``package.attribute``, judged only if ``package`` is imported already
    (an object of a framework cannot exist before its framework is imported)."""
    module = sys.modules.get(package)
    if module is None:
        return False
    cls = module
    for part in attribute.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(obj, cls)


def _with_head_output(model: Model, head_output: str | None) -> Model:
    if head_output is None or model.head is None:
        return model
    return model.replace(head=model.head.replace(output=head_output))


def _load_file(path: Path, *, rnn, head, head_output, activation, recurrent_activation) -> Model:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    if suffix in SUFFIXES["npz"]:
        from gradflow.data.weights import load_model as load_npz

        return load_npz(path, activation=activation or "tanh", recurrent_activation=recurrent_activation or "sigmoid",
                        head_output=head_output or "linear", rnn=rnn, head=head)
    if suffix in SUFFIXES["torch"]:
        from gradflow.data.torch_files import load_torch_model

        return load_torch_model(path, rnn=rnn, head=head, head_output=head_output or "linear")
    if suffix in SUFFIXES["keras"]:
        from gradflow.data.keras_files import load_keras_model

        return _with_head_output(load_keras_model(path), head_output)
    known = ", ".join(s for suffixes in SUFFIXES.values() for s in suffixes)
    raise ValueError(f"{str(path)!r}: unknown model file type {suffix or '(no suffix)'!r}; gradflow reads {known} "
                     f"(.h5 Keras files: re-save as .keras; PyTorch: torch.save(model.state_dict(), 'model.pt'))")


def load_model(
    source,
    *,
    rnn: str | None = None,
    head: str | None = None,
    head_output: str | None = None,
    activation: str | None = None,
    recurrent_activation: str | None = None,
) -> Model:
    """The model in ``source``, whatever framework it comes from, as a :class:`gradflow.lstm.model.Model`.

    Args:
      source: a path (``.npz``, ``.pt``/``.pth``/``.ckpt``, ``.keras``), a :class:`Model`, a gradflow NNX ``LSTM``,
        a PyTorch ``nn.Module`` or state dict, a Keras model, a Flax NNX cell / ``nnx.RNN`` / ``nnx.Bidirectional``
        or a list of them, or a Linen parameter tree.
      rnn: for PyTorch names (``.pt`` or ``.npz``), the key prefix of the recurrent module to read when a file holds several (e.g. ``"encoder."``).
      head: for PyTorch names, the prefix of the ``Linear`` head when several fit the top layer.
      head_output: the head's output function (``"sigmoid"``, ``"softmax"``, ``"linear"``); PyTorch and ``.npz``
        files do not say it (default ``"linear"``), Keras files do (given here, it overrides theirs).
      activation, recurrent_activation: for ``.npz`` files and Linen trees, which do not say them (default tanh and
        sigmoid); PyTorch's are fixed, Keras files and NNX cells say theirs.

    Raises:
      ValueError: an unknown file type or object, a malformed file (the message names the key or layer), or a
        framework that is not installed (the message names the extra: ``pip install "gradflow[torch]"``).

    Example:
      >>> import tempfile, numpy as np
      >>> path = tempfile.mkdtemp() + "/w.npz"
      >>> np.savez(path, kernel=np.zeros((2, 12)), recurrent_kernel=np.zeros((3, 12)), bias=np.zeros(12))
      >>> load_model(path).hidden_size
      3
    """
    if isinstance(source, (str, Path)):
        return _load_file(Path(source), rnn=rnn, head=head, head_output=head_output, activation=activation,
                          recurrent_activation=recurrent_activation)
    if isinstance(source, Model):
        return _with_head_output(source, head_output)
    if hasattr(source, "model") and isinstance(getattr(source, "model", None), Model):  # gradflow's NNX LSTM
        return _with_head_output(source.model, head_output)
    torch_options = {"rnn": rnn, "head": head, "head_output": head_output or "linear"}
    if _framework_object(source, "torch", "nn.Module"):
        from gradflow.data.torch_files import model_from_torch_module

        return model_from_torch_module(source, **torch_options)
    if _framework_object(source, "keras", "Model"):
        from gradflow.data.keras_files import model_from_keras

        return _with_head_output(model_from_keras(source), head_output)
    if isinstance(source, Mapping) and any("weight_hh_l" in str(key) for key in source):
        from gradflow.data.torch_files import model_from_state_dict

        return model_from_state_dict(source, **torch_options)
    from gradflow.data.flax_modules import model_from_flax

    return model_from_flax(source, head_output=head_output or "linear", activation=activation,
                           recurrent_activation=recurrent_activation)
