"""Examples for a classifier that reads an image and a text: what they are, how they are
batched, how they are scored. VQA (:mod:`mmkeras.tasks.vqa`) and matching
(:mod:`mmkeras.tasks.matching`) make them; :mod:`mmkeras.tasks.classification` trains on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mmkeras.data.images import AUTOTUNE
from mmkeras.data.shapes import (
    COLOURS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    mentions,
    read_caption,
    reading_order,
    sizes_said,
)
from mmkeras.data.text import add_start_end


@dataclass
class Examples:
    """(image, text, class) triples of one split; ``kinds`` groups them for scoring."""

    image_index: np.ndarray  # into the split's images
    texts: list[str]
    labels: np.ndarray
    kinds: np.ndarray  # VQA: the question type; matching: "true" or what was changed
    # Training's second target (SeveralTextsPerImage): about_targets of each text, (n, 2).
    about: np.ndarray | None = None
    # Matching's captions: mention_targets of each, (n, 2, 3); None for questions.
    mentions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


# What a text is about, as training's second target: for each object of the scene in reading
# order (the left or the upper one first; mmkeras.data.shapes.reading_order), whether the
# text is about it (1) or not (0). "Is the red circle left of the blue square" is a parity of
# two facts: is the red circle ahead, and does "left of" point ahead. Gradient descent finds
# no signal in either fact alone (each leaves the answer at a coin toss), so a model trained
# on the answers alone stops at guessing from the axis (0.75); told the first fact, it has
# only the second to learn, which the words give. With object slots (the "objects" fusion) it
# says which slot the red circle is (weighted 1: config.TaskConfig.about_weight). "How many
# red shapes" is the sum of the two flags, where the answers alone give one number for two.
def about_targets(about, scene: Scene) -> list[int]:
    """``[is the object ahead one the text is about, is the one behind]``; ``about`` holds
    scene objects, or a caption's mentions of them (known by colour and shape)."""
    names = {named.name for named in about}
    return [int(obj.name in names) for obj in reading_order(scene)]


# An object as a caption names it: (size or None, colour, shape).
_MENTION = re.compile(rf"\b(?:({'|'.join(SIZES)}) )?({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")


def caption_about(caption: str, scene: Scene) -> list[int]:
    """:func:`about_targets` of the object a caption names first, the subject of its
    relation as written, when the scene holds both objects the caption names as it states
    them (colour, shape, and size where it says one); neither object otherwise.

    So a caption with one word changed is about no object of the scene: "a large red
    circle" is not the small red circle, the comparison the answers alone teach slowest
    (matching's changed sizes stayed at 0.03 while the subject was known by colour and
    shape alone).
    """
    reading = read_caption(caption)
    named_objects = () if reading is None else (reading.first, reading.second)
    if not named_objects or not all(any(mentions(named, obj) for obj in scene.objects)
                                    for named in named_objects):
        return [0, 0]
    _, colour, shape = _MENTION.search(caption).groups()  # the first named, as written
    return about_targets((SceneObject(None, colour, shape),), scene)


def example_dataset(images: np.ndarray, examples: Examples, vectorizer, batch_size: int,
                    shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``({"image", "text"}, class)``; each image is stored once, gathered per batch."""
    image_table = tf.constant(images)
    # Token ids without the start token (the end token stays, as a full stop would).
    token_ids = vectorizer(add_start_end(examples.texts))[:, 1:]
    data = tf.data.Dataset.from_tensor_slices((examples.image_index, token_ids, examples.labels))
    if shuffle:
        data = data.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)

    # Nothing for AutoGraph to convert (no Python control flow); converting it anyway, it
    # once mistook this function for its namesake below and printed a page of warning.
    @tf.autograph.experimental.do_not_convert
    def to_model_inputs(image_index, text, label):
        return {"image": tf.gather(image_table, image_index), "text": text}, label

    return data.batch(batch_size).map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


# What the image encoder learns to read beside the task (mmkeras.tasks.fusion.SeveralTextsPerImage):
# each scene as seven classes, its objects in reading order (the left or upper one first).
OBJECT_ATTRIBUTES = ("colour", "shape", "size")
SCENE_SLOTS = OBJECT_ATTRIBUTES * 2 + ("axis",)
SCENE_CLASSES = max(len(COLOURS), len(SHAPES), len(SIZES))


def scene_targets(scenes: list[Scene]) -> np.ndarray:
    """``(scenes, 7)`` classes: the colour, shape and size of the left (or upper) object, of
    the other, and whether they lie side by side (0) or one above the other (1)."""
    values = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES)}
    rows = []
    for scene in scenes:
        ahead, behind = reading_order(scene)
        row = [values[slot].index(getattr(obj, slot))
               for obj in (ahead, behind) for slot in ("colour", "shape", "size")]
        rows.append(row + [int(scene.relation in ("above", "below"))])
    return np.array(rows, dtype=np.int64).reshape(len(scenes), len(SCENE_SLOTS))


def said_scene_targets(captions: list[str], scenes: list[Scene]) -> np.ndarray:
    """``(captions, 7)``: :func:`scene_targets` of each caption's scene as far as the caption
    says it: -1 (a class no loss counts) for an object's size it leaves out."""
    targets = scene_targets(scenes)
    size_slots = [slot for slot, attribute in enumerate(SCENE_SLOTS) if attribute == "size"]
    for row, (caption, scene) in enumerate(zip(captions, scenes)):
        said = sizes_said(caption, scene)
        targets[row, [slot for slot, stated in zip(size_slots, said) if not stated]] = -1
    return targets


def mention_targets(caption: str) -> list[list[int]]:
    """The two objects a caption names, in the order it names them, each as its colour,
    shape and size classes (:func:`scene_targets`' classes; -1, a class no loss counts, for
    a size it leaves out).

    What each of the object-slot model's two queries learns to read back in training, with
    the reader of the slots (:class:`mmkeras.tasks.fusion.SeveralTextsPerImage`): so a query
    says "a large red circle" in the terms a slot says what it holds, sizes included.
    """
    named = _MENTION.findall(caption)
    if len(named) != 2:
        raise ValueError(f"a caption names two objects; {caption!r} names {len(named)}")
    return [[list(COLOURS).index(colour), list(SHAPES).index(shape), list(SIZES).index(size) if size else -1]
            for size, colour, shape in named]


def texts_per_image_dataset(images: np.ndarray, examples: Examples, scenes: np.ndarray, vectorizer,
                            batch_size: int, texts_per_image: int, shuffle: bool = False,
                            seed: int | None = None, with_mentions: bool = False) -> tf.data.Dataset:
    """Batches of ``batch_size`` images, each with all its texts: ``({"image": (b, ...),
    "text": (b, texts_per_image, words)}, {"answers": classes (b, texts_per_image),
    "about": each text's about_targets (b, texts_per_image, 2), "scene": the images'
    scene_targets}, weights)``; ``with_mentions``: and ``"mentions"``, each text's
    mention_targets ``(b, texts_per_image, 2, 3)``.

    For :class:`mmkeras.tasks.fusion.SeveralTextsPerImage`, which reads each image once for
    all its texts. An image with fewer texts is padded with copies of its first, of weight 0.
    """
    order = np.argsort(examples.image_index, kind="stable")
    image_rows, starts, counts = np.unique(examples.image_index[order], return_index=True,
                                           return_counts=True)
    if counts.max() > texts_per_image:
        raise ValueError(f"an image has {counts.max()} texts, more than texts_per_image={texts_per_image}")
    slots = np.zeros((len(image_rows), texts_per_image), np.int64)
    weights = np.zeros((len(image_rows), texts_per_image), np.float32)
    for row, (start, count) in enumerate(zip(starts, counts)):
        slots[row] = order[start]
        slots[row, :count] = order[start:start + count]
        weights[row, :count] = 1.0
    if examples.about is None:
        raise ValueError("texts_per_image_dataset needs examples with what each text is about")
    token_ids = vectorizer(add_start_end(examples.texts))[:, 1:].numpy()
    per_image = {"image_row": image_rows, "text": token_ids[slots], "answers": examples.labels[slots],
                 "about": examples.about[slots], "weight": weights, "scene": scenes[image_rows]}
    if with_mentions:
        if examples.mentions is None:
            raise ValueError("with_mentions needs examples with the objects each text names")
        per_image["mentions"] = examples.mentions[slots]
    data = tf.data.Dataset.from_tensor_slices(per_image)
    if shuffle:
        data = data.shuffle(len(image_rows), seed=seed, reshuffle_each_iteration=True)
    image_table = tf.constant(images)

    @tf.autograph.experimental.do_not_convert  # as example_dataset's
    def to_model_inputs(row):
        weight = row["weight"]
        targets = {name: row[name] for name in ("answers", "about", "scene", "mentions") if name in row}
        weights = {"answers": weight, "about": weight, "scene": tf.ones_like(row["scene"], dtype=tf.float32)}
        if "mentions" in row:  # per attribute, so that a padding text costs nothing
            weights["mentions"] = tf.broadcast_to(weight[..., None, None], tf.shape(row["mentions"]))
        return {"image": tf.gather(image_table, row["image_row"]), "text": row["text"]}, targets, weights

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
