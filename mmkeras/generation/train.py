"""Train a text-to-image generator and score what it draws with the course's own models.

``python -m mmkeras text2image`` runs :func:`train_text_to_image`: data, vocabulary, the
generator, ``fit`` with the run skeleton (:mod:`mmkeras.runs`), then images drawn for the
first caption of every test scene, judged (:mod:`mmkeras.generation.judges`) beside the
same scores of the real test images (the ceiling) and of the generated images paired with
other scenes' captions (the floor). Introduced in ``06_text_to_image.ipynb``.
"""

from __future__ import annotations

import math
import statistics
import time

import keras
import numpy as np

from mmkeras import runs
from mmkeras.caption.metrics import held_out_metrics
from mmkeras.config import TextToImageConfig
from mmkeras.data.catalog import load_dataset
from mmkeras.data.images import evaluation_images
from mmkeras.data.shapes import captions_for, redraw_scene, scenes_of
from mmkeras.data.text import MAX_CAPTION_WORDS, build_vectorizer, caption_lengths, vectorizer_vocabulary
from mmkeras.errors import UserError
from mmkeras.generation import judges
from mmkeras.generation.diffusion import DiffusionTrainer, ImageGenerator, empty_caption_ids
from mmkeras.generation.vae import VAEGenerator, VAETrainer, build_vae
from mmkeras.nn.unet import build_denoiser
from mmkeras.tasks.retrieval import retrieval_dataset

# Test scenes drawn for and judged: all 1,000 of the default test split.
MAX_PROMPTS = 1000
# Diversity: this many test scenes, each drawn this many times (and redrawn as often for
# the real images' diversity).
DIVERSITY_PROMPTS = 50
DIVERSITY_DRAWS = 8
# A smoke run's: its 400 extra drawings were most of its time (notebook 06 in CI).
SMOKE_DIVERSITY_PROMPTS = 4


def train_text_to_image(config: TextToImageConfig, verbose: int | str = "auto", progress: bool = True,
                        captioner: keras.Model | None = None,
                        dual_encoder: keras.Model | None = None) -> dict:
    """Train, draw the test prompts, judge them, write model, config, history and metrics.

    The judges are the captioner and the dual encoder trained on the same data; without
    them given, they are trained with their defaults into ``out/judges/`` (once: a later
    run into the same folder loads them).
    """
    data_dir, splits = load_dataset(config.data, smoke=config.smoke, seed=config.seed, progress=progress)
    scenes_of(splits["test"])  # judged by reading the scenes back: refused before any training
    with runs.start(config.out, config.seed) as out:
        if captioner is None or dual_encoder is None:  # before the generator: a failure costs less
            captioner, dual_encoder = judges.trained_judges(str(data_dir), out / "judges", config.smoke,
                                                            config.seed, verbose, progress)
        runs.forget_history(out)
        epochs = runs.epochs_for(config)
        train_split = splits["train"]
        train_captions = [c for refs in train_split.captions for c in refs]
        max_caption_length = int(min(MAX_CAPTION_WORDS, np.percentile(caption_lengths(train_captions), 99)))
        vectorizer = build_vectorizer(train_captions, max_caption_length)
        model, trainer = _model_and_trainer(config, vectorizer, max_caption_length + 1)
        decay_steps = epochs * math.ceil(len(train_split) / config.batch_size)
        # The average must forget the random start within the run: over its last tenth of
        # steps at least (a short run's momentum is lower; a 10-step smoke run's is 0).
        ema_momentum = max(0.0, min(config.ema_momentum, 1.0 - 10.0 / decay_steps))
        trainer.compile(optimizer=runs.optimizer(
            config.learning_rate, decay_steps,
            ema_momentum=ema_momentum if config.kind == "diffusion" else None))
        started = time.perf_counter()
        history = runs.fit(
            trainer,
            retrieval_dataset(train_split, vectorizer, config.image_size, config.batch_size, seed=config.seed),
            retrieval_dataset(splits["val"], vectorizer, config.image_size, config.batch_size,
                              shuffle=False, seed=config.seed),
            out, epochs, verbose)
        fit_seconds = time.perf_counter() - started
        runs.save_model(model, out / "model.keras")
        metrics = {"kind": config.kind,
                   **score_generator(generator_for(model), splits["test"], captioner, dual_encoder,
                                     config.sampling_steps, config.guidance, config.seed,
                                     diversity_prompts=SMOKE_DIVERSITY_PROMPTS if config.smoke
                                     else DIVERSITY_PROMPTS),
                   "parameters": model.count_params(), "seconds_per_epoch": fit_seconds / epochs}
        runs.record(out, config, metrics, epochs_run=epochs)
        return {**metrics, "model": model, "history": history}


def _model_and_trainer(config: TextToImageConfig, vectorizer, max_text_length: int):
    """The model to save (the denoiser, or the VAE's decoder) and the model that trains it."""
    vocabulary = vectorizer_vocabulary(vectorizer)
    if config.kind == "vae":
        encoder, decoder = build_vae(vocabulary, max_text_length, config.image_size, config.latent_dim,
                                     embedding_dim=config.embedding_dim, units=config.units)
        return decoder, VAETrainer(encoder, decoder, seed=config.seed, name="vae_trainer")
    denoiser = build_denoiser(vocabulary, max_text_length, config.image_size, config.widths,
                              config.block_depth, config.embedding_dim, config.units, config.attention_size)
    return denoiser, DiffusionTrainer(denoiser, empty_caption_ids(vectorizer), config.caption_dropout,
                                      seed=config.seed, name="diffusion_trainer")


def generator_for(model: keras.Model):
    """What draws images from a model ``text2image`` saved: its ``generate(captions, steps,
    guidance, seed)`` gives uint8 images."""
    if model.name == "denoiser":
        return ImageGenerator(model)
    if model.name == "vae_decoder":
        return VAEGenerator(model)
    raise UserError(f"expected a model written by text2image (a denoiser or a VAE decoder), "
                    f"found the model {model.name!r}")


def score_generator(generator: ImageGenerator, test_split, captioner: keras.Model,
                    dual_encoder: keras.Model, steps: int, guidance: float, seed: int = 0,
                    batch_size: int = 100, diversity_prompts: int = DIVERSITY_PROMPTS) -> dict:
    """The metrics of ``text2image``: images drawn for the first (whole-scene) caption of
    each test scene, read back by the captioner (``round_trip``), their prompt ranked by the
    dual encoder among 99 others (``r_precision``), how different the images drawn for one
    prompt are (``diversity``), their kernel distance to the real test images (``kid``), each beside the real images (``real``, the ceiling) and the drawn
    images paired with a shuffled list of scenes (``shuffled``, the floor); and images
    drawn a second per caption (median over batches, after a warm-up)."""
    scenes = scenes_of(test_split)[:MAX_PROMPTS]
    prompts = [captions_for(scene)[0] for scene in scenes]
    generator.generate(prompts[:batch_size], steps, guidance, seed)  # compile first
    images, seconds = [], []
    for start in range(0, len(prompts), batch_size):
        began = time.perf_counter()
        images.append(generator.generate(prompts[start:start + batch_size], steps, guidance, seed + start))
        seconds.append((time.perf_counter() - began) / len(images[-1]))
    generated = np.concatenate(images)
    real = np.concatenate([batch.numpy() for batch in evaluation_images(test_split, generator.image_size)])
    real = real[:len(prompts)]
    shuffled = np.random.default_rng(seed).permutation(len(prompts))

    read_generated = judges.read_back(generated, captioner)
    read_real = judges.read_back(real, captioner)
    real_features = judges.image_features(real, dual_encoder)
    generated_features = judges.image_features(generated, dual_encoder)
    half = len(real_features) // 2
    text_vectors = judges.text_features(prompts, dual_encoder)
    diversity, diversity_real = _diversities(generator, scenes[:diversity_prompts], prompts, dual_encoder,
                                             steps, guidance, seed, batch_size)
    return {
        "round_trip": judges.round_trip(read_generated, scenes),
        "round_trip_real": judges.round_trip(read_real, scenes),
        "round_trip_shuffled": judges.round_trip([read_generated[i] for i in shuffled], scenes),
        # Of the scenes' objects of a pair the compositional split holds out, the share whose
        # colour and shape the read-back names: never seen in training on that split.
        "held_out_named": held_out_metrics(read_generated, scenes)["held_out_named"],
        "held_out_named_real": held_out_metrics(read_real, scenes)["held_out_named"],
        "r_precision": judges.r_precision(generated_features, text_vectors, prompts, seed=seed),
        "r_precision_real": judges.r_precision(real_features, text_vectors, prompts, seed=seed),
        "r_precision_shuffled": judges.r_precision(generated_features[shuffled], text_vectors, prompts,
                                                   seed=seed),
        "r_precision_chance": 1.0 / min(100, len(prompts)),
        "diversity": diversity,
        "diversity_real": diversity_real,
        "kid": judges.kernel_inception_distance(generated_features, real_features),
        # Two halves of the real images: what KID is for two samples of one distribution.
        "kid_real": judges.kernel_inception_distance(real_features[:half], real_features[half:]),
        "images_per_second": 1.0 / statistics.median(seconds),
        "n_prompts": len(prompts),
        # How it was drawn: a diffusion model's steps and guidance (a VAE has neither).
        **({"sampling_steps": steps, "guidance": guidance} if isinstance(generator, ImageGenerator) else {}),
    }


def _diversities(generator, scenes, prompts, dual_encoder, steps, guidance, seed, batch_size):
    """``diversity`` of images drawn ``DIVERSITY_DRAWS`` times for each scene's prompt, and of
    as many real redraws of each scene."""
    repeated = [prompt for prompt in prompts[:len(scenes)] for _ in range(DIVERSITY_DRAWS)]
    drawn = np.concatenate([generator.generate(repeated[start:start + batch_size], steps, guidance,
                                               seed + MAX_PROMPTS + start)
                            for start in range(0, len(repeated), batch_size)])
    rng = np.random.default_rng(seed)
    redrawn = np.stack([redraw_scene(rng, scene, generator.image_size)
                        for scene in scenes for _ in range(DIVERSITY_DRAWS)])
    shape = (len(scenes), DIVERSITY_DRAWS, -1)
    return (judges.diversity(judges.image_features(drawn, dual_encoder).reshape(shape)),
            judges.diversity(judges.image_features(redrawn, dual_encoder).reshape(shape)))
