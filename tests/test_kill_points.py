"""A kill-point sweep, the way databases test crash safety: `train` (a real process) is
killed with SIGKILL at each of its writes in turn, run again, and must then finish with
every record whole. The writes are named by mmkeras.atomic.KILL_AT, which the test arms.
"""

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from mmkeras.atomic import KILL_AT
from mmkeras.data import shapes
from mmkeras.data.folder import load_captions
from mmkeras.errors import UserError
from mmkeras.runs import load_model

EPOCHS = 3
# Each write of a run, at its worst moment; "NAME#N" is the N-th write of NAME.
TRAIN_WRITES = [
    "run_state.json#1",  # the run starts
    "history.csv#1",  # epoch 1's history row is written, its backup is not
    "best.keras#1",  # the best model so far, complete beside its place
    "backup#2",  # epoch 2's backup is written, its early-stopping step is not
    "model.keras#1",  # the final model
    "config.json#1",  # the settings and facts of the run, before its scores
    "metrics.json#1",  # the test scores
]
DATA_WRITES = ["Images#1", "captions.txt#1", "shapes.json#1"]


def _run(*args, kill_at=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(KILL_AT, None)
    if kill_at:
        env[KILL_AT] = kill_at
    return subprocess.run([sys.executable, "-m", "mmkeras", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def _fingerprint(folder):
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_points_data")
    return shapes.generate(folder, shapes.ShapesConfig(num_train=40, num_val=8, num_test=8), progress=False)


@pytest.mark.parametrize("write", TRAIN_WRITES)
def test_train_killed_at_each_write_finishes_when_run_again(write, tiny_data, tmp_path):
    data_before = _fingerprint(tiny_data)
    out = tmp_path / "run"
    args = ("train", "--data", tiny_data, "--decoder", "init", "--epochs", EPOCHS,
            "--batch-size", 8, "--out", out)
    killed = _run(*args, kill_at=write)
    assert killed.returncode == -signal.SIGKILL, f"never reached {write}: {killed.stderr[-2000:]}"

    again = _run(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    if write in ("backup#2", "model.keras#1", "config.json#1", "metrics.json#1"):
        assert "resuming the interrupted run" in again.stdout
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS)), "every epoch once"
    with open(out / "val_captions.csv", newline="") as handle:
        captioned = [(int(row["epoch"]), row["image"]) for row in csv.DictReader(handle)]
    assert captioned == [(epoch, f"val_{i:05d}.png") for epoch in range(EPOCHS) for i in range(4)]
    best = min(range(EPOCHS), key=lambda epoch: float(rows[epoch]["val_loss"]))
    best_model, final_model = load_model(out / "best.keras"), load_model(out / "model.keras")
    if best == EPOCHS - 1:  # early stopping restores the best weights: then they are one model
        for saved, final in zip(best_model.get_weights(), final_model.get_weights()):
            assert (saved == final).all()
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 8
    assert json.loads((out / "run_state.json").read_text())["stage"] == "finished"
    assert _fingerprint(tiny_data) == data_before, "nothing outside --out changed"


@pytest.mark.parametrize("write", DATA_WRITES)
def test_drawing_the_shapes_killed_at_each_write_never_leaves_a_folder_that_loads_wrong(write, tmp_path):
    args = ("data", "shapes", "--out", tmp_path / "shapes", "--num-train", 6, "--num-val", 2,
            "--num-test", 2)
    killed = _run(*args, kill_at=write)
    assert killed.returncode == -signal.SIGKILL, f"never reached {write}: {killed.stderr[-2000:]}"
    reference = shapes.generate(tmp_path / "reference", shapes.ShapesConfig(num_train=6, num_val=2, num_test=2),
                                progress=False)
    try:  # what a kill leaves either loads as the whole new dataset, or is refused
        left = load_captions(tmp_path / "shapes")
        assert left["train"].captions == load_captions(reference)["train"].captions
    except UserError:
        pass
    again = _run(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load_captions(tmp_path / "shapes")["train"]) == 6


def test_train_killed_while_writing_the_feature_cache_computes_it_again(tiny_data, tmp_path):
    """A frozen backbone's features are cached in the data folder. With a cache already there
    and stale (an image rewritten), a kill while the new features are written (the snapshot
    not finished), one before the new cache's manifest is in place, and one between the old
    folder's removal and the new one's rename each leave a cache that the next run computes
    again rather than trusts."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    out = tmp_path / "run"
    args = ("train", "--data", data, "--backbone", "MobileNetV2", "--backbone-weights", "none",
            "--image-size", 32, "--decoder", "init", "--epochs", 1, "--batch-size", 8, "--out", out)
    assert _run(*args).returncode == 0
    image = next((data / "Images").glob("train_*.png"))
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # the cache is stale
    for write in ("train.partial#1", "manifest.json#1", "train#1"):  # the train split's cache, at each write
        killed = _run(*args, kill_at=write)
        assert killed.returncode == -signal.SIGKILL, f"never reached {write}: {killed.stderr[-2000:]}"
    again = _run(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    (cache,) = (data / "features").iterdir()
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["train", "val"]
    for split, size in (("train", 40), ("val", 8)):
        assert json.loads((cache / split / "manifest.json").read_text())["backbone"]
        assert sum(1 for _ in tf.data.Dataset.load(str(cache / split))) == size
    assert json.loads((out / "run_state.json").read_text())["stage"] == "finished"
