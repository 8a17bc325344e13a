"""Image-text retrieval: a dual encoder trained with a symmetric contrastive loss.

Two towers map an image and a caption into the same space, where a caption lies closest
to the image it describes (CLIP, Radford et al., 2021, at a small scale). Training pairs a
batch of images with one caption each; every other caption in the batch is a negative.
Scored by recall at 1, 5 and 10 on the test split, text to image and image to text.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras retrieval`` runs
:func:`train_retrieval`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from math import comb
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mmkeras.dataset import CaptionSplit
from mmkeras.models import WordEmbedding, build_image_encoder
from mmkeras.pipeline import AUTOTUNE, caption_dataset, evaluation_images, teacher_forcing
from mmkeras.resume import write_json
from mmkeras.task_config import RetrievalConfig
from mmkeras.text import add_start_end, build_vectorizer, caption_lengths, vocabulary_of
from mmkeras.training import DATASETS, load_dataset, save_atomically

RECALL_AT = (1, 5, 10)


@keras.saving.register_keras_serializable(package="mmkeras")
class ContrastiveLogits(layers.Layer):
    """Every image of a batch against every caption: cosine similarities times a learned scale.

    The scale (an inverse temperature, learned in log space as CLIP does, starting at
    1 / 0.07 and capped at 100) sharpens the softmax over the batch as training goes on.
    """

    def build(self, input_shapes):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(),
            initializer=keras.initializers.Constant(math.log(1 / 0.07)))

    def call(self, inputs):
        image_embeddings, text_embeddings = inputs
        scale = ops.exp(ops.minimum(self.log_scale, math.log(100.0)))
        return scale * ops.matmul(image_embeddings, ops.transpose(text_embeddings))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[1][0])


@keras.saving.register_keras_serializable(package="mmkeras")
class SymmetricContrastiveLoss(keras.losses.Loss):
    """Cross-entropy over the batch both ways: each image picks its caption among the
    batch's captions, and each caption its image among the batch's images.

    ``y_true`` holds, for image ``i``, the column of its caption: ``i`` (see
    :func:`retrieval_dataset`).
    """

    def __init__(self, name="symmetric_contrastive", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, logits):
        image_to_text = keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        text_to_image = keras.losses.sparse_categorical_crossentropy(
            y_true, ops.transpose(logits), from_logits=True)
        return (image_to_text + text_to_image) / 2


def build_dual_encoder(vocabulary: list[str], max_text_length: int, image_size: int = 64,
                       embedding_dim: int = 64, units: int = 128):
    """``(contrastive model, image tower, text tower)``; the towers share the model's weights.

    Image tower: the captioner's CNN encoder, flattened (where things are matters), to a
    unit vector. Text tower: word embedding and LSTM, its last state to a unit vector.
    """
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    feature_map = build_image_encoder(image_size, feature_dim=units)(image)
    image_vector = layers.Dense(units, activation="relu", name="image_hidden")(layers.Flatten()(feature_map))
    image_vector = layers.Dense(embedding_dim, name="image_projection")(image_vector)
    image_tower = keras.Model(image, layers.UnitNormalization()(image_vector), name="image_tower")

    text = keras.Input((max_text_length,), dtype="int32", name="text")
    words = WordEmbedding(vocabulary, units, name="word_embedding")(text)
    text_vector = layers.LSTM(units, name="text_lstm")(words)
    text_vector = layers.Dense(embedding_dim, name="text_projection")(text_vector)
    text_tower = keras.Model(text, layers.UnitNormalization()(text_vector), name="text_tower")

    logits = ContrastiveLogits(name="contrastive_logits")([image_tower(image), text_tower(text)])
    return keras.Model({"image": image, "text": text}, logits, name="dual_encoder"), image_tower, text_tower


def retrieval_dataset(split: CaptionSplit, vectorizer, image_size: int, batch_size: int,
                      shuffle: bool = True, seed: int | None = None) -> tf.data.Dataset:
    """The captioner's pipeline (one random caption per image per epoch), relabelled.

    Inputs are the image and the caption's words after the start token; the label of the
    ``i``-th pair is ``i``, the column of its own caption in the batch's logits.
    """
    pairs = caption_dataset(split, vectorizer, image_size, batch_size, shuffle=shuffle, seed=seed,
                            prefetch=False)

    def relabel(inputs, caption_out):
        return ({"image": inputs["image"], "text": inputs["caption_in"]},
                tf.range(tf.shape(caption_out)[0]))

    return pairs.map(relabel, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def caption_ids(captions: list[str], vectorizer) -> tf.Tensor:
    """What the text tower reads: the ids of ``[start] words``, as in training."""
    return teacher_forcing(vectorizer(add_start_end(captions)))[0]


def recall_at_k(similarity: np.ndarray, caption_image: np.ndarray, ks=RECALL_AT) -> dict:
    """Recall at each k, from ``similarity[caption, image]`` and each caption's own image.

    Text to image: the share of captions whose image ranks in the top k of all images.
    Image to text: the share of images with at least one of their captions in the top k.
    """
    num_captions, num_images = similarity.shape
    own = similarity[np.arange(num_captions), caption_image]
    # Rank 0 = best. A wrong item scoring as high as the right one counts against the
    # model (a constant score must not look perfect); an image's own captions tying
    # with each other do not.
    text_rank = (similarity >= own[:, None]).sum(axis=1) - 1
    best_own = np.full(num_images, -np.inf)
    np.maximum.at(best_own, caption_image, own)
    wrong = caption_image[:, None] != np.arange(num_images)[None, :]
    best_caption_rank = ((similarity >= best_own[None, :]) & wrong).sum(axis=0)
    return {
        "text_to_image": {f"r{k}": float((text_rank < k).mean()) for k in ks},
        "image_to_text": {f"r{k}": float((best_caption_rank < k).mean()) for k in ks},
    }


def chance_recall(num_images: int, captions_per_image: int, ks=RECALL_AT) -> dict:
    """Recall at k of a random ranking: k / images one way; at least one of an image's
    captions among k drawn from all captions the other way."""
    num_captions = num_images * captions_per_image
    return {
        "text_to_image": {f"r{k}": k / num_images for k in ks},
        "image_to_text": {f"r{k}": 1 - comb(num_captions - captions_per_image, k) / comb(num_captions, k)
                          for k in ks},
    }


def embed_split(split: CaptionSplit, image_tower, text_tower, vectorizer, image_size: int):
    """Unit vectors of every image and every caption of a split, and each caption's image."""
    image_vectors = image_tower.predict(evaluation_images(split, image_size), verbose=0)
    captions = [c for refs in split.captions for c in refs]
    caption_image = np.repeat(np.arange(len(split)), [len(refs) for refs in split.captions])
    text_vectors = text_tower.predict(caption_ids(captions, vectorizer), batch_size=512, verbose=0)
    return image_vectors, text_vectors, caption_image


def train_retrieval(config: RetrievalConfig, verbose: int | str = "auto", progress: bool = True) -> dict:
    """Train the dual encoder, score recall on the test split, write model, history, metrics."""
    keras.utils.set_random_seed(config.seed)
    epochs = 2 if config.smoke else config.epochs
    _, splits = load_dataset(config.data, config.smoke, config.seed, progress)
    image_size = DATASETS.get(config.data, DATASETS["shapes"])["image_size"]
    train_split = splits["train"]
    train_captions = [c for refs in train_split.captions for c in refs]
    max_caption_length = int(min(40, np.percentile(caption_lengths(train_captions), 99)))
    vectorizer = build_vectorizer(train_captions, max_caption_length)

    model, image_tower, text_tower = build_dual_encoder(
        vocabulary_of(vectorizer), max_caption_length + 1, image_size, config.embedding_dim,
        config.units)
    decay_steps = epochs * math.ceil(len(train_split) / config.batch_size)
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps, alpha=0.05),
        clipnorm=5.0), loss=SymmetricContrastiveLoss())
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    history = model.fit(
        retrieval_dataset(train_split, vectorizer, image_size, config.batch_size, seed=config.seed),
        validation_data=retrieval_dataset(splits["val"], vectorizer, image_size,
                                          config.batch_size, shuffle=False, seed=config.seed),
        epochs=epochs, verbose=verbose, shuffle=False,
        callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv"))])
    fit_seconds = time.perf_counter() - started

    test = splits["test"]
    image_vectors, text_vectors, caption_image = embed_split(test, image_tower, text_tower,
                                                             vectorizer, image_size)
    recalls = recall_at_k(text_vectors @ image_vectors.T, caption_image)
    captions_per_image = round(len(caption_image) / len(test))
    metrics = {**recalls, "chance": chance_recall(len(test), captions_per_image),
               "n_images": len(test), "n_captions": len(caption_image),
               "parameters": model.count_params(), "seconds_per_epoch": fit_seconds / epochs}
    save_atomically(model, out / "model.keras")
    write_json(out / "config.json", {**dataclasses.asdict(config), "epochs_run": epochs})
    write_json(out / "metrics.json", metrics)
    return {**metrics, "model": model, "image_tower": image_tower, "text_tower": text_tower,
            "vectorizer": vectorizer, "history": history.history}
