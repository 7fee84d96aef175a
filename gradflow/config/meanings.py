"""What each setting means, and in what units: the attributes of a store's coordinates (CF ``long_name``, ``units``).

The meanings are those of the configuration reference (the field metadata of :mod:`gradflow.config.tables`),
so a coordinate of a store says what its config key says.
"""

from __future__ import annotations

from gradflow.config.tables import TABLES, keys

#: Units of the numeric settings (``"1"``: dimensionless); names and seeds have none.
UNITS: dict[str, str] = {
    "input_size": "features", "hidden_size": "units", "seq_len": "steps", "n": "sequences",
    "forget_bias": "1", "weight_scale": "1", "learning_rate": "1", "weight_decay": "1", "l2": "1", "clip_norm": "1",
}


def coordinate_attrs(names) -> dict[str, dict[str, str]]:
    """``{name: {"long_name": ..., "units": ...}}`` for the settings among ``names`` (others are left out)."""
    meanings = {f.name: f.metadata["meaning"] for table in TABLES.values() for f in keys(table)}
    out = {}
    for name in names:
        if name in meanings:
            out[name] = {"long_name": meanings[name], **({"units": UNITS[name]} if name in UNITS else {})}
    return out
