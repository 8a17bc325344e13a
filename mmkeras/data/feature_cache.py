"""A frozen backbone's features, computed once and read from disk for every epoch after.

With a frozen ``keras.applications`` encoder, every epoch would run the same images through
the same network for the same result: most of the time of an epoch. Computing the
features once and training the decoder on them is the largest single speed-up there is.
The cache is a ``tf.data`` snapshot (``Dataset.save``), streamed from disk, never held in
memory whole, stored as float16 (half the disk; the difference is below what the decoder
can tell). Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from filelock import FileLock
from tqdm.auto import tqdm

from mmkeras.atomic import kill_point, partial_path, replace_folder, write_json
from mmkeras.data.folder import CaptionSplit
from mmkeras.data.images import split_images

MANIFEST = "manifest.json"


def weights_fingerprint(model: keras.Model) -> str:
    """A hash of every weight: features are stale the moment one of them changes."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def _manifest(backbone: keras.Model, split: CaptionSplit) -> dict:
    if split.image_source is not None:  # records: their ids say which images, in which order
        images = list(split.image_paths)
    else:  # files: a file rewritten since has another size or time
        images = []
        for path in split.image_paths:
            stat = os.stat(path)
            images.append([path, stat.st_size, stat.st_mtime_ns])
    return {"backbone": backbone.name, "weights": weights_fingerprint(backbone),
            "image_size": backbone.input_shape[1], "images": images, "dtype": "float16"}


def cached_features(backbone: keras.Model, split: CaptionSplit, cache_dir, batch_size: int = 64,
                    progress: bool = True) -> tf.data.Dataset:
    """The backbone's feature map of every image of ``split``, in file order, from the cache.

    Computed if the cache is missing, was cut short (no manifest: a crash while writing), or
    is stale (other images, other image files, other weights).
    """
    folder = Path(cache_dir) / split.name
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Two runs on the same data share this cache: the first computes it, the other waits
    # for it and reads it (both writing one .partial folder would mix their files).
    with FileLock(folder.parent / f".{split.name}.lock"):
        manifest = _manifest(backbone, split)
        try:
            if json.loads((folder / MANIFEST).read_text()) == manifest:
                return _load(folder)
            print(f"feature cache {folder} is stale (other images or weights): computing it again")
        except FileNotFoundError:
            pass
        except ValueError:
            print(f"feature cache {folder} is damaged: computing it again")
        _compute(backbone, split, folder, manifest, batch_size, progress)
    return _load(folder)


def _compute(backbone, split: CaptionSplit, folder: Path, manifest: dict, batch_size: int,
             progress: bool) -> None:
    partial = partial_path(folder)
    shutil.rmtree(partial, ignore_errors=True)
    images = split_images(split, backbone.input_shape[1], cache=False).batch(batch_size)

    def feature_batches():  # the backbone runs eagerly, on the GPU where there is one
        for batch in tqdm(images, desc=f"{split.name} features", unit="batch",
                          total=-(-len(split) // batch_size), disable=None if progress else True):
            yield tf.cast(backbone(batch, training=False), tf.float16)
            kill_point(partial.name)  # the crash tests' moment: half the features written

    spec = tf.TensorSpec([None, *backbone.output_shape[1:]], tf.float16)
    # Streamed batch by batch to disk: the features of a large split never fill the memory.
    tf.data.Dataset.from_generator(feature_batches, output_signature=spec).unbatch().save(str(partial))
    # The manifest last, inside the folder before it takes its final name: a cache with a
    # manifest is always whole.
    write_json(partial / MANIFEST, manifest)
    replace_folder(partial, folder)


def _load(folder: Path) -> tf.data.Dataset:
    return tf.data.Dataset.load(str(folder)).map(lambda features: tf.cast(features, tf.float32))
