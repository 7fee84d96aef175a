"""Doctests run as a user would: JAX's default float32, whatever the test suite's settings."""

import jax
import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _float32_for_doctests(request):
    if isinstance(request.node, DoctestItem):
        with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
            yield
    else:
        yield
