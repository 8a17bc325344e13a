"""The fusions: each builds, uses both the image and the text, and saves safely; the blind
baselines use one."""

import keras
import numpy as np
import pytest

from mmkeras.config import FUSIONS
from mmkeras.nn.layers import OuterProduct
from mmkeras.tasks.fusion import build_fused_classifier

VOCABULARY = ["", "[UNK]", "what", "colour", "is", "the", "circle", "square", "red", "blue"]


def inputs(seed, batch=4, length=7):
    rng = np.random.default_rng(seed)
    text = rng.integers(2, len(VOCABULARY), size=(batch, length)).astype("int32")
    text[:, 5:] = 0  # padding, as real questions have
    return {"image": rng.integers(0, 256, size=(batch, 64, 64, 3)).astype("uint8"), "text": text}


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_reads_both_the_image_and_the_text(fusion, tmp_path):
    keras.utils.set_random_seed(0)
    classifier = build_fused_classifier(VOCABULARY, 7, 5, fusion, units=32)
    batch = inputs(0)
    logits = classifier.predict(batch, verbose=0)
    assert logits.shape == (4, 5) and np.all(np.isfinite(logits))

    other_text = {**batch, "text": inputs(1)["text"]}
    other_image = {**batch, "image": inputs(2)["image"]}
    # A fusion that dropped a branch would give the same logits for another text or image.
    assert not np.allclose(classifier.predict(other_text, verbose=0), logits, atol=1e-6)
    assert not np.allclose(classifier.predict(other_image, verbose=0), logits, atol=1e-6)

    path = tmp_path / f"{fusion}.keras"
    classifier.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("baseline, blind_to", [("text_only", "image"), ("image_only", "text")])
def test_each_blind_baseline_reads_one_branch_only(baseline, blind_to, tmp_path):
    keras.utils.set_random_seed(0)
    classifier = build_fused_classifier(VOCABULARY, 7, 5, baseline, units=32)
    batch = inputs(0)
    logits = classifier.predict(batch, verbose=0)
    seen = "text" if blind_to == "image" else "image"
    np.testing.assert_allclose(classifier.predict({**batch, blind_to: inputs(1)[blind_to]}, verbose=0),
                               logits, rtol=1e-6)
    assert not np.allclose(classifier.predict({**batch, seen: inputs(2)[seen]}, verbose=0), logits)
    classifier.save(tmp_path / "baseline.keras")
    reloaded = keras.saving.load_model(tmp_path / "baseline.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_padding_after_the_text_does_not_change_the_answer(fusion):
    keras.utils.set_random_seed(0)
    padded_model = build_fused_classifier(VOCABULARY, 7, 5, fusion, units=32)
    unpadded_model = build_fused_classifier(VOCABULARY, 5, 5, fusion, units=32)
    unpadded_model.set_weights(padded_model.get_weights())
    batch = inputs(0)  # five words, then two places of padding
    np.testing.assert_allclose(
        unpadded_model.predict({**batch, "text": batch["text"][:, :5]}, verbose=0),
        padded_model.predict(batch, verbose=0), rtol=1e-4, atol=1e-5)


def test_coordinate_channels_give_each_position_its_x_and_y():
    from mmkeras.nn.layers import CoordinateChannels
    features = np.zeros((2, 3, 5, 4), "float32")
    with_coordinates = np.asarray(CoordinateChannels()(features))
    assert with_coordinates.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(with_coordinates[1, 0, :, 4], [-1, -0.5, 0, 0.5, 1])  # x, left to right
    np.testing.assert_allclose(with_coordinates[1, :, 2, 5], [-1, 0, 1])  # y, top to bottom
    np.testing.assert_array_equal(with_coordinates[..., :4], features)


def test_features_at_coordinates_are_each_feature_times_x_and_times_y():
    from mmkeras.nn.layers import FeaturesAtCoordinates
    features = np.random.default_rng(0).random((2, 3, 5, 4)).astype("float32")
    placed = np.asarray(FeaturesAtCoordinates()(features))
    assert placed.shape == (2, 3, 5, 12)
    np.testing.assert_array_equal(placed[..., :4], features)
    x = np.array([-1, -0.5, 0, 0.5, 1], "float32")[None, None, :, None]  # left to right
    y = np.array([-1, 0, 1], "float32")[None, :, None, None]  # top to bottom
    np.testing.assert_allclose(placed[..., 4:8], features * x, atol=1e-6)
    np.testing.assert_allclose(placed[..., 8:], features * y, atol=1e-6)
    # Averaged over positions (as a spread-out attention averages), one feature firing on the
    # right half only says "right": its x-weighted mean is positive.
    right_only = np.zeros((1, 3, 5, 1), "float32")
    right_only[:, :, 3:] = 1.0
    assert np.asarray(FeaturesAtCoordinates()(right_only))[..., 1].mean() > 0


def test_outer_product_multiplies_every_pair_and_keeps_each_vector():
    image = np.array([[2.0, 3.0]], dtype="float32")
    text = np.array([[5.0, 7.0, 11.0]], dtype="float32")
    product = np.asarray(OuterProduct()([image, text]))
    expected = np.outer([2.0, 3.0, 1.0], [5.0, 7.0, 11.0, 1.0]).reshape(1, -1)
    np.testing.assert_allclose(product, expected)


def test_unknown_fusion_is_refused():
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_fused_classifier(VOCABULARY, 7, 5, "sum")
