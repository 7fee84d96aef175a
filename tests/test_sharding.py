"""Variants split over several (simulated) CPU devices give the single-device results."""

import os
import subprocess
import sys
import textwrap

import numpy as np

from gradflow.config import parse_config
from gradflow.results import Results
from gradflow.sharding import chunk_for, local_mesh
from gradflow.sweep import run_sweep

CONFIG = """\
[model]
input_size = 3
hidden_size = 5

[grid]
forget_bias = [-1.0, 0.0, 1.0, 2.0, 3.0]
seed = [0, 1, 2]

[data]
seq_len = 30

[analysis]
chunk_size = 6
"""


def _run_on_devices(n_devices: int, out) -> Results:
    script = textwrap.dedent(
        f"""
        import jax
        from gradflow.config import parse_config
        from gradflow.sweep import run_sweep
        assert len(jax.local_devices()) == {n_devices}
        run_sweep(parse_config({CONFIG!r}), show_progress=False).save({str(out)!r})
        """
    )
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n_devices), "JAX_ENABLE_X64": "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Results.load(out)


def test_four_devices_equal_one_device(tmp_path):
    single = run_sweep(parse_config(CONFIG), show_progress=False)
    sharded = _run_on_devices(4, tmp_path / "four")
    assert sharded.attrs["local_devices"] == 4 and sharded.attrs["chunk_size"] == 8  # 6 rounded up to 4 devices
    for name, want in single.data.items():
        got = sharded.data[name]
        assert got.shape == want.shape and got.dtype == want.dtype
        if name.startswith("horizon"):
            np.testing.assert_array_equal(got, want)
        else:  # float32 rounding differs with the per-device batch size: ~1e-6 decades
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_chunks_are_a_whole_number_of_variants_per_device():
    mesh = local_mesh()
    assert mesh.axis_names == ("variants",) and mesh.size == 1
    assert [chunk_for(n, 4) for n in (1, 4, 6, 9)] == [4, 4, 8, 12]
    assert chunk_for(7, mesh.size) == 7
