"""Train a caption model end to end: data, vocabulary, model, callbacks, fit, save, score.

The run skeleton is :mod:`mmkeras.runs`; what is the captioner's own is resuming a killed
run (:mod:`mmkeras.caption.resume`) and a frozen backbone's cached features. Introduced in
``02_training.ipynb``; ``python -m mmkeras train`` runs :func:`train`.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from mmkeras import runs
from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.metrics import split_metrics
from mmkeras.caption.model import build_caption_model, compile_caption_model, with_backbone
from mmkeras.caption.resume import (
    BACKUP,
    history_rows,
    keep_history_of_backup,
    resume_callbacks,
    set_stage,
    stage_to_resume,
    start_afresh,
)
from mmkeras.caption.validation import ValidationCaptions
from mmkeras.config import TrainConfig
from mmkeras.data.catalog import load_dataset
from mmkeras.data.feature_cache import cached_features, weights_fingerprint
from mmkeras.data.images import evaluation_images, split_images
from mmkeras.data.pairs import caption_dataset
from mmkeras.data.text import MAX_CAPTION_WORDS, build_vectorizer, caption_lengths, vectorizer_vocabulary
from mmkeras.errors import UserError
from mmkeras.nn.image_encoders import (
    backbone_constructor,
    build_backbone,
    build_feature_encoder,
    build_image_encoder,
)


def train(config: TrainConfig, verbose: int | str = "auto", progress: bool = True,
          callbacks: list[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> dict:
    """Train, evaluate on the test split, and write model, config, history and metrics.

    Killed at any moment and run again with the same ``config``, it resumes: from the last
    finished epoch's backup, or, if training had finished, from the saved ``model.keras``.
    ``callbacks`` are added to the standard ones. ``strategy`` defaults to
    :func:`mmkeras.runs.use_gpu_settings`' choice (a MirroredStrategy over several GPUs).
    """
    started = time.perf_counter()
    if config.backbone and config.encoder != "cnn":  # before the run's folder is made
        raise UserError(f"--encoder {config.encoder} and --backbone {config.backbone}: choose one "
                        "(--encoder trains an encoder from scratch, --backbone uses a pretrained one)")
    if config.decoder == "transformer" or config.encoder == "vit":
        # keras-hub (optional), or the message that says how to install it, before any write.
        import mmkeras.nn.transformer_embedding  # noqa: F401
    with runs.start(config.out, config.seed) as out:
        return _train(config, out, started, verbose, progress, callbacks, strategy)


def _train(config: TrainConfig, out: Path, started: float, verbose, progress: bool, callbacks,
           strategy) -> dict:
    resume = stage_to_resume(out, config)
    # Everything that can fail on a typo, before anything in --out is touched.
    if config.backbone:
        backbone_constructor(config.backbone)
    data_dir, splits = load_dataset(config.data, smoke=config.smoke, seed=config.seed,
                                    progress=progress)
    val_losses = []
    if resume == "training":
        print(f"resuming the interrupted run in {out} from its last backup")
        val_losses = keep_history_of_backup(out)
    elif resume == "trained":
        print(f"resuming the interrupted run in {out}: training had finished; scoring model.keras")
    else:  # a fresh run: a new history, and no stale backup to restore from
        start_afresh(out, config)
    train_split, val_split, test_split = splits["train"], splits["val"], splits["test"]

    train_captions = [c for refs in train_split.captions for c in refs]
    max_caption_length = config.max_caption_length or int(min(caption_lengths(train_captions).max(), MAX_CAPTION_WORDS))
    vectorizer = build_vectorizer(train_captions, max_caption_length)
    vocabulary = vectorizer_vocabulary(vectorizer)

    strategy = strategy or runs.use_gpu_settings()
    # config.batch_size is per replica; the strategy splits the global batch between them.
    batch_size = config.batch_size * strategy.num_replicas_in_sync
    epochs = runs.epochs_for(config)
    fit_seconds = 0.0
    if resume == "trained":
        caption_model = runs.load_model(out / "model.keras")
    else:
        fit_started = time.perf_counter()
        callbacks = resume_callbacks(out, config.patience, val_losses) + list(callbacks)
        caption_model = _fit(config, data_dir, train_split, val_split, vectorizer, max_caption_length,
                             strategy, batch_size, epochs, callbacks, verbose, progress)
        fit_seconds = time.perf_counter() - fit_started
        runs.save_model(caption_model, out / "model.keras")
        # In this order: a kill between the two lines resumes from the backup, and only
        # saves model.keras again.
        set_stage(out, config, "trained")
        shutil.rmtree(out / BACKUP, ignore_errors=True)

    decoder = CaptionDecoder(caption_model)
    hypotheses = decoder.caption_batches(evaluation_images(test_split, config.image_size),
                                         config.beam_width, progress=progress)
    metrics = split_metrics(test_split, hypotheses)

    run = runs.record(
        out, config, metrics, data_dir=str(data_dir), max_caption_length=max_caption_length,
        vocabulary_size=len(vocabulary), train_images=len(train_split),
        epochs_run=len(history_rows(out / runs.HISTORY)), fit_seconds=round(fit_seconds, 1),
        total_seconds=round(time.perf_counter() - started, 1),
        devices=[d.name for d in tf.config.list_logical_devices()],
        replicas=strategy.num_replicas_in_sync, global_batch_size=batch_size)
    set_stage(out, config, "finished")
    return {"metrics": metrics, "run": run, "model": caption_model,
            "examples": list(zip(test_split.image_paths[:5], hypotheses[:5]))}


def _fit(config: TrainConfig, data_dir: Path, train_split, val_split, vectorizer,
         max_caption_length: int, strategy, batch_size: int, epochs: int, callbacks, verbose,
         progress: bool) -> keras.Model:
    """Build, compile and fit the caption model; return it, taking uint8 images."""
    vocabulary = vectorizer_vocabulary(vectorizer)
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
                                                config.fine_tune, config.fine_tune_layers,
                                                encoder=config.encoder)
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
    scorers = []
    if config.val_bleu_images:
        scorers.append(ValidationCaptions(
            val_images if cache_features else split_images(val_split, config.image_size, cache=False),
            val_split.captions[:config.val_bleu_images],
            [Path(path).name for path in val_split.image_paths], Path(config.out)))
    runs.fit(caption_model, train_data, val_data, Path(config.out), epochs, verbose, callbacks,
             scorers=scorers)
    if cache_features:  # the backbone goes back under the trained layers: images in
        caption_model = with_backbone(caption_model, backbone)
    return caption_model
