"""Variants split over several (simulated) CPU devices give the single-device results, bit for bit."""

import pytest
import os
import subprocess
import sys
import textwrap

import numpy as np

from gradflow.config import parse_config
from gradflow.sweep.results import Results
from gradflow.sweep.devices import local_mesh
from gradflow.profiles.job import run_sweep

#: 15 variants in chunks of 6 (2 rows of 3 seeds): 3 chunks, the last one short; on 4 devices one
#: batch of 3 chunks with one idle device.
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


def _sweep_on_devices(n_devices: int, out) -> None:
    script = textwrap.dedent(
        f"""
        import jax
        from gradflow.config import parse_config
        from gradflow.profiles.job import run_sweep
        assert len(jax.local_devices()) == {n_devices}
        run_sweep(parse_config({CONFIG!r}), {str(out)!r}, show_progress=False)
        """
    )
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n_devices), "JAX_ENABLE_X64": "0"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_four_devices_equal_one_device(tmp_path):
    run_sweep(parse_config(CONFIG), tmp_path / "one", show_progress=False)
    _sweep_on_devices(4, tmp_path / "four")
    single, sharded = Results.load(tmp_path / "one"), Results.load(tmp_path / "four")
    assert sharded.attrs["environment"]["devices"] != single.attrs["environment"]["devices"]
    assert sharded.attrs["chunk_shape"] == single.attrs["chunk_shape"] == [2, 3]
    for name, want in single.data.items():
        got = sharded.data[name]
        assert got.shape == want.shape and got.dtype == want.dtype
        # every device runs the same program on the same batch size: identical, not merely close
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_the_mesh_has_one_variants_axis_over_the_local_devices():
    mesh = local_mesh()
    assert mesh.axis_names == ("variants",) and mesh.size == 1
