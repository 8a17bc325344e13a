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
from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary
from mmkeras.errors import UserError
from mmkeras.tasks.examples import Examples, accuracy_by_kind, example_dataset, majority_answers
from mmkeras.tasks.fusion import build_fused_classifier
from mmkeras.tasks.matching import MATCH_CLASSES, matching_examples
from mmkeras.tasks.vqa import ANSWERS, QUESTION_TYPES, vqa_examples

MAX_TEXT_LENGTH = 16  # words; the longest question has 11, the longest caption 13


def class_names(task: str) -> tuple[str, ...]:
    return ANSWERS if task == "vqa" else MATCH_CLASSES


def make_examples(task: str, split: CaptionSplit, config: TaskConfig, seed: int,
                  training: bool) -> Examples:
    if task == "vqa":
        # Scored on every question an image allows; trained on a few per image per run.
        per_image = config.questions_per_image if training else len(QUESTION_TYPES)
        return vqa_examples(split, per_image, seed)
    return matching_examples(split, seed, config.other_image_negatives if training else 0.0)


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


def compile_classifier(classifier: keras.Model, learning_rate: float, decay_steps: int) -> keras.Model:
    classifier.compile(optimizer=runs.optimizer(learning_rate, decay_steps),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    return classifier


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
    if config.task == "match" and config.other_image_negatives > 0:
        # For the second half of training: the same images, one-word negatives only.
        one_word = dataclasses.replace(config, other_image_negatives=0.0)
        data["train_one_word"] = (data["train"][0], make_examples(
            "match", train_split, one_word, config.seed + len(splits), training=True))
    return folder, data


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
    out = runs.start(config.out, config.seed)
    runs.forget_history(out)
    epochs = runs.epochs_for(config)
    (train_images, train), (val_images, val), (test_images, test) = (
        data["train"], data["val"], data["test"])
    vectorizer = build_vectorizer(train.texts, MAX_TEXT_LENGTH)

    classifier = build_fused_classifier(vectorizer_vocabulary(vectorizer), MAX_TEXT_LENGTH + 1,
                                        len(class_names(config.task)), config.fusion,
                                        image_size=train_images.shape[1], units=config.units)
    compile_classifier(classifier, config.learning_rate,
                       decay_steps=epochs * math.ceil(len(train) / config.batch_size))
    # Matching is a curriculum: easy negatives (other images' captions) for the first half
    # of the epochs, then one-word negatives only, the ones the test asks about.
    phases = [(train, epochs)]
    if "train_one_word" in data and epochs > 1:
        phases = [(train, epochs // 2), (data["train_one_word"][1], epochs)]
    history, first_epoch = {}, 0
    started = time.perf_counter()
    for examples, last_epoch in phases:
        phase = runs.fit(
            classifier,
            example_dataset(train_images, examples, vectorizer, config.batch_size, shuffle=True,
                            seed=config.seed),
            example_dataset(val_images, val, vectorizer, config.batch_size),
            out, last_epoch, verbose, initial_epoch=first_epoch)
        for key, values in phase.items():
            history.setdefault(key, []).extend(values)
        first_epoch = last_epoch
    fit_seconds = time.perf_counter() - started

    logits = classifier.predict(example_dataset(test_images, test, vectorizer, 256), verbose=0)
    scores = accuracy_by_kind(logits.argmax(axis=-1), test)
    chance = chance_by_kind(config.task, train, test)
    metrics = {
        "task": config.task, "fusion": config.fusion,
        "accuracy": scores["all"]["accuracy"], "chance": chance["all"],
        "by_kind": {kind: {**score, "chance": chance[kind]} for kind, score in scores.items()
                    if kind != "all"},
        "n_examples": len(test), "parameters": classifier.count_params(),
        "seconds_per_epoch": fit_seconds / epochs,
    }
    runs.save_model(classifier, out / "model.keras")
    runs.record(out, config, metrics, epochs_run=epochs)
    return {**metrics, "model": classifier, "history": history}
