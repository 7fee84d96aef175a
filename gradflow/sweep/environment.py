"""What a result was computed on: package versions, devices, matmul precision, date."""

from __future__ import annotations

import datetime
import platform
from importlib import metadata

import jax

PACKAGES = ("gradflow", "jax", "jaxlib", "flax", "optax", "numpy", "matplotlib")


def matmul_precision() -> str:
    """The float32 matmul precision in force, in words (JAX's default differs by backend)."""
    setting = jax.config.jax_default_matmul_precision
    if setting is not None:
        return str(setting)
    defaults = {"cpu": "default (full float32 on CPU)", "gpu": "default (TF32 on NVIDIA GPUs)", "tpu": "default (bfloat16 passes on TPU)"}
    return defaults.get(jax.default_backend(), "default")


def describe_environment() -> dict:
    """JSON-ready description of the software and hardware a run used."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "process_count": jax.process_count(),
        "matmul_precision": matmul_precision(),
        "x64_enabled": bool(jax.config.jax_enable_x64),
    }
