"""The settings of the multimodal task runs, kept apart from TensorFlow so the command line starts fast."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("vqa", "match")
# How the image and text branches of a fused classifier meet; see mmkeras.fusion.
FUSIONS = ("concat", "gate", "product", "film", "attention", "early")


@dataclass
class TaskConfig:
    """Everything a VQA or matching run depends on; saved beside its model."""

    task: str = "vqa"
    data: str = "shapes"
    fusion: str = "attention"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    units: int = 128
    questions_per_image: int = 2  # VQA: training questions drawn per image (of six kinds)
    # Matching: the share of training negatives that are another image's caption instead
    # of a one-word change, for the first half of the epochs (then none). Without them the
    # model never learns to compare image and text at all (it stays at chance; see
    # 04_multimodal_tasks.ipynb). Test negatives are all one-word changes.
    other_image_negatives: float = 0.5
    train_images: int | None = None  # use only the first N training images
    seed: int = 0
    smoke: bool = False
    out: str = "runs/vqa"


@dataclass
class RetrievalConfig:
    """Everything a retrieval run depends on; saved beside its model."""

    data: str = "shapes"
    epochs: int = 15
    batch_size: int = 128  # more negatives per batch; 128 of 8,000 images rarely repeat a scene
    learning_rate: float = 2e-3
    embedding_dim: int = 64
    units: int = 128
    seed: int = 0
    smoke: bool = False
    out: str = "runs/retrieval"
