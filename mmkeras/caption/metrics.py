"""Caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D from pycocoevalcap, distinctness, and on
Shapes Captions whether each caption is true of its scene.

Always computed on free-running decoded captions, never teacher-forced predictions.
Introduced in ``03_evaluation.ipynb``.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from mmkeras.data.folder import CaptionSplit
from mmkeras.data.shapes import (
    HELD_OUT_PAIRS,
    CaptionReading,
    Scene,
    SceneObject,
    describes,
    read_caption,
    scenes_of,
)
from mmkeras.data.text import standardize_list
from mmkeras.errors import UserError

METRIC_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "distinct", "n_images")
# On Shapes Captions, whether the captions are true of their scenes (truth_metrics).
TRUTH_KEYS = ("true_captions", "precision_colour", "precision_shape", "precision_size",
              "precision_relation")
# On Shapes Captions scenes with objects of the pairs the compositional split holds out.
HELD_OUT_KEYS = ("held_out_named", "held_out_objects")


def _score(references: list[list[str]], hypotheses: list[str]):
    """pycocoevalcap's corpus scores and per-image scores, on standardised text.

    Tokenised on spaces after our standardisation: pycocoevalcap's PTB tokenizer needs
    Java, and gives the same tokens for plain lower-case text.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference lists but {len(hypotheses)} captions")
    if not hypotheses:
        raise ValueError("no captions to score")
    hypotheses = standardize_list(hypotheses)
    gts = {i: standardize_list(refs) for i, refs in enumerate(references)}
    res = {i: [hyp] for i, hyp in enumerate(hypotheses)}
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    with contextlib.redirect_stdout(io.StringIO()):  # Rouge and Cider print nothing useful
        rouge_l, rouge_per_image = Rouge().compute_score(gts, res)
        cider, cider_per_image = Cider().compute_score(gts, res)
    corpus = {"bleu": bleu, "rouge_l": rouge_l, "cider": cider, "hypotheses": hypotheses}
    per_image = {"bleu_4": np.asarray(bleu_per_image[3]), "rouge_l": np.asarray(rouge_per_image),
                 "cider": np.asarray(cider_per_image)}
    return corpus, per_image


def caption_metrics(references: list[list[str]], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level scores of one generated caption per image against its references."""
    corpus, _ = _score(references, hypotheses)
    bleu, hypotheses = corpus["bleu"], corpus["hypotheses"]
    return {
        "bleu_1": float(bleu[0]), "bleu_2": float(bleu[1]),
        "bleu_3": float(bleu[2]), "bleu_4": float(bleu[3]),
        "rouge_l": float(corpus["rouge_l"]), "cider": float(corpus["cider"]),
        # Share of distinct captions: 1/n means one caption for every image.
        "distinct": len(set(hypotheses)) / len(hypotheses),
        "n_images": len(hypotheses),
    }


def per_image_scores(references: list[list[str]], hypotheses: list[str]) -> dict[str, np.ndarray]:
    """Sentence-level BLEU-4, ROUGE-L and CIDEr-D per image, to find the worst captions.

    Corpus BLEU is not the mean of these: it pools the n-gram counts of all images first.
    """
    return _score(references, hypotheses)[1]


def format_metrics(metrics: dict[str, float]) -> str:
    counts = ("n_images", "held_out_objects")
    return "  ".join(f"{key} {metrics[key]}" if key in counts else f"{key} {metrics[key]:.4f}"
                     for key in (*METRIC_KEYS, *TRUTH_KEYS, *HELD_OUT_KEYS) if key in metrics)


def _aligned(reading: CaptionReading, scene: Scene) -> tuple[SceneObject, SceneObject]:
    """The scene's objects in the order of the caption's two mentions: the order under which
    the mentions' words agree with more of the objects' attributes (ties: the scene's own)."""

    def agreement(mention: SceneObject, obj: SceneObject) -> int:
        return sum(getattr(mention, a) == getattr(obj, a) for a in ("colour", "shape", "size"))

    first, second = scene.objects
    as_drawn = agreement(reading.first, first) + agreement(reading.second, second)
    swapped = agreement(reading.first, second) + agreement(reading.second, first)
    return (second, first) if swapped > as_drawn else (first, second)


def truth_metrics(hypotheses: list[str], scenes: list[Scene]) -> dict[str, float]:
    """Whether Shapes Captions captions say what their scenes show, which BLEU cannot tell.

    ``true_captions``: the share of captions that, read back into two objects and a relation
    (any of the five templates), are wholly true of their scene; a caption that follows no
    template counts as false. ``precision_<attribute>``: of the colour (shape, size) words
    the captions say, the share right of the object the mention stands for (each caption's
    two mentions are matched to the scene's two objects the way that agrees best), and of
    the relations stated, the share that hold between those two objects.
    """
    if len(hypotheses) != len(scenes):
        raise ValueError(f"{len(hypotheses)} captions but {len(scenes)} scenes")
    if not hypotheses:
        raise ValueError("no captions to score")
    right = {a: 0 for a in ("colour", "shape", "size", "relation")}
    said = dict(right)
    wholly_true = 0
    for caption, scene in zip(standardize_list(hypotheses), scenes):
        reading = read_caption(caption)
        if reading is None:
            continue
        wholly_true += describes(caption, scene)
        objects = _aligned(reading, scene)
        for mention, obj in zip((reading.first, reading.second), objects):
            for attribute in ("colour", "shape", "size"):
                if getattr(mention, attribute) is not None:
                    said[attribute] += 1
                    right[attribute] += getattr(mention, attribute) == getattr(obj, attribute)
        said["relation"] += 1
        right["relation"] += scene.holds(objects[0], reading.relation, objects[1])
    return {"true_captions": wholly_true / len(hypotheses),  # the keys of TRUTH_KEYS
            **{f"precision_{a}": right[a] / said[a] if said[a] else 0.0 for a in right}}


def held_out_metrics(hypotheses: list[str], scenes: list[Scene]) -> dict[str, float]:
    """How well captions name the objects of the pairs the compositional split holds out.

    ``held_out_named``: of the scenes' objects whose (colour, shape) pair is one of
    :data:`~mmkeras.data.shapes.HELD_OUT_PAIRS`, the share that one of the caption's two
    mentions names right, colour and shape both (a caption that follows no template names
    none); ``held_out_objects``: how many there were. On the compositional test split
    (``data shapes --cogent``) training never showed these pairs; on the default data it
    did, which makes the same number a control.
    """
    named = held_out = 0
    for caption, scene in zip(standardize_list(hypotheses), scenes):
        reading = read_caption(caption)
        mentioned = set() if reading is None else {
            (mention.colour, mention.shape) for mention in (reading.first, reading.second)}
        for obj in scene.objects:
            if (obj.colour, obj.shape) in HELD_OUT_PAIRS:
                held_out += 1
                named += (obj.colour, obj.shape) in mentioned
    return {"held_out_named": named / held_out if held_out else 0.0, "held_out_objects": held_out}


def split_metrics(split: CaptionSplit, hypotheses: list[str]) -> dict[str, float]:
    """:func:`caption_metrics`, and on a Shapes Captions split :func:`truth_metrics` and,
    where its scenes hold any held-out pair, :func:`held_out_metrics` too."""
    metrics = caption_metrics(split.captions, hypotheses)
    try:
        scenes = scenes_of(split)
    except UserError:  # photos (Flickr8k, COCO): no scene to check a caption against
        return metrics
    metrics.update(truth_metrics(hypotheses, scenes))
    held_out = held_out_metrics(hypotheses, scenes)
    if held_out["held_out_objects"]:
        metrics.update(held_out)
    return metrics
