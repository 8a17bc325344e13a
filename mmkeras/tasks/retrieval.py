"""Image-text retrieval: a dual encoder trained with a symmetric contrastive loss.

Two towers map an image and a caption into the same space, where a caption lies closest
to the image it describes (CLIP, Radford et al., 2021, at a small scale). Training pairs a
batch of images with one caption each; every other caption in the batch is a negative. On
Shapes Captions, each caption's false twin (one word changed) is a negative too, and each
tower learns to read the scene beside the contrastive loss (:class:`DualEncoderTrainer`).
Scored by recall at 1, 5 and 10 on the test split, text to image and image to text.

Introduced in ``04_multimodal_tasks.ipynb``; ``python -m mmkeras retrieval`` runs
:func:`train_retrieval`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from math import comb

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mmkeras import runs
from mmkeras.config import RetrievalConfig
from mmkeras.data.catalog import image_size_of, load_dataset
from mmkeras.data.folder import CaptionSplit
from mmkeras.data.images import AUTOTUNE, evaluation_images, split_images
from mmkeras.data.pairs import caption_dataset, teacher_forcing, tokenize_references
from mmkeras.data.shapes import INVERSE_RELATION, Scene, SceneObject, read_caption, scenes_of
from mmkeras.data.text import (
    MAX_CAPTION_WORDS,
    add_start_end,
    build_vectorizer,
    caption_lengths,
    vectorizer_for,
    vectorizer_vocabulary,
)
from mmkeras.errors import UserError
from mmkeras.nn.image_encoders import build_image_encoder
from mmkeras.nn.layers import ContrastiveLogits
from mmkeras.nn.losses import SymmetricContrastiveLoss
from mmkeras.nn.text_encoder import encode_text
from mmkeras.tasks.classification import load_matcher, match_margin
from mmkeras.tasks.examples import SCENE_CLASSES, SCENE_SLOTS, said_scene_targets, scene_targets
from mmkeras.tasks.matching import mismatched_caption

RECALL_AT = (1, 5, 10)


def build_dual_encoder(vocabulary: list[str], max_text_length: int, image_size: int = 64,
                       embedding_dim: int = 64, units: int = 128):
    """``(contrastive model, image tower, text tower)``; the towers share the model's weights.

    Image tower: the captioner's CNN encoder, flattened (where things are matters), to a
    unit vector. Text tower: the shared text encoder, its last state through a hidden
    layer to a unit vector.
    """
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    image_tower = build_image_tower(image_size, embedding_dim, units)

    text = keras.Input((max_text_length,), dtype="int32", name="text")
    _, text_vector = encode_text(text, vocabulary, units, units)
    text_vector = layers.Dense(units, activation="relu", name="text_hidden")(text_vector)
    text_vector = layers.Dense(embedding_dim, name="text_projection")(text_vector)
    text_tower = keras.Model(text, layers.UnitNormalization()(text_vector), name="text_tower")

    logits = ContrastiveLogits(name="contrastive_logits")([image_tower(image), text_tower(text)])
    return keras.Model({"image": image, "text": text}, logits, name="dual_encoder"), image_tower, text_tower


def build_image_tower(image_size: int = 64, embedding_dim: int = 64, units: int = 128) -> keras.Model:
    """uint8 images to unit vectors: the captioner's CNN encoder (with each position's x and
    y), flattened (where things are matters), a hidden layer and a projection. The image
    half of every dual encoder (text here, speech in :mod:`mmkeras.speech.retrieval`)."""
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    feature_map = build_image_encoder(image_size, feature_dim=units, coordinates=True)(image)
    image_vector = layers.Dense(units, activation="relu", name="image_hidden")(layers.Flatten()(feature_map))
    image_vector = layers.Dense(embedding_dim, name="image_projection")(image_vector)
    return keras.Model(image, layers.UnitNormalization()(image_vector), name="image_tower")


def retrieval_dataset(split: CaptionSplit, vectorizer, image_size: int, batch_size: int,
                      shuffle: bool = True, seed: int | None = None,
                      false_captions: list[list[str]] | None = None,
                      scenes: list[Scene] | None = None) -> tf.data.Dataset:
    """The captioner's pipeline (one random caption per image per epoch), relabelled.

    Inputs are the image and the caption's words after the start token; the label of the
    ``i``-th pair is ``i``, the column of its own caption in the batch's logits. With
    ``false_captions`` (one per caption, :func:`false_captions_of`), each pair also brings
    the false twin of its caption, as ``"false_text"``. With ``scenes`` (the split's), the
    labels are ``{"logits": i, "image_scene", "text_scene"}``: the scene each tower of
    :class:`DualEncoderTrainer` learns to read (the picture's whole scene; what the
    caption says of it, :func:`mmkeras.tasks.examples.said_scene_targets`).
    """
    if false_captions is None and scenes is None:
        pairs = caption_dataset(split, vectorizer, image_size, batch_size, shuffle=shuffle,
                                seed=seed, prefetch=False)

        def relabel(inputs, caption_out):
            return ({"image": inputs["image"], "text": inputs["caption_in"]},
                    tf.range(tf.shape(caption_out)[0]))

        return pairs.map(relabel, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    # Per image: every caption (with its false twin, and what it says of the scene), one
    # picked per epoch, the same one from each column; and the image's scene.
    per_image = {"text": tokenize_references(split, vectorizer)}
    if false_captions is not None:
        per_image["false_text"] = tokenize_references(dataclasses.replace(split, captions=false_captions),
                                                      vectorizer)
    if scenes is not None:
        captions = [c for refs in split.captions for c in refs]
        caption_scenes = [scene for scene, refs in zip(scenes, split.captions) for _ in refs]
        per_image["text_scene"] = tf.RaggedTensor.from_row_lengths(
            said_scene_targets(captions, caption_scenes), [len(refs) for refs in split.captions])
        per_image["image_scene"] = scene_targets(scenes)
    data = tf.data.Dataset.zip(split_images(split, image_size), tf.data.Dataset.from_tensor_slices(per_image))
    if shuffle:
        data = data.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)

    def pick_one(image, columns):
        index = tf.random.uniform((), maxval=tf.shape(columns["text"])[0], dtype=tf.int32, seed=seed)
        return image, {name: column if name == "image_scene" else column[index]
                       for name, column in columns.items()}

    def to_model_inputs(image, columns):
        pairs = tf.range(tf.shape(image)[0])
        inputs = {"image": image, **{name: teacher_forcing(columns[name])[0]
                                     for name in ("text", "false_text") if name in columns}}
        if scenes is None:
            return inputs, pairs
        return inputs, {"logits": pairs, "image_scene": columns["image_scene"],
                        "text_scene": columns["text_scene"]}

    return (data.map(pick_one).batch(batch_size)
            .map(to_model_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE))


def shapes_scenes(split: CaptionSplit) -> list[Scene] | None:
    """Each image's scene where ``split`` is Shapes Captions with every caption in one of the
    five forms (so that what each says of its scene is known); None for photos."""
    try:
        scenes = scenes_of(split)
    except UserError:
        return None
    if any(read_caption(caption) is None for references in split.captions for caption in references):
        return None
    return scenes


def false_captions_of(split: CaptionSplit, seed: int) -> list[list[str]] | None:
    """Each caption of a Shapes Captions split with one colour, shape or size word, or its
    relation, changed (:func:`mmkeras.tasks.matching.mismatched_caption`); None for photos
    (:func:`shapes_scenes`).

    In-batch negatives rarely differ from a caption in one word only, so without these a
    dual encoder learns which colours and shapes a scene has, and never where they are.
    """
    if shapes_scenes(split) is None:
        return None
    rng = np.random.default_rng(seed)
    return [[mismatched_caption(caption, rng)[0] for caption in references]
            for references in split.captions]


class DualEncoderTrainer(keras.Model):
    """Trains a dual encoder (what is saved is the encoder itself, without this).

    The logits are every image against the batch's texts, then against their false twins
    where the batch brings them (:class:`mmkeras.nn.losses.SymmetricContrastiveLoss` reads
    them so). With ``scene_readers``, each tower also learns to read the scene from its last
    hidden vector, before the projection: a hidden layer, then each of :data:`SCENE_SLOTS`'
    classes (the picture shows all of the scene, a caption what it says of it). Outputs
    then ``{"logits", "image_scene", "<second_tower>_scene"}``. From "is this text this picture?"
    alone, each tower has to find by itself which object is which; told the scene, the
    picture's tower reads each object's colour, shape and size in reading order within a
    few epochs. (A caption's tower learns what its objects are, but less well which of them
    comes first in reading order: on the shapes its reader's loss stops near 0.39.)

    ``second_tower`` names the tower beside the image's (``"text"``, or ``"audio"`` for
    speech): its layers are ``{second_tower}_tower`` and, inside it, ``{second_tower}_hidden``.
    """

    def __init__(self, dual_encoder: keras.Model, second_tower: str = "text", scene_readers: bool = False,
                 units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.second_tower = second_tower
        self.contrastive_logits = dual_encoder.get_layer("contrastive_logits")
        self.towers = {}
        for name in ("image", second_tower):
            tower = dual_encoder.get_layer(f"{name}_tower")
            self.towers[name] = keras.Model(tower.input,
                                            [tower.get_layer(f"{name}_hidden").output, tower.output],
                                            name=f"{name}_tower_and_hidden")
        # (A reader of the unit vectors themselves had learnt next to nothing in two epochs.)
        self.scene_readers = {name: keras.Sequential([
            layers.Dense(units, activation="relu"), layers.Dense(len(SCENE_SLOTS) * SCENE_CLASSES),
            layers.Reshape((len(SCENE_SLOTS), SCENE_CLASSES))], name=f"{name}_scene_reader")
            for name in self.towers} if scene_readers else {}

    def call(self, inputs, training=False):
        hidden, vectors = {}, {}
        for name, tower in self.towers.items():
            hidden[name], vectors[name] = tower(inputs[name], training=training)
        text_vectors = vectors[self.second_tower]
        if "false_text" in inputs:  # (validation batches have none)
            false_vectors = self.towers[self.second_tower](inputs["false_text"], training=training)[1]
            text_vectors = ops.concatenate([text_vectors, false_vectors], axis=0)
        logits = self.contrastive_logits([vectors["image"], text_vectors])
        if not self.scene_readers:
            return logits
        return {"logits": logits, **{f"{name}_scene": reader(hidden[name], training=training)
                                     for name, reader in self.scene_readers.items()}}


def compile_dual_encoder_trainer(trainer: DualEncoderTrainer, learning_rate: float, decay_steps: int,
                                 scene_weight: float) -> None:
    """Adam with the runs' schedule; the symmetric contrastive loss, and beside it, where
    the trainer reads scenes, each tower's scene at ``scene_weight`` (an unsaid size, class
    -1, costs nothing)."""
    optimizer = runs.optimizer(learning_rate, decay_steps)
    if not trainer.scene_readers:
        trainer.compile(optimizer=optimizer, loss=SymmetricContrastiveLoss())
        return
    scene_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    trainer.compile(optimizer=optimizer,
                    loss={"logits": SymmetricContrastiveLoss(),
                          **{f"{name}_scene": scene_loss for name in trainer.scene_readers}},
                    loss_weights={"logits": 1.0, **{f"{name}_scene": scene_weight
                                                    for name in trainer.scene_readers}})


def caption_ids(captions: list[str], vectorizer) -> tf.Tensor:
    """What the text tower reads: the ids of ``[start] words``, as in training."""
    return teacher_forcing(vectorizer(add_start_end(captions)))[0]


def recall_at_k(similarity: np.ndarray, caption_image: np.ndarray, ks=RECALL_AT) -> dict:
    """Recall at each k, from ``similarity[caption, image]`` and each caption's own image.

    Text to image: the share of captions whose image ranks in the top k of all images.
    Image to text: the share of images with at least one of their captions in the top k.
    """
    num_captions, num_images = similarity.shape
    own = similarity[np.arange(num_captions), caption_image]
    # Rank 0 = best. A wrong item scoring as high as the right one counts against the
    # model (a constant score must not look perfect); an image's own captions tying
    # with each other do not.
    text_rank = (similarity >= own[:, None]).sum(axis=1) - 1
    best_own = np.full(num_images, -np.inf)
    np.maximum.at(best_own, caption_image, own)
    wrong = caption_image[:, None] != np.arange(num_images)[None, :]
    best_caption_rank = ((similarity >= best_own[None, :]) & wrong).sum(axis=0)
    return {
        "text_to_image": {f"r{k}": float((text_rank < k).mean()) for k in ks},
        "image_to_text": {f"r{k}": float((best_caption_rank < k).mean()) for k in ks},
    }


def describes_matrix(captions: list[str], scenes: list[Scene]) -> np.ndarray:
    """``truth[caption, image]``: whether each caption is true of each scene
    (:func:`mmkeras.data.shapes.describes`, for every pair at once)."""
    columns = {f"{obj}_{attribute}": np.array([getattr(getattr(s, obj), attribute) for s in scenes])
               for obj in ("first", "second") for attribute in ("size", "colour", "shape")}
    relation = np.array([s.relation for s in scenes])

    def matches(mention: SceneObject, obj: str) -> np.ndarray:
        same = (columns[f"{obj}_colour"] == mention.colour) & (columns[f"{obj}_shape"] == mention.shape)
        return same if mention.size is None else same & (columns[f"{obj}_size"] == mention.size)

    truth = np.zeros((len(captions), len(scenes)), bool)
    for row, caption in enumerate(captions):
        reading = read_caption(caption)
        if reading is None:
            continue
        as_drawn = matches(reading.first, "first") & matches(reading.second, "second") & (
            relation == reading.relation)
        swapped = matches(reading.first, "second") & matches(reading.second, "first") & (
            relation == INVERSE_RELATION[reading.relation])
        truth[row] = as_drawn | swapped
    return truth


def any_match_recall(similarity: np.ndarray, truth: np.ndarray, ks=RECALL_AT) -> dict:
    """Recall at k where any image a caption is true of counts, not only its own.

    Many captions fit several scenes ("a red circle above a blue square" leaves out the
    sizes), so a perfect model still misses its own image at R@1 as often as another
    scene fits; this recall asks only that what is retrieved be true. Text to image: the
    share of captions with a true image in their top k; image to text: the share of images
    with a true caption in their top k. Keys ``r1_any``, ``r5_any``, ...
    """
    def hit_within(scores: np.ndarray, true: np.ndarray) -> dict:
        order = np.argsort(-scores, axis=1, kind="stable")
        hit = np.take_along_axis(true, order[:, :max(ks)], axis=1)
        return {f"r{k}_any": float(hit[:, :k].any(axis=1).mean()) for k in ks}

    return {"text_to_image": hit_within(similarity, truth),
            "image_to_text": hit_within(similarity.T, truth.T)}


def chance_recall(num_images: int, captions_per_image: int, ks=RECALL_AT) -> dict:
    """Recall at k of a random ranking: k / images one way; at least one of an image's
    captions among k drawn from all captions the other way."""
    num_captions = num_images * captions_per_image
    return {
        "text_to_image": {f"r{k}": k / num_images for k in ks},
        "image_to_text": {f"r{k}": 1 - comb(num_captions - captions_per_image, k) / comb(num_captions, k)
                          for k in ks},
    }


def embed_split(split: CaptionSplit, image_tower, text_tower, vectorizer, image_size: int):
    """Unit vectors of every image and every caption of a split, and each caption's image."""
    image_vectors = image_tower.predict(evaluation_images(split, image_size), verbose=0)
    captions = [c for refs in split.captions for c in refs]
    caption_image = np.repeat(np.arange(len(split)), [len(refs) for refs in split.captions])
    text_vectors = text_tower.predict(caption_ids(captions, vectorizer), batch_size=512, verbose=0)
    return image_vectors, text_vectors, caption_image


def caption_truth(split: CaptionSplit) -> np.ndarray | None:
    """:func:`describes_matrix` of a split's captions and scenes; None for photos, which have
    no scene to check a caption against."""
    try:
        scenes = scenes_of(split)
    except UserError:
        return None
    return describes_matrix([c for refs in split.captions for c in refs], scenes)


def recalls(scores: np.ndarray, caption_image: np.ndarray, truth: np.ndarray | None) -> dict:
    """Recall at 1, 5 and 10 each way from ``scores[caption, image]``, against each caption's
    own image and, given the ``truth`` (:func:`caption_truth`), against any image it is true of."""
    recall = recall_at_k(scores, caption_image)
    if truth is not None:
        for direction, any_recall in any_match_recall(scores, truth).items():
            recall[direction].update(any_recall)
    return recall


def retrieval_scores(split: CaptionSplit, image_vectors, text_vectors, caption_image) -> dict:
    """:func:`recalls` of the dual encoder's similarities, a random ranking's beside."""
    captions_per_image = round(len(caption_image) / len(split))
    return {**recalls(text_vectors @ image_vectors.T, caption_image, caption_truth(split)),
            "chance": chance_recall(len(split), captions_per_image),
            "n_images": len(split), "n_captions": len(caption_image)}


# Two-stage retrieval. A dual encoder meets a picture with one vector per caption, so all a
# caption says must fit in 64 numbers first; on the shapes it mixes up relations most (55% of
# the captions whose first image is false). A matching model (`python -m mmkeras match`) reads
# the caption against the picture itself, but scoring all 5,000 x 1,000 test pairs so would
# take 5 million passes. So, as two-stage retrievers do (ALBEF, Li et al. 2021; BLIP, 2022),
# the dual encoder proposes each caption's nearest images (each image's nearest captions), and
# the matcher orders them. Recall at RERANK_TOP stays the dual encoder's (up to ties at the
# last place); below it, the matcher chooses.
RERANK_TOP = 10


def rerank_top(scores: np.ndarray, margin, top: int = RERANK_TOP) -> np.ndarray:
    """``scores`` with each row's ``top`` best columns (and any tied with the last of them)
    ordered by ``margin(rows, columns)``, higher first, then by the higher score, and lifted
    above the row's other columns.

    Columns equal in both margin and score stay tied, as recall counts ties against the
    model: identical captions (the shapes' test split has 5,000 captions, 3,374 distinct) must
    not be told apart by where they happen to lie.
    """
    top = min(top, scores.shape[1])
    last_kept = -np.sort(-scores, axis=1)[:, top - 1:top]
    rows, columns = np.nonzero(scores >= last_kept)  # row by row, in order
    margins = np.asarray(margin(rows, columns))
    lifted = np.empty(len(rows))
    for kept in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(rows)) + 1):
        pairs = np.stack([margins[kept], scores[rows[kept], columns[kept]]], axis=-1)
        # Rank 1 for the lowest (margin, score), one rank per distinct pair.
        lifted[kept] = np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1) + 1
    reranked = np.array(scores, dtype=float)
    reranked[rows, columns] = scores.max() + lifted
    return reranked


def reranked_recalls(split: CaptionSplit, similarity: np.ndarray, caption_image: np.ndarray,
                     margin, top: int = RERANK_TOP) -> dict:
    """:func:`recalls` of the dual encoder's ``similarity[caption, image]`` with each caption's
    ``top`` images, and each image's ``top`` captions, re-ranked by ``margin(image_index,
    captions)`` (a matcher's: :func:`mmkeras.tasks.classification.match_margin`)."""
    captions = [c for refs in split.captions for c in refs]
    truth = caption_truth(split)
    text_scores = rerank_top(similarity, lambda rows, columns: margin(columns, [captions[r] for r in rows]), top)
    image_scores = rerank_top(similarity.T, lambda rows, columns: margin(rows, [captions[c] for c in columns]),
                              top).T
    return {"top": top,
            "text_to_image": recalls(text_scores, caption_image, truth)["text_to_image"],
            "image_to_text": recalls(image_scores, caption_image, truth)["image_to_text"]}


def reranked_by_matcher(split: CaptionSplit, similarity: np.ndarray, caption_image: np.ndarray,
                        matcher: keras.Model, matcher_path: str) -> dict:
    """:func:`reranked_recalls` by a matching model (:func:`mmkeras.tasks.classification.load_matcher`),
    with its path and the seconds the whole re-ranking took (reading the images at the
    matcher's size included): ``metrics.json``'s ``"reranked"``."""
    started = time.perf_counter()
    scores = reranked_recalls(split, similarity, caption_image, match_margin(matcher, split))
    return {"matcher": matcher_path, **scores, "seconds": time.perf_counter() - started}


def check_matcher_data(split: CaptionSplit, matcher_path: str) -> None:
    """A matching model judges captions of Shapes Captions scenes: refuse other data."""
    if shapes_scenes(split) is None:
        raise UserError(f"--matcher {matcher_path}: a matching model re-ranks captions of Shapes "
                        "Captions scenes; these data have captions of another form")


def towers_of(dual_encoder: keras.Model):
    """A saved dual encoder's ``(image tower, text tower, vectorizer)``."""
    image_tower, text_tower = dual_encoder.get_layer("image_tower"), dual_encoder.get_layer("text_tower")
    vocabulary = text_tower.get_layer("word_embedding").vocabulary
    return image_tower, text_tower, vectorizer_for(vocabulary, text_tower.input_shape[1] - 1)


def evaluate_retrieval(model: keras.Model, split: CaptionSplit, matcher: keras.Model | None = None,
                       matcher_path: str | None = None) -> dict:
    """A saved dual encoder's recalls on ``split`` (:func:`retrieval_scores`); with a
    ``matcher`` (loaded from ``matcher_path``), also re-ranked by it, under ``"reranked"``."""
    if matcher is not None:
        check_matcher_data(split, matcher_path)
    image_tower, text_tower, vectorizer = towers_of(model)
    image_vectors, text_vectors, caption_image = embed_split(split, image_tower, text_tower, vectorizer,
                                                             image_tower.input_shape[1])
    metrics = {"task": "retrieval", **retrieval_scores(split, image_vectors, text_vectors, caption_image)}
    if matcher is not None:
        metrics["reranked"] = reranked_by_matcher(split, text_vectors @ image_vectors.T, caption_image,
                                                  matcher, matcher_path)
    return metrics


def dual_encoder_similarity(dual_encoder: keras.Model):
    """``similarity(images, candidates)``: the cosine similarity of each image to each of
    its candidate captions, ``(images, candidates per image)``, under a saved dual encoder.

    What :meth:`mmkeras.caption.decoding.CaptionDecoder.reranked_captions` takes to choose
    among a captioner's beams (Nikolaus et al., CoNLL 2019: re-ranked by image-text
    similarity, captions name unseen combinations more often).
    """
    image_tower, text_tower, vectorizer = towers_of(dual_encoder)

    def similarity(images, candidates: list[list[str]]) -> np.ndarray:
        images = np.asarray(images)
        if images.shape[1:] != tuple(image_tower.input_shape[1:]):
            raise UserError(f"the dual encoder reads images of shape {tuple(image_tower.input_shape[1:])}, "
                            f"the captioner {images.shape[1:]}: train both at one --image-size")
        image_vectors = image_tower.predict_on_batch(images)
        flat = [caption for options in candidates for caption in options]
        text_vectors = text_tower.predict_on_batch(caption_ids(flat, vectorizer))
        text_vectors = np.reshape(text_vectors, (len(candidates), -1, text_vectors.shape[-1]))
        return np.einsum("id,ikd->ik", image_vectors, text_vectors)

    return similarity


def train_retrieval(config: RetrievalConfig, verbose: int | str = "auto", progress: bool = True) -> dict:
    """Train the dual encoder, score recall on the test split (with ``config.matcher``, also
    re-ranked by that matching model), write model, history, metrics."""
    # The matcher and the data first: a mistake in them leaves --out as it was.
    matcher = load_matcher(config.matcher) if config.matcher else None
    _, splits = load_dataset(config.data, smoke=config.smoke, seed=config.seed, progress=progress)
    if matcher is not None:
        check_matcher_data(splits["test"], config.matcher)
    with runs.start(config.out, config.seed) as out:
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        train_split = splits["train"]
        image_size = image_size_of(config.data, train_split)
        train_captions = [c for refs in train_split.captions for c in refs]
        max_caption_length = int(min(MAX_CAPTION_WORDS, np.percentile(caption_lengths(train_captions), 99)))
        vectorizer = build_vectorizer(train_captions, max_caption_length)

        model, image_tower, text_tower = build_dual_encoder(
            vectorizer_vocabulary(vectorizer), max_caption_length + 1, image_size,
            config.embedding_dim, config.units)
        false_captions = false_captions_of(train_split, config.seed) if config.false_captions else None
        scenes = {name: shapes_scenes(splits[name]) for name in ("train", "val")}
        reads_scenes = config.scene_weight > 0 and None not in scenes.values()
        if not reads_scenes:
            scenes = {"train": None, "val": None}
        trainer = DualEncoderTrainer(model, scene_readers=reads_scenes, units=config.units,
                                     name="dual_encoder_trainer")
        compile_dual_encoder_trainer(trainer, config.learning_rate,
                                     epochs * math.ceil(len(train_split) / config.batch_size),
                                     config.scene_weight)
        started = time.perf_counter()
        history = runs.fit(
            trainer,
            retrieval_dataset(train_split, vectorizer, image_size, config.batch_size, seed=config.seed,
                              false_captions=false_captions, scenes=scenes["train"]),
            retrieval_dataset(splits["val"], vectorizer, image_size, config.batch_size, shuffle=False,
                              seed=config.seed, scenes=scenes["val"]),
            out, epochs, verbose)
        fit_seconds = time.perf_counter() - started

        test = splits["test"]
        image_vectors, text_vectors, caption_image = embed_split(test, image_tower, text_tower,
                                                                 vectorizer, image_size)
        metrics = {"task": "retrieval", **retrieval_scores(test, image_vectors, text_vectors, caption_image),
                   "parameters": model.count_params(), "seconds_per_epoch": fit_seconds / epochs}
        if matcher is not None:
            metrics["reranked"] = reranked_by_matcher(test, text_vectors @ image_vectors.T, caption_image,
                                                      matcher, config.matcher)
        runs.save_model(model, out / "model.keras")
        runs.record(out, config, metrics, epochs_run=epochs)
        return {**metrics, "model": model, "image_tower": image_tower, "text_tower": text_tower,
                "vectorizer": vectorizer, "history": history}
