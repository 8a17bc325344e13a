"""Speech: the audio encoder and its SpecAugment, a recogniser that learns to tell spoken
captions apart in voices it never heard, and the speech2text command."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.model import build_caption_model, compile_caption_model
from mmkeras.cli import main
from mmkeras.data import spoken
from mmkeras.data.catalog import load_spoken_dataset
from mmkeras.data.folder import load_captions
from mmkeras.data.text import add_start_end, build_vectorizer, vectorizer_vocabulary
from mmkeras.nn.audio import SpecAugment, build_audio_encoder


def test_spec_augment_masks_bands_and_stretches_while_training_only():
    augment = SpecAugment(frequency_masks=2, frequency_width=5, time_masks=2, time_width=10, seed=0)
    ones = np.ones((16, 100, 40), "float32")
    np.testing.assert_array_equal(np.asarray(augment(ones)), ones)
    masked = np.asarray(augment(ones, training=True)) == 0
    blank_frames = masked.all(axis=2).sum(axis=1)
    blank_bands = masked.all(axis=1).sum(axis=1)
    assert blank_frames.max() <= 20 and blank_bands.max() <= 10
    assert blank_frames.sum() > 0 and blank_bands.sum() > 0
    assert len({tuple(row) for row in masked.all(axis=2)}) > 1  # each clip its own masks


def test_the_audio_encoder_takes_raw_samples_and_loads_with_safe_mode(tmp_path):
    encoder = build_audio_encoder(8000, filters=(8, 16), feature_dim=12)
    clips = np.random.default_rng(0).normal(0, 0.1, (2, 8000)).astype("float32")
    features = np.asarray(encoder(clips))
    assert features.shape == (2, 100 // 4, 1, 12)  # 100 frames of 10 ms, pooled twice
    encoder.save(tmp_path / "encoder.keras")
    reloaded = keras.saving.load_model(tmp_path / "encoder.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(clips)), features, atol=1e-5)


def test_a_clip_is_heard_the_same_whatever_clips_share_its_batch():
    encoder = build_audio_encoder(8000, filters=(8, 16), feature_dim=12)
    clip = np.random.default_rng(0).normal(0, 0.1, (1, 8000)).astype("float32")
    clip[:, 4000:] = 0  # padding: the quietest frames, where a floor under the batch's loudest would bite
    loud_neighbour = np.full((1, 8000), 0.9, "float32")
    np.testing.assert_allclose(np.asarray(encoder(np.concatenate([clip, loud_neighbour])))[0],
                               np.asarray(encoder(clip))[0], atol=1e-4)


def test_a_louder_or_longer_padded_clip_gives_the_same_features():
    encoder = build_audio_encoder(12000, filters=(8, 16), feature_dim=12)
    clip = np.zeros((1, 12000), "float32")
    clip[:, :6000] = np.random.default_rng(0).normal(0, 0.1, 6000) * np.hanning(6000)
    features = np.asarray(encoder.get_layer("utterance_mean_norm")(
        encoder.get_layer("frames_first")(encoder.get_layer("log_mel")(clip))))
    louder = np.asarray(encoder.get_layer("utterance_mean_norm")(
        encoder.get_layer("frames_first")(encoder.get_layer("log_mel")(clip * 3))))
    np.testing.assert_allclose(louder, features, atol=1e-3)  # a gain: the same in every band
    assert np.all(features[0, 80:] == 0)  # the padding: neither in the mean nor left in


def test_a_recogniser_hears_which_caption_was_said_in_clips_it_never_heard():
    texts = ["a red circle above a blue square", "a green triangle below a yellow circle"]
    rng = np.random.default_rng(0)
    length = 20000  # 2.5 s

    def clips(variants, count):
        said = [texts[i % 2] for i in range(count)]
        audio = np.zeros((count, length), "float32")
        for row, text in enumerate(said):
            clip = {"voice": f"{spoken.ACCENTS[row % 3]}+{variants[row % len(variants)]}",
                    "words_per_minute": int(rng.integers(150, 200)), "pitch": int(rng.integers(35, 65)),
                    "snr_db": 25.0}
            samples = spoken.speak(text, clip, rng)[:length]
            audio[row, :len(samples)] = samples
        return audio, said

    train_audio, train_said = clips(spoken.VARIANTS["train"], 48)
    # New clips (speeds, pitches, noise, accents by variant) of the training variants: 48
    # clips are too few for a voice never heard, which the full run is scored on.
    test_audio, test_said = clips(spoken.VARIANTS["train"][::-1], 8)
    vectorizer = build_vectorizer(train_said, 8)
    keras.utils.set_random_seed(0)
    model = build_caption_model(vectorizer_vocabulary(vectorizer), 8, "attention",
                                build_audio_encoder(length, filters=(8, 16), feature_dim=16),
                                embedding_dim=16, units=32)
    assert set(model.input) == {"audio", "caption_in"}
    compile_caption_model(model, 1e-2)
    ids = np.asarray(vectorizer(add_start_end(train_said)))
    model.fit({"audio": train_audio, "caption_in": ids[:, :-1]}, ids[:, 1:], batch_size=16, epochs=30,
              verbose=0)
    heard = CaptionDecoder(model).captions(test_audio)
    # A recogniser deaf to the audio writes one caption for all: 4 of 8 right.
    assert sum(h == s for h, s in zip(heard, test_said)) >= 7, heard


def test_speech2text_writes_a_model_and_its_word_error_rate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["speech2text", "--smoke", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["wer"] <= 1.5 and metrics["test_clips"] == 64
    assert set(metrics["wer_by_voice"]) == set(spoken.VARIANTS["test"])
    assert "word error rate" in capsys.readouterr().out
    folder = load_spoken_dataset("spoken", smoke=True, progress=False)[0]
    assert main(["evaluate", "--model", str(out / "model.keras"), "--data", str(folder),
                 "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["task"] == "speech2text" and again["wer"] == pytest.approx(metrics["wer"])
    assert main(["evaluate", "--model", str(out / "model.keras"), "--data", str(tmp_path)]) == 2  # not spoken
    assert main(["caption", "--model", str(out / "model.keras"), str(folder / "Images" / "test_00000.png")]) == 2
    assert "transcribes speech" in capsys.readouterr().err
    # A fresh process, which has imported nothing of the audio encoder, loads the model too.
    loaded = subprocess.run([sys.executable, "-c", "import sys; from mmkeras.runs import load_model; "
                             "print(load_model(sys.argv[1]).input['audio'].shape)", str(out / "model.keras")],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def test_perfect_speech_and_image_vectors_recall_every_clip_both_ways(tmp_path):
    from mmkeras.data import shapes
    from mmkeras.speech.retrieval import speech_retrieval_scores
    folder = shapes.generate(tmp_path / "shapes", shapes.ShapesConfig(num_train=2, num_val=2, num_test=12,
                                                                      image_size=32), progress=False)
    images = load_captions(folder)["test"]
    clips = spoken.SpokenSplit("test", [f"{i}.wav" for i in range(24)],
                               [refs[i % 5] for refs in images.captions for i in range(2)],
                               [p for p in images.image_paths for _ in range(2)],
                               [refs for refs in images.captions for _ in range(2)], ["en+m8"] * 24)
    image_vectors = np.eye(12, dtype="float32")
    clip_image = np.repeat(np.arange(12), 2)
    scores = speech_retrieval_scores(clips, image_vectors, image_vectors[clip_image], clip_image, images)
    for direction in ("audio_to_image", "image_to_audio"):
        assert scores[direction]["r1"] == scores[direction]["r1_any"] == 1.0
    shuffled = speech_retrieval_scores(clips, image_vectors, image_vectors[(clip_image + 1) % 12], clip_image,
                                       images)
    assert shuffled["audio_to_image"]["r1"] == 0.0


def test_a_caption_is_asked_only_the_sizes_it_says():
    from mmkeras.data.shapes import Scene, SceneObject
    from mmkeras.tasks.examples import said_scene_targets, scene_targets
    scene = Scene(SceneObject("small", "red", "circle"), SceneObject("large", "blue", "square"), "to the right of")
    captions = ["a small red circle to the right of a large blue square",
                "a red circle to the right of a blue square",
                "a large blue square to the left of a small red circle",
                "there is a small red circle to the right of a blue square"]
    said = said_scene_targets(captions, [scene] * 4)
    seen = np.repeat(scene_targets([scene]), 4, axis=0)
    # Reading order puts the square (the left object) first: its size is slot 2, the circle's 5.
    np.testing.assert_array_equal(said[0], seen[0])
    assert list(said[1][[2, 5]]) == [-1, -1]
    np.testing.assert_array_equal(said[1][[0, 1, 3, 4, 6]], seen[1][[0, 1, 3, 4, 6]])
    np.testing.assert_array_equal(said[2], seen[2])
    assert list(said[3][[2, 5]]) == [-1, seen[3][5]]  # the circle's size said, the square's not


def test_the_audio_tower_starts_from_a_recognisers_encoder_of_the_same_clips_only():
    from mmkeras.errors import UserError
    from mmkeras.speech.retrieval import build_speech_image_encoder, start_from_recogniser

    def recogniser_of(samples):
        audio = keras.Input((samples,), name="audio")
        return keras.Model(audio, build_audio_encoder(samples)(audio), name="recogniser")

    recogniser = recogniser_of(4000)
    _, _, audio_tower = build_speech_image_encoder(4000, image_size=32)
    start_from_recogniser(audio_tower, recogniser, "speech2text/model.keras")
    for copied, source in zip(audio_tower.get_layer("audio_encoder").get_weights(),
                              recogniser.get_layer("audio_encoder").get_weights()):
        np.testing.assert_array_equal(copied, source)
    with pytest.raises(UserError, match="8000 samples.*expected one like the tower's \\(4000 samples"):
        start_from_recogniser(audio_tower, recogniser_of(8000), "other/model.keras")
    with pytest.raises(UserError, match="expected a model written by speech2text"):
        start_from_recogniser(audio_tower, keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), "m")


def test_speech2image_writes_its_recalls_and_evaluate_scores_it_again(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["speech2image", "--smoke", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for direction in ("audio_to_image", "image_to_audio"):
        assert set(metrics[direction]) == {"r1", "r5", "r10", "r1_any", "r5_any", "r10_any"}
    assert metrics["n_clips"] == 64
    folder = load_spoken_dataset("spoken", smoke=True, progress=False)[0]
    assert main(["evaluate", "--model", str(out / "model.keras"), "--data", str(folder),
                 "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["task"] == "speech2image"
    assert again["audio_to_image"] == pytest.approx(metrics["audio_to_image"])
