"""Image-text matching on the shapes: does this caption describe this image?

Each image with one of its own captions (yes) and a false one (no): the true caption with
one colour, shape or size word, or its relation, changed. Trained by
:mod:`mmkeras.tasks.classification`. Introduced in ``04_multimodal_tasks.ipynb``.
"""

from __future__ import annotations

import re

import numpy as np

from mmkeras.data.folder import CaptionSplit
from mmkeras.data.shapes import (
    COLOURS,
    INVERSE_RELATION,
    RELATIONS,
    SHAPES,
    SIZES,
    describes,
    read_caption,
    scenes_of,
)
from mmkeras.errors import UserError
from mmkeras.tasks.examples import Examples, caption_about, mention_targets

MATCH_CLASSES = ("no", "yes")
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
        # The opposite relation as often as the two across: telling it needs which object
        # is where, not only along which axis.
        opposite = INVERSE_RELATION[relation.group()]
        across = [r for r in RELATIONS if r not in (relation.group(), opposite)]
        changes.append(("relation", [caption[:relation.start()] + other + caption[relation.end():]
                                     for other in (opposite, opposite, *across)]))
    changes = [(kind, changed) for kind, changed in changes if changed]
    if not changes:
        raise ValueError(f"no colour, shape, size or relation to change in {caption!r}")
    kind, changed = changes[rng.integers(len(changes))]
    return str(rng.choice(changed)), kind


def _two_different_objects(caption: str) -> bool:
    reading = read_caption(caption)
    return reading is None or reading.first.name != reading.second.name


def matching_examples(split: CaptionSplit, seed: int, other_image_negatives: float = 0.0,
                      pairs_per_image: int = 1) -> Examples:
    """Each image with ``pairs_per_image`` of its captions (yes), each beside a false caption
    (no): balanced.

    The false caption is the true one with one word or the relation changed, or, with
    probability ``other_image_negatives``, a caption of another image (one that is false of
    this scene; a scene drawn twice is drawn again).
    """
    scenes_here = scenes_of(split)  # checks that the folder is Shapes Captions
    for path, references in zip(split.image_paths, split.captions):
        # A caption of another form cannot be changed into one known to be false.
        for caption in references:
            if read_caption(caption) is None:
                raise UserError(f"{path}: its caption {caption!r} has none of Shapes Captions' five "
                                "forms; matching changes one word of those, and checks that the "
                                "change makes the caption false")
    rng = np.random.default_rng(seed)
    image_index, texts, labels, kinds, about, mentions = [], [], [], [], [], []
    for index, references in enumerate(split.captions):
        for _ in range(pairs_per_image):
            caption = references[rng.integers(len(references))]
            false_caption, kind = caption, "other image"
            if rng.random() < other_image_negatives:
                for _ in range(100):  # (a split of one scene drawn many times has none)
                    other = split.captions[rng.integers(len(split))]
                    false_caption = other[rng.integers(len(other))]
                    if not describes(false_caption, scenes_here[index]):
                        break
            if describes(false_caption, scenes_here[index]):
                false_caption, kind = mismatched_caption(caption, rng)
            image_index += [index, index]
            texts += [caption, false_caption]
            labels += [MATCH_CLASSES.index("yes"), MATCH_CLASSES.index("no")]
            kinds += ["true", kind]
            about += [caption_about(text, scenes_here[index]) for text in (caption, false_caption)]
            mentions += [mention_targets(text) for text in (caption, false_caption)]
    return Examples(np.array(image_index), texts, np.array(labels), np.array(kinds),
                    np.array(about).reshape(-1, 2), np.array(mentions).reshape(-1, 2, 3))
