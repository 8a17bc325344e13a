"""The tri-modal autoencoder: one code from whichever modalities are given, the probe that
reads it, and the autoencoder command."""

import json

import keras
import numpy as np
import pytest

from mmkeras.cli import main
from mmkeras.data.catalog import load_spoken_dataset
from mmkeras.data.shapes import Scene, SceneObject, captions_for, sizes_said
from mmkeras.nn.layers import MeanOfPresent
from mmkeras.speech.autoencoder import (
    MODALITIES,
    SUBSETS,
    build_autoencoder,
    linear_probe,
    present_mask,
    probe_labels,
)


def test_the_code_is_the_mean_of_the_modalities_given_only():
    codes = np.array([[[1.0, 1.0], [3.0, 5.0], [8.0, 0.0]]] * 3, "float32")
    present = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], "float32")
    np.testing.assert_allclose(np.asarray(MeanOfPresent()([codes, present])),
                               [[1.0, 1.0], [2.0, 3.0], [0.0, 0.0]])


def test_present_mask_names_every_subset_in_the_modalities_order():
    assert len(SUBSETS) == 7 and SUBSETS[0] == "image" and SUBSETS[-1] == "image+caption+speech"
    np.testing.assert_array_equal(present_mask("caption+speech", 2), [[0, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(present_mask("", 1), [[0, 0, 0]])
    with pytest.raises(ValueError, match="sound"):
        present_mask("image+sound", 1)


@pytest.fixture(scope="module")
def small_autoencoder():
    keras.utils.set_random_seed(0)
    return build_autoencoder(["", "[UNK]", "[start]", "[end]", "a", "red", "circle"], 6, 4000,
                             image_size=16, code_dim=8, embedding_dim=4, units=8)


def test_an_input_not_given_changes_nothing(small_autoencoder):
    rng = np.random.default_rng(0)
    inputs = {"image": rng.integers(0, 256, (2, 16, 16, 3)).astype("uint8"),
              "caption": np.array([[2, 4, 5, 6, 0, 0]] * 2, "int32"),
              "speech": rng.normal(0, 0.1, (2, 4000)).astype("float32"),
              "present": present_mask("speech", 2)}
    made = small_autoencoder(inputs)
    other_picture = small_autoencoder({**inputs, "image": 255 - inputs["image"],
                                       "caption": np.zeros_like(inputs["caption"])})
    for name in ("image", "caption", "speech", "code"):
        np.testing.assert_allclose(np.asarray(other_picture[name]), np.asarray(made[name]), atol=1e-6)
    with_picture = small_autoencoder({**inputs, "present": present_mask("image+speech", 2)})
    assert not np.allclose(np.asarray(with_picture["code"]), np.asarray(made["code"]))


def test_the_autoencoder_loads_with_safe_mode(small_autoencoder, tmp_path):
    small_autoencoder.save(tmp_path / "autoencoder.keras")
    loaded = keras.saving.load_model(tmp_path / "autoencoder.keras", safe_mode=True)
    inputs = {"image": np.zeros((1, 16, 16, 3), "uint8"), "caption": np.array([[2, 4, 5, 0, 0, 0]], "int32"),
              "speech": np.zeros((1, 4000), "float32"), "present": present_mask("image+caption", 1)}
    np.testing.assert_allclose(np.asarray(loaded(inputs)["code"]), np.asarray(small_autoencoder(inputs)["code"]),
                               atol=1e-6)


def _scene(first, second, relation):
    return Scene(SceneObject(*first), SceneObject(*second), relation)


def test_the_probe_reads_objects_in_reading_order_whichever_the_caption_names_first():
    scene = _scene(("small", "red", "circle"), ("large", "blue", "square"), "to the right of")
    labels = probe_labels(scene)
    assert (labels["first_colour"], labels["second_colour"], labels["axis"]) == ("blue", "red", "horizontal")
    above = probe_labels(_scene(("small", "red", "circle"), ("large", "blue", "square"), "above"))
    assert (above["first_shape"], above["axis"]) == ("circle", "vertical")
    # The five templates: both sizes, both, none, the first-named object's, none.
    said = [sizes_said(caption, scene) for caption in captions_for(scene)]
    assert [second for _, second in said] == [True, True, False, True, False]  # the red circle's
    assert [first for first, _ in said] == [True, True, False, False, False]


def test_the_linear_probe_reads_what_the_code_holds_linearly_and_no_more():
    rng = np.random.default_rng(0)
    colours, shapes_ = ["red", "green", "blue"], ["circle", "square"]

    def scenes_and_codes(count):
        scenes, codes = [], []
        for _ in range(count):
            c, h = rng.integers(3), rng.integers(2)
            scenes.append(_scene(("small", colours[c], shapes_[h]), ("large", "yellow", "triangle"), "to the left of"))
            code = rng.normal(0, 1, 6)
            code[c] += 4  # the first object's colour, one direction each; its shape not at all
            codes.append(code)
        return scenes, np.array(codes)

    train_scenes, train_codes = scenes_and_codes(300)
    test_scenes, test_codes = scenes_and_codes(200)
    right = linear_probe(train_codes, train_scenes, test_codes, test_scenes)
    assert right["first_colour"].mean() > 0.95
    assert right["first_shape"].mean() < 0.7  # a coin, give or take


def test_autoencoder_writes_every_subset_s_errors_the_probes_and_the_read_back(tmp_path, trained_run, capsys):
    captioner = trained_run[0] / "model.keras"
    out = tmp_path / "run"
    assert main(["autoencoder", "--smoke", "--out", str(out), "--captioner", str(captioner)]) == 0
    assert not (out / "judges").exists()  # the captioner given is the one used
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "autoencoder" and metrics["n_clips"] == 64
    assert list(metrics["reconstruction"]) == ["none", *SUBSETS]
    assert set(metrics["reconstruction"]["speech"]) == set(MODALITIES)
    assert {"first_colour", "axis", "first_size_said"} <= set(metrics["linear_probe"]["speech"])
    assert set(metrics["speech_to_image"]) == {"round_trip", "round_trip_real", "round_trip_shuffled"}
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "val_speech" in history[0]
    assert "linear probe of the code from speech" in capsys.readouterr().out

    folder = load_spoken_dataset("spoken", smoke=True, progress=False)[0]
    again_path = tmp_path / "again.json"
    assert main(["evaluate", "--model", str(out / "model.keras"), "--data", str(folder),
                 "--out", str(again_path)]) == 0
    again = json.loads(again_path.read_text())
    assert again["task"] == "autoencoder" and "speech_to_image" not in again
    for subset, errors in metrics["reconstruction"].items():
        assert again["reconstruction"][subset] == pytest.approx(errors, abs=1e-4)
    assert main(["evaluate", "--model", str(captioner), "--data", str(folder), "--captioner", str(captioner)]) == 2
    assert main(["caption", "--model", str(out / "model.keras"), str(folder / "Images" / "test_00000.png")]) == 2
    assert "trimodal_autoencoder" in capsys.readouterr().err
