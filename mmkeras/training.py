"""Train a caption model end to end: data, vocabulary, model, callbacks, fit, save, score.

Introduced in ``02_training.ipynb``; ``python -m mmkeras train`` runs :func:`train`.
"""

from __future__ import annotations

import dataclasses
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
from mmkeras.feature_cache import cached_features, weights_fingerprint
from mmkeras.models import (build_backbone, build_caption_model, build_feature_encoder,
                             build_image_encoder, compile_caption_model, load_caption_model,
                             with_backbone)
from mmkeras.pipeline import caption_dataset, evaluation_images
from mmkeras.resume import (BACKUP, history_rows, keep_history_of_backup, set_stage,
                            stage_to_resume, start_afresh, training_callbacks, write_json)
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


# The named datasets, and what to train on each unless told otherwise: photos need a
# pretrained encoder, at the size it was trained at.
DATASETS = {
    "shapes": {"image_size": 64, "backbone": None},
    "flickr8k": {"image_size": 224, "backbone": "MobileNetV2"},
    "coco": {"image_size": 224, "backbone": "MobileNetV2"},
}


def resolve_data(data: str, smoke: bool = False, seed: int = 0, progress: bool = True) -> Path:
    """``"shapes"`` to the generated dataset's folder (drawing it if need be); else the path."""
    if data != "shapes":
        return Path(data)
    config = dataclasses.replace(SMOKE_SHAPES if smoke else shapes.ShapesConfig(), seed=seed)
    return shapes_data(config, progress)


def load_dataset(data: str, smoke: bool = False, seed: int = 0, progress: bool = True,
                 shapes_config: shapes.ShapesConfig | None = None) -> tuple[Path, dict]:
    """``(folder, {split: CaptionSplit})`` for ``"shapes"``, ``"flickr8k"``, ``"coco"`` or a folder.

    Shapes Captions are drawn, and Flickr8k downloaded, into :func:`default_data_root` the
    first time. For COCO the folder only holds the feature cache: its records live in
    tensorflow-datasets' own folder.
    """
    if data == "coco":  # streamed from tensorflow-datasets' records
        if smoke:
            raise UserError("--smoke is a check on the small shapes data; it cannot shrink "
                            "MS-COCO's 37.6 GiB download: leave out --data coco or --smoke")
        from mmkeras.coco import load_coco
        return default_data_root() / "coco", load_coco(progress=progress)
    if data == "flickr8k":
        from mmkeras import flickr8k
        folder = flickr8k.prepare(default_data_root() / "flickr8k", progress=progress)
    elif data == "shapes" and shapes_config is not None:
        folder = shapes_data(shapes_config, progress)
    else:
        folder = resolve_data(data, smoke, seed, progress)
    return folder, load_captions(folder)


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


def save_atomically(caption_model: keras.Model, path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves half a model at ``path``."""
    partial = path.with_name(path.stem + ".partial.keras")
    caption_model.save(partial)
    with open(partial, "rb") as written:  # on disk before the rename makes it the model
        os.fsync(written.fileno())
    os.replace(partial, path)


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
    resume = stage_to_resume(out, config)
    val_losses = []
    if resume == "training":
        print(f"resuming the interrupted run in {out} from its last backup")
        val_losses = keep_history_of_backup(out)
    elif resume == "trained":
        print(f"resuming the interrupted run in {out}: training had finished; scoring model.keras")
    else:  # a fresh run: a new history, and no stale backup to restore from
        start_afresh(out, config)
    data_dir, splits = load_dataset(config.data, config.smoke, config.seed, progress)
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
        fit_started = time.perf_counter()
        callbacks = training_callbacks(out, config.patience, val_losses) + list(callbacks)
        caption_model = _fit(config, data_dir, train_split, val_split, vectorizer, max_caption_length,
                             strategy, batch_size, epochs, callbacks, verbose, progress)
        fit_seconds = time.perf_counter() - fit_started
        save_atomically(caption_model, out / "model.keras")
        # In this order: a kill between the two lines resumes from the backup, and only
        # saves model.keras again.
        set_stage(out, config, "trained")
        shutil.rmtree(out / BACKUP, ignore_errors=True)

    decoder = CaptionDecoder(caption_model)
    hypotheses = decoder.caption_batches(evaluation_images(test_split, config.image_size),
                                         config.beam_width, progress=progress)
    metrics = caption_metrics(test_split.captions, hypotheses)

    run = {"config": dataclasses.asdict(config), "data_dir": str(data_dir),
           "max_caption_length": max_caption_length, "vocabulary_size": len(vocabulary),
           "train_images": len(train_split), "epochs_run": len(history_rows(out / "history.csv")),
           "fit_seconds": round(fit_seconds, 1),
           "total_seconds": round(time.perf_counter() - started, 1),
           "devices": [d.name for d in tf.config.list_logical_devices()],
           "replicas": strategy.num_replicas_in_sync, "global_batch_size": batch_size,
           "versions": package_versions()}
    write_json(out / "config.json", run)
    write_json(out / "metrics.json", metrics)
    set_stage(out, config, "finished")
    return {"metrics": metrics, "run": run, "model": caption_model,
            "examples": list(zip(test_split.image_paths[:5], hypotheses[:5]))}


def _fit(config: TrainConfig, data_dir: Path, train_split, val_split, vectorizer,
         max_caption_length: int, strategy, batch_size: int, epochs: int, callbacks, verbose,
         progress: bool) -> keras.Model:
    """Build, compile and fit the caption model; return it, taking uint8 images."""
    vocabulary = vocabulary_of(vectorizer)
    pairs_per_epoch = train_split.num_captions if config.all_pairs else len(train_split)
    # A frozen backbone gives the same features every epoch: train on them, cached.
    cache_features = bool(config.backbone and not config.fine_tune and config.feature_cache)
    with strategy.scope():
        if cache_features:
            backbone = build_backbone(config.backbone, config.image_size, config.backbone_weights)
            image_encoder = build_feature_encoder(backbone.output_shape[1:], config.feature_dim)
        else:
            image_encoder = build_image_encoder(config.image_size, config.feature_dim,
                                                config.backbone, config.backbone_weights,
                                                config.fine_tune, config.fine_tune_layers)
        caption_model = build_caption_model(
            vocabulary, max_caption_length, config.decoder, image_encoder,
            embedding_dim=config.embedding_dim, units=config.units, dropout=config.dropout)
        compile_caption_model(caption_model, config.learning_rate,
                              decay_steps=epochs * math.ceil(pairs_per_epoch / batch_size))

    train_images = val_images = None
    if cache_features:
        cache_dir = (data_dir / "features" /
                     f"{backbone.name}-{config.image_size}px-{weights_fingerprint(backbone)}")
        train_images = cached_features(backbone, train_split, cache_dir, progress=progress)
        val_images = cached_features(backbone, val_split, cache_dir, progress=progress)
    train_data = caption_dataset(train_split, vectorizer, config.image_size, batch_size,
                                 all_pairs=config.all_pairs, seed=config.seed, images=train_images)
    val_data = caption_dataset(val_split, vectorizer, config.image_size, batch_size,
                               shuffle=False, seed=config.seed, images=val_images)
    caption_model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks,
                      verbose=verbose,
                      shuffle=False)  # the dataset shuffles itself; fit cannot
    if cache_features:  # the backbone goes back under the trained layers: images in
        caption_model = with_backbone(caption_model, backbone)
    return caption_model


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
