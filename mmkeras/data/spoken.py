"""Spoken Shapes: a Shapes Captions folder with its captions spoken by eSpeak NG
(``docs/spoken-shapes.md`` is the spec), and the reader of such folders.

Each image gets ``clips_per_image`` of its captions spoken, each by its own voice (an
English accent and a voice variant), speed and pitch, with Gaussian background noise at a
stated signal-to-noise ratio. The voice variants of the validation and test clips are never
heard in training: a model is scored on speakers it never heard.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import warnings
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from mmkeras.atomic import partial_path, replace_folder, write_json, write_text
from mmkeras.data import espeak
from mmkeras.data.folder import SPLITS, SkippedDataWarning, load_captions, read_text
from mmkeras.errors import UserError

# 8 kHz, 8-bit: the telephone band, which holds what tells the 20 words apart; every image of
# the default Shapes Captions spoken once in 205 MB (16 kHz, 16-bit: four times that).
SAMPLE_RATE = 8000
ACCENTS = ("en-us", "en-us-nyc", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029")
# eSpeak NG's voice variants (formants, pitch range, breath): each split hears its own.
VARIANTS = {"train": ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3"),
            "val": ("m7", "f4"),
            "test": ("m8", "f5")}
WORDS_PER_MINUTE = (150, 230)
PITCH = (30, 70)
SNR_DB = (15.0, 30.0)
SILENCE_SECONDS = (0.0, 0.2)  # before and after the speech, each
PEAK = (0.5, 1.0)
SHARD_IMAGES = 500  # images a fresh process speaks (see _speak_shard)

AUDIO_DIR = "wavs"
CLIP_CAPTIONS = "wav2capt.txt"  # the Flickr Audio Caption Corpus's two lists
CLIP_SPEAKERS = "wav2spk.txt"
CLIP_SETTINGS = "clips.tsv"
MARKER = "spoken.json"


@dataclass(frozen=True)
class SpokenConfig:
    seed: int = 0
    clips_per_image: int = 1


@dataclass
class SpokenSplit:
    """One split's clips: ``audio_paths[i]`` speaks ``transcripts[i]``, a caption of
    ``image_paths[i]``, whose every caption is ``captions[i]``; ``speakers[i]`` is its voice."""

    name: str
    audio_paths: list[str]
    transcripts: list[str]
    image_paths: list[str]
    captions: list[list[str]]
    speakers: list[str]

    def __len__(self) -> int:
        return len(self.audio_paths)


def generate(out_dir: str | Path, shapes_dir: str | Path, config: SpokenConfig = SpokenConfig(),
             progress: bool = True, processes: int | None = None) -> Path:
    """Copy the Shapes Captions folder ``shapes_dir`` (never changed) to ``out_dir`` and speak
    its captions into ``out_dir/wavs``."""
    shapes_dir, out_dir = Path(shapes_dir), Path(out_dir)
    if not 1 <= config.clips_per_image <= 5:
        raise UserError(f"--clips-per-image must be 1 to 5, got {config.clips_per_image}")
    if out_dir.exists() and shapes_dir.resolve() == out_dir.resolve():
        raise UserError(f"{out_dir}: the spoken folder must not be the Shapes Captions folder it copies")
    splits = load_captions(shapes_dir)
    espeak.synthesise("a")  # no engine or no voice data: a clear message before any work

    audio_dir = partial_path(out_dir / AUDIO_DIR)
    shutil.rmtree(audio_dir, ignore_errors=True)
    audio_dir.mkdir(parents=True)
    shards = [(config, split_index, split.name, split.image_paths[start:start + SHARD_IMAGES],
               split.captions[start:start + SHARD_IMAGES], start, str(audio_dir))
              for split_index, split in enumerate(splits[name] for name in SPLITS)
              for start in range(0, len(split), SHARD_IMAGES)]
    rows_of_shard = {}
    total = sum(len(shard[3]) for shard in shards)
    # A fresh process for each shard: eSpeak NG carries state from one clip to the next, so
    # the clips are the same only when a shard's clips are spoken in order from a fresh start.
    # "spawn": a process forked from one running TensorFlow (a notebook) can hang.
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes or min(len(shards), multiprocessing.cpu_count()), maxtasksperchild=1) as pool, \
            tqdm(total=total, desc="speaking captions", unit="img", disable=None if progress else True) as bar:
        for index, rows in pool.imap_unordered(_speak_shard, list(enumerate(shards))):
            rows_of_shard[index] = rows
            bar.update(len(shards[index][3]))
    rows = [row for index in sorted(rows_of_shard) for row in rows_of_shard[index]]

    # As for the shapes: the marker goes first and comes back last, the audio swapped whole.
    (out_dir / MARKER).unlink(missing_ok=True)
    _copy_shapes(shapes_dir, out_dir)
    replace_folder(audio_dir, out_dir / AUDIO_DIR)
    write_text(out_dir / CLIP_CAPTIONS, "".join(f"{r['wav']} {r['image']} #{r['caption']}\n" for r in rows))
    write_text(out_dir / CLIP_SPEAKERS, "".join(f"{r['wav']} {r['voice']}\n" for r in rows))
    columns = ("wav", "split", "image", "caption", "voice", "words_per_minute", "pitch", "snr_db",
               "text")
    write_text(out_dir / CLIP_SETTINGS, "\t".join(columns) + "\n"
               + "".join("\t".join(str(r[c]) for c in columns) + "\n" for r in rows))
    write_json(out_dir / MARKER, {**asdict(config), "sample_rate": SAMPLE_RATE,
                                  "shapes": str(shapes_dir.resolve())})
    return out_dir


def _copy_shapes(shapes_dir: Path, out_dir: Path) -> None:
    images = partial_path(out_dir / "Images")
    shutil.rmtree(images, ignore_errors=True)
    shutil.copytree(shapes_dir / "Images", images)
    replace_folder(images, out_dir / "Images")
    for name in ("captions.txt", *(f"{split}.txt" for split in SPLITS), "shapes.json"):
        if (shapes_dir / name).exists():
            write_text(out_dir / name, (shapes_dir / name).read_text(encoding="utf-8"))


def _speak_shard(numbered_shard) -> tuple[int, list[dict]]:
    """Speak one shard's clips into the audio folder; their rows for the lists."""
    index, (config, split_index, split, image_paths, captions, start, audio_dir) = numbered_shard
    rows = []
    for offset, (image_path, image_captions) in enumerate(zip(image_paths, captions)):
        image_index = start + offset
        # One generator per image: a clip never depends on how the work was shared out.
        rng = np.random.default_rng([config.seed, split_index, image_index])
        chosen = rng.choice(len(image_captions), size=min(config.clips_per_image, len(image_captions)),
                            replace=False)
        for k in sorted(int(k) for k in chosen):
            clip = _clip_settings(rng, split)
            samples = speak(image_captions[k], clip, rng)
            name = f"{Path(image_path).stem}_{k}.wav"
            write_wav(Path(audio_dir) / name, samples)
            rows.append({"wav": name, "split": split, "image": Path(image_path).name, "caption": k,
                         "text": image_captions[k], **clip})
    return index, rows


def _clip_settings(rng: np.random.Generator, split: str) -> dict:
    return {"voice": f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS[split])}",
            "words_per_minute": int(rng.integers(WORDS_PER_MINUTE[0], WORDS_PER_MINUTE[1] + 1)),
            "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
            "snr_db": round(float(rng.uniform(*SNR_DB)), 1)}


def speak(text: str, clip: dict, rng: np.random.Generator) -> np.ndarray:
    """``text`` spoken with a clip's voice, speed and pitch, then :func:`as_recorded`."""
    speech = espeak.synthesise(text, clip["voice"], clip["words_per_minute"], clip["pitch"])
    return as_recorded(speech, clip["snr_db"], rng)


def as_recorded(speech: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """eSpeak NG's int16 samples at :data:`SAMPLE_RATE`, with silence around them, Gaussian
    noise at ``snr_db`` (against the speech's mean power) and the peak scaled to a random
    loudness: floats in -1..1."""
    speech = resample_poly(speech / 32768.0, SAMPLE_RATE, espeak.SAMPLE_RATE)
    before, after = (int(rng.uniform(*SILENCE_SECONDS) * SAMPLE_RATE) for _ in range(2))
    noise_power = np.mean(speech ** 2) / 10 ** (snr_db / 10)
    clip_samples = np.concatenate([np.zeros(before), speech, np.zeros(after)])
    clip_samples += rng.normal(0.0, math.sqrt(noise_power), clip_samples.shape)
    return clip_samples * (rng.uniform(*PEAK) / np.abs(clip_samples).max())


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Floats in -1..1 as a mono 8-bit PCM WAV at :data:`SAMPLE_RATE` (unsigned, 128 silent)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(np.clip(np.round(samples * 127) + 128, 0, 255).astype(np.uint8).tobytes())


def read_wav(path: str | Path) -> np.ndarray:
    """A PCM WAV (8, 16 or 32-bit, mono or its first channel, any rate) as floats in -1..1 at
    :data:`SAMPLE_RATE`."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as error:
        raise UserError(f"{path}: not a PCM WAV file that can be read ({error})") from error
    if width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128) / 128
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(frames, dtype).astype(np.float32) / np.iinfo(dtype).max
    else:
        raise UserError(f"{path}: {8 * width}-bit samples; expected 8, 16 or 32-bit PCM")
    samples = samples[::channels] if channels > 1 else samples
    if rate != SAMPLE_RATE:
        divisor = math.gcd(rate, SAMPLE_RATE)
        samples = resample_poly(samples, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    return samples


def config_of(out_dir: str | Path) -> SpokenConfig | None:
    """The configuration a Spoken Shapes folder was spoken with; None for any other folder."""
    try:
        recorded = json.loads((Path(out_dir) / MARKER).read_text())
        return SpokenConfig(seed=recorded["seed"], clips_per_image=recorded["clips_per_image"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def ensure(out_dir: str | Path, shapes_dir: str | Path, config: SpokenConfig = SpokenConfig(),
           progress: bool = True) -> Path:
    """Speak the folder unless ``out_dir`` already holds it."""
    if config_of(out_dir) != config:
        generate(out_dir, shapes_dir, config, progress)
    return Path(out_dir)


def load_spoken(data_dir: str | Path, splits=SPLITS) -> dict[str, SpokenSplit]:
    """``{split: SpokenSplit}`` of a Spoken Shapes folder: its captioned images
    (:func:`mmkeras.data.folder.load_captions`) and the clips ``wav2capt.txt`` lists."""
    data_dir = Path(data_dir)
    captioned = load_captions(data_dir, splits)
    clip_list, speaker_list = data_dir / CLIP_CAPTIONS, data_dir / CLIP_SPEAKERS
    if not clip_list.exists():
        raise UserError(f"{data_dir}: no {CLIP_CAPTIONS}; expected a Spoken Shapes folder "
                        "(python -m mmkeras data spoken --out DIR)")
    speakers = {}
    if speaker_list.exists():
        for line in read_text(speaker_list).splitlines():
            if line.strip():
                wav_name, _, speaker = line.partition(" ")
                speakers[wav_name] = speaker.strip()
    clips_of_image: dict[str, list[tuple[str, int]]] = {}
    for number, line in enumerate(read_text(clip_list).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[2].startswith("#") or not fields[2][1:].isdigit():
            raise UserError(f"{clip_list}, line {number}: expected '{{wav}} {{image}} #{{k}}', "
                            f"got {line!r}")
        clips_of_image.setdefault(fields[1], []).append((fields[0], int(fields[2][1:])))
    loaded = {}
    for name, split in captioned.items():
        clips = SpokenSplit(name, [], [], [], [], [])
        for image_path, captions in zip(split.image_paths, split.captions):
            for wav_name, k in clips_of_image.get(Path(image_path).name, []):
                if k >= len(captions):
                    raise UserError(f"{clip_list}: {wav_name} speaks caption #{k} of "
                                    f"{Path(image_path).name}, which has {len(captions)}")
                audio_path = data_dir / AUDIO_DIR / wav_name
                if not audio_path.exists():
                    raise UserError(f"{clip_list} lists {wav_name}, which is not in {data_dir / AUDIO_DIR}")
                clips.audio_paths.append(str(audio_path))
                clips.transcripts.append(captions[k])
                clips.image_paths.append(image_path)
                clips.captions.append(captions)
                clips.speakers.append(speakers.get(wav_name, ""))
        if not clips.audio_paths:
            raise UserError(f"{clip_list}: no clip of any image of the {name} split")
        loaded[name] = clips
    return loaded


def clip_length_for(split: SpokenSplit, round_to_seconds: float = 0.5) -> int:
    """Samples a model takes: the split's longest clip, rounded up to ``round_to_seconds``."""
    longest = max(_frames_of(path) for path in split.audio_paths)
    step = int(round_to_seconds * SAMPLE_RATE)
    return -(-longest // step) * step


def _frames_of(path: str) -> int:
    try:
        with wave.open(str(path), "rb") as wav:
            return math.ceil(wav.getnframes() * SAMPLE_RATE / wav.getframerate())
    except (OSError, EOFError, wave.Error) as error:
        raise UserError(f"{path}: not a PCM WAV file that can be read ({error})") from error


def read_clips(paths: list[str], length: int) -> np.ndarray:
    """``(clips, length)`` float16 samples at :data:`SAMPLE_RATE`, each clip zero-padded at
    its end or, if longer, cut (with a warning: the model hears only its first ``length``)."""
    clips = np.zeros((len(paths), length), np.float16)
    cut = 0
    for row, path in enumerate(paths):
        samples = read_wav(path)
        cut += len(samples) > length
        clips[row, :min(len(samples), length)] = samples[:length]
    if cut:
        warnings.warn(f"{cut} of {len(paths)} clips are longer than the model's "
                      f"{length / SAMPLE_RATE:.1f} s and were cut", SkippedDataWarning, stacklevel=2)
    return clips
