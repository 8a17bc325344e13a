"""What is in each shapes image, read back from its captions; questions and false captions made from it.

The multimodal tasks of ``04_multimodal_tasks.ipynb`` need more than captions: a visual
question answering set needs questions with answers, and an image-text matching set needs
captions that are *false* of an image. Both are made here from each scene's two objects,
which the first caption of the spec (``a {s1} {c1} {h1} {REL} a {s2} {c2} {h2}``) states
completely, so any folder that follows the Shapes Captions spec works; no file is added
to the dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mmkeras.dataset import CaptionSplit
from mmkeras.errors import UserError
from mmkeras.shapes import COLOURS, INVERSE_RELATION, RELATIONS, SHAPES, SIZES

_ONE_OBJECT = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
_FULL_CAPTION = re.compile(rf"^{_ONE_OBJECT} ({'|'.join(RELATIONS)}) {_ONE_OBJECT}$")


@dataclass(frozen=True)
class SceneObject:
    size: str
    colour: str
    shape: str

    @property
    def name(self) -> str:
        """Colour and shape: unique in a scene (the two objects differ in one or both)."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects, and where the first lies from the second."""

    first: SceneObject
    second: SceneObject
    relation: str

    @property
    def objects(self) -> tuple[SceneObject, SceneObject]:
        return self.first, self.second

    def holds(self, subject: SceneObject, relation: str, reference: SceneObject) -> bool:
        """Whether ``subject relation reference`` is true of this scene."""
        if (subject, reference) == (self.first, self.second):
            return relation == self.relation
        if (subject, reference) == (self.second, self.first):
            return relation == INVERSE_RELATION[self.relation]
        return False


def parse_scene(caption: str) -> Scene | None:
    """The scene a caption of the spec's first two forms describes; None for other captions."""
    match = _FULL_CAPTION.match(caption.strip())
    if match is None:
        return None
    s1, c1, h1, relation, s2, c2, h2 = match.groups()
    return Scene(SceneObject(s1, c1, h1), SceneObject(s2, c2, h2), relation)


def scenes_of(split: CaptionSplit, source: str = "the dataset") -> list[Scene]:
    """Each image's scene, from the first of its captions that states the whole scene."""
    scenes = []
    for path, captions in zip(split.image_paths, split.captions):
        scene = next((s for s in map(parse_scene, captions) if s is not None), None)
        if scene is None:
            raise UserError(
                f"{path}: none of its captions has the form 'a SIZE COLOUR SHAPE RELATION a "
                f"SIZE COLOUR SHAPE' that Shapes Captions' first caption has; the multimodal "
                f"tasks are built from that caption, so they need a Shapes Captions folder "
                f"({source})")
        scenes.append(scene)
    return scenes


# ---------------------------------------------------------------- visual question answering

QUESTION_TYPES = ("colour", "shape", "size", "count", "relation", "yes_no")
# Every answer any question can have: the classes of the VQA classifier, fixed by the spec.
ANSWERS = (*COLOURS, *SHAPES, *SIZES, "0", "1", "2", "yes", "no")


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str


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
    return Question(f"what colour is the {reference}", target.colour, "colour")


def _shape_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    target, other = scene.objects if rng.random() < 0.5 else scene.objects[::-1]
    if target.colour != other.colour:
        reference = f"{target.colour} shape"
    elif target.size != other.size:
        reference = f"{target.size} shape"
    else:
        return None
    return Question(f"what shape is the {reference}", target.shape, "shape")


def _size_question(scene: Scene, rng: np.random.Generator) -> Question:
    target = scene.objects[rng.integers(2)]
    return Question(f"what size is the {target.name}", target.size, "size")


def _count_question(scene: Scene, rng: np.random.Generator) -> Question:
    # Pick the answer first, evenly among those this scene allows, so that always saying
    # "0" (most colours and shapes are absent from any one scene) is not a good strategy.
    attribute = "shape" if rng.random() < 0.5 else "colour"
    values = SHAPES if attribute == "shape" else tuple(COLOURS)
    counts = {v: sum(getattr(o, attribute) == v for o in scene.objects) for v in values}
    answer = int(rng.choice(sorted(set(counts.values()))))
    value = str(rng.choice([v for v, n in counts.items() if n == answer]))
    asked = _plural(value) if attribute == "shape" else f"{value} shapes"
    return Question(f"how many {asked} are there", str(answer), "count")


def _relation_question(scene: Scene, rng: np.random.Generator) -> Question:
    if rng.random() < 0.5:
        subject, relation, reference = scene.first, scene.relation, scene.second
    else:
        subject, relation, reference = scene.second, INVERSE_RELATION[scene.relation], scene.first
    return Question(f"what is {relation} the {reference.name}", subject.shape, "relation")


def _yes_no_question(scene: Scene, rng: np.random.Generator) -> Question:
    subject, reference = scene.objects if rng.random() < 0.5 else scene.objects[::-1]
    true_relation = next(r for r in RELATIONS if scene.holds(subject, r, reference))
    # Half true, half one of the three false relations: "no" is not the safe guess.
    relation = true_relation if rng.random() < 0.5 else str(
        rng.choice([r for r in RELATIONS if r != true_relation]))
    if subject.size != reference.size and rng.random() < 0.5:
        text = f"is the {subject.size} shape {relation} the {reference.size} one"
    else:
        text = f"is the {subject.name} {relation} the {reference.name}"
    answer = "yes" if scene.holds(subject, relation, reference) else "no"
    return Question(text, answer, "yes_no")


_QUESTION_MAKERS = {
    "colour": _colour_question, "shape": _shape_question, "size": _size_question,
    "count": _count_question, "relation": _relation_question, "yes_no": _yes_no_question,
}


def questions_for(scene: Scene, rng: np.random.Generator, kinds=QUESTION_TYPES) -> list[Question]:
    """One question of each kind in ``kinds`` that this scene can answer unambiguously."""
    questions = (_QUESTION_MAKERS[kind](scene, rng) for kind in kinds)
    return [q for q in questions if q is not None]


# ------------------------------------------------------------------ image-text matching

CHANGES = ("colour", "shape", "size", "relation")
_ATTRIBUTE_WORDS = (tuple(COLOURS), SHAPES, tuple(SIZES))  # in the order of CHANGES


def mismatched_caption(caption: str, rng: np.random.Generator) -> tuple[str, str]:
    """``caption`` with one colour, shape or size word, or its relation, changed to another.

    Returns the changed caption and what was changed (one of :data:`CHANGES`).

    Each object of a scene has exactly one colour, shape and size, and the two objects
    have one relation, so the changed caption is false of the scene (``tests`` check this
    on thousands of scenes): telling the two apart needs both the image and every word.
    A change that would name one colour and shape twice (*a red circle above a red
    circle*) is never made: no true caption does that, so the text alone would give it away.
    """
    changes = []  # (what was changed, the captions it may become)
    for kind, words in zip(CHANGES, _ATTRIBUTE_WORDS):
        for match in re.finditer(rf"\b({'|'.join(words)})\b", caption):
            changed = [caption[:match.start()] + word + caption[match.end():]
                       for word in words if word != match.group()]
            changes.append((kind, [c for c in changed if _two_different_objects(c)]))
    # Longest first, so "to the left of" is not read as a shorter phrase inside it.
    relation = re.search("|".join(sorted(RELATIONS, key=len, reverse=True)), caption)
    if relation:
        changes.append(("relation", [caption[:relation.start()] + other + caption[relation.end():]
                                     for other in RELATIONS if other != relation.group()]))
    changes = [(kind, changed) for kind, changed in changes if changed]
    if not changes:
        raise ValueError(f"no colour, shape, size or relation to change in {caption!r}")
    kind, changed = changes[rng.integers(len(changes))]
    return str(rng.choice(changed)), kind


def _two_different_objects(caption: str) -> bool:
    named = re.findall(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b", caption)
    return len(set(named)) == len(named)


def describes(caption: str, scene: Scene) -> bool:
    """Whether a caption in any of the spec's five forms is true of ``scene``.

    Used to check :func:`mismatched_caption`: an object mentioned with or without its size
    must match one of the scene's objects, the two mentions distinct objects, and the
    relation must hold between them.
    """
    optional_size = rf"(?:({'|'.join(SIZES)}) )?"
    mention = rf"a {optional_size}({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
    pattern = rf"^(?:there is )?{mention} (?:is )?({'|'.join(RELATIONS)}) {mention}$"
    match = re.match(pattern, caption)
    if match is None:
        raise ValueError(f"not a Shapes Captions caption: {caption!r}")
    s1, c1, h1, relation, s2, c2, h2 = match.groups()

    def matches(size, colour, shape, obj):
        return obj.colour == colour and obj.shape == shape and size in (None, obj.size)

    for subject, reference in (scene.objects, scene.objects[::-1]):
        if matches(s1, c1, h1, subject) and matches(s2, c2, h2, reference):
            return scene.holds(subject, relation, reference)
    return False
