"""Caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D from pycocoevalcap, and distinctness.

Always computed on free-running decoded captions, never teacher-forced predictions.
Introduced in ``03_evaluation.ipynb``.
"""

from __future__ import annotations

import contextlib
import io

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from mmkeras.text import standardize_list

METRIC_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider", "distinct", "n_images")


def caption_metrics(references: list[list[str]], hypotheses: list[str]) -> dict[str, float]:
    """Corpus-level scores of one generated caption per image against its references.

    Both sides are standardised the same way as for training, and tokenised on spaces
    (pycocoevalcap's PTB tokenizer needs Java; ours gives the same tokens for plain text).
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference lists but {len(hypotheses)} captions")
    if not hypotheses:
        raise ValueError("no captions to score")
    hypotheses = standardize_list(hypotheses)
    gts = {i: standardize_list(refs) for i, refs in enumerate(references)}
    res = {i: [hyp] for i, hyp in enumerate(hypotheses)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    with contextlib.redirect_stdout(io.StringIO()):  # Rouge and Cider print nothing useful
        rouge_l, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    return {
        "bleu_1": float(bleu[0]), "bleu_2": float(bleu[1]),
        "bleu_3": float(bleu[2]), "bleu_4": float(bleu[3]),
        "rouge_l": float(rouge_l), "cider": float(cider),
        # Share of distinct captions: 1/n means one caption for every image.
        "distinct": len(set(hypotheses)) / len(hypotheses),
        "n_images": len(hypotheses),
    }


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{key} {metrics[key]:.4f}" if key != "n_images" else f"{key} {metrics[key]}"
                     for key in METRIC_KEYS if key in metrics)
