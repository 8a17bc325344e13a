"""The settings of a training run, kept apart from TensorFlow so the command line starts fast."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as ``config.json`` beside the model."""

    data: str = "shapes"  # "shapes", "flickr8k", "coco", or a folder in the Flickr8k layout
    decoder: str = "attention"
    epochs: int = 15
    out: str = "runs/caption"
    batch_size: int = 64
    learning_rate: float = 2e-3
    embedding_dim: int = 128
    units: int = 256
    feature_dim: int = 128
    dropout: float = 0.1
    image_size: int = 64
    max_caption_length: int = 0  # 0: the longest training caption, capped at 40 words
    all_pairs: bool = False
    backbone: str | None = None  # a keras.applications model, e.g. "MobileNetV2"
    backbone_weights: str | None = "imagenet"  # None: random weights (tests, offline)
    fine_tune: bool = False
    fine_tune_layers: int = 20  # with fine_tune: the backbone's top layers that train (0: all)
    feature_cache: bool = True  # a frozen backbone's features computed once, read from disk
    patience: int = 4
    beam_width: int = 1  # for the final test-split evaluation
    seed: int = 0
    smoke: bool = False
