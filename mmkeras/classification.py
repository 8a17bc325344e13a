"""Visual question answering and image-text matching: one image and one text, one class out.

Both tasks are trained and scored here with the same code: the examples (made by
:mod:`mmkeras.scenes`), a ``tf.data`` pipeline, a fused classifier
(:func:`mmkeras.fusion.build_fused_classifier`), ``fit`` with validation data, and accuracy
per question type (or per kind of changed caption) beside the majority-answer baseline.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras vqa``, ``match`` and
``fusion`` run :func:`train_task` and :func:`compare_fusions`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from mmkeras import scenes
from mmkeras.dataset import CaptionSplit
from mmkeras.errors import UserError
from mmkeras.fusion import build_fused_classifier
from mmkeras.pipeline import AUTOTUNE, evaluation_images
from mmkeras.resume import write_json
from mmkeras.task_config import FUSIONS, TASKS, TaskConfig
from mmkeras.text import add_start_end, build_vectorizer, vocabulary_of
from mmkeras.training import load_dataset, save_atomically

MATCH_CLASSES = ("no", "yes")
MAX_TEXT_LENGTH = 16  # words; the longest question has 11, the longest caption 13


@dataclass
class Examples:
    """(image, text, class) triples of one split; ``kinds`` groups them for scoring."""

    image_index: np.ndarray  # into the split's images
    texts: list[str]
    labels: np.ndarray
    kinds: np.ndarray  # VQA: the question type; matching: "true" or what was changed

    def __len__(self) -> int:
        return len(self.labels)


def class_names(task: str) -> tuple[str, ...]:
    return scenes.ANSWERS if task == "vqa" else MATCH_CLASSES


def vqa_examples(split: CaptionSplit, questions_per_image: int, seed: int) -> Examples:
    """Up to ``questions_per_image`` questions per image, of different types, with answers."""
    rng = np.random.default_rng(seed)
    image_index, texts, labels, kinds = [], [], [], []
    for index, scene in enumerate(scenes.scenes_of(split)):
        questions = scenes.questions_for(scene, rng)
        for pick in rng.permutation(len(questions))[:questions_per_image]:
            question = questions[pick]
            image_index.append(index)
            texts.append(question.text)
            labels.append(scenes.ANSWERS.index(question.answer))
            kinds.append(question.kind)
    return Examples(np.array(image_index), texts, np.array(labels), np.array(kinds))


def matching_examples(split: CaptionSplit, seed: int, other_image_negatives: float = 0.0) -> Examples:
    """Each image with one of its captions (yes) and one false caption (no): balanced.

    The false caption is the true one with one word or the relation changed, or, with
    probability ``other_image_negatives``, a caption of another image.
    """
    scenes_here = scenes.scenes_of(split)  # checks that the folder is Shapes Captions
    rng = np.random.default_rng(seed)
    image_index, texts, labels, kinds = [], [], [], []
    for index, references in enumerate(split.captions):
        caption = references[rng.integers(len(references))]
        if rng.random() < other_image_negatives:
            other = int(rng.integers(len(split)))
            false_caption = split.captions[other][rng.integers(len(split.captions[other]))]
            kind = "other image"
            if scenes.describes(false_caption, scenes_here[index]):
                continue  # the same scene drawn twice: not a negative
        else:
            false_caption, kind = scenes.mismatched_caption(caption, rng)
        image_index += [index, index]
        texts += [caption, false_caption]
        labels += [MATCH_CLASSES.index("yes"), MATCH_CLASSES.index("no")]
        kinds += ["true", kind]
    return Examples(np.array(image_index), texts, np.array(labels), np.array(kinds))


def make_examples(task: str, split: CaptionSplit, config: TaskConfig, seed: int,
                  training: bool) -> Examples:
    if task == "vqa":
        # Scored on every question an image allows; trained on a few per image per run.
        per_image = config.questions_per_image if training else len(scenes.QUESTION_TYPES)
        return vqa_examples(split, per_image, seed)
    return matching_examples(split, seed, config.other_image_negatives if training else 0.0)


def images_in_memory(split: CaptionSplit, image_size: int) -> np.ndarray:
    """A split's decoded images as one uint8 array (8,000 shapes images: 98 MB)."""
    return np.concatenate(list(evaluation_images(split, image_size, 512).as_numpy_iterator()))


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
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.05)
    classifier.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    return classifier


def load_task_data(config: TaskConfig, progress: bool = True):
    """The splits' images in memory and their examples, for ``config.task``."""
    if config.data in ("flickr8k", "coco"):  # before any download
        raise UserError(f"--data {config.data}: the {config.task} task is made from the objects "
                        "of Shapes Captions scenes; use 'shapes' or a Shapes Captions folder")
    folder, splits = load_dataset(config.data, config.smoke, config.seed, progress)
    train_split = splits["train"]
    if config.train_images:
        train_split = dataclasses.replace(
            train_split, image_paths=train_split.image_paths[:config.train_images],
            captions=train_split.captions[:config.train_images])
    with Image.open(train_split.image_paths[0]) as first_image:  # drawn at 64 px unless asked
        image_size = first_image.width
    data = {}
    for name, split in (("train", train_split), ("val", splits["val"]), ("test", splits["test"])):
        training = name == "train"
        # Different seeds per split, so val and test questions are not train's in order.
        examples = make_examples(config.task, split, config, config.seed + ("train", "val", "test").index(name),
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

    Writes ``model.keras``, ``config.json``, ``history.csv`` and ``metrics.json`` into
    ``config.out`` and returns the metrics with the model and its history.
    """
    if config.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config.task!r}")
    keras.utils.set_random_seed(config.seed)
    epochs = 2 if config.smoke else config.epochs
    if data is None:
        _, data = load_task_data(config, progress)
    (train_images, train), (val_images, val), (test_images, test) = (
        data["train"], data["val"], data["test"])
    vectorizer = build_vectorizer(train.texts, MAX_TEXT_LENGTH)

    classifier = build_fused_classifier(vocabulary_of(vectorizer), MAX_TEXT_LENGTH + 1,
                                        len(class_names(config.task)), config.fusion,
                                        image_size=train_images.shape[1], units=config.units)
    compile_classifier(classifier, config.learning_rate,
                       decay_steps=epochs * math.ceil(len(train) / config.batch_size))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    # Matching is a curriculum: easy negatives (other images' captions) for the first half
    # of the epochs, then one-word negatives only, the ones the test asks about.
    phases = [(train, epochs)]
    if "train_one_word" in data and epochs > 1:
        phases = [(train, epochs // 2), (data["train_one_word"][1], epochs)]
    history, first_epoch = {}, 0
    started = time.perf_counter()
    for examples, last_epoch in phases:
        phase = classifier.fit(
            example_dataset(train_images, examples, vectorizer, config.batch_size, shuffle=True,
                            seed=config.seed),
            validation_data=example_dataset(val_images, val, vectorizer, config.batch_size),
            initial_epoch=first_epoch, epochs=last_epoch, verbose=verbose, shuffle=False,
            callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv"), append=first_epoch > 0)])
        for key, values in phase.history.items():
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
    save_atomically(classifier, out / "model.keras")
    write_json(out / "config.json", {**dataclasses.asdict(config), "epochs_run": epochs})
    write_json(out / "metrics.json", metrics)
    return {**metrics, "model": classifier, "history": history}


def compare_fusions(task: str = "vqa", fusions=FUSIONS, epochs: int = 6,
                    train_images: int | None = 2000, smoke: bool = False, seed: int = 0,
                    out: str = "runs/fusion", data: str = "shapes", verbose: int | str = 0,
                    progress: bool = True) -> list[dict]:
    """Train one classifier per fusion on the same examples; one row each (see :func:`fusion_table`).

    Writes each model into ``out/<fusion>/`` and the rows into ``out/fusion.json``.
    """
    base = TaskConfig(task=task, data=data, epochs=epochs, train_images=train_images,
                      smoke=smoke, seed=seed)
    _, examples = load_task_data(base, progress)  # the same examples for every fusion
    rows = []
    for fusion in fusions:
        config = dataclasses.replace(base, fusion=fusion, out=str(Path(out) / fusion))
        result = train_task(config, verbose=verbose, progress=progress, data=examples)
        rows.append({key: result[key] for key in
                     ("fusion", "accuracy", "chance", "parameters", "seconds_per_epoch")})
        if progress:
            print(f"{fusion:<10} test accuracy {result['accuracy']:.3f} (chance "
                  f"{result['chance']:.3f}), {result['seconds_per_epoch']:.1f} s per epoch", flush=True)
    write_json(Path(out) / "fusion.json", {"task": task, "epochs": epochs,
                                           "train_images": train_images, "rows": rows})
    return rows


def fusion_table(rows: list[dict]) -> str:
    """Markdown: one line per fusion, test accuracy beside chance, size and time per epoch."""
    lines = ["| fusion | test accuracy | chance | parameters | seconds per epoch |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['fusion']} | {row['accuracy']:.3f} | {row['chance']:.3f} | "
                     f"{row['parameters']:,} | {row['seconds_per_epoch']:.1f} |")
    return "\n".join(lines)
