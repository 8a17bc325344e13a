"""Root pytest configuration: the notebooks run at smoke size under the test suite."""

import os

# Read by every notebook's parameters cell; the kernels nbval starts inherit it.
os.environ.setdefault("MMKERAS_SMOKE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
