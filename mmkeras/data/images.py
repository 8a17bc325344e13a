"""Images in: decode any encoded image, resize it, and stream a split's images in order.

Introduced in ``01_preprocessing.ipynb``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmkeras.data.folder import CaptionSplit

AUTOTUNE = tf.data.AUTOTUNE


def decode_image(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded PNG/JPEG/GIF/BMP bytes to a ``(image_size, image_size, 3)`` uint8 RGB image.

    ``tf.io.decode_image`` returns RGB (OpenCV's ``imread`` returns BGR), converts greyscale
    and drops alpha with ``channels=3``, and keeps the first frame of a GIF.
    """
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _header_number(image_bytes: tf.Tensor, start: int, count: int, little_endian: bool) -> tf.Tensor:
    digits = tf.cast(tf.io.decode_raw(tf.strings.substr(image_bytes, start, count), tf.uint8), tf.int64)
    powers = 256 ** tf.range(count, dtype=tf.int64)
    powers = powers if little_endian else tf.reverse(powers, [0])
    return tf.reduce_sum(digits * powers[: tf.size(digits)])


def encoded_pixels(image_bytes: tf.Tensor) -> tf.Tensor:
    """Width x height of an encoded PNG, JPEG, GIF or BMP, read from its header without
    decoding it (0 for anything else, which the decoder then refuses on its own)."""
    def png():
        return _header_number(image_bytes, 16, 4, False) * _header_number(image_bytes, 20, 4, False)

    def gif():
        return _header_number(image_bytes, 6, 2, True) * _header_number(image_bytes, 8, 2, True)

    def bmp():  # a top-down BMP stores its height as a negative int32
        height = _header_number(image_bytes, 22, 4, True)
        return _header_number(image_bytes, 18, 4, True) * tf.where(height >= 2**31, 2**32 - height, height)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(image_bytes), tf.int64)
        return shape[0] * shape[1]

    head = tf.strings.substr(image_bytes, 0, 4)
    return tf.case([(tf.equal(head, b"\x89PNG"), png),
                    (tf.equal(tf.strings.substr(head, 0, 3), b"GIF"), gif),
                    (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
                    (tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), jpeg)],
                   default=lambda: tf.constant(0, tf.int64), exclusive=False)


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


def evaluation_images(split: CaptionSplit, image_size: int, batch_size: int = 128) -> tf.data.Dataset:
    """Batched images in file order, for decoding and scoring (no captions, no shuffle)."""
    return split_images(split, image_size, cache=False).batch(batch_size).prefetch(AUTOTUNE)


def images_in_memory(split: CaptionSplit, image_size: int) -> np.ndarray:
    """A split's decoded images as one uint8 array (8,000 shapes images: 98 MB)."""
    return np.concatenate(list(evaluation_images(split, image_size, 512).as_numpy_iterator()))


def to_unit_range(images):
    """uint8 pixels to floats in -1..1 (what the generators draw in)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def to_pixels(images):
    """Floats in -1..1 back to uint8 pixels (clipped: a drawn image may overshoot)."""
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)
