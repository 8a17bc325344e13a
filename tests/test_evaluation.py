import pytest
from nltk.translate.bleu_score import corpus_bleu

from mmkeras.caption.metrics import (
    HELD_OUT_KEYS,
    METRIC_KEYS,
    TRUTH_KEYS,
    caption_metrics,
    held_out_metrics,
    split_metrics,
    truth_metrics,
)
from mmkeras.data.shapes import Scene, SceneObject, captions_for

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


def _scene(first, relation, second):
    return Scene(SceneObject(*first.split()), SceneObject(*second.split()), relation)


SCENE = _scene("small red circle", "above", "large red square")


def test_true_captions_read_every_template_back_against_the_scene():
    # Every true caption of every template, then one with each attribute wrong.
    hypotheses = [*captions_for(SCENE),
                  "a red circle is below a red square",  # relation
                  "a large red circle above a large red square",  # size
                  "a blue circle is above a red square",  # colour
                  "a red triangle is above a red square",  # shape
                  "red circles everywhere"]  # no template: false, no attribute read
    metrics = truth_metrics(hypotheses, [SCENE] * len(hypotheses))
    assert set(metrics) == set(TRUTH_KEYS)
    assert metrics["true_captions"] == pytest.approx(5 / 10)
    # Colour words: 2 per readable caption (18), one wrong; shape likewise; sizes: 5 in
    # the true captions (templates 1 and 2 name both, 4 the first) and 2, one wrong.
    assert metrics["precision_colour"] == pytest.approx(17 / 18)
    assert metrics["precision_shape"] == pytest.approx(17 / 18)
    assert metrics["precision_size"] == pytest.approx(6 / 7)
    assert metrics["precision_relation"] == pytest.approx(8 / 9)


def test_a_caption_with_its_objects_swapped_states_the_wrong_relation():
    """'a red square above a red circle', when the circle is above: the colours and shapes
    are right (each mention matches an object), the relation is not."""
    metrics = truth_metrics(["a red square is above a red circle"], [SCENE])
    assert metrics["true_captions"] == 0.0
    assert metrics["precision_colour"] == metrics["precision_shape"] == 1.0
    assert metrics["precision_relation"] == 0.0


def test_test_metrics_add_truth_on_shapes_only():
    from mmkeras.data.folder import CaptionSplit
    shapes = CaptionSplit("test", ["a.png"], [captions_for(SCENE)])
    assert split_metrics(shapes, [captions_for(SCENE)[2]])["true_captions"] == 1.0
    photos = CaptionSplit("test", ["a.jpg"], [["a dog runs on the grass"]])
    assert "true_captions" not in split_metrics(photos, ["a dog runs"])


def test_held_out_pairs_count_as_named_only_with_colour_and_shape_right():
    # Held out: red square and blue circle; the green circle is not.
    scenes = [_scene("small red circle", "above", "large red square"),
              _scene("small blue circle", "to the left of", "large red square"),
              _scene("small green circle", "below", "large blue square")]
    metrics = held_out_metrics(["a red circle is above a red square",  # the red square named
                                "a blue square is to the left of a red circle",  # neither
                                "nothing of the templates"],  # no held-out object there
                               scenes)
    assert metrics == {"held_out_named": pytest.approx(1 / 3), "held_out_objects": 3}


def test_held_out_metrics_join_the_test_scores_only_where_there_are_such_objects():
    from mmkeras.data.folder import CaptionSplit
    with_held_out = CaptionSplit("test", ["a.png"], [captions_for(SCENE)])  # a red square
    assert set(HELD_OUT_KEYS) <= set(split_metrics(with_held_out, [captions_for(SCENE)[0]]))
    plain = _scene("small green circle", "below", "large blue square")
    without = CaptionSplit("test", ["a.png"], [captions_for(plain)])
    assert not set(HELD_OUT_KEYS) & set(split_metrics(without, [captions_for(plain)[0]]))
