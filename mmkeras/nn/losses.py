"""The losses and metrics the models train with; registered, so saved models load safely."""

from __future__ import annotations

import keras
from keras import ops


def masked_loss() -> keras.losses.Loss:
    """Cross-entropy over real tokens only: id 0 (padding) is ignored."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)


@keras.saving.register_keras_serializable(package="mmkeras")
class MaskedAccuracy(keras.metrics.Mean):
    """Next-word accuracy over real tokens only; padding (id 0) counts neither way."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        correct = ops.cast(ops.equal(y_true, ops.cast(ops.argmax(y_pred, axis=-1), "int32")), "float32")
        mask = ops.cast(ops.not_equal(y_true, 0), "float32")
        return super().update_state(correct, sample_weight=mask)


@keras.saving.register_keras_serializable(package="mmkeras")
class SymmetricContrastiveLoss(keras.losses.Loss):
    """Cross-entropy over the batch both ways: each image picks its caption among the
    batch's captions, and each caption its image among the batch's images.

    ``y_true`` holds, for image ``i`` of the batch, the column of its caption in ``logits``
    (``i``, when the ``i``-th caption is the ``i``-th image's). Columns after the first
    ``batch`` are false captions (hard negatives, as NegCLIP adds them): images must rank
    them below their own caption, and as they describe no image, they pick none.
    """

    def __init__(self, name="symmetric_contrastive", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, logits):
        image_to_text = keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True)
        batch = ops.shape(logits)[0]
        text_to_image = keras.losses.sparse_categorical_crossentropy(
            y_true, ops.transpose(logits[:, :batch]), from_logits=True)
        return (image_to_text + text_to_image) / 2
