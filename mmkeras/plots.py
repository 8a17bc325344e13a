"""The notebooks' figures: captioned image grids, training curves, attention maps.

Every figure has a title and labelled axes. Used by all three notebooks.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def show_captioned_images(images, captions, title: str, columns: int = 4, width: int = 34):
    """A grid of images, each with its caption(s) under it (a string or a list of strings)."""
    labels = ["\n".join(textwrap.fill(line, width) for line in
                        ([caption] if isinstance(caption, str) else caption)) for caption in captions]
    text_lines = max(label.count("\n") + 1 for label in labels)
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(3.4 * columns, (3.2 + 0.25 * text_lines) * rows))
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_visible(False)
    for axis, image, label in zip(axes.flat, images, labels):
        axis.set_visible(True)
        axis.imshow(image, interpolation="nearest")  # the image's own pixels, unsmoothed
        axis.set_xlabel(label, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def read_history(history_csv: str | Path) -> dict[str, np.ndarray]:
    """``history.csv`` written by training, as columns of floats."""
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def plot_history(history_csv: str | Path, title: str = "Training curves"):
    """Loss and masked accuracy per epoch, training against validation; and the validation
    BLEU-4 of the model's own captions where the history has it (a caption model's)."""
    history = read_history(history_csv)
    epochs = history["epoch"] + 1
    with_bleu = "val_bleu_4" in history
    figure, axes = plt.subplots(1, 3 if with_bleu else 2, figsize=(14 if with_bleu else 11, 3.8))
    for axis, metric, label in zip(axes, ("loss", "accuracy"),
                                   ("masked cross-entropy", "next-word accuracy")):
        axis.plot(epochs, history[metric], "o-", label="training")
        axis.plot(epochs, history[f"val_{metric}"], "s--", label="validation")
        axis.set_title(label.capitalize())
        axis.set_ylabel(label)
    if with_bleu:
        axes[2].plot(epochs, history["val_bleu_4"], "s--", color="C1", label="validation")
        axes[2].set_ylim(0, 1)
        axes[2].set_title("BLEU-4 of its greedy captions")
        axes[2].set_ylabel("BLEU-4")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def show_attention(image, words: list[str], attention: np.ndarray, title: str, columns: int = 6):
    """Where the decoder looked for each word: its attention over the feature map, on the image.

    ``attention`` is ``(words, rows * cols)``, one softmax per generated word. Every panel
    shares one colour scale (the bar), so a pale map is a spread-out one; each cell of the
    map is drawn as the square of the image it covers (no smoothing between cells).
    """
    side = int(round(np.sqrt(attention.shape[-1])))
    rows = int(np.ceil(len(words) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns + 1, 1.9 * rows + 0.5),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    height, width = np.asarray(image).shape[:2]
    for axis, word, weights in zip(axes.flat, words, attention):
        axis.imshow(image)
        shown = axis.imshow(weights.reshape(side, side), cmap="magma", alpha=0.6, vmin=0.0,
                            vmax=float(attention.max()), extent=(0, width, height, 0),
                            interpolation="nearest")
        axis.set_title(f'"{word}"', fontsize=9)
    figure.colorbar(shown, ax=axes, shrink=0.8, label="attention weight")
    figure.suptitle(title)
    return figure
