"""Generated images judged by the models the course already trained.

Every Shapes Captions caption names its whole scene, so whether a picture shows what it was
asked for can be measured: the captioner reads each generated image back into words, which
are read back into two objects and a relation (:func:`round_trip`); the dual encoder ranks
the prompt among 99 other captions (:func:`r_precision`); and a kernel distance between
generated and real images in the dual encoder's image features says how far the pictures
are from real ones as a whole (:func:`kernel_inception_distance`, with the dual encoder in
place of InceptionV3, which would need a download). Introduced in ``06_text_to_image.ipynb``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mmkeras import runs
from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.train import train as train_captioner
from mmkeras.config import RetrievalConfig, TrainConfig
from mmkeras.data.catalog import shapes_data
from mmkeras.data.shapes import INVERSE_RELATION, Scene, config_of, parse_scene, read_caption
from mmkeras.tasks.retrieval import caption_ids, towers_of, train_retrieval

ATTRIBUTES = ("colour", "shape", "size")
JUDGES = ("captioner", "dual_encoder")


def trained_judges(data: str, folder: Path, smoke: bool = False, seed: int = 0, verbose: int | str = "auto",
                   progress: bool = True, names: tuple[str, ...] = JUDGES) -> tuple[keras.Model, ...]:
    """The judges ``names`` (the captioner, the dual encoder), trained with their defaults on
    ``data`` into ``folder/NAME`` unless it holds ones trained so already (a judge of other
    data, or of a smoke run, is trained again).

    On the compositional split the judges learn from its twin with every pair (the same
    sizes and seed): judges that never saw a red square could not tell one when it is drawn
    (05_transformers.ipynb: no captioner trained on that split names one)."""
    drawn_with = config_of(data)
    if drawn_with is not None and drawn_with.cogent:
        data = str(shapes_data(dataclasses.replace(drawn_with, cogent=False), progress))
        print(f"the judges learn from {data}, which shows the pairs the generator's training held out")
    configs = {"captioner": TrainConfig(data=data, out=str(Path(folder) / "captioner"), smoke=smoke, seed=seed),
               "dual_encoder": RetrievalConfig(data=data, out=str(Path(folder) / "dual_encoder"),
                                               smoke=smoke, seed=seed)}
    models = []
    for name in names:
        out = Path(configs[name].out)
        if _recorded_config(out) != dataclasses.asdict(configs[name]):
            print(f"training the {name.replace('_', ' ')} that judges the images into {out}")
            shutil.rmtree(out, ignore_errors=True)
            train = train_captioner if name == "captioner" else train_retrieval
            train(configs[name], verbose=verbose, progress=progress)
        models.append(runs.load_model(out / "model.keras"))
    return tuple(models)


def _recorded_config(out: Path) -> dict | None:
    """The settings a finished run in ``out`` recorded (``config.json``), or None."""
    try:
        return json.loads((out / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None


def _resized(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 images at the judge's size (bilinear: a 32 px drawing read by a 64 px model)."""
    if images.shape[1] == image_size:
        return images
    resized = tf.image.resize(tf.cast(images, tf.float32), (image_size, image_size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def read_back(images: np.ndarray, captioner: keras.Model, beam_width: int = 5,
              batch_size: int = 250) -> list[str]:
    """The captioner's reading of each image: its likeliest of ``beam_width`` beams that
    names both objects' sizes, or its likeliest beam if none does (``beam_width`` 1: the
    greedy caption).

    Why not the greedy caption: two of the five templates leave the sizes out, and a
    captioner that learned them all says one of those for about a quarter of the images,
    so a whole scene could never be read back right from those, whatever was drawn (real
    test images at 32 px, whole scene read back right: 0.495 greedy, 0.646 so)."""
    decoder = CaptionDecoder(captioner)
    images = _resized(images, captioner.input["image"].shape[1])
    readings = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if beam_width <= 1:
            readings += decoder.captions(batch)
            continue
        beams, _ = decoder.candidate_captions(batch, beam_width)
        readings += [next((beam for beam in options if parse_scene(beam) is not None), options[0])
                     for options in beams]
    return readings


def compare_scene(caption: str, scene: Scene) -> dict[str, int]:
    """How many of a scene's attributes a caption gets right: ``colour``, ``shape`` (two
    objects each), ``size`` (of the objects it gives a size), ``sizes_read`` (how many it
    gives one), ``relation`` (0 or 1) and ``scene`` (1 if everything is right and both
    sizes are said). The caption's objects are matched to the scene's in whichever order
    gets more right (a caption may name the second object first, with the inverse
    relation); a caption of no template gets nothing right."""
    counts = dict.fromkeys((*ATTRIBUTES, "sizes_read", "relation", "scene"), 0)
    reading = read_caption(caption)
    if reading is None:
        return counts
    orders = [((reading.first, reading.second), reading.relation),
              ((reading.second, reading.first), INVERSE_RELATION[reading.relation])]
    best = None
    for mentions, relation in orders:
        hits = {attribute: sum(getattr(m, attribute) == getattr(o, attribute)
                               for m, o in zip(mentions, scene.objects)) for attribute in ATTRIBUTES}
        hits["sizes_read"] = sum(m.size is not None for m in mentions)
        hits["relation"] = int(relation == scene.relation)
        hits["scene"] = int(hits["colour"] == hits["shape"] == hits["size"] == 2 and hits["relation"] == 1)
        total = sum(hits[a] for a in ATTRIBUTES) + hits["relation"]
        if best is None or total > best[0]:
            best = (total, hits)
    return best[1]


def round_trip(captions: list[str], scenes: list[Scene]) -> dict[str, float]:
    """Shares right over all images: ``colour``, ``shape`` (of the objects), ``size`` (of
    the objects whose size the caption says), ``relation``, ``scene`` (wholly right), and
    ``sizes_read`` (the share of objects given a size)."""
    totals = dict.fromkeys((*ATTRIBUTES, "sizes_read", "relation", "scene"), 0)
    for caption, scene in zip(captions, scenes):
        for key, value in compare_scene(caption, scene).items():
            totals[key] += value
    objects = 2 * len(scenes)
    return {"colour": totals["colour"] / objects, "shape": totals["shape"] / objects,
            "size": totals["size"] / totals["sizes_read"] if totals["sizes_read"] else 0.0,
            "relation": totals["relation"] / len(scenes), "scene": totals["scene"] / len(scenes),
            "sizes_read": totals["sizes_read"] / objects}


def image_features(images: np.ndarray, dual_encoder: keras.Model) -> np.ndarray:
    """The dual encoder's image vectors, at its image size, scaled from length 1 to sqrt(d).

    Why the length: KID's kernel ``(x . y / d + 1) ** 3`` was made for Inception's long
    features; on unit vectors ``x . y / d`` is at most 1 / d and the kernel nearly flat,
    while at length sqrt(d) it is the cosine. Rankings by dot product are unchanged."""
    image_tower = towers_of(dual_encoder)[0]
    vectors = image_tower.predict(_resized(images, image_tower.input_shape[1]), batch_size=256, verbose=0)
    return vectors.astype(np.float64) * np.sqrt(vectors.shape[1])


def text_features(captions: list[str], dual_encoder: keras.Model) -> np.ndarray:
    """The dual encoder's unit caption vectors."""
    _, text_tower, vectorizer = towers_of(dual_encoder)
    return text_tower.predict(caption_ids(captions, vectorizer), batch_size=512, verbose=0)


def r_precision(image_vectors: np.ndarray, text_vectors: np.ndarray, prompts: list[str],
                distractors: int = 99, seed: int = 0) -> float:
    """The share of images (``image_vectors[i]`` drawn for ``prompts[i]``) whose own
    prompt scores higher than each of ``distractors`` other prompts of the list that are
    not the same words (text to image's R-precision, as AttnGAN scored it; a tie counts
    against the image). Chance: 1 / (distractors + 1)."""
    rng = np.random.default_rng(seed)
    prompts = np.asarray(prompts)
    first = 0
    for i, image_vector in enumerate(image_vectors):
        others = np.flatnonzero(prompts != prompts[i])
        chosen = rng.choice(others, size=min(distractors, len(others)), replace=False)
        own = image_vector @ text_vectors[i]
        first += own > (text_vectors[chosen] @ image_vector).max(initial=-np.inf)
    return first / len(image_vectors)


def diversity(features: np.ndarray) -> float:
    """The mean distance between two images drawn for the same prompt: ``features`` are
    ``(prompts, draws, d)`` image vectors (:func:`image_features`). 0 if a generator draws
    one picture per caption whatever the noise; real redraws of each scene (new places,
    radii, colour jitter: :func:`mmkeras.data.shapes.redraw_scene`) give the ceiling."""
    features = np.asarray(features, np.float64)
    draws = features.shape[1]
    differences = features[:, :, None, :] - features[:, None, :, :]
    distances = np.sqrt((differences ** 2).sum(-1))  # (prompts, draws, draws), 0 on the diagonal
    return float(distances.sum() / (len(features) * draws * (draws - 1)))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The unbiased squared MMD between two sets of features under the cubic polynomial
    kernel ``(x . y / d + 1) ** 3`` (Binkowski et al., 2018): about 0 for two samples of
    one distribution, larger the further apart."""
    dims = features_a.shape[1]
    features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)

    def kernel(x, y):
        return (x @ y.T / dims + 1.0) ** 3

    def mean_off_diagonal(k):
        n = k.shape[0]
        return (k.sum() - np.trace(k)) / (n * (n - 1))

    return float(mean_off_diagonal(kernel(features_a, features_a))
                 + mean_off_diagonal(kernel(features_b, features_b))
                 - 2.0 * kernel(features_a, features_b).mean())
