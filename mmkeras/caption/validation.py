"""Watching a caption model learn: after every epoch, the captions it writes on its own.

Loss and next-word accuracy are teacher-forced: they say how well the model predicts a word
given the right words before it, not whether its own captions are any good. This callback
decodes greedy captions of a fixed sample of validation images after every epoch and scores
them, so the history shows the captions themselves improving. Introduced in
``02_training.ipynb``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import keras
import tensorflow as tf

from mmkeras.atomic import write_csv
from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.metrics import caption_metrics

VAL_CAPTIONS = "val_captions.csv"
SHOWN_IMAGES = 4  # validation images whose captions are kept, epoch by epoch


class ValidationCaptions(keras.callbacks.Callback):
    """After every epoch: the validation BLEU-4 of greedy captions of the first images of
    the validation split, and the captions of the first :data:`SHOWN_IMAGES` of them.

    Adds ``val_bleu_4``, ``epoch_seconds`` (training and validation) and
    ``val_bleu_seconds`` (what this callback took) to the epoch's logs, so it must run
    before the history logger
    (:func:`mmkeras.runs.fit` puts it there). The captions go to ``out/val_captions.csv``
    (epoch, image, caption), rewritten whole each epoch, so that a run killed and resumed
    keeps one row per image and epoch.

    ``images``: the split's inputs in file order, unbatched (uint8 images, or a frozen
    backbone's cached features: whatever the model takes). ``references``: each image's
    captions; only as many images as there are references are decoded.
    """

    def __init__(self, images: tf.data.Dataset, references: list[list[str]], image_names: list[str],
                 out: Path, batch_size: int = 128):
        super().__init__()
        # Cached: the same images every epoch, decoded (or read from the feature cache) once.
        self.images = images.take(len(references)).cache().batch(batch_size)
        self.references, self.image_names = references, image_names[:SHOWN_IMAGES]
        self.path = Path(out) / VAL_CAPTIONS
        self.decoder = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["epoch_seconds"] = time.perf_counter() - self.epoch_started
        started = time.perf_counter()
        # Built once, on the model being trained: its layers' weights change in place.
        self.decoder = self.decoder or CaptionDecoder(self.model)
        captions = [caption for batch in self.images for caption in self.decoder.captions(batch)]
        logs["val_bleu_4"] = caption_metrics(self.references, captions)["bleu_4"]
        self._write_captions(epoch, captions[:len(self.image_names)])
        logs["val_bleu_seconds"] = time.perf_counter() - started

    def _write_captions(self, epoch: int, captions: list[str]) -> None:
        try:
            with open(self.path, newline="") as handle:
                # Rows of this epoch or later are from before a kill: this epoch ran again.
                rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epoch]
        except (FileNotFoundError, KeyError, ValueError):
            rows = []
        rows += [{"epoch": epoch, "image": name, "caption": caption}
                 for name, caption in zip(self.image_names, captions)]
        write_csv(self.path, rows, ["epoch", "image", "caption"])
