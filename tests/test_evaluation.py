import pytest
from nltk.translate.bleu_score import corpus_bleu

from mmkeras.caption.metrics import METRIC_KEYS, caption_metrics

REFERENCES = [
    ["a small red circle above a large blue square", "a red circle is above a blue square"],
    ["a large green triangle to the left of a small yellow circle",
     "a green triangle is to the left of a yellow circle"],
    ["there is a small purple square below a large red triangle", "a purple square below a red triangle"],
]


def test_perfect_captions_score_one():
    metrics = caption_metrics(REFERENCES, [refs[0] for refs in REFERENCES])
    assert set(metrics) == set(METRIC_KEYS)
    for key in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-6), key
    assert metrics["distinct"] == 1.0 and metrics["n_images"] == 3
    assert metrics["cider"] > 1.0


def test_wrong_captions_score_lower_and_repetition_shows_in_distinct():
    same = ["a red circle above a blue square"] * 3
    metrics = caption_metrics(REFERENCES, same)
    perfect = caption_metrics(REFERENCES, [refs[0] for refs in REFERENCES])
    assert metrics["bleu_4"] < perfect["bleu_4"]
    assert metrics["cider"] < perfect["cider"]
    assert metrics["distinct"] == pytest.approx(1 / 3)


def test_bleu_matches_nltk_corpus_bleu_on_the_same_tokens():
    hypotheses = ["a small red circle above a blue square",
                  "a green triangle to the right of a small yellow circle",
                  "a purple square below a triangle"]
    metrics = caption_metrics(REFERENCES, hypotheses)
    refs = [[r.split() for r in refs] for refs in REFERENCES]
    hyps = [h.split() for h in hypotheses]
    for n in range(1, 5):
        weights = tuple([1 / n] * n)
        assert metrics[f"bleu_{n}"] == pytest.approx(corpus_bleu(refs, hyps, weights=weights), abs=1e-4)


def test_captions_are_standardised_before_scoring():
    metrics = caption_metrics(REFERENCES[:1], ["A small RED circle, above a large blue square!"])
    assert metrics["bleu_4"] == pytest.approx(1.0, abs=1e-6)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 reference lists but 1 captions"):
        caption_metrics(REFERENCES[:2], ["a caption"])


def test_per_image_scores_single_out_the_wrong_caption():
    from mmkeras.caption.metrics import per_image_scores
    hypotheses = [REFERENCES[0][0], "a blue square", REFERENCES[2][1]]
    scores = per_image_scores(REFERENCES, hypotheses)
    assert scores["bleu_4"].shape == (3,)
    assert scores["bleu_4"].argmin() == 1 and scores["cider"].argmin() == 1
    assert scores["bleu_4"][0] == pytest.approx(1.0, abs=1e-6)
