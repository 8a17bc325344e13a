"""Spoken Shapes: eSpeak NG through our binding, the clips as the spec draws them, the folder
and its reader."""

import hashlib
import wave

import numpy as np
import pytest

from mmkeras.cli import main
from mmkeras.data import espeak, shapes, spoken
from mmkeras.errors import UserError


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    return shapes.generate(folder, shapes.ShapesConfig(num_train=6, num_val=3, num_test=3, image_size=32),
                           progress=False)


@pytest.fixture(scope="module")
def spoken_dir(shapes_dir, tmp_path_factory):
    return spoken.generate(tmp_path_factory.mktemp("spoken"), shapes_dir,
                           spoken.SpokenConfig(clips_per_image=2), progress=False)


def _digest(folder):
    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_espeak_speaks_longer_text_for_longer_and_faster_for_more_words_per_minute():
    short = espeak.synthesise("a red circle", "en-us")
    long = espeak.synthesise("a small red circle to the left of a large blue square", "en-us")
    fast = espeak.synthesise("a small red circle to the left of a large blue square", "en-us", 300)
    assert short.dtype == np.int16 and np.abs(short).max() > 1000
    assert len(short) < 0.6 * len(long)
    assert len(fast) < 0.8 * len(long)


def test_an_unknown_voice_is_refused_by_name():
    with pytest.raises(UserError, match="no voice 'xx-none'"):
        espeak.synthesise("a", "xx-none")


def test_a_clip_has_the_noise_it_states():
    speech = espeak.synthesise("a small red circle above a large blue square", "en-us+m1")
    noisy = spoken.as_recorded(speech, 20.0, np.random.default_rng(0))
    # The same draws (silences, loudness), all but no noise: the part of the noisy clip that
    # is not this one is the noise.
    clean = spoken.as_recorded(speech, 300.0, np.random.default_rng(0))
    assert len(noisy) == len(clean) and 0.5 <= np.abs(noisy).max() <= 1.0
    speech_share = np.dot(noisy, clean) / np.dot(clean, clean)
    noise = noisy - speech_share * clean
    spoken_part = np.flatnonzero(np.abs(clean) > 1e-3 * np.abs(clean).max())
    speech = speech_share * clean[spoken_part[0]:spoken_part[-1] + 1]
    assert 10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)) == pytest.approx(20.0, abs=0.5)
    assert np.std(noise[:spoken_part[0]]) == pytest.approx(np.std(noise), rel=0.3)  # in the silence too


def test_the_folder_holds_each_image_spoken_by_voices_held_out_by_split(shapes_dir, spoken_dir):
    clips = spoken.load_spoken(spoken_dir)
    assert {name: len(split) for name, split in clips.items()} == {"train": 12, "val": 6, "test": 6}
    for name, split in clips.items():
        for audio, transcript, captions, speaker in zip(split.audio_paths, split.transcripts,
                                                         split.captions, split.speakers):
            assert transcript in captions
            accent, variant = speaker.split("+")
            assert accent in spoken.ACCENTS and variant in spoken.VARIANTS[name]
            with wave.open(audio) as wav:
                assert (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) == (1, 1, 8000)
    heard = {s.split("+")[1] for s in clips["train"].speakers}
    assert not heard & {s.split("+")[1] for s in clips["test"].speakers + clips["val"].speakers}
    assert (spoken_dir / "Images" / "train_00000.png").read_bytes() == (shapes_dir / "Images" / "train_00000.png").read_bytes()


def test_the_same_seed_speaks_the_same_clips_in_any_number_of_processes(shapes_dir, spoken_dir, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(spoken, "SHARD_IMAGES", 2)  # six shards
    config = spoken.SpokenConfig(clips_per_image=2)
    one = spoken.generate(tmp_path / "one", shapes_dir, config, progress=False, processes=1)
    two = spoken.generate(tmp_path / "two", shapes_dir, config, progress=False, processes=2)
    assert _digest(one) == _digest(two)
    monkeypatch.setattr(spoken, "SHARD_IMAGES", 500)
    assert _digest(spoken.generate(tmp_path / "again", shapes_dir, config, progress=False)) == _digest(spoken_dir)
    other_seed = spoken.generate(tmp_path / "other", shapes_dir, spoken.SpokenConfig(seed=1, clips_per_image=2),
                                 progress=False)
    assert _digest(other_seed / "wavs") != _digest(spoken_dir / "wavs")


def test_speaking_never_changes_the_shapes_folder(shapes_dir, tmp_path):
    before = _digest(shapes_dir)
    spoken.generate(tmp_path / "spoken", shapes_dir, progress=False)
    assert _digest(shapes_dir) == before


def test_wavs_of_other_widths_and_rates_read_back_at_8_khz(tmp_path):
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    with wave.open(str(tmp_path / "tone.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes((tone * 16000).astype("<i2").tobytes())
    samples = spoken.read_wav(tmp_path / "tone.wav")
    assert len(samples) == 8000
    assert np.abs(samples).max() == pytest.approx(16000 / 32767, abs=0.02)
    spoken.write_wav(tmp_path / "eight.wav", samples)
    np.testing.assert_allclose(spoken.read_wav(tmp_path / "eight.wav"), samples, atol=1 / 127)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(UserError, match="broken.wav: not a PCM WAV"):
        spoken.read_wav(tmp_path / "broken.wav")


def test_bad_lists_are_refused_naming_the_file_and_line(spoken_dir, tmp_path, shapes_dir):
    with pytest.raises(UserError, match="no wav2capt.txt"):
        spoken.load_spoken(shapes_dir)
    broken = tmp_path / "broken"
    spoken._copy_shapes(spoken_dir, broken)
    (broken / "wav2capt.txt").write_text("train_00000_0.wav train_00000.png 0\n")
    with pytest.raises(UserError, match=r"wav2capt.txt, line 1: expected"):
        spoken.load_spoken(broken)
    (broken / "wav2capt.txt").write_text("missing.wav train_00000.png #0\n")
    with pytest.raises(UserError, match="lists missing.wav, which is not in"):
        spoken.load_spoken(broken)


def test_the_command_writes_the_folder_and_refuses_bad_input_with_exit_2(shapes_dir, tmp_path, capsys):
    assert main(["data", "spoken", "--out", str(tmp_path / "spoken"), "--shapes", str(shapes_dir)]) == 0
    assert "wrote 12 spoken captions" in capsys.readouterr().out
    assert spoken.config_of(tmp_path / "spoken") == spoken.SpokenConfig()
    assert main(["data", "spoken", "--out", str(tmp_path / "x"), "--shapes", str(tmp_path / "none")]) == 2
    assert "--shapes" in capsys.readouterr().err
    assert main(["data", "spoken", "--out", str(tmp_path / "x"), "--shapes", str(shapes_dir),
                 "--clips-per-image", "6"]) == 2


def test_a_clip_is_drawn_as_the_spec_says(spoken_dir):
    # docs/spoken-shapes.md, "Determinism": the image's own generator, caption indices first,
    # then the first chosen caption's accent, variant, speed, pitch and SNR.
    rng = np.random.default_rng([0, 0, 0])  # seed 0, train, image 0
    k = sorted(int(i) for i in rng.choice(5, size=2, replace=False))[0]
    expected = [f"train_00000_{k}.wav", "train", "train_00000.png", str(k),
                f"{rng.choice(spoken.ACCENTS)}+{rng.choice(spoken.VARIANTS['train'])}",
                str(rng.integers(150, 231)), str(rng.integers(30, 71)), str(round(float(rng.uniform(15, 30)), 1))]
    first = (spoken_dir / "clips.tsv").read_text().splitlines()[1].split("\t")
    assert first[:8] == expected
