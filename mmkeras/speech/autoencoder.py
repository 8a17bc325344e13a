"""The tri-modal autoencoder: a picture, its caption and the caption spoken, in one code.

Each modality has its encoder (the captioner's CNN, the shared text encoder, the audio
encoder), each ends in a vector of one size, and the shared code is the mean of the vectors
of the modalities present. Three decoders make each modality back from that code: the
picture (at 32 px), the caption's words, and the spoken caption's log-mel spectrogram
(pooled to 80 ms frames). Trained with whole modalities dropped at random (each example
gets one of the seven non-empty subsets), so that one modality alone must carry what the
decoders need: after training, speech alone draws a picture.

The training step is written out (:class:`TriModalTrainer`: a ``tf.GradientTape`` in
``train_step``) because the loss depends on a draw that no ``compile`` loss sees: which
modalities each example keeps. Written inside ``fit`` rather than as a hand-made epoch loop,
it keeps what ``fit`` gives: the callbacks (``history.csv``, TensorBoard), validation,
progress, ``tf.function`` compilation and distribution. What is saved is the functional
autoencoder, which loads with ``safe_mode=True``.

``python -m mmkeras autoencoder`` runs :func:`train_autoencoder`; introduced in
``07_audio.ipynb``.
"""

from __future__ import annotations

import itertools
import math
import time

import jiwer
import keras
import numpy as np
import tensorflow as tf
from keras import layers
from scipy.optimize import minimize

from mmkeras import runs
from mmkeras.config import AutoencoderConfig
from mmkeras.data.catalog import load_spoken_dataset
from mmkeras.data.images import AUTOTUNE, images_in_memory, split_images
from mmkeras.data.pairs import teacher_forcing
from mmkeras.data.shapes import Scene, reading_order, scenes_of, sizes_said
from mmkeras.data.spoken import SAMPLE_RATE, SpokenSplit, clip_length_for, read_clips
from mmkeras.data.text import (
    MAX_CAPTION_WORDS,
    add_start_end,
    build_vectorizer,
    caption_lengths,
    ids_to_captions,
    standardize_list,
    vectorizer_for,
    vectorizer_vocabulary,
)
from mmkeras.errors import UserError
from mmkeras.generation import judges
from mmkeras.nn.audio import MEL_BANDS, build_audio_encoder, log_mel_front_end
from mmkeras.nn.image_encoders import build_image_encoder
from mmkeras.nn.layers import MeanOfPresent
from mmkeras.nn.losses import masked_loss
from mmkeras.nn.text_encoder import encode_text
from mmkeras.speech.retrieval import images_of
from mmkeras.tasks.retrieval import caption_ids

MODALITIES = ("image", "caption", "speech")
# Every non-empty subset of the modalities, one alone first. The empty one, "", is scored too:
# what the decoders make knowing nothing, the floor of every reconstruction error.
SUBSETS = tuple("+".join(chosen) for size in range(1, 4) for chosen in itertools.combinations(MODALITIES, size))
SPECTROGRAM_POOL = 8  # 10 ms frames pooled to 80 ms: what was said and how, not every glottal pulse
DECIBELS = 20.0  # the spectrogram target's unit: a mean-normalised log-mel band spans a few tens of dB
# The picture's squared error is a few hundredths once the background is right, the other two
# tenths: weighted so that the picture is not the term the code can neglect.
LOSS_WEIGHTS = {"image": 10.0, "caption": 1.0, "speech": 1.0}
# The attributes a probe reads from the code, in reading order (the left object, or the upper
# one, first): a picture shows where things are, not which of them a caption names first.
PROBE_ATTRIBUTES = ("first_colour", "first_shape", "first_size", "second_colour", "second_shape",
                    "second_size", "axis")


def present_mask(subset: str, count: int) -> np.ndarray:
    """``(count, 3)`` float32: 1 where a modality of ``subset`` ("image+speech") is given."""
    chosen = set(subset.split("+")) - {""}
    if not chosen <= set(MODALITIES):
        raise ValueError(f"unknown modality in {subset!r}; expected {'+'.join(MODALITIES)}")
    return np.tile(np.array([m in chosen for m in MODALITIES], np.float32), (count, 1))


def spectrogram_target(max_samples: int) -> keras.Model:
    """Raw samples to what the speech decoder makes back: the audio encoder's log-mel front end
    (each band's mean over the clip out, padding 0), in units of 20 dB, averaged over
    :data:`SPECTROGRAM_POOL` frames. No weights: the same for every model of a length."""
    audio = keras.Input((max_samples,), name="audio")
    x = log_mel_front_end(audio, SAMPLE_RATE)
    x = layers.Rescaling(1.0 / DECIBELS, name="in_20_db")(x)
    x = layers.AveragePooling1D(SPECTROGRAM_POOL, name="pooled_frames")(x)
    return keras.Model(audio, x, name="spectrogram_target")


def build_autoencoder(vocabulary: list[str], max_text_length: int, max_samples: int, image_size: int = 32,
                      code_dim: int = 128, embedding_dim: int = 64, units: int = 128) -> keras.Model:
    """``{"image" uint8, "caption" ids of [start] words, "speech" samples, "present" (3,)}`` to
    ``{"image" in 0..1, "caption" word logits, "speech" spectrogram, "code"}``.

    ``present`` says which inputs are given (1) and which not (0): an input not given is
    still fed (zeros), and left out of the shared code."""
    if image_size % 8:
        raise UserError(f"the autoencoder halves its pictures three times: --image-size must be a "
                        f"multiple of 8, got {image_size}")
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    caption = keras.Input((max_text_length,), dtype="int32", name="caption")
    speech = keras.Input((max_samples,), name="speech")
    present = keras.Input((len(MODALITIES),), name="present")

    feature_map = build_image_encoder(image_size, feature_dim=64, coordinates=True)(image)
    image_code = layers.Dense(units * 2, activation="relu", name="image_hidden")(layers.Flatten()(feature_map))
    image_code = layers.Dense(code_dim, name="image_code")(image_code)

    _, text_summary = encode_text(caption, vocabulary, embedding_dim, units)
    caption_code = layers.Dense(code_dim, name="caption_code")(text_summary)

    frames = build_audio_encoder(max_samples, SAMPLE_RATE, feature_dim=units)(speech)
    frames = layers.Reshape((frames.shape[1], units), name="frame_sequence")(frames)
    heard = layers.Bidirectional(layers.GRU(units // 2), name="frames_gru")(frames)
    speech_code = layers.Dense(code_dim, name="speech_code")(heard)

    codes = layers.Concatenate(axis=1, name="codes")(
        [layers.Reshape((1, code_dim))(c) for c in (image_code, caption_code, speech_code)])
    code = MeanOfPresent(name="code")([codes, present])

    # Swish, not ReLU, in the decoders: a ReLU decoder trained on this mix of subsets lost
    # every unit in its first epoch and drew one background for every code.
    smallest = image_size // 8
    x = layers.Dense(units * 2, activation="swish", name="image_decoder_hidden")(code)
    x = layers.Dense(smallest * smallest * 64, activation="swish", name="image_decoder_grid")(x)
    x = layers.Reshape((smallest, smallest, 64))(x)
    for level, width in enumerate((64, 32, 16)):
        x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="swish",
                                   name=f"image_decoder_up_{level}")(x)
    drawn = layers.Conv2D(3, 3, padding="same", activation="sigmoid", name="drawn_image")(x)

    # The caption in one pass, every word at once from the code (no word depends on the
    # one written before it: the code holds the whole scene).
    x = layers.RepeatVector(max_text_length, name="code_per_word")(code)
    x = layers.LSTM(units, return_sequences=True, name="caption_decoder_lstm")(x)
    words = layers.Dense(len(vocabulary), name="caption_words")(x)

    pooled_frames = spectrogram_target(max_samples).output.shape[1]
    x = layers.Dense(units * 2, activation="swish", name="speech_decoder_hidden")(code)
    x = layers.Dense(pooled_frames * MEL_BANDS, name="speech_decoder_bands")(x)
    spectrogram = layers.Reshape((pooled_frames, MEL_BANDS), name="spectrogram")(x)

    return keras.Model({"image": image, "caption": caption, "speech": speech, "present": present},
                       {"image": drawn, "caption": words, "speech": spectrogram, "code": code},
                       name="trimodal_autoencoder")


class TriModalTrainer(keras.Model):
    """Trains the autoencoder on batches of ``{"image", "caption", "speech"}``: each example
    keeps one of the seven non-empty subsets of its modalities, drawn at random, and the
    loss is the picture's squared error, the caption's cross-entropy (the words are classes,
    not quantities) and the spectrogram's mean absolute error, each over all three outputs
    whatever was given (:data:`LOSS_WEIGHTS`). Only for training; what is saved is the
    autoencoder.

    Why not the picture's absolute error, as for the spectrogram: from speech alone, where
    each object lies is unknown, and the best answer to an absolute error is each pixel's
    median over the pictures the words fit, which is the background wherever an object
    covers a pixel in fewer than half of them: the picture would show nothing. The squared
    error's best answer is the mean, a blur of each named colour over where its object may
    lie (notebook 06's diffusion model met the same: mmkeras/generation/diffusion.py)."""

    def __init__(self, autoencoder: keras.Model, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.autoencoder = autoencoder
        self.target = spectrogram_target(autoencoder.input["speech"].shape[1])
        self.word_loss = masked_loss()
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *MODALITIES)}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.autoencoder(inputs, training=training)

    def losses_of(self, batch, training: bool) -> dict:
        count = tf.shape(batch["image"])[0]
        # 1..7 in binary: bit i keeps modality i; never none.
        subset = keras.random.randint((count,), 1, 2 ** len(MODALITIES), seed=self.seed_generator)
        present = tf.cast(tf.stack([tf.bitwise.bitwise_and(tf.bitwise.right_shift(subset, i), 1)
                                    for i in range(len(MODALITIES))], axis=1), tf.float32)
        speech = tf.cast(batch["speech"], tf.float32)
        made = self.autoencoder({"image": batch["image"], "caption": batch["caption"], "speech": speech,
                                 "present": present}, training=training)
        pixels = tf.cast(batch["image"], tf.float32) / 255.0
        losses = {"image": tf.reduce_mean(tf.square(pixels - tf.cast(made["image"], tf.float32))),
                  "caption": self.word_loss(batch["caption_out"], tf.cast(made["caption"], tf.float32)),
                  "speech": tf.reduce_mean(tf.abs(self.target(speech) - tf.cast(made["speech"], tf.float32)))}
        return {"loss": sum(LOSS_WEIGHTS[m] * losses[m] for m in MODALITIES), **losses}

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            losses = self.losses_of(batch, training=True)
            scaled_loss = self.optimizer.scale_loss(losses["loss"])  # mixed precision's loss scale
        variables = self.autoencoder.trainable_variables
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return self._update(losses)

    def test_step(self, batch):
        return self._update(self.losses_of(batch, training=False))

    def _update(self, losses):
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def autoencoder_dataset(audio: np.ndarray, split: SpokenSplit, vectorizer, image_size: int, batch_size: int,
                        shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``{"image", "caption", "caption_out", "speech"}``: each clip with its picture
    and the caption it speaks (``[start] words`` in, ``words [end]`` the target)."""
    caption_in, caption_out = teacher_forcing(vectorizer(add_start_end(split.transcripts)))
    examples = tf.data.Dataset.zip(split_images(images_of(split), image_size),
                                   tf.data.Dataset.from_tensor_slices((caption_in, caption_out, audio)))
    if shuffle:
        examples = examples.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

    def named(image, texts_and_speech):
        caption, target, speech = texts_and_speech
        return {"image": image, "caption": caption, "caption_out": target, "speech": speech}

    return examples.map(named, num_parallel_calls=AUTOTUNE).batch(batch_size).prefetch(AUTOTUNE)


class TriModalData:
    """A split's inputs in memory, ready for the autoencoder: pictures at its size, caption ids,
    clips at its length, and each clip's scene."""

    def __init__(self, autoencoder: keras.Model, split: SpokenSplit, audio: np.ndarray | None = None):
        self.split = split
        image_size = autoencoder.input["image"].shape[1]
        self.images = images_in_memory(images_of(split), image_size)
        self.vocabulary = autoencoder.get_layer("word_embedding").vocabulary
        vectorizer = vectorizer_for(self.vocabulary, autoencoder.input["caption"].shape[1] - 1)
        self.captions = caption_ids(split.transcripts, vectorizer).numpy()
        self.audio = read_clips(split.audio_paths, autoencoder.input["speech"].shape[1]) if audio is None else audio
        self.scenes = scenes_of(images_of(split))

    def __len__(self) -> int:
        return len(self.split)

    def inputs(self, subset: str) -> dict:
        """Every example's inputs with only ``subset``'s modalities given (the others zero)."""
        present = present_mask(subset, len(self))
        return {"image": self.images * present[:, :1, None, None].astype(np.uint8),
                "caption": self.captions * present[:, 1:2].astype(np.int32),
                "speech": self.audio.astype(np.float32) * present[:, 2:3],
                "present": present}


def made_from(autoencoder: keras.Model, data: TriModalData, subset: str, batch_size: int = 250) -> dict:
    """What the autoencoder makes of ``data`` given ``subset``: ``image`` (uint8),
    ``caption`` (words), ``speech`` (spectrograms) and ``code``, as numpy arrays."""
    inputs = data.inputs(subset)
    batches = [autoencoder.predict_on_batch({name: values[start:start + batch_size]
                                             for name, values in inputs.items()})
               for start in range(0, len(data), batch_size)]
    made = {name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]}
    return {"image": np.round(np.clip(made["image"], 0, 1) * 255).astype(np.uint8),
            "caption": ids_to_captions(np.argmax(made["caption"], axis=-1), data.vocabulary),
            "speech": made["speech"], "code": made["code"]}


def reconstruction_errors(autoencoder: keras.Model, data: TriModalData, made: dict[str, dict]) -> dict:
    """For every subset of inputs (and none), each modality's error made back from it
    (``made[subset]``, :func:`made_from`): ``image`` the pictures' mean absolute error (0..1
    pixels), ``caption`` the word error rate of the caption written, ``speech`` the
    spectrogram's mean absolute error (in 20 dB)."""
    target = spectrogram_target(autoencoder.input["speech"].shape[1]).predict(
        data.audio.astype(np.float32), batch_size=256, verbose=0)
    references = standardize_list(data.split.transcripts)
    errors = {}
    for subset, outputs in made.items():
        errors[subset or "none"] = {
            "image": float(np.mean(np.abs(outputs["image"] / 255.0 - data.images / 255.0))),
            "caption": float(jiwer.wer(references, [caption or "-" for caption in outputs["caption"]])),
            "speech": float(np.mean(np.abs(outputs["speech"] - target)))}
    return errors


def probe_labels(scene: Scene) -> dict[str, str]:
    """The attributes a linear probe reads, in reading order: the left object (or, one above
    the other, the upper one) first; ``axis`` is horizontal or vertical."""
    first, second = reading_order(scene)
    return {"first_colour": first.colour, "first_shape": first.shape, "first_size": first.size,
            "second_colour": second.colour, "second_shape": second.shape, "second_size": second.size,
            "axis": "vertical" if scene.relation in ("above", "below") else "horizontal"}


def with_bias(features: np.ndarray) -> np.ndarray:
    """``features`` with a column of ones appended: a linear model's bias as one more weight."""
    return np.hstack([features, np.ones((len(features), 1))])


def logistic_regression(features: np.ndarray, labels: np.ndarray, classes: int,
                        l2: float = 1e-3) -> np.ndarray:
    """The weights ``(features + 1, classes)`` of a multinomial logistic regression (the last
    row the bias), fitted by L-BFGS to the mean cross-entropy plus ``l2`` times the squared
    weights: the linear probe, as CLIP's paper fits it (with scikit-learn's L-BFGS)."""
    inputs = with_bias(features)
    one_hot = np.eye(classes)[labels]

    def loss_and_gradient(flat):
        weights = flat.reshape(inputs.shape[1], classes)
        logits = inputs @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        loss = -np.mean(np.sum(one_hot * np.log(probabilities + 1e-12), axis=1)) + l2 * np.sum(weights ** 2)
        gradient = inputs.T @ (probabilities - one_hot) / len(inputs) + 2 * l2 * weights
        return loss, gradient.ravel()

    start = np.zeros(inputs.shape[1] * classes)
    fitted = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return fitted.x.reshape(inputs.shape[1], classes)


def linear_probe(train_codes: np.ndarray, train_scenes: list[Scene], test_codes: np.ndarray,
                 test_scenes: list[Scene]) -> dict[str, np.ndarray]:
    """For each attribute (:data:`PROBE_ATTRIBUTES`), whether a logistic regression fitted to
    the training split's codes reads each test code right: what the code holds in plain
    sight, readable by one linear layer."""
    train_labels = [probe_labels(s) for s in train_scenes]
    test_labels = [probe_labels(s) for s in test_scenes]
    mean, scale = train_codes.mean(axis=0), train_codes.std(axis=0) + 1e-6
    train_features, test_features = (train_codes - mean) / scale, (test_codes - mean) / scale
    right = {}
    for attribute in PROBE_ATTRIBUTES:
        classes = sorted({labels[attribute] for labels in train_labels})
        weights = logistic_regression(train_features, np.array([classes.index(x[attribute]) for x in train_labels]),
                                      len(classes))
        predicted = np.argmax(with_bias(test_features) @ weights, axis=1)
        right[attribute] = np.array([classes[p] == x[attribute] for p, x in zip(predicted, test_labels)])
    return right


def probe_scores(autoencoder: keras.Model, train: TriModalData, test: TriModalData, made: dict[str, dict],
                 subsets=("speech", "image", "caption", "image+caption+speech")) -> dict:
    """The linear probe's test accuracy on the code made from each of ``subsets`` (the test
    clips' in ``made[subset]``), by attribute; for speech alone also ``first_size_said`` and
    ``second_size_said``, over the clips whose caption says that object's size (one that
    leaves it out leaves it to chance)."""
    scores = {}
    for subset in subsets:
        right = linear_probe(made_from(autoencoder, train, subset)["code"], train.scenes,
                             made[subset]["code"], test.scenes)
        scores[subset] = {attribute: float(np.mean(r)) for attribute, r in right.items()}
        if subset == "speech":
            said = [sizes_said(t, s) for t, s in zip(test.split.transcripts, test.scenes)]
            for place, column in (("first_size", 0), ("second_size", 1)):
                chosen = np.array([s[column] for s in said])
                scores[subset][f"{place}_said"] = float(np.mean(right[place][chosen])) if chosen.any() else None
    return scores


def pictures_from_speech(drawn: np.ndarray, test: TriModalData, captioner: keras.Model, seed: int = 0) -> dict:
    """Pictures drawn from speech alone (``drawn``, one per test clip), read back by the
    captioner (:func:`judges.round_trip`), beside the real pictures at the same size (the
    ceiling) and the drawn ones paired with shuffled scenes (the floor)."""
    read_drawn = judges.read_back(drawn, captioner)
    shuffled = np.random.default_rng(seed).permutation(len(test))
    return {"round_trip": judges.round_trip(read_drawn, test.scenes),
            "round_trip_real": judges.round_trip(judges.read_back(test.images, captioner), test.scenes),
            "round_trip_shuffled": judges.round_trip([read_drawn[i] for i in shuffled], test.scenes)}


def score_autoencoder(autoencoder: keras.Model, train: TriModalData, test: TriModalData,
                      captioner: keras.Model | None, seed: int = 0) -> dict:
    """``reconstruction`` (every subset's errors), ``linear_probe`` (by subset and attribute),
    and, with a captioner, ``speech_to_image`` (the round trip)."""
    made = {subset: made_from(autoencoder, test, subset) for subset in ("", *SUBSETS)}  # each once
    metrics = {"reconstruction": reconstruction_errors(autoencoder, test, made),
               "linear_probe": probe_scores(autoencoder, train, test, made), "n_clips": len(test)}
    if captioner is not None:
        metrics["speech_to_image"] = pictures_from_speech(made["speech"]["image"], test, captioner, seed)
    return metrics


def train_autoencoder(config: AutoencoderConfig, verbose: int | str = "auto", progress: bool = True,
                      captioner: keras.Model | None = None) -> dict:
    """Train the tri-modal autoencoder on a Spoken Shapes folder, score it on the test split's
    clips (voices never heard in training), write model, config, history and metrics.

    The pictures drawn from speech are read back by ``captioner``; without one given, by
    ``config.captioner`` (a model ``train`` wrote) or, failing that, by a captioner trained
    with its defaults into ``out/judges/`` once."""
    data_dir, splits = load_spoken_dataset(config.data, smoke=config.smoke, seed=config.seed, progress=progress)
    scenes_of(images_of(splits["test"]))  # scored by the scenes: refused before any training
    if captioner is None and config.captioner:
        captioner = runs.load_model(config.captioner)
    with runs.start(config.out, config.seed) as out:
        if captioner is None:
            captioner, = judges.trained_judges(str(data_dir), out / "judges", config.smoke, config.seed,
                                               verbose, progress, names=("captioner",))
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        train_split = splits["train"]
        max_samples = clip_length_for(train_split)
        audio = {name: read_clips(split.audio_paths, max_samples) for name, split in splits.items()}
        max_words = int(min(MAX_CAPTION_WORDS, caption_lengths(train_split.transcripts).max()))
        vectorizer = build_vectorizer(train_split.transcripts, max_words)
        autoencoder = build_autoencoder(vectorizer_vocabulary(vectorizer), max_words + 1, max_samples,
                                        config.image_size, config.code_dim, config.embedding_dim, config.units)
        trainer = TriModalTrainer(autoencoder, seed=config.seed, name="trimodal_trainer")
        trainer.compile(optimizer=runs.optimizer(config.learning_rate,
                                                 epochs * math.ceil(len(train_split) / config.batch_size)))
        started = time.perf_counter()
        history = runs.fit(
            trainer, autoencoder_dataset(audio["train"], train_split, vectorizer, config.image_size,
                                         config.batch_size, shuffle=True, seed=config.seed),
            autoencoder_dataset(audio["val"], splits["val"], vectorizer, config.image_size, config.batch_size),
            out, epochs, verbose)
        fit_seconds = time.perf_counter() - started
        runs.save_model(autoencoder, out / "model.keras")
        metrics = {"task": "autoencoder",
                   **score_autoencoder(autoencoder, TriModalData(autoencoder, train_split, audio["train"]),
                                       TriModalData(autoencoder, splits["test"], audio["test"]),
                                       captioner, config.seed),
                   "parameters": autoencoder.count_params(), "seconds_per_epoch": round(fit_seconds / epochs, 1)}
        runs.record(out, config, metrics, data_dir=str(data_dir), epochs_run=epochs)
        return {**metrics, "model": autoencoder, "history": history}


def evaluate_autoencoder(autoencoder: keras.Model, train: SpokenSplit, test: SpokenSplit,
                         captioner: keras.Model | None = None) -> dict:
    """A saved autoencoder's scores on another Spoken Shapes folder (its probes trained on
    that folder's training split)."""
    return {"task": "autoencoder",
            **score_autoencoder(autoencoder, TriModalData(autoencoder, train), TriModalData(autoencoder, test),
                                captioner)}
