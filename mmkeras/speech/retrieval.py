"""Speech to image retrieval: a dual encoder whose second tower hears a spoken caption.

Notebook 04's dual encoder with the text tower swapped for an audio tower: the audio
encoder's frames (:func:`mmkeras.nn.audio.build_audio_encoder`) read in both directions by
a GRU, pooled by attention with learned queries, to a unit vector beside the image's.
Trained with the same symmetric contrastive loss over the batch, scored by recall at 1, 5
and 10 both ways, against each clip's own image and against any image its caption is true
of, on clips of voices never heard in training. Without text in between: the spoken words
and the picture meet in one space.

The contrastive loss alone teaches it slowly: from "is this clip this picture?" the audio
tower has to find the words by itself. So, as the VQA model's encoder does, each tower also
learns in training to read the scene from its last hidden vector (each object's colour,
shape and size in reading order): the picture shows all of it, the clip what its caption
says (a size left unsaid is not asked of it).
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mmkeras import runs
from mmkeras.config import SpeechToImageConfig
from mmkeras.data.catalog import image_size_of, load_spoken_dataset
from mmkeras.data.folder import CaptionSplit
from mmkeras.data.images import AUTOTUNE, evaluation_images, split_images
from mmkeras.data.shapes import scenes_of
from mmkeras.data.spoken import SAMPLE_RATE, SpokenSplit, clip_length_for, read_clips
from mmkeras.errors import UserError
from mmkeras.nn.audio import build_audio_encoder
from mmkeras.nn.layers import ContrastiveLogits, LearnedQueries
from mmkeras.tasks.examples import said_scene_targets, scene_targets
from mmkeras.tasks.retrieval import (
    DualEncoderTrainer,
    any_match_recall,
    build_image_tower,
    compile_dual_encoder_trainer,
    describes_matrix,
    recall_at_k,
)

# The audio tower's attention pooling: the vectors it pools a clip's frames into, about one
# for each word that tells scenes apart (two colours, two shapes, two sizes, the relation).
# Not tuned.
POOLING_QUERIES = 8
# recall_at_k's and any_match_recall's directions, named for speech.
DIRECTIONS = {"text_to_image": "audio_to_image", "image_to_text": "image_to_audio"}


def build_speech_image_encoder(max_samples: int, image_size: int = 64, embedding_dim: int = 64,
                               units: int = 128):
    """``(contrastive model, image tower, audio tower)``; the towers share the model's weights."""
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    image_tower = build_image_tower(image_size, embedding_dim, units)

    audio = keras.Input((max_samples,), name="audio")
    frames = build_audio_encoder(max_samples, SAMPLE_RATE, feature_dim=units)(audio)
    frames = layers.Reshape((frames.shape[1], units), name="frame_sequence")(frames)
    # Both directions: "a red circle above a blue square" is not "a blue square above a red
    # circle", and which object comes first is heard only in order.
    in_context = layers.Bidirectional(layers.GRU(units // 2, return_sequences=True), name="frames_gru")(frames)
    # Then attention pools the frames into a few vectors, each free to listen where its word
    # was said (as the recogniser's attention does), where a GRU's last state must carry
    # the whole clip to its end.
    queries = LearnedQueries(POOLING_QUERIES, units, name="pooling_queries")(in_context)
    pooled = layers.MultiHeadAttention(num_heads=4, key_dim=units // 4, name="attention_pooling")(
        queries, in_context)
    heard = layers.Dense(units, activation="relu", name="audio_hidden")(layers.Flatten()(pooled))
    audio_vector = layers.Dense(embedding_dim, name="audio_projection")(heard)
    audio_tower = keras.Model(audio, layers.UnitNormalization()(audio_vector), name="audio_tower")

    logits = ContrastiveLogits(name="contrastive_logits")([image_tower(image), audio_tower(audio)])
    return (keras.Model({"image": image, "audio": audio}, logits, name="speech_image_encoder"),
            image_tower, audio_tower)


def images_of(split: SpokenSplit) -> CaptionSplit:
    """The split's clips' images, one per clip, as the image pipeline reads them."""
    return CaptionSplit(split.name, split.image_paths, split.captions)


def speech_image_dataset(audio: np.ndarray, split: SpokenSplit, image_size: int, batch_size: int,
                         shuffle: bool = False, seed: int | None = None) -> tf.data.Dataset:
    """Batches of ``({"image", "audio"}, {"logits", "image_scene", "audio_scene"})``: each clip
    with its image; the label of the ``i``-th pair ``i`` (its column in the batch's logits),
    and the scene each tower learns to read (the picture's whole scene; what the clip says
    of it, :func:`mmkeras.tasks.examples.said_scene_targets`)."""
    scenes = scenes_of(images_of(split))
    seen, heard = scene_targets(scenes), said_scene_targets(split.transcripts, scenes)
    pairs = tf.data.Dataset.zip(split_images(images_of(split), image_size),
                                tf.data.Dataset.from_tensor_slices((audio, seen, heard)))
    if shuffle:
        pairs = pairs.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

    def to_model_inputs(images, clips_and_scenes):
        clips, image_scenes, audio_scenes = clips_and_scenes
        return ({"image": images, "audio": tf.cast(clips, tf.float32)},
                {"logits": tf.range(tf.shape(images)[0]), "image_scene": image_scenes,
                 "audio_scene": audio_scenes})

    return pairs.batch(batch_size).map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def speech_retrieval_scores(split: SpokenSplit, image_vectors: np.ndarray, audio_vectors: np.ndarray,
                            clip_image: np.ndarray, images: CaptionSplit) -> dict:
    """Recall at 1, 5, 10 each way (``audio_to_image``, ``image_to_audio``), strict and
    counting any image the spoken caption is true of (``r1_any``...)."""
    similarity = audio_vectors @ image_vectors.T
    scores = recall_at_k(similarity, clip_image)
    truth = describes_matrix(split.transcripts, scenes_of(images))
    for direction, recalls in any_match_recall(similarity, truth).items():
        scores[direction].update(recalls)
    return {**{DIRECTIONS[d]: recalls for d, recalls in scores.items()},
            "n_images": len(images), "n_clips": len(split)}


def embed_spoken_split(split: SpokenSplit, audio: np.ndarray, image_tower, audio_tower):
    """``(image vectors, clip vectors, each clip's image, the images)``: each image once."""
    unique_paths = list(dict.fromkeys(split.image_paths))
    index = {path: i for i, path in enumerate(unique_paths)}
    first_clip = {path: i for i, path in reversed(list(enumerate(split.image_paths)))}
    images = CaptionSplit(split.name, unique_paths, [split.captions[first_clip[p]] for p in unique_paths])
    image_vectors = image_tower.predict(evaluation_images(images, image_tower.input_shape[1]), verbose=0)
    audio_vectors = audio_tower.predict(audio.astype(np.float32), batch_size=256, verbose=0)
    return image_vectors, audio_vectors, np.array([index[p] for p in split.image_paths]), images


def evaluate_speech_retrieval(model: keras.Model, split: SpokenSplit) -> dict:
    """A saved speech-image encoder's recalls on ``split``."""
    image_tower, audio_tower = model.get_layer("image_tower"), model.get_layer("audio_tower")
    audio = read_clips(split.audio_paths, audio_tower.input_shape[1])
    return {"task": "speech2image",
            **speech_retrieval_scores(split, *embed_spoken_split(split, audio, image_tower, audio_tower))}


def start_from_recogniser(audio_tower: keras.Model, recogniser: keras.Model, source: str) -> None:
    """Copy a speech recogniser's audio encoder into ``audio_tower``'s: the tower then starts
    from frames that were trained to tell the words apart."""
    try:
        encoder = recogniser.get_layer("audio_encoder")
    except ValueError:
        raise UserError(f"{source}: expected a model written by speech2text (with an audio_encoder), "
                        f"found the model {recogniser.name!r}") from None
    target = audio_tower.get_layer("audio_encoder")
    shapes = [tuple(w.shape) for w in encoder.weights]
    if encoder.input_shape != target.input_shape or shapes != [tuple(w.shape) for w in target.weights]:
        raise UserError(f"{source}: its audio encoder takes {encoder.input_shape[1]} samples with weights "
                        f"{shapes[:2]}...; expected one like the tower's ({target.input_shape[1]} samples): "
                        "train both on the same spoken folder with the default widths")
    target.set_weights(encoder.get_weights())


def train_speech_to_image(config: SpeechToImageConfig, verbose: int | str = "auto", progress: bool = True) -> dict:
    """Train the speech-image dual encoder, score recall on the test split's clips, write
    model, history and metrics."""
    data_dir, splits = load_spoken_dataset(config.data, smoke=config.smoke, seed=config.seed,
                                           progress=progress)
    scenes_of(images_of(splits["test"]))  # scored by the scenes: refused before any training
    recogniser = runs.load_model(config.audio_encoder_from) if config.audio_encoder_from else None
    with runs.start(config.out, config.seed) as out:
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        train_split = splits["train"]
        image_size = image_size_of(str(data_dir), images_of(train_split))
        max_samples = clip_length_for(train_split)
        audio = {name: read_clips(split.audio_paths, max_samples) for name, split in splits.items()}
        model, image_tower, audio_tower = build_speech_image_encoder(max_samples, image_size,
                                                                     config.embedding_dim, config.units)
        if recogniser is not None:
            start_from_recogniser(audio_tower, recogniser, config.audio_encoder_from)
        trainer = DualEncoderTrainer(model, second_tower="audio", scene_readers=True, units=config.units,
                                     name="dual_encoder_trainer")
        compile_dual_encoder_trainer(trainer, config.learning_rate,
                                     epochs * math.ceil(len(train_split) / config.batch_size),
                                     config.scene_weight)
        started = time.perf_counter()
        history = runs.fit(
            trainer, speech_image_dataset(audio["train"], train_split, image_size, config.batch_size,
                                        shuffle=True, seed=config.seed),
            speech_image_dataset(audio["val"], splits["val"], image_size, config.batch_size),
            out, epochs, verbose)
        fit_seconds = time.perf_counter() - started
        runs.save_model(model, out / "model.keras")
        metrics = {"task": "speech2image",
                   **speech_retrieval_scores(splits["test"], *embed_spoken_split(
                       splits["test"], audio["test"], image_tower, audio_tower)),
                   "parameters": model.count_params(), "seconds_per_epoch": round(fit_seconds / epochs, 1)}
        runs.record(out, config, metrics, data_dir=str(data_dir), epochs_run=epochs)
        return {**metrics, "model": model, "history": history}
