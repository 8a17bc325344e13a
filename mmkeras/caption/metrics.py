"""Caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D from pycocoevalcap, and distinctness.

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

from mmkeras.data.text import standardize_list

METRIC_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "distinct", "n_images")


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
    return "  ".join(f"{key} {metrics[key]:.4f}" if key != "n_images" else f"{key} {metrics[key]}"
                     for key in METRIC_KEYS if key in metrics)
