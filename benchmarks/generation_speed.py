"""Text to image on this machine: the training step and the drawing rate of each generator.

    python benchmarks/generation_speed.py [--repeats 20] [--smoke]

For the diffusion U-Net at several widths (and the conditional VAE): parameters, the median
training step on a batch of 64 after warm-up (and what an epoch of the 8,000 training
images costs at that rate), and images drawn a second, batches of 100, at 10, 20 and 40
DDIM steps with classifier-free guidance (two passes of the U-Net a step; the VAE draws in
one pass, the same rate in every column). Untrained models:
speed does not depend on the weights. Prints a Markdown table.
"""

import argparse
import math
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mmkeras import runs  # noqa: E402
from mmkeras.config import TextToImageConfig  # noqa: E402
from mmkeras.data.shapes import ShapesConfig  # noqa: E402
from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary  # noqa: E402
from mmkeras.generation.diffusion import DiffusionTrainer, ImageGenerator, empty_caption_ids  # noqa: E402
from mmkeras.generation.vae import VAEGenerator, VAETrainer, build_vae  # noqa: E402
from mmkeras.nn.unet import build_denoiser  # noqa: E402
from mmkeras.tasks.retrieval import caption_ids  # noqa: E402

CAPTIONS = ["a small red circle to the left of a large blue square",
            "a large green triangle above a small yellow circle",
            "a small purple square below a large red triangle"]
MAX_CAPTION_WORDS = 11
BATCH = 64
DRAW_BATCH = 100


def median_seconds(function, repeats: int, warm_up: int = 3) -> float:
    for _ in range(warm_up):
        function()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        function()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def training_step_seconds(trainer: keras.Model, image_size: int, text_ids, repeats: int) -> float:
    """The median training step inside one ``fit`` (:func:`mmkeras.runs.training_speed`)."""
    trainer.compile(optimizer=runs.optimizer(1e-3, 1000, ema_momentum=0.999))
    rng = np.random.default_rng(0)
    inputs = {"image": rng.integers(0, 256, (BATCH, image_size, image_size, 3), np.uint8),
              "text": np.repeat(text_ids[:1], BATCH, axis=0)}
    # (The trainers read only the inputs; training_speed counts a batch by its targets.)
    batch = tf.data.Dataset.from_tensors((inputs, np.zeros(BATCH, np.float32)))
    return BATCH / runs.training_speed(trainer, batch, steps=repeats)["median"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed training steps (draws: a quarter)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, two repeats: a check that it runs")
    args = parser.parse_args()
    default = TextToImageConfig()
    image_size = default.image_size
    vectorizer = build_vectorizer(CAPTIONS, MAX_CAPTION_WORDS)
    vocabulary = vectorizer_vocabulary(vectorizer)
    text_ids = caption_ids(CAPTIONS, vectorizer).numpy()
    text_length = text_ids.shape[1]
    settings = [((8, 16), 1)] if args.smoke else [
        (default.widths, default.block_depth), ((32, 64, 96), 1), ((24, 48, 64), 2), ((48, 96, 128), 2)]
    step_counts = [2] if args.smoke else [10, 20, 40]
    repeats = 2 if args.smoke else args.repeats
    draws = max(1, repeats // 4)
    prompts = CAPTIONS * math.ceil(DRAW_BATCH / len(CAPTIONS))
    steps_per_epoch = math.ceil(ShapesConfig().num_train / BATCH)

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
          f"{image_size} px, training batches of {BATCH}, drawing batches of {DRAW_BATCH}\n")
    header = ["generator", "parameters", "train step ms", "epoch s"] + [f"images/s at {s} steps" for s in step_counts]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for widths, depth in settings:
        keras.utils.set_random_seed(0)
        denoiser = build_denoiser(vocabulary, text_length, image_size, widths, depth,
                                  default.embedding_dim, default.units)
        step = training_step_seconds(DiffusionTrainer(denoiser, empty_caption_ids(vectorizer), seed=0),
                                     image_size, text_ids, repeats)
        generator = ImageGenerator(denoiser)
        rates = [DRAW_BATCH / median_seconds(lambda s=s, g=generator: g.generate(prompts[:DRAW_BATCH], s, 3.0),
                                             draws, warm_up=1) for s in step_counts]
        default_mark = " (default)" if (tuple(widths), depth) == (tuple(default.widths), default.block_depth) else ""
        print(f"| diffusion, widths {'/'.join(map(str, widths))}, depth {depth}{default_mark} | "
              f"{denoiser.count_params():,} | {step * 1000:.0f} | {step * steps_per_epoch:.0f} | "
              + " | ".join(f"{r:.0f}" for r in rates) + " |", flush=True)
    keras.utils.set_random_seed(0)
    encoder, decoder = build_vae(vocabulary, text_length, image_size, default.latent_dim,
                                 embedding_dim=default.embedding_dim, units=default.units)
    step = training_step_seconds(VAETrainer(encoder, decoder, seed=0), image_size, text_ids, repeats)
    vae = VAEGenerator(decoder)
    rate = DRAW_BATCH / median_seconds(lambda: vae.generate(prompts[:DRAW_BATCH]), draws, warm_up=1)
    print(f"| conditional VAE | {decoder.count_params():,} | {step * 1000:.0f} | {step * steps_per_epoch:.0f} | "
          + " | ".join(f"{rate:.0f}" for _ in step_counts) + " |")


if __name__ == "__main__":
    main()
