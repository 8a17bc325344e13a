"""Root pytest configuration: the notebooks run at smoke size under the test suite, and the
suite runs in two processes (pyproject.toml's addopts)."""

import os

import pytest

# Read by every notebook's parameters cell; the kernels nbval starts inherit it.
os.environ.setdefault("MMKERAS_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which runs the suite in two processes
def pytest_xdist_make_scheduler(config, log):
    """xdist's scheduling by module (``--dist loadscope``), with every notebook in one unit: a
    test file's tests run in one process, so that its module fixtures (a smoke-trained model)
    are made once, and the notebooks run in one process, in order, as nbval needs and as
    they need, sharing ``runs/notebooks-smoke``. (``--dist loadgroup`` would say this with
    marks, but pytest-xdist 3.8 cannot regroup pytest 9's node ids.) The largest unit goes
    out first: the notebooks, while the other process runs the test files."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebooksTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "notebooks" if path.endswith(".ipynb") else path

    return NotebooksTogether(config, log)
