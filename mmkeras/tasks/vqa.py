"""Visual question answering on the shapes: questions with answers, made from each scene.

Six types of question (colour, shape, size, count, relation, yes/no), each asked only where
the scene answers it unambiguously, from the objects :func:`mmkeras.data.shapes.scenes_of`
reads back from the captions; no file is added to the dataset. The classifier is
:func:`mmkeras.tasks.fusion.build_fused_classifier`, trained by
:mod:`mmkeras.tasks.classification`. Introduced in ``04_multimodal_tasks.ipynb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmkeras.data.folder import CaptionSplit
from mmkeras.data.shapes import (
    COLOURS,
    INVERSE_RELATION,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    scenes_of,
)
from mmkeras.tasks.examples import Examples, about_targets

QUESTION_TYPES = ("colour", "shape", "size", "count", "relation", "yes_no")
# Every answer any question can have: the classes of the VQA classifier, fixed by the spec.
ANSWERS = (*COLOURS, *SHAPES, *SIZES, "0", "1", "2", "yes", "no")


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str
    # The objects it asks about: the one whose colour, shape or size it asks, the subject of
    # its relation, or those it counts (mmkeras.tasks.examples.about_targets).
    about: tuple[SceneObject, ...] = ()


def _plural(shape: str) -> str:
    return shape + "s"


def _colour_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    target, other = scene.objects if rng.random() < 0.5 else scene.objects[::-1]
    if target.shape != other.shape:
        reference = target.shape
    elif target.size != other.size:
        reference = f"{target.size} {target.shape}"
    else:  # same shape and size: only their colours tell them apart
        return None
    return Question(f"what colour is the {reference}", target.colour, "colour", (target,))


def _shape_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    target, other = scene.objects if rng.random() < 0.5 else scene.objects[::-1]
    if target.colour != other.colour:
        reference = f"{target.colour} shape"
    elif target.size != other.size:
        reference = f"{target.size} shape"
    else:
        return None
    return Question(f"what shape is the {reference}", target.shape, "shape", (target,))


def _size_question(scene: Scene, rng: np.random.Generator) -> Question:
    target = scene.objects[rng.integers(2)]
    return Question(f"what size is the {target.name}", target.size, "size", (target,))


def _count_question(scene: Scene, rng: np.random.Generator) -> Question:
    # Pick the answer first, evenly among those this scene allows, so that always saying
    # "0" (most colours and shapes are absent from any one scene) is not a good strategy.
    attribute = "shape" if rng.random() < 0.5 else "colour"
    values = SHAPES if attribute == "shape" else tuple(COLOURS)
    counts = {v: sum(getattr(o, attribute) == v for o in scene.objects) for v in values}
    answer = int(rng.choice(sorted(set(counts.values()))))
    value = str(rng.choice([v for v, n in counts.items() if n == answer]))
    asked = _plural(value) if attribute == "shape" else f"{value} shapes"
    counted = tuple(o for o in scene.objects if getattr(o, attribute) == value)
    return Question(f"how many {asked} are there", str(answer), "count", counted)


def _relation_question(scene: Scene, rng: np.random.Generator) -> Question:
    if rng.random() < 0.5:
        subject, relation, reference = scene.first, scene.relation, scene.second
    else:
        subject, relation, reference = scene.second, INVERSE_RELATION[scene.relation], scene.first
    return Question(f"what is {relation} the {reference.name}", subject.shape, "relation", (subject,))


def _false_relation(true_relation: str, rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return INVERSE_RELATION[true_relation]
    return str(rng.choice([r for r in RELATIONS if r not in (true_relation, INVERSE_RELATION[true_relation])]))


def _yes_no_question(scene: Scene, rng: np.random.Generator) -> Question:
    subject, reference = scene.objects if rng.random() < 0.5 else scene.objects[::-1]
    true_relation = next(r for r in RELATIONS if scene.holds(subject, r, reference))
    # Half true, half false; the false half is the opposite relation as often as the two
    # across, so that telling "no" needs which object is where, not only along which axis.
    relation = true_relation if rng.random() < 0.5 else _false_relation(true_relation, rng)
    if subject.size != reference.size and rng.random() < 0.5:
        text = f"is the {subject.size} shape {relation} the {reference.size} one"
    else:
        text = f"is the {subject.name} {relation} the {reference.name}"
    answer = "yes" if scene.holds(subject, relation, reference) else "no"
    return Question(text, answer, "yes_no", (subject,))


_QUESTION_MAKERS = {
    "colour": _colour_question, "shape": _shape_question, "size": _size_question,
    "count": _count_question, "relation": _relation_question, "yes_no": _yes_no_question,
}


def questions_for(scene: Scene, rng: np.random.Generator, kinds=QUESTION_TYPES) -> list[Question]:
    """One question of each kind in ``kinds`` that this scene can answer unambiguously."""
    questions = (_QUESTION_MAKERS[kind](scene, rng) for kind in kinds)
    return [q for q in questions if q is not None]


def _shuffled(questions: list[Question], rng: np.random.Generator) -> list[Question]:
    return [questions[pick] for pick in rng.permutation(len(questions))]


def vqa_examples(split: CaptionSplit, questions_per_image: int | None, seed: int) -> Examples:
    """Questions about each image, with answers.

    ``questions_per_image=None`` (how the tasks are scored): one question of each type the
    scene answers. A number (for training): that many per image, one of each type the
    scene answers and then more yes/no questions (drawn again): the type that needs to
    know which named object is where, the slowest to learn.
    """
    rng = np.random.default_rng(seed)
    image_index, texts, labels, kinds, about = [], [], [], [], []
    for index, scene in enumerate(scenes_of(split)):
        questions = questions_for(scene, rng)
        if questions_per_image is not None:
            questions = _shuffled(questions, rng)
            while len(questions) < questions_per_image:
                questions += questions_for(scene, rng, kinds=("yes_no",))
        for question in questions[:questions_per_image]:
            image_index.append(index)
            texts.append(question.text)
            labels.append(ANSWERS.index(question.answer))
            kinds.append(question.kind)
            about.append(about_targets(question.about, scene))
    return Examples(np.array(image_index), texts, np.array(labels), np.array(kinds),
                    np.array(about).reshape(-1, 2))
