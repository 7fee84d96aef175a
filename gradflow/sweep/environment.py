"""What a result was computed on: package versions, devices, matmul precision, date."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import jax

PACKAGES = ("gradflow", "jax", "jaxlib", "flax", "optax", "numpy", "matplotlib")


def matmul_precision() -> str:
    """The float32 matmul precision in force, in words (JAX's default differs by backend)."""
    setting = jax.config.jax_default_matmul_precision
    if setting is not None:
        return str(setting)
    defaults = {"cpu": "default (full float32 on CPU)", "gpu": "default (TF32 on NVIDIA GPUs)", "tpu": "default (bfloat16 passes on TPU)"}
    return defaults.get(jax.default_backend(), "default")


def git_commit() -> str | None:
    """The commit of the gradflow checkout this code runs from (``-dirty`` with uncommitted changes to tracked
    files), or None when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


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
        "git_commit": git_commit(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "process_count": jax.process_count(),
        "matmul_precision": matmul_precision(),
        "x64_enabled": bool(jax.config.jax_enable_x64),
    }
