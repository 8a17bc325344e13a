"""Images paired with captions for teacher forcing: the tf.data pipeline that feeds ``fit``.

Cache, shuffle, pick a caption, shift it by one word, batch, prefetch. Introduced in
``01_preprocessing.ipynb``; used for training in ``02_training.ipynb``.
"""

from __future__ import annotations

import tensorflow as tf
from keras import layers

from mmkeras.data.folder import CaptionSplit
from mmkeras.data.images import AUTOTUNE, split_images
from mmkeras.data.text import add_start_end

STREAM_SHUFFLE_BUFFER = 4096


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
    cached features, :mod:`mmkeras.data.feature_cache`).
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
