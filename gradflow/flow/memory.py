r"""Memory of one compiled lag-profile call, and the largest chunk of variants that fits a budget.

Memory of one compiled call on ``n`` variants (itemsize ``b``; H hidden, D inputs, T steps,
W = number of profiles), estimated by :func:`chunk_bytes`:

.. math::

    b\,\big[\, n\,(P + W (T + 2) + 8 + 4 T H) + \min(n, B)\,(20\,T H + 32 H^2 + T H^2) \big] + 16\,\mathrm{KiB},
    \qquad P = 4H (D + H + 1),

parameters ``P``, outputs and one (T, 4H) gate trajectory for every variant of the chunk, plus the
working set of one vmapped block of ``B = VARIANT_BLOCK`` variants: forward states (T, 2H), Jacobian
coefficients (T, 6H), pre-activations, gates and their derivatives (T, 12H), the accumulator and
pullback matrices (XLA may build part of the per-step (2H, H) matrices ahead of the loop: T H^2).
The constants are fitted to XLA's own buffer plan on CPU, which the estimate bounds from above
within a factor of 1.2 to 4 over H = 2..256, T = 5..2000 (``tests/test_memory.py``;
``benchmarks/bench_sweep.py`` reports both).

Every size gradflow reports is written by :func:`format_bytes` (binary units, one decimal).
"""

from __future__ import annotations

from gradflow.flow.engine import VARIANT_BLOCK
from gradflow.flow.variants import ModelSpec

#: Buffers of a compiled call that do not grow with its size (constants, loop bookkeeping).
FIXED_BYTES = 16 * 2**10

#: Largest chunk that ``chunk_size = "auto"`` picks: chunks are also the unit of progress and resume.
MAX_AUTO_CHUNK = 256


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit (B, KiB, MiB, GiB, TiB) that keeps the number >= 1.

    Example:
      >>> format_bytes(512), format_bytes(16 * 2**10 + 512), format_bytes(160 * 2**30), format_bytes(3 * 2**50)
      ('512 B', '16.5 KiB', '160.0 GiB', '3072.0 TiB')
    """
    power = 0
    while power < len(_UNITS) - 1 and abs(n) >= 2 ** (10 * (power + 1)):
        power += 1
    return f"{n:.0f} B" if power == 0 else f"{n / 2 ** (10 * power):.1f} {_UNITS[power]}"


def chunk_bytes(spec: ModelSpec, n: int, *, n_profiles: int, itemsize: int = 4) -> int:
    """Estimated peak bytes of one compiled call on ``n`` variants of ``spec`` (formula above)."""
    H, D, T = spec.hidden_size, spec.input_size, spec.seq_len
    per_variant = 4 * H * (D + H + 1) + n_profiles * (T + 2) + 8 + 4 * T * H
    working = 20 * T * H + 32 * H * H + T * H * H
    return itemsize * (n * per_variant + min(n, VARIANT_BLOCK) * working) + FIXED_BYTES


def auto_chunk_size(specs: list[ModelSpec], budget_bytes: int, *, n_profiles: int, itemsize: int = 4) -> int:
    """The largest ``n <= MAX_AUTO_CHUNK`` whose :func:`chunk_bytes` fits ``budget_bytes`` for every spec.

    Raises:
      ValueError: if not even one variant of some spec fits, naming the spec and the bytes it needs.
    """
    n = MAX_AUTO_CHUNK
    for spec in specs:
        need = chunk_bytes(spec, 1, n_profiles=n_profiles, itemsize=itemsize)
        if need > budget_bytes:
            raise ValueError(
                f"one variant of {spec} needs about {format_bytes(need)}, more than the memory budget of "
                f"{format_bytes(budget_bytes)}; raise [analysis].memory_budget_mb or shorten seq_len"
            )
        while chunk_bytes(spec, n, n_profiles=n_profiles, itemsize=itemsize) > budget_bytes:
            n -= 1
    return n


def check_chunk_size(specs: list[ModelSpec], n: int, budget_bytes: int, *, n_profiles: int, itemsize: int = 4) -> None:
    """Refuse a chunk of ``n`` variants whose :func:`chunk_bytes` exceeds ``budget_bytes`` for some spec.

    Raises:
      ValueError: naming the spec, the estimate and the budget.
    """
    for spec in specs:
        need = chunk_bytes(spec, n, n_profiles=n_profiles, itemsize=itemsize)
        if need > budget_bytes:
            raise ValueError(f"a chunk of {n} variant{'s' if n > 1 else ''} of {spec} needs about "
                             f"{format_bytes(need)}, more than the memory budget of {format_bytes(budget_bytes)}")
