"""Captions per second: compiled batched greedy, compiled beam search, and the per-word loop.

    python benchmarks/decode_speed.py [--model runs/caption/model.keras] [--images 500]

The per-image loop that popular tutorials use (one ``predict`` per word per image) is slow
enough that it runs on ``--loop-images`` of the same images (default 50); a rate is a rate.
With no trained model at ``--model``, it trains the smoke model first and says so.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mmkeras.caption.decoding import CaptionDecoder, naive_captions  # noqa: E402
from mmkeras.caption.train import train  # noqa: E402
from mmkeras.config import TrainConfig  # noqa: E402
from mmkeras.data.catalog import load_dataset  # noqa: E402
from mmkeras.data.images import evaluation_images  # noqa: E402
from mmkeras.runs import load_model  # noqa: E402


def rate(function, images, repeats=1, warm_up=None):
    # Compile and warm up outside the timing, on every batch shape the timing will see
    # (the greedy decoding compiles with XLA once per padded batch size).
    function(images if warm_up is None else warm_up)
    started = time.perf_counter()
    for _ in range(repeats):
        function(images)
    return repeats * len(images) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/caption/model.keras")
    parser.add_argument("--data", default="shapes")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--loop-images", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=250)
    args = parser.parse_args()

    smoke = not os.path.exists(args.model)
    if smoke:
        print(f"{args.model} not found: training the smoke model (scores mean nothing; speed does)")
        args.model = "runs/benchmark-smoke/model.keras"
        train(TrainConfig(smoke=True, out=os.path.dirname(args.model)), verbose=0, progress=False)
    caption_model = load_model(args.model)
    image_size = caption_model.input["image"].shape[1]
    test = load_dataset(args.data, splits=("test",), smoke=smoke, progress=False)[1]["test"]
    images = np.concatenate([batch.numpy() for batch in evaluation_images(test, image_size)])
    images = images[: args.images]
    decoder = CaptionDecoder(caption_model)

    def batched(beam_width):
        def run(batch_of_images):
            for start in range(0, len(batch_of_images), args.batch_size):
                decoder.captions(batch_of_images[start:start + args.batch_size], beam_width)
        return run

    greedy = rate(batched(1), images, repeats=3)
    beam = rate(batched(3), images, repeats=3)
    loop = rate(lambda batch: naive_captions(caption_model, batch), images[: args.loop_images],
                warm_up=images[:2])

    cpu = platform.processor() or platform.machine()
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")] or ["no GPU"]
    print(f"model {args.model}, {len(images)} test images ({args.loop_images} for the loop); "
          f"{os.cpu_count()} CPU cores ({cpu}), {', '.join(gpus)}; TensorFlow {tf.__version__}")
    print(f"{'decoder':<38} {'captions/s':>11} {'vs loop':>8}")
    for name, value in [("compiled batched greedy", greedy), ("compiled batched beam search, width 3", beam),
                        ("per-image predict loop (tutorial style)", loop)]:
        print(f"{name:<38} {value:>11.1f} {value / loop:>7.1f}x")


if __name__ == "__main__":
    main()
