"""Training images per second on the device at hand, for the settings that matter on a GPU.

    python benchmarks/train_throughput.py [--steps 40] [--repeats 3] [--smoke] [--out table.md]

One fixed model (the attention caption model) and one fixed batch (64) unless a row says
otherwise. Each row builds a fresh model and, after one pass over the data has filled the
pipeline's image cache, times ``--steps`` training steps one by one inside one ``fit``
(three warm-up steps left out: tracing and compiling), ``--repeats`` times; a repeat's rate
is its median step's, and the table gives the median of the repeats and their range,
because on a shared machine one timing can be off by a third. Rows a device cannot run (mixed precision and cuDNN need a
GPU) are printed as "not measured" with the reason, never estimated. It prints a markdown
table with the device's name and the library versions, and writes it to ``--out`` too.
"""

import argparse
import datetime
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notes: each row builds a new model on purpose

from mmkeras.caption.model import build_caption_model, compile_caption_model  # noqa: E402
from mmkeras.data.catalog import shapes_data  # noqa: E402
from mmkeras.data.folder import load_captions  # noqa: E402
from mmkeras.data.pairs import caption_dataset  # noqa: E402
from mmkeras.data.shapes import ShapesConfig  # noqa: E402
from mmkeras.data.text import build_vectorizer, caption_lengths, vectorizer_vocabulary  # noqa: E402
from mmkeras.runs import package_versions, training_speed  # noqa: E402


def device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per row")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row (median reported)")
    parser.add_argument("--smoke", action="store_true", help="tiny data and 2 steps: checks it runs")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args()
    steps = 2 if args.smoke else args.steps
    repeats = 1 if args.smoke else args.repeats
    sizes = ShapesConfig(num_train=256, num_val=8, num_test=8) if args.smoke else ShapesConfig()

    train_split = load_captions(shapes_data(sizes, progress=False), splits=("train",))["train"]
    captions = [c for refs in train_split.captions for c in refs]
    max_caption_length = int(caption_lengths(captions).max())
    vectorizer = build_vectorizer(captions, max_caption_length)
    vocabulary = vectorizer_vocabulary(vectorizer)
    on_gpu = bool(tf.config.list_physical_devices("GPU"))

    def measure(batch_size=64, policy="float32", use_cudnn="auto", jit_compile=False,
                in_memory=False):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = compile_caption_model(
                build_caption_model(vocabulary, max_caption_length, "attention", use_cudnn=use_cudnn),
                jit_compile=jit_compile)
            data = caption_dataset(train_split, vectorizer, 64, batch_size, seed=0)
            if in_memory:  # the same batches, held in memory: no shuffling, pairing or batching
                data = data.take(steps + 1).cache()
            # One pass first, so that every row times the steady state of later epochs, with
            # the decoded images cached, not the first epoch's PNG decoding.
            for _ in data:
                pass
            rates = sorted(training_speed(model, data, steps)["median"] for _ in range(repeats))
            median = rates[len(rates) // 2]
            return f"{median:.0f}" + (f" ({rates[0]:.0f} to {rates[-1]:.0f})" if repeats > 1 else "")
        except Exception as error:  # a setting this device or build cannot run
            return f"failed: {type(error).__name__}"
        finally:
            keras.mixed_precision.set_global_policy("float32")

    no_gpu = "not measured: no GPU"
    rows = [
        ("float32, tf.data pipeline (the baseline)", 64, measure()),
        ("mixed_float16", 64, measure(policy="mixed_float16") if on_gpu else no_gpu),
        ("cuDNN LSTM (default)", 64, measure() if on_gpu else no_gpu),
        ("generic LSTM (use_cudnn=False)", 64, measure(use_cudnn=False) if on_gpu else no_gpu),
        ("XLA on (jit_compile=True)", 64, measure(jit_compile=True)),
        ("same batches already in memory", 64, measure(in_memory=True)),
    ]
    rows += [(f"batch size {size}", size, measure(batch_size=size)) for size in (32, 128, 256)]

    versions = package_versions()
    lines = [
        f"### {device_name()}",
        "",
        f"{datetime.date.today().isoformat()}; TensorFlow {versions['tensorflow']}, Keras "
        f"{versions['keras']}, Python {versions['python']}; attention caption model, "
        f"{len(train_split)} training images, {steps} timed steps, median of {repeats} (range)"
        + (" (smoke size: the figures mean nothing)" if args.smoke else "") + ".",
        "",
        "| setting | batch | training images/s, median (range) |",
        "| --- | --- | --- |",
        *[f"| {label} | {batch} | {value} |" for label, batch, value in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main()
