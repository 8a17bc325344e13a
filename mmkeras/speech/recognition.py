"""Speech recognition: a spoken caption to its words, by a caption model whose encoder hears.

The caption decoders of ``02_training.ipynb`` unchanged, attending over the spectrogram's
frames (:func:`mmkeras.nn.audio.build_audio_encoder`) instead of an image's positions, and
decoded by the same greedy and beam search. Scored by word error rate (``jiwer``) on the
test split's clips, spoken by voices the training never heard.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jiwer
import numpy as np
import tensorflow as tf

from mmkeras import runs
from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.model import build_caption_model, compile_caption_model
from mmkeras.config import SpeechToTextConfig
from mmkeras.data.catalog import load_spoken_dataset
from mmkeras.data.images import AUTOTUNE
from mmkeras.data.pairs import teacher_forcing
from mmkeras.data.spoken import SAMPLE_RATE, SpokenSplit, clip_length_for, read_clips
from mmkeras.data.text import (
    MAX_CAPTION_WORDS,
    add_start_end,
    build_vectorizer,
    caption_lengths,
    standardize_list,
    vectorizer_vocabulary,
)
from mmkeras.nn.audio import build_audio_encoder

DECODE_BATCH = 256


def train_speech_to_text(config: SpeechToTextConfig, verbose: int | str = "auto",
                         progress: bool = True) -> dict:
    """Train on the train split's clips, keep the model, and score its transcripts of the test
    split's: ``metrics.json`` has ``wer`` (word error rate), ``sentence_accuracy`` and
    ``wer_by_voice`` (by held-out voice variant)."""
    data_dir, splits = load_spoken_dataset(config.data, smoke=config.smoke, seed=config.seed,
                                           progress=progress)
    with runs.start(config.out, config.seed) as out:
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        max_samples = clip_length_for(splits["train"])
        audio = {name: read_clips(split.audio_paths, max_samples) for name, split in splits.items()}
        transcripts = splits["train"].transcripts
        max_words = int(min(MAX_CAPTION_WORDS, caption_lengths(transcripts).max()))
        vectorizer = build_vectorizer(transcripts, max_words)
        model = build_caption_model(vectorizer_vocabulary(vectorizer), max_words, config.decoder,
                                    build_audio_encoder(max_samples, SAMPLE_RATE),
                                    embedding_dim=config.embedding_dim, units=config.units)
        compile_caption_model(model, config.learning_rate,
                              decay_steps=epochs * math.ceil(len(splits["train"]) / config.batch_size))
        started = time.perf_counter()
        history = runs.fit(
            model, speech_dataset(audio["train"], splits["train"], vectorizer, config.batch_size,
                                  shuffle=True, seed=config.seed),
            speech_dataset(audio["val"], splits["val"], vectorizer, config.batch_size),
            out, epochs, verbose)
        fit_seconds = time.perf_counter() - started
        runs.save_model(model, out / "model.keras")
        metrics = {**score_transcripts(model, audio["test"], splits["test"], config.beam_width),
                   "parameters": model.count_params(), "seconds_per_epoch": round(fit_seconds / epochs, 1),
                   "clip_seconds": max_samples / SAMPLE_RATE}
        runs.record(out, config, metrics, data_dir=str(data_dir), epochs_run=epochs)
        return {**metrics, "model": model, "history": history}


def speech_dataset(audio: np.ndarray, split: SpokenSplit, vectorizer, batch_size: int,
                   shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``({"audio", "caption_in"}, caption_out)``: each clip and the caption it
    speaks, teacher-forced."""
    ids = vectorizer(add_start_end(split.transcripts))
    pairs = tf.data.Dataset.from_tensor_slices((audio, ids))
    if shuffle:
        pairs = pairs.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

    def to_model_inputs(clips, caption_ids):
        caption_in, caption_out = teacher_forcing(caption_ids)
        return {"audio": tf.cast(clips, tf.float32), "caption_in": caption_in}, caption_out

    return pairs.batch(batch_size).map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def transcribe(model, audio: np.ndarray, beam_width: int = 1) -> list[str]:
    """The model's transcript of each clip (``(clips, samples)`` at the model's length)."""
    decoder = CaptionDecoder(model)
    return [text for start in range(0, len(audio), DECODE_BATCH)
            for text in decoder.captions(np.asarray(audio[start:start + DECODE_BATCH], np.float32),
                                         beam_width)]


def score_transcripts(model, audio: np.ndarray, split: SpokenSplit, beam_width: int = 1) -> dict:
    """Word error rate of the model's transcripts against what each clip says, overall and by
    voice variant; the share of clips transcribed without an error; five examples."""
    hypotheses = transcribe(model, audio, beam_width)
    references = standardize_list(split.transcripts)
    variants = [speaker.partition("+")[2] or speaker for speaker in split.speakers]
    by_voice = {}
    for variant in sorted(set(variants)):
        chosen = [i for i, v in enumerate(variants) if v == variant]
        by_voice[variant] = round(jiwer.wer([references[i] for i in chosen],
                                            [hypotheses[i] for i in chosen]), 4)
    return {"wer": round(jiwer.wer(references, hypotheses), 4),
            "sentence_accuracy": round(float(np.mean([r == h for r, h in zip(references, hypotheses)])), 4),
            "wer_by_voice": by_voice, "test_clips": len(references),
            "examples": [{"audio": Path(p).name, "said": r, "heard": h}
                         for p, r, h in list(zip(split.audio_paths, references, hypotheses))[:5]]}
