"""Argument checks at the public boundary: each error names the argument, what came and what was expected.

Shapes and dtypes are checked always (they are static under ``jit``); finiteness only for concrete
arrays, because inside traced code a non-finite value is data, not an error.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True for arrays whose values are known now (not tracers inside ``jit``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def require_finite(name: str, x) -> None:
    """ValueError naming ``name`` if concrete ``x`` holds NaN or infinity."""
    if x is None or not is_concrete(x):
        return
    values = np.asarray(x)
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(f"{name} must be finite; it holds {bad} NaN or infinite value(s) of {values.size}")


def require_float(name: str, x) -> None:
    """TypeError naming ``name`` unless ``x`` has a floating dtype."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must have a floating dtype; got {jnp.result_type(x)}")


def check_lstm_inputs(params, xs, h0=None, c0=None) -> int | None:
    """Validate an LSTM call and return the number of variants V (None when unbatched).

    Accepted shapes (H hidden, D input, T steps, V variants):

    - unbatched: ``W`` (D, 4H), ``U`` (H, 4H), ``b`` (4H,), ``xs`` (T, D), ``h0``/``c0`` (H,);
    - batched: the same with a leading V on ``W``, ``U``, ``b``; ``xs`` (T, D) shared or (V, T, D);
      ``h0``/``c0`` (H,) shared or (V, H).
    """
    W, U, b = (jnp.shape(a) for a in params)
    if len(U) not in (2, 3):
        raise ValueError(f"params.U must have shape (H, 4H) or (V, H, 4H); got {U}")
    batched = len(U) == 3
    lead = U[:1] if batched else ()
    H = U[-2]
    if H < 1 or U[-1] != 4 * H:
        raise ValueError(f"params.U must have shape {(*lead, 'H', '4H')} with H >= 1; got {U}")
    if len(W) != len(U) or W[-1] != 4 * H or W[:-2] != lead:
        raise ValueError(f"params.W must have shape {(*lead, 'D', 4 * H)} to match params.U {U}; got {W}")
    if b != (*lead, 4 * H):
        raise ValueError(f"params.b must have shape {(*lead, 4 * H)} to match params.U {U}; got {b}")
    D = W[-2]
    xs_shape = jnp.shape(xs)
    shared = len(xs_shape) == 2
    per_variant = batched and len(xs_shape) == 3 and xs_shape[0] == lead[0]
    if not (shared or per_variant) or xs_shape[-1] != D:
        want = f"(T, {D})" + (f" or ({lead[0]}, T, {D})" if batched else "")
        raise ValueError(f"xs must have shape {want} (time-major; D = params.W.shape[-2]); got {xs_shape}")
    if xs_shape[-2] < 1:
        raise ValueError(f"xs must hold at least one time step; got shape {xs_shape}")
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None and jnp.shape(s) not in ([(H,), (*lead, H)] if batched else [(H,)]):
            raise ValueError(f"{name} must have shape (H,) = ({H},){' or (V, H)' if batched else ''}; got {jnp.shape(s)}")
    dtype = jnp.result_type(params.U)
    for name, a in (("params.W", params.W), ("params.U", params.U), ("params.b", params.b), ("xs", xs), ("h0", h0), ("c0", c0)):
        if a is None:
            continue
        require_float(name, a)
        if jnp.result_type(a) != dtype:
            raise TypeError(f"{name} has dtype {jnp.result_type(a)} but params.U has {dtype}; use one float dtype throughout")
    for name, a in (("xs", xs), ("params.W", params.W), ("params.U", params.U), ("params.b", params.b), ("h0", h0), ("c0", c0)):
        require_finite(name, a)
    return lead[0] if batched else None


def read_npz(path, *, what: str) -> dict:
    """The arrays of an ``.npz`` file (no pickles); clear errors for a missing or unreadable file.

    ``what`` names the file's role in messages (``"data"``, ``"weights"``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the {what} file is empty (0 bytes); expected an .npz archive of named arrays")
    try:
        with open(path, "rb") as file:  # closed here even when numpy fails half-way through an archive
            loaded = np.load(file, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError(f"{path}: a single array of shape {np.shape(loaded)}, not an .npz archive of named "
                                 f"arrays; save the {what} with numpy.savez(path, NAME=array, ...)")
            with loaded as z:
                return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
