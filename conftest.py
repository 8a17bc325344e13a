"""Root pytest configuration: the notebooks run at smoke size under the test suite, and the
suite runs in two processes (pyproject.toml's addopts)."""

import os

import pytest

# Read by every notebook's parameters cell; the kernels nbval starts inherit it.
os.environ.setdefault("MMKERAS_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_collection_modifyitems(items):
    """Groups for pytest-xdist's ``--dist loadgroup``: each test file's tests run in one
    process, so that a module's fixtures (a smoke-trained model) are made once; every notebook
    cell runs in one process, in order, as nbval needs and as the notebooks, which share
    ``runs/notebooks-smoke``, need too."""
    for item in items:
        group = "notebooks" if item.path.suffix == ".ipynb" else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
