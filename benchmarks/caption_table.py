"""The caption decoders and encoders compared: one table, on one machine, in one sitting.

    python benchmarks/caption_table.py [--out runs/caption_table] [--epochs 15] [--smoke]

Trains the default command (``train --decoder D --encoder E``) for every decoder (init,
attention, transformer) on every from-scratch encoder (cnn, vit), on the default Shapes
Captions and on the compositional split (``data shapes --cogent``), and writes
``table.md`` and ``table.json`` under ``--out``: test BLEU-4 and CIDEr-D, parameters,
seconds per epoch (median), time to validation BLEU-4 0.90, greedy captions per second
(compiled, batches of 250, 500 test images), and on the compositional test split BLEU-4 and
the share of held-out (colour, shape) objects the captions name right.

A model already trained under ``--out`` is scored again, not retrained, so a killed sitting
can go on; timings then come from its own history. Run nothing else meanwhile: the figures
are timings.
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mmkeras.caption.decoding import CaptionDecoder  # noqa: E402
from mmkeras.caption.train import train  # noqa: E402
from mmkeras.config import DECODERS, ENCODERS, TrainConfig  # noqa: E402
from mmkeras.data.catalog import load_dataset, shapes_data, smoke_shapes  # noqa: E402
from mmkeras.data.images import evaluation_images  # noqa: E402
from mmkeras.data.shapes import ShapesConfig  # noqa: E402
from mmkeras.plots import read_history  # noqa: E402

TARGET_BLEU = 0.90


def greedy_rate(caption_model, images, batch_size=250) -> float:
    decoder = CaptionDecoder(caption_model)
    for start in range(0, len(images), batch_size):  # compile every batch shape first
        decoder.captions(images[start:start + batch_size])
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        decoder.captions(images[start:start + batch_size])
    return len(images) / (time.perf_counter() - started)


def training_times(history_csv: Path) -> tuple[float, float | None]:
    """Median seconds per epoch, and seconds of training until validation BLEU-4 first
    reached :data:`TARGET_BLEU` (None if it never did)."""
    history = read_history(history_csv)
    elapsed = np.cumsum(history["epoch_seconds"])
    reached = np.flatnonzero(history["val_bleu_4"] >= TARGET_BLEU)
    return statistics.median(history["epoch_seconds"]), (float(elapsed[reached[0]]) if len(reached) else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/caption_table")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs: checks the script")
    args = parser.parse_args()
    out = Path(args.out)
    data_sizes = smoke_shapes() if args.smoke else ShapesConfig()
    epochs = 2 if args.smoke else args.epochs
    datasets = {"default": shapes_data(data_sizes),
                "cogent": shapes_data(dataclasses.replace(data_sizes, cogent=True))}
    test = load_dataset(str(datasets["default"]), splits=("test",), progress=False)[1]["test"]
    images = np.concatenate([batch.numpy() for batch in evaluation_images(test, 64)])[:500]

    rows = []
    for encoder in ENCODERS:
        for decoder in DECODERS:
            name = f"{decoder}+{encoder}"
            row = {"model": name}
            for data, folder in datasets.items():
                run_dir = out / data / f"{decoder}_{encoder}"
                result = train(TrainConfig(data=str(folder), decoder=decoder, encoder=encoder,
                                           epochs=epochs, out=str(run_dir)), verbose=2, progress=False)
                metrics = result["metrics"]
                if data == "default":
                    seconds_per_epoch, seconds_to_target = training_times(run_dir / "history.csv")
                    row.update(bleu_4=metrics["bleu_4"], cider=metrics["cider"],
                               true_captions=metrics["true_captions"],
                               parameters=result["model"].count_params(),
                               seconds_per_epoch=seconds_per_epoch, seconds_to_val_bleu_090=seconds_to_target,
                               greedy_captions_per_second=greedy_rate(result["model"], images))
                else:
                    row.update(cogent_bleu_4=metrics["bleu_4"], held_out_named=metrics["held_out_named"],
                               held_out_objects=metrics["held_out_objects"])
            rows.append(row)
            print(json.dumps(row), flush=True)

    machine = (f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
               f"{', '.join(d.name for d in tf.config.list_physical_devices('GPU')) or 'no GPU'}, "
               f"TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d')}")
    lines = [f"Measured on {machine}; {epochs} epochs each.", "",
             "| model | BLEU-4 | CIDEr-D | true captions | parameters | s/epoch | s to val BLEU-4 0.90 "
             "| greedy captions/s | cogent BLEU-4 | held-out named |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        reached = row["seconds_to_val_bleu_090"]
        lines.append(
            f"| {row['model']} | {row['bleu_4']:.3f} | {row['cider']:.2f} | {row['true_captions']:.3f} "
            f"| {row['parameters']:,} | {row['seconds_per_epoch']:.0f} "
            f"| {'never' if reached is None else f'{reached:.0f}'} | {row['greedy_captions_per_second']:.0f} "
            f"| {row['cogent_bleu_4']:.3f} | {row['held_out_named']:.3f} of {row['held_out_objects']} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "table.json").write_text(json.dumps({"machine": machine, "epochs": epochs, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
