"""Shared fixtures: small generated data and one smoke-trained model for the whole session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from mmkeras.data import shapes


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory):
    """Generated datasets go to a temporary folder, never into the checkout."""
    root = tmp_path_factory.mktemp("mmkeras_data")
    previous = os.environ.get("MMKERAS_DATA")
    os.environ["MMKERAS_DATA"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("MMKERAS_DATA", None)
    else:
        os.environ["MMKERAS_DATA"] = previous


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """A tiny Shapes Captions folder: 40 train, 8 val, 8 test images."""
    folder = tmp_path_factory.mktemp("small_shapes")
    return shapes.generate(folder, shapes.ShapesConfig(num_train=40, num_val=8, num_test=8),
                           progress=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_root):
    """``train --smoke`` once, in process; tests read its model and files."""
    from mmkeras.caption.train import train
    from mmkeras.config import TrainConfig
    out = tmp_path_factory.mktemp("smoke_run")
    result = train(TrainConfig(smoke=True, out=str(out)), verbose=0, progress=False)
    return out, result


@pytest.fixture(scope="session")
def caption_model(trained_run):
    return trained_run[1]["model"]
