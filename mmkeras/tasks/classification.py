"""Visual question answering and image-text matching: one image and one text, one class out.

Both tasks train the same way: their examples (:mod:`mmkeras.tasks.vqa`,
:mod:`mmkeras.tasks.matching`), a fused classifier (:mod:`mmkeras.tasks.fusion`), the run
skeleton of :mod:`mmkeras.runs`, and accuracy per question type (or per kind of changed
caption) beside the chance level of a guesser who never looks at the image.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras vqa`` and ``match`` run
:func:`train_task`.
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np

from mmkeras import runs
from mmkeras.config import TASKS, TaskConfig
from mmkeras.data.catalog import first_images, image_size_of, load_dataset
from mmkeras.data.folder import SPLITS, CaptionSplit
from mmkeras.data.images import images_in_memory
from mmkeras.data.shapes import scenes_of
from mmkeras.data.text import build_vectorizer, vectorizer_for, vectorizer_vocabulary
from mmkeras.errors import UserError
from mmkeras.tasks.examples import (
    Examples,
    accuracy_by_kind,
    example_dataset,
    majority_answers,
    scene_targets,
    texts_per_image_dataset,
)
from mmkeras.tasks.fusion import SeveralTextsPerImage, build_fused_classifier
from mmkeras.tasks.matching import MATCH_CLASSES, matching_examples
from mmkeras.tasks.vqa import ANSWERS, vqa_examples

MAX_TEXT_LENGTH = 16  # words; the longest question has 11, the longest caption 13


def class_names(task: str) -> tuple[str, ...]:
    return ANSWERS if task == "vqa" else MATCH_CLASSES


def make_examples(task: str, split: CaptionSplit, config: TaskConfig, seed: int,
                  training: bool) -> Examples:
    if task == "vqa":
        # Scored on one question of each type an image allows; trained on more.
        return vqa_examples(split, config.questions_per_image if training else None, seed)
    if training:
        return matching_examples(split, seed, config.other_image_negatives, config.pairs_per_image)
    return matching_examples(split, seed)


def chance_by_kind(task: str, train: Examples, test: Examples) -> dict[str, float]:
    """The test accuracy of a guesser who never looks at the image.

    VQA: answering each question with its type's most common training answer (the type
    shows in the question's words). Matching: a coin toss, 0.5, whatever the caption (true
    and false captions are balanced, and nothing in a caption tells which it is).
    """
    if task == "match":
        return {kind: 1 / len(MATCH_CLASSES) for kind in (*np.unique(test.kinds), "all")}
    majority = majority_answers(train)
    guessed = np.array([majority.get(kind, -1) for kind in test.kinds])
    return {kind: score["accuracy"] for kind, score in accuracy_by_kind(guessed, test).items()}


def texts_per_image(config: TaskConfig) -> int:
    return config.questions_per_image if config.task == "vqa" else 2 * config.pairs_per_image


def compile_for_training(classifier: keras.Model, learning_rate: float, decay_steps: int,
                         about_weight: float, reads_mentions: bool = False) -> keras.Model:
    """The classifier wrapped to read each image once for all its texts, compiled.
    ``reads_mentions``: the queries also read back as the objects each caption names."""
    trainer = SeveralTextsPerImage(classifier, reads_mentions=reads_mentions, name="several_texts_per_image")
    losses = {"answers": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              "about": keras.losses.BinaryCrossentropy(from_logits=True),
              "scene": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    weights = {"answers": 1.0, "about": about_weight, "scene": 1.0}
    if reads_mentions:  # a size the caption leaves out (-1) costs nothing
        losses["mentions"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
        weights["mentions"] = 1.0
    trainer.compile(optimizer=runs.optimizer(learning_rate, decay_steps),
                    loss=losses, loss_weights=weights,
                    # padding texts (weight 0) do not count
                    weighted_metrics={"answers": ["accuracy"]})
    return trainer


def load_task_data(config: TaskConfig, progress: bool = True):
    """The splits' images in memory and their examples, for ``config.task``."""
    if config.data in ("flickr8k", "coco"):  # before any download
        raise UserError(f"--data {config.data}: the {config.task} task is made from the objects "
                        "of Shapes Captions scenes; use 'shapes' or a Shapes Captions folder")
    folder, splits = load_dataset(config.data, smoke=config.smoke, seed=config.seed,
                                  progress=progress)
    train_split = splits["train"]
    if config.train_images:
        train_split = first_images(train_split, config.train_images)
    image_size = image_size_of(config.data, train_split)
    data = {}
    for name, split in (("train", train_split), ("val", splits["val"]), ("test", splits["test"])):
        training = name == "train"
        # Different seeds per split, so val and test questions are not train's in order.
        examples = make_examples(config.task, split, config, config.seed + SPLITS.index(name),
                                 training)
        data[name] = (images_in_memory(split, image_size), examples)
        data[f"{name}_scenes"] = scene_targets(scenes_of(split))
    if config.task == "match" and config.other_image_negatives > 0:
        # For the second half of training: the same images, one-word negatives only.
        one_word = dataclasses.replace(config, other_image_negatives=0.0)
        data["train_one_word"] = (data["train"][0], make_examples(
            "match", train_split, one_word, config.seed + len(splits), training=True))
    return folder, data


def classifier_task(classifier: keras.Model) -> str:
    """"vqa" or "match": which task a saved fused classifier answers (its number of classes)."""
    return "vqa" if classifier.output_shape[-1] == len(ANSWERS) else "match"


def text_vocabulary(classifier: keras.Model) -> list[str]:
    """The words a saved classifier reads (none but padding and unknown: ``image_only``)."""
    head = classifier.get_layer("fusion_head")
    embeddings = [layer for layer in head.layers if layer.name == "word_embedding"]
    return embeddings[0].vocabulary if embeddings else ["", "[UNK]"]


def load_matcher(path) -> keras.Model:
    """A matching model saved by ``python -m mmkeras match``, for re-ranking retrieval."""
    model = runs.load_model(path, expected="`python -m mmkeras match`", flag="--matcher")
    if not model.name.startswith("fused_classifier") or classifier_task(model) != "match":
        raise UserError(f"--matcher {path}: expected a model.keras written by `python -m mmkeras match`, "
                        f"found the model {model.name!r}"
                        + (" (a VQA model)" if model.name.startswith("fused_classifier") else ""))
    return model


def match_margin(matcher: keras.Model, split: CaptionSplit):
    """``margin(image_index, texts)``: for each text, how much surer ``matcher`` is of "yes"
    than of "no" against the split's image ``image_index``. (The logits' difference orders the
    pairs as P("yes") does, without the ties of probabilities that round to 1.)"""
    images = images_in_memory(split, matcher.input["image"].shape[1])
    vectorizer = vectorizer_for(text_vocabulary(matcher), matcher.input["text"].shape[1] - 1)
    yes, no = MATCH_CLASSES.index("yes"), MATCH_CLASSES.index("no")

    def margin(image_index, texts: list[str]) -> np.ndarray:
        unlabelled = Examples(np.asarray(image_index), list(texts), np.zeros(len(texts), int),
                              np.full(len(texts), "unlabelled"))
        logits = matcher.predict(example_dataset(images, unlabelled, vectorizer, 512), verbose=0)
        return logits[:, yes] - logits[:, no]

    return margin


def evaluate_classifier(classifier: keras.Model, data: str) -> dict:
    """A saved VQA or matching model's scores on the test split of ``data``.

    The questions (or false captions) are made from that folder's test scenes with the
    seed a training run with seed 0 uses, and the chance levels from its training scenes:
    on the data a model was trained on, the same numbers as its ``metrics.json``.
    """
    task = classifier_task(classifier)
    config = TaskConfig(task=task, data=data)
    _, splits = load_dataset(data, splits=("train", "test"))
    train = make_examples(task, splits["train"], config, config.seed, training=True)
    test = make_examples(task, splits["test"], config, config.seed + SPLITS.index("test"),
                         training=False)
    vectorizer = vectorizer_for(text_vocabulary(classifier), classifier.input["text"].shape[1] - 1)
    images = images_in_memory(splits["test"], classifier.input["image"].shape[1])
    return {"task": task, **_test_scores(classifier, task, images, vectorizer, train, test)}


def _test_scores(classifier, task: str, images, vectorizer, train: Examples, test: Examples) -> dict:
    logits = classifier.predict(example_dataset(images, test, vectorizer, 256), verbose=0)
    scores = accuracy_by_kind(logits.argmax(axis=-1), test)
    chance = chance_by_kind(task, train, test)
    return {"accuracy": scores["all"]["accuracy"], "chance": chance["all"],
            "by_kind": {kind: {**score, "chance": chance[kind]} for kind, score in scores.items()
                        if kind != "all"},
            "n_examples": len(test)}


def train_task(config: TaskConfig, verbose: int | str = "auto", progress: bool = True,
               data=None) -> dict:
    """Train a fused classifier for VQA or matching, score it on the test split, save it all.

    Writes ``model.keras``, ``config.json``, ``history.csv``, ``metrics.json`` and TensorBoard
    ``logs/`` into ``config.out`` and returns the metrics with the model and its history.
    """
    if config.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config.task!r}")
    if data is None:  # first: a mistake in the data leaves --out as it was
        _, data = load_task_data(config, progress)
    with runs.start(config.out, config.seed) as out:
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        (train_images, train), (val_images, val), (test_images, test) = (
            data["train"], data["val"], data["test"])
        vectorizer = build_vectorizer(train.texts, MAX_TEXT_LENGTH)

        classifier = build_fused_classifier(vectorizer_vocabulary(vectorizer), MAX_TEXT_LENGTH + 1,
                                            len(class_names(config.task)), config.fusion,
                                            image_size=train_images.shape[1], units=config.units)
        # Matching's captions name their objects whole: on object slots, each query learns
        # to say the object it names as a slot would (sizes too, which the answers alone
        # never taught: changed sizes stayed at 0.03). Only object slots have queries, so in
        # `fusion --task match` the objects fusion alone gets this target.
        reads_mentions = config.task == "match" and config.fusion == "objects"
        trainer = compile_for_training(
            classifier, config.learning_rate,
            decay_steps=epochs * math.ceil(len(train_images) / config.batch_size),
            about_weight=config.about_weight, reads_mentions=reads_mentions)
        # Matching is a curriculum: easy negatives (other images' captions) for the first half
        # of the epochs, then one-word negatives only, the ones the test asks about.
        phases = [(train, epochs)]
        if "train_one_word" in data and epochs > 1:
            phases = [(train, epochs // 2), (data["train_one_word"][1], epochs)]
        per_image = texts_per_image(config)
        val_per_image = max(np.bincount(val.image_index))
        history, first_epoch = {}, 0
        started = time.perf_counter()
        for examples, last_epoch in phases:
            phase = runs.fit(
                trainer,
                texts_per_image_dataset(train_images, examples, data["train_scenes"], vectorizer,
                                        config.batch_size, per_image, shuffle=True, seed=config.seed,
                                        with_mentions=reads_mentions),
                texts_per_image_dataset(val_images, val, data["val_scenes"], vectorizer,
                                        config.batch_size, val_per_image, with_mentions=reads_mentions),
                out, last_epoch, verbose, initial_epoch=first_epoch)
            for key, values in phase.items():
                history.setdefault(key, []).extend(values)
            first_epoch = last_epoch
        fit_seconds = time.perf_counter() - started

        metrics = {
            "task": config.task, "fusion": config.fusion,
            **_test_scores(classifier, config.task, test_images, vectorizer, train, test),
            "parameters": classifier.count_params(),
            "seconds_per_epoch": fit_seconds / epochs,
        }
        runs.save_model(classifier, out / "model.keras")
        runs.record(out, config, metrics, epochs_run=epochs)
        return {**metrics, "model": classifier, "history": history}
