import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from mmkeras import config, runs
from mmkeras.caption.model import build_caption_model, caption_vocabulary, decoder_kind, max_caption_length_of
from mmkeras.errors import UserError
from mmkeras.nn import image_encoders

VOCABULARY = ["", "[UNK]", "[start]", "[end]", "a", "red", "circle"]


@pytest.mark.parametrize("decoder", config.DECODERS)
def test_caption_model_maps_images_and_words_to_next_word_logits(decoder):
    caption_model = build_caption_model(VOCABULARY, max_caption_length=5, decoder=decoder,
                                               units=32, embedding_dim=16)
    logits = caption_model({"image": np.zeros((2, 64, 64, 3), np.uint8),
                            "caption_in": np.ones((2, 6), np.int32)})
    assert logits.shape == (2, 6, len(VOCABULARY))
    assert logits.dtype == "float32"
    assert decoder_kind(caption_model) == decoder
    assert caption_vocabulary(caption_model) == VOCABULARY
    assert max_caption_length_of(caption_model) == 5


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="decoder must be one of"):
        build_caption_model(VOCABULARY, 5, decoder="gru")


def test_backbone_by_name_with_its_own_preprocessing():
    encoder = image_encoders.build_image_encoder(64, feature_dim=16, backbone="MobileNetV2",
                                         backbone_weights=None)
    features = encoder(np.zeros((1, 64, 64, 3), np.uint8))
    assert features.shape == (1, 2, 2, 16)
    backbone = [layer for layer in encoder.layers if isinstance(layer, keras.Model)][0]
    assert not backbone.trainable, "a backbone is frozen unless fine-tuned"
    with pytest.raises(UserError, match="--backbone NoSuchNet: unknown"):
        image_encoders.build_image_encoder(64, backbone="NoSuchNet")


def test_backbone_model_saves_and_loads_safely(tmp_path):
    encoder = image_encoders.build_image_encoder(64, feature_dim=8, backbone="MobileNetV2", backbone_weights=None)
    caption_model = build_caption_model(VOCABULARY, 4, "init", encoder, units=8, embedding_dim=8)
    caption_model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    inputs = {"image": np.full((1, 64, 64, 3), 128, np.uint8), "caption_in": np.ones((1, 5), np.int32)}
    np.testing.assert_allclose(caption_model(inputs), loaded(inputs), atol=1e-5)


def test_saved_model_loads_safely_in_a_fresh_process_with_the_same_captions(trained_run, tmp_path):
    from mmkeras.caption.decoding import CaptionDecoder
    from mmkeras.data.images import load_image
    out, result = trained_run
    image_paths = [path for path, _ in result["examples"][:3]]
    images = np.stack([load_image(path, 64).numpy() for path in image_paths])
    here = CaptionDecoder(result["model"]).captions(images)
    script = textwrap.dedent(f"""
        import numpy as np
        from mmkeras.caption.decoding import CaptionDecoder
        from mmkeras.runs import load_model as load_caption_model
        from mmkeras.data.images import load_image
        model = load_caption_model({str(out / "model.keras")!r})
        images = np.stack([load_image(p, 64).numpy() for p in {image_paths!r}])
        print("\\n".join(CaptionDecoder(model).captions(images)))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.splitlines() == here


def test_missing_or_corrupt_model_file_is_a_user_error(tmp_path):
    from mmkeras.errors import UserError
    with pytest.raises(UserError, match="model file not found"):
        runs.load_model(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 this is not a keras archive")
    with pytest.raises(UserError, match="corrupt.keras: not a readable .keras model"):
        runs.load_model(corrupt)


def test_pretrained_weights_that_cannot_download_are_a_user_error(monkeypatch):
    from urllib.error import URLError

    from mmkeras.errors import UserError

    def offline(*args, **kwargs):
        raise URLError("no network")

    # Offline on purpose, whatever this machine can reach: the download itself fails.
    from keras.src.utils import file_utils
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match="could not load the imagenet weights of MobileNetV2.*internet"):
        image_encoders.build_image_encoder(64, backbone="MobileNetV2", backbone_weights="imagenet")


def test_fine_tuning_trains_the_top_layers_only_and_never_batch_norm():
    frozen = image_encoders.build_backbone("MobileNetV2", 64, weights=None)
    assert frozen.trainable_weights == []
    tuned = image_encoders.build_backbone("MobileNetV2", 64, weights=None, fine_tune=True, fine_tune_layers=10)
    base = [layer for layer in tuned.layers if isinstance(layer, keras.Model)][0]
    trainable = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert trainable, "some layers train"
    assert all(layer in base.layers[-10:] for layer in trainable), "only the top 10"
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    everything = image_encoders.build_backbone("MobileNetV2", 64, weights=None, fine_tune=True, fine_tune_layers=0)
    assert len(everything.trainable_weights) > len(tuned.trainable_weights)


def test_a_vision_transformer_encoder_gives_the_cnns_feature_map():
    vit = image_encoders.build_image_encoder(64, feature_dim=16, encoder="vit")
    cnn = image_encoders.build_image_encoder(64, feature_dim=16)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert vit(images).shape == cnn(images).shape == (2, 8, 8, 16)
    names = [layer.name for layer in vit.layers]
    assert "patch_embedding" in names and "vit_block_0" in names
    with pytest.raises(ValueError, match="encoder must be one of"):
        image_encoders.build_image_encoder(64, encoder="mlp")


def test_a_transformer_captioner_on_a_vit_saves_and_loads_safely(tmp_path):
    encoder = image_encoders.build_image_encoder(64, feature_dim=16, encoder="vit")
    caption_model = build_caption_model(VOCABULARY, 5, "transformer", encoder, units=32, embedding_dim=16)
    caption_model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    inputs = {"image": np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8),
              "caption_in": np.array([[2, 4, 5, 6, 3, 0], [2, 4, 0, 0, 0, 0]], np.int32)}
    np.testing.assert_allclose(caption_model(inputs), loaded(inputs), atol=1e-5)
    assert decoder_kind(loaded) == "transformer"
