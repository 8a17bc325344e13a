"""Train a caption model end to end: data, vocabulary, model, callbacks, fit, save, score.

Introduced in ``02_training.ipynb``; ``python -m mmkeras train`` runs :func:`train`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mmkeras import shapes
from mmkeras.dataset import load_captions
from mmkeras.decoding import CaptionDecoder
from mmkeras.evaluation import caption_metrics
from mmkeras.errors import UserError
from mmkeras.models import (build_caption_model, build_image_encoder, compile_caption_model,
                             load_caption_model)
from mmkeras.pipeline import caption_dataset, evaluation_images
from mmkeras.text import build_vectorizer, caption_lengths, vocabulary_of
from mmkeras.training_config import TrainConfig

# The smoke size: enough to exercise every step in seconds, for tests and CI.
SMOKE_SHAPES = shapes.ShapesConfig(num_train=256, num_val=64, num_test=64)


def default_data_root() -> Path:
    """Where generated data go: ``$MMKERAS_DATA``, else ``data/`` of this checkout, else ``~/mmkeras_data``."""
    if os.environ.get("MMKERAS_DATA"):
        return Path(os.environ["MMKERAS_DATA"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path.home() / "mmkeras_data"


def shapes_data(config: shapes.ShapesConfig = shapes.ShapesConfig(), progress: bool = True) -> Path:
    """The Shapes Captions folder for ``config`` under :func:`default_data_root`, drawn if need be.

    The default configuration lives in ``shapes/``; any other in a folder named after it.
    """
    if config == shapes.ShapesConfig():
        name = "shapes"
    else:
        name = (f"shapes-{config.num_train}-{config.num_val}-{config.num_test}"
                f"-{config.image_size}px-seed{config.seed}" + ("-cogent" if config.cogent else ""))
    return shapes.ensure(default_data_root() / name, config, progress=progress)


def resolve_data(data: str, smoke: bool = False, seed: int = 0, progress: bool = True) -> Path:
    """``"shapes"`` to the generated dataset's folder (drawing it if need be); else the path."""
    if data != "shapes":
        return Path(data)
    config = dataclasses.replace(SMOKE_SHAPES if smoke else shapes.ShapesConfig(), seed=seed)
    return shapes_data(config, progress)


def use_gpu_settings() -> tf.distribute.Strategy:
    """Mixed precision on a GPU, a MirroredStrategy on several; plain defaults on a CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def package_versions() -> dict[str, str]:
    """The versions a run depends on, saved in ``config.json`` beside the model."""
    from importlib.metadata import version

    import cv2
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "pycocoevalcap": version("pycocoevalcap")}


def training_callbacks(out: Path, patience: int) -> list[keras.callbacks.Callback]:
    return [
        # Resumes an interrupted run from its last finished epoch. double_checkpoint keeps the
        # previous backup too, so a kill in the middle of writing one falls back to the other;
        # train() deletes the backup itself, only once model.keras is safely written.
        keras.callbacks.BackupAndRestore(str(out / "backup"), double_checkpoint=True,
                                         delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(out / "best.keras"), monitor="val_loss",
                                        save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
    ]


def save_atomically(caption_model: keras.Model, path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves half a model at ``path``."""
    partial = path.with_name(path.stem + ".partial.keras")
    caption_model.save(partial)
    with open(partial, "rb") as written:  # on disk before the rename makes it the model
        os.fsync(written.fileno())
    os.replace(partial, path)


# A run's stage, kept in run_state.json so that a run killed at any moment knows on its next
# start what is left to do: "training" (resume from the backup, if one was written), "trained"
# (model.keras is final; only the test scores are missing) or "finished".
RUN_STATE = "run_state.json"


def _settings(config: TrainConfig) -> dict:
    """The settings that must match for a run to be resumed (the folder itself aside)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "out"}


def _write_json(path: Path, content: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def _stage_to_resume(out: Path, config: TrainConfig) -> str | None:
    """``"training"`` or ``"trained"`` for an unfinished run of ``config`` in ``out``; else None."""
    try:
        state = json.loads((out / RUN_STATE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if state.get("stage") == "finished":
        return None
    if state.get("settings") != _settings(config):
        changed = sorted(k for k, v in _settings(config).items()
                         if state.get("settings", {}).get(k) != v)
        raise UserError(f"{out} holds an unfinished run with other settings ({', '.join(changed)}); "
                        "run again with the same settings to resume it, or choose another --out")
    if state["stage"] == "trained" and (out / "model.keras").is_file():
        return "trained"
    if state["stage"] == "training" and (out / "backup").is_dir():
        return "training"
    return None


def train(config: TrainConfig, verbose: int | str = "auto", progress: bool = True,
          callbacks: list[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train, evaluate on the test split, and write model, config, history and metrics.

    Killed at any moment and run again with the same ``config``, it resumes: from the last
    finished epoch's backup, or, if training had finished, from the saved ``model.keras``.
    ``callbacks`` are added to the standard ones. ``strategy`` defaults to
    :func:`use_gpu_settings`' choice (a MirroredStrategy over several GPUs).
    """
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = _stage_to_resume(out, config)
    if resume == "training":
        print(f"resuming the interrupted run in {out} from its last backup")
    elif resume == "trained":
        print(f"resuming the interrupted run in {out}: training had finished; scoring model.keras")
    else:  # a fresh run: a new history, and no stale backup to restore from
        (out / "history.csv").unlink(missing_ok=True)
        shutil.rmtree(out / "backup", ignore_errors=True)
        _write_json(out / RUN_STATE, {"stage": "training", "settings": _settings(config)})
    data_dir = resolve_data(config.data, config.smoke, config.seed, progress)
    splits = load_captions(data_dir)
    train_split, val_split, test_split = splits["train"], splits["val"], splits["test"]

    train_captions = [c for refs in train_split.captions for c in refs]
    max_caption_length = config.max_caption_length or int(min(caption_lengths(train_captions).max(), 40))
    vectorizer = build_vectorizer(train_captions, max_caption_length)
    vocabulary = vocabulary_of(vectorizer)

    strategy = strategy or use_gpu_settings()
    # config.batch_size is per replica; the strategy splits the global batch between them.
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    epochs = min(config.epochs, 2) if config.smoke else config.epochs
    fit_seconds = 0.0
    if resume == "trained":
        caption_model = load_caption_model(out / "model.keras")
    else:
        pairs_per_epoch = train_split.num_captions if config.all_pairs else len(train_split)
        with strategy.scope():
            image_encoder = build_image_encoder(config.image_size, config.feature_dim,
                                                config.backbone, fine_tune=config.fine_tune)
            caption_model = build_caption_model(
                vocabulary, max_caption_length, config.decoder, image_encoder,
                embedding_dim=config.embedding_dim, units=config.units, dropout=config.dropout)
            compile_caption_model(caption_model, config.learning_rate,
                                  decay_steps=epochs * math.ceil(pairs_per_epoch / batch_size))

        train_data = caption_dataset(train_split, vectorizer, config.image_size, batch_size,
                                     all_pairs=config.all_pairs, seed=config.seed)
        val_data = caption_dataset(val_split, vectorizer, config.image_size, batch_size,
                                   shuffle=False, seed=config.seed)
        fit_started = time.perf_counter()
        caption_model.fit(train_data, validation_data=val_data, epochs=epochs,
                          callbacks=training_callbacks(out, config.patience) + list(callbacks),
                          verbose=verbose,
                          shuffle=False)  # the dataset shuffles itself; fit cannot
        fit_seconds = time.perf_counter() - fit_started
        save_atomically(caption_model, out / "model.keras")
        # In this order: a kill between the two lines resumes from the backup, and only
        # saves model.keras again.
        _write_json(out / RUN_STATE, {"stage": "trained", "settings": _settings(config)})
        shutil.rmtree(out / "backup", ignore_errors=True)

    decoder = CaptionDecoder(caption_model)
    hypotheses = decoder.caption_batches(evaluation_images(test_split, config.image_size),
                                         config.beam_width, progress=progress)
    metrics = caption_metrics(test_split.captions, hypotheses)

    run = {"config": dataclasses.asdict(config), "data_dir": str(data_dir),
           "max_caption_length": max_caption_length, "vocabulary_size": len(vocabulary),
           "train_images": len(train_split), "epochs_run": _epochs_in(out / "history.csv"),
           "fit_seconds": round(fit_seconds, 1),
           "total_seconds": round(time.perf_counter() - started, 1),
           "devices": [d.name for d in tf.config.list_logical_devices()],
           "replicas": strategy.num_replicas_in_sync, "global_batch_size": batch_size,
           "versions": package_versions()}
    _write_json(out / "config.json", run)
    _write_json(out / "metrics.json", metrics)
    _write_json(out / RUN_STATE, {"stage": "finished", "settings": _settings(config)})
    return {"metrics": metrics, "run": run, "model": caption_model,
            "examples": list(zip(test_split.image_paths[:5], hypotheses[:5]))}


def _epochs_in(history_csv: Path) -> int:
    with open(history_csv, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def training_speed(caption_model: keras.Model, data: tf.data.Dataset, steps: int = 20) -> float:
    """Training images per second over ``steps`` batches, after one warm-up batch.

    The warm-up pays for tracing and compiling the train step, which a real run pays once.
    Introduced in ``02_training.ipynb``'s GPU section.
    """
    batches = data.repeat()
    caption_model.fit(batches, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    caption_model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    batch_size = int(next(iter(data))[1].shape[0])
    return steps * batch_size / seconds
