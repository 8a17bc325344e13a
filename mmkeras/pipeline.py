"""The tf.data input pipeline: decode, resize, cache, pair with captions, batch, prefetch.

Introduced in ``01_preprocessing.ipynb``; used for training in ``02_training.ipynb``.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers

from mmkeras.dataset import CaptionSplit
from mmkeras.text import add_start_end

AUTOTUNE = tf.data.AUTOTUNE
STREAM_SHUFFLE_BUFFER = 4096


def decode_image(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded PNG/JPEG/GIF/BMP bytes to a ``(image_size, image_size, 3)`` uint8 RGB image.

    ``tf.io.decode_image`` returns RGB (OpenCV's ``imread`` returns BGR), converts greyscale
    and drops alpha with ``channels=3``, and keeps the first frame of a GIF.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def load_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    return decode_image(tf.io.read_file(path), image_size)


def image_dataset(paths: list[str], image_size: int, cache: bool = True) -> tf.data.Dataset:
    """Decoded, resized images in file order; cached in memory after the first pass."""
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: load_image(path, image_size), num_parallel_calls=AUTOTUNE)
    return images.cache() if cache else images


def split_images(split: CaptionSplit, image_size: int, cache: bool = True) -> tf.data.Dataset:
    """A split's images in order: decoded from its files, or streamed from its records.

    Streamed splits (MS-COCO) are never cached in memory: they would not fit.
    """
    if split.image_source is not None:
        # Stating the length lets Keras count the steps of an epoch and show its progress.
        return split.image_source(image_size).apply(tf.data.experimental.assert_cardinality(len(split)))
    return image_dataset(split.image_paths, image_size, cache)


def tokenize_references(split: CaptionSplit, vectorizer: layers.TextVectorization) -> tf.RaggedTensor:
    """All captions of a split as token ids, ``[image, reference, position]`` (ragged)."""
    flat = vectorizer(add_start_end([c for refs in split.captions for c in refs]))
    return tf.RaggedTensor.from_row_lengths(flat, [len(refs) for refs in split.captions])


def teacher_forcing(caption_ids: tf.Tensor):
    """``[start] w1 .. wn [end]`` to input ``[start] w1 .. wn`` and target ``w1 .. wn [end]``."""
    return caption_ids[..., :-1], caption_ids[..., 1:]


def caption_dataset(split: CaptionSplit, vectorizer: layers.TextVectorization, image_size: int,
                    batch_size: int = 64, shuffle: bool = True, all_pairs: bool = False,
                    seed: int | None = None, prefetch: bool = True,
                    images: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """Batches of ``((image, caption_in), caption_out)`` for teacher-forced training.

    Each epoch pairs every image with one of its references drawn at random, so an epoch
    costs one pass over the images; ``all_pairs=True`` uses every (image, caption) pair
    instead, as many tutorials do, which makes an epoch several times longer. ``images``
    replaces the split's decoded image files, in the same order (a frozen backbone's
    cached features, :mod:`mmkeras.feature_cache`).
    """
    # A whole split fits in the shuffle buffer when its images are cached in memory anyway;
    # streamed images (MS-COCO) and features read from disk get a buffer that fits.
    streamed = images is not None or split.image_source is not None
    if images is None:
        images = split_images(split, image_size)
    references = tf.data.Dataset.from_tensor_slices(tokenize_references(split, vectorizer))
    pairs = tf.data.Dataset.zip(images, references)
    if shuffle:
        buffer = min(len(split), STREAM_SHUFFLE_BUFFER) if streamed else len(split)
        pairs = pairs.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if all_pairs:
        pairs = pairs.flat_map(lambda image, refs: tf.data.Dataset.from_tensor_slices(refs).map(
            lambda ids: (image, ids)))
        if shuffle:  # spread one image's five captions over different batches
            pairs = pairs.shuffle(8 * batch_size, seed=seed)
    else:
        pairs = pairs.map(lambda image, refs: (image, _pick_one(refs, seed)))

    def to_model_inputs(image, ids):
        caption_in, caption_out = teacher_forcing(ids)
        return {"image": image, "caption_in": caption_in}, caption_out

    batches = pairs.batch(batch_size).map(to_model_inputs, num_parallel_calls=AUTOTUNE)
    # prefetch=False only to measure what prefetching is worth (02_training.ipynb).
    return batches.prefetch(AUTOTUNE) if prefetch else batches


def _pick_one(references: tf.Tensor, seed: int | None) -> tf.Tensor:
    index = tf.random.uniform((), maxval=tf.shape(references)[0], dtype=tf.int32, seed=seed)
    return references[index]


def evaluation_images(split: CaptionSplit, image_size: int, batch_size: int = 128) -> tf.data.Dataset:
    """Batched images in file order, for decoding and scoring (no captions, no shuffle)."""
    return split_images(split, image_size, cache=False).batch(batch_size).prefetch(AUTOTUNE)
