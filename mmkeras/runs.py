"""What every training run shares, so that each task only says what is its own.

A run, whatever it trains, goes the same way: :func:`start` (seed, output folder and its lock),
:func:`epochs_for` (the smoke size), :func:`optimizer` (Adam with clipped gradients and a
cosine decay), :func:`fit` (``fit`` with validation data, ``history.csv`` and TensorBoard),
:func:`save_model`, then :func:`record` (``config.json`` with the package versions, and
``metrics.json``). Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
import zipfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from filelock import FileLock, Timeout

from mmkeras import atomic
from mmkeras.config import SMOKE_EPOCHS
from mmkeras.errors import UserError

# Imported for what importing them does: register every layer a saved model may hold.
from mmkeras.nn import audio, image_encoders, layers, losses  # noqa: F401

HISTORY = "history.csv"
LOCK = ".lock"
# The end of the cosine decay, as a share of the starting learning rate. The captioner's and
# the tasks' defaults were each measured with their own (README); named here, once, so that
# they cannot drift apart unnoticed again.
COSINE_FLOOR = {"caption": 0.02, "task": 0.05}


@contextlib.contextmanager
def start(out, seed: int) -> Iterator[Path]:
    """Seed every generator (Python, NumPy, TensorFlow, Keras), make the output folder, and
    hold its lock (``out/.lock``) while the run lasts.

    A second run into the same folder is refused, where it would resume from the same backup
    and write over the same records. The operating system drops the lock when the process
    ends, killed or not, so a killed run never leaves its folder locked.
    """
    keras.utils.set_random_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{out}: another run is writing into this folder (it holds {LOCK}); "
                        "wait for it to end, or choose another --out") from None
    try:
        yield out
    finally:
        lock.release()


def epochs_for(config) -> int:
    """``config.epochs``, or at most :data:`~mmkeras.config.SMOKE_EPOCHS` for a smoke run."""
    return min(config.epochs, SMOKE_EPOCHS) if config.smoke else config.epochs


def optimizer(learning_rate: float, decay_steps: int | None = None,
              floor: float = COSINE_FLOOR["task"], ema_momentum: float | None = None) -> keras.optimizers.Optimizer:
    """Adam with gradients clipped to norm 5; with ``decay_steps``, a cosine decay to ``floor``.

    The decay is what lets the last epochs settle: at a constant rate the validation loss
    keeps jumping around its minimum. With ``ema_momentum``, the optimizer also keeps an
    exponential moving average of the weights, which ``fit`` puts in the model when it ends
    (what a diffusion model samples with).
    """
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=floor)
    if ema_momentum is None:
        return keras.optimizers.Adam(learning_rate, clipnorm=5.0)
    return keras.optimizers.Adam(learning_rate, clipnorm=5.0, use_ema=True, ema_momentum=ema_momentum)


def fit(model: keras.Model, train_data, validation_data, out: Path, epochs: int,
        verbose: int | str = "auto", callbacks=(), initial_epoch: int = 0,
        scorers=()) -> dict[str, list]:
    """``model.fit`` with validation data; each epoch appended to ``out/history.csv``.

    TensorBoard logs go to ``out/logs``. ``scorers`` are callbacks that add numbers to an
    epoch's logs: they run first, so that their numbers reach the history. ``callbacks``
    run after the history logger and TensorBoard, in their order (the history row of an
    epoch is written before anything they save). The datasets shuffle themselves (``fit``
    cannot shuffle a ``tf.data`` dataset).
    """
    callbacks = [*scorers, keras.callbacks.CSVLogger(str(Path(out) / HISTORY), append=True),
                 keras.callbacks.TensorBoard(str(Path(out) / "logs")), *callbacks]
    history = model.fit(train_data, validation_data=validation_data, epochs=epochs,
                        initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                        shuffle=False)
    return history.history


def forget_history(out: Path) -> None:
    """A fresh run starts a fresh ``history.csv`` (:func:`fit` appends to it)."""
    (Path(out) / HISTORY).unlink(missing_ok=True)


save_model = atomic.save_model


MAX_CONFIG_BYTES = 64 * 2**20  # a model's config.json is kilobytes; more is not ours to read


def _uses_keras_hub(path: Path) -> bool:
    """Whether a ``.keras`` archive's config names a ``keras_hub`` layer (a Transformer's).

    Read before Keras checks the archive, so it reads no more than a config can need.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                return False
            with archive.open("config.json") as config:
                return b'"keras_hub' in config.read(MAX_CONFIG_BYTES)
    except Exception:  # damaged, encrypted, not a zip: Keras' own load says what is wrong
        return False


def load_model(path, expected: str = "`python -m mmkeras train` (or vqa, match, retrieval)",
               flag: str = "") -> keras.Model:
    """Load a ``.keras`` model safely; a missing or damaged file is the user's to fix. The
    message names the command ``expected`` to have written it, and the ``flag`` that named
    the file, if one did."""
    path = Path(path)
    named = f"{flag} {path}" if flag else str(path)
    if not path.is_file():
        raise UserError(f"{named}: model file not found; expected a model.keras written by {expected}")
    if _uses_keras_hub(path):  # registers keras_hub's layers and ours on it, only when needed
        import mmkeras.nn.transformer_embedding  # noqa: F401
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise UserError(f"{named}: not a readable .keras model ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200]}); expected a model.keras written "
                        f"by {expected}") from None


def package_versions() -> dict[str, str]:
    """The versions a run depends on, saved in ``config.json`` beside the model."""
    import cv2
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "pycocoevalcap": version("pycocoevalcap"), **_keras_hub_version()}


def _keras_hub_version() -> dict[str, str]:
    try:  # optional (the Transformer and the ViT need it)
        return {"keras_hub": version("keras-hub")}
    except PackageNotFoundError:
        return {}


def record(out: Path, config, metrics: dict, **facts) -> dict:
    """Write ``config.json`` (the settings, ``facts`` about the run, the versions) and
    ``metrics.json``; return what ``config.json`` holds."""
    run = {"config": dataclasses.asdict(config), **facts, "versions": package_versions()}
    atomic.write_json(Path(out) / "config.json", run)
    atomic.write_json(Path(out) / "metrics.json", metrics)
    return run


def use_gpu_settings() -> tf.distribute.Strategy:
    """Mixed precision on a GPU, a MirroredStrategy on several; plain defaults on a CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class _StepTimes(keras.callbacks.Callback):
    """The wall time of each training step of a ``fit``."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def training_speed(model: keras.Model, data: tf.data.Dataset, steps: int = 20,
                   warmup: int = 3) -> dict[str, float]:
    """Training examples per second, timed step by step inside one ``fit``.

    The first ``warmup`` steps are left out: they trace and compile the train step and wait
    for the pipeline's buffers to fill, which a real run pays once. Returns the rate of the
    median step (``median``) and of the slower and faster quartile steps (``slow``,
    ``fast``). Introduced in ``02_training.ipynb``'s speed section.
    """
    timer = _StepTimes()
    model.fit(data.repeat(), steps_per_epoch=warmup + steps, epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
    batch_size = int(next(iter(data))[1].shape[0])
    fast, median, slow = np.percentile(timer.seconds[warmup:], [25, 50, 75])
    return {"median": batch_size / median, "slow": batch_size / slow, "fast": batch_size / fast}
