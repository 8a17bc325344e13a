"""Examples for a classifier that reads an image and a text: what they are, how they are
batched, how they are scored. VQA (:mod:`mmkeras.tasks.vqa`) and matching
(:mod:`mmkeras.tasks.matching`) make them; :mod:`mmkeras.tasks.classification` trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mmkeras.data.images import AUTOTUNE
from mmkeras.data.text import add_start_end


@dataclass
class Examples:
    """(image, text, class) triples of one split; ``kinds`` groups them for scoring."""

    image_index: np.ndarray  # into the split's images
    texts: list[str]
    labels: np.ndarray
    kinds: np.ndarray  # VQA: the question type; matching: "true" or what was changed

    def __len__(self) -> int:
        return len(self.labels)


def example_dataset(images: np.ndarray, examples: Examples, vectorizer, batch_size: int,
                    shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``({"image", "text"}, class)``; each image is stored once, gathered per batch."""
    image_table = tf.constant(images)
    # Token ids without the start token (the end token stays, as a full stop would).
    token_ids = vectorizer(add_start_end(examples.texts))[:, 1:]
    data = tf.data.Dataset.from_tensor_slices((examples.image_index, token_ids, examples.labels))
    if shuffle:
        data = data.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)

    def to_model_inputs(image_index, text, label):
        return {"image": tf.gather(image_table, image_index), "text": text}, label

    return data.batch(batch_size).map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def majority_answers(train: Examples) -> dict[str, int]:
    """Each kind's most common training class: the baseline a blind guesser reaches."""
    return {kind: int(np.bincount(train.labels[train.kinds == kind]).argmax())
            for kind in np.unique(train.kinds)}


def accuracy_by_kind(predicted: np.ndarray, examples: Examples) -> dict[str, dict]:
    """``{kind: {"accuracy", "n"}}``, and ``"all"`` over every example."""
    correct = predicted == examples.labels
    scores = {kind: {"accuracy": float(correct[examples.kinds == kind].mean()),
                     "n": int((examples.kinds == kind).sum())}
              for kind in np.unique(examples.kinds)}
    scores["all"] = {"accuracy": float(correct.mean()), "n": len(examples)}
    return scores
