"""A frozen backbone's features: computed once, read back, recomputed when stale or partial."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_cli import run_cli

from mmkeras import runs
from mmkeras.caption import model as caption_model
from mmkeras.data import feature_cache
from mmkeras.data.feature_cache import cached_features
from mmkeras.data.folder import load_captions
from mmkeras.data.images import image_dataset
from mmkeras.nn import image_encoders

VOCABULARY = ["", "[UNK]", "[start]", "[end]", "a", "red", "circle"]


@pytest.fixture(scope="module")
def backbone():
    """VGG16 with random weights: unlike a random MobileNetV2, whose features are all but
    zero, it gives features large enough for a wrong value to show."""
    keras.utils.set_random_seed(2)
    model = image_encoders.build_backbone("VGG16", 64, weights=None)
    features = model(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    assert float(np.abs(features).max()) > 0.1
    return model


@pytest.fixture
def data(small_shapes, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(small_shapes, root)
    return root


@pytest.fixture
def saves(monkeypatch):
    """Counts the times features are computed and written."""
    calls = []
    real_save = tf.data.Dataset.save
    monkeypatch.setattr(tf.data.Dataset, "save", lambda self, path, *a, **k: (calls.append(path),
                                                                              real_save(self, path, *a, **k)))
    return calls


def _as_array(dataset):
    return np.stack([features.numpy() for features in dataset])


def test_features_are_computed_once_then_read_back(backbone, data, saves, tmp_path):
    split = load_captions(data, splits=("val",))["val"]
    first = _as_array(cached_features(backbone, split, tmp_path / "cache", progress=False))
    again = _as_array(cached_features(backbone, split, tmp_path / "cache", progress=False))
    assert len(saves) == 1, "the second call reads the cache"
    images = next(iter(image_dataset(split.image_paths, 64).batch(len(split))))
    direct = backbone(images, training=False).numpy()
    assert first.shape == direct.shape == (len(split), 2, 2, 512)
    np.testing.assert_allclose(first, direct, rtol=2e-3, atol=1e-3 * np.abs(direct).max())  # float16
    np.testing.assert_array_equal(first, again)


def test_a_changed_image_makes_the_cache_stale(backbone, data, saves, tmp_path, capsys):
    split = load_captions(data, splits=("val",))["val"]
    cached_features(backbone, split, tmp_path / "cache", progress=False)
    Image.new("RGB", (64, 64), (255, 255, 0)).save(split.image_paths[0])
    features = _as_array(cached_features(backbone, split, tmp_path / "cache", progress=False))
    assert len(saves) == 2 and "is stale" in capsys.readouterr().out
    yellow = backbone(np.full((1, 64, 64, 3), [255, 255, 0], np.uint8), training=False).numpy()[0]
    np.testing.assert_allclose(features[0], yellow, rtol=2e-3, atol=1e-3 * np.abs(yellow).max())
    assert not np.allclose(features[0], features[1]), "not every image gives the same features"


@pytest.mark.parametrize("damage", ["no manifest", "unreadable manifest", "leftover partial"])
def test_a_partial_or_damaged_cache_is_computed_again(backbone, data, saves, tmp_path, damage):
    split = load_captions(data, splits=("val",))["val"]
    cache = tmp_path / "cache"
    expected = _as_array(cached_features(backbone, split, cache, progress=False))
    if damage == "no manifest":  # a crash before the manifest was written
        (cache / "val" / feature_cache.MANIFEST).unlink()
    elif damage == "unreadable manifest":
        (cache / "val" / feature_cache.MANIFEST).write_text("{not json")
    else:  # a crash while the first cache was written: only its partial folder is there
        shutil.rmtree(cache / "val")
        (cache / "val.partial").mkdir()
        (cache / "val.partial" / "junk").write_text("half a shard")
    again = _as_array(cached_features(backbone, split, cache, progress=False))
    assert len(saves) == 2
    np.testing.assert_array_equal(again, expected)
    assert not (cache / "val.partial").exists()
    assert json.loads((cache / "val" / feature_cache.MANIFEST).read_text())["backbone"] == backbone.name


def test_the_model_trained_on_features_captions_images_the_same(backbone):
    feature_model = caption_model.build_caption_model(
        VOCABULARY, 4, "attention", image_encoders.build_feature_encoder(backbone.output_shape[1:], 8),
        units=8, embedding_dim=8)
    image_model = caption_model.with_backbone(feature_model, backbone)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    caption_in = np.array([[2, 4, 5, 6, 0]] * 2, np.int32)
    features = backbone(images, training=False).numpy()
    assert np.abs(features).max() > 0.1
    np.testing.assert_allclose(feature_model({"image": features, "caption_in": caption_in}),
                               image_model({"image": images, "caption_in": caption_in}), atol=1e-5)
    assert image_model.input["image"].dtype == "uint8"


def test_train_with_a_frozen_backbone_uses_the_cache_and_saves_an_image_model(data, tmp_path):
    args = ("train", "--data", data, "--backbone", "MobileNetV2", "--backbone-weights", "none",
            "--image-size", 32, "--epochs", 1, "--decoder", "init", "--batch-size", 16)
    completed = run_cli(*args, "--out", tmp_path / "run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    caches = list((data / "features").iterdir())
    assert len(caches) == 1 and caches[0].name.startswith("backbone_mobilenetv2-32px-")
    assert {p.name for p in caches[0].iterdir() if not p.name.startswith(".")} == {"train", "val"}
    model = runs.load_model(tmp_path / "run" / "model.keras")
    assert model.input["image"].shape[1:] == (32, 32, 3) and model.input["image"].dtype == "uint8"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_images"] == 8
