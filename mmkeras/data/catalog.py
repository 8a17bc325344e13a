"""From a dataset's name or folder to its splits: the one place every command and notebook asks.

``"shapes"`` is drawn, ``"flickr8k"`` downloaded, into :func:`default_data_root` the first
time; ``"coco"`` streams from tensorflow-datasets' records; anything else is a folder in
one of the Flickr8k layouts (:mod:`mmkeras.data.folder`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from PIL import Image

from mmkeras.config import DATASETS, SMOKE_SHAPES
from mmkeras.data import flickr8k, shapes, spoken
from mmkeras.data.coco import load_coco
from mmkeras.data.folder import SPLITS, CaptionSplit, load_captions
from mmkeras.errors import UserError


def default_data_root() -> Path:
    """Where generated data go: ``$MMKERAS_DATA``, else ``data/`` of this checkout, else ``~/mmkeras_data``."""
    if os.environ.get("MMKERAS_DATA"):
        return Path(os.environ["MMKERAS_DATA"])
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path.home() / "mmkeras_data"


def shapes_data(config: shapes.ShapesConfig = shapes.ShapesConfig(), progress: bool = True) -> Path:
    """The Shapes Captions folder for ``config`` under :func:`default_data_root`, drawn if need be.

    The default configuration lives in ``shapes/``; any other in a folder named after it.
    """
    if config == shapes.ShapesConfig():
        name = "shapes"
    else:
        name = (f"shapes-{config.num_train}-{config.num_val}-{config.num_test}"
                f"-{config.image_size}px-seed{config.seed}" + ("-cogent" if config.cogent else ""))
    return shapes.ensure(default_data_root() / name, config, progress=progress)


def smoke_shapes(seed: int = 0) -> shapes.ShapesConfig:
    """The small Shapes Captions of ``--smoke`` runs."""
    return shapes.ShapesConfig(seed=seed, **SMOKE_SHAPES)


def load_dataset(data: str | Path, splits=SPLITS, smoke: bool = False, seed: int = 0,
                 progress: bool = True,
                 shapes_config: shapes.ShapesConfig | None = None) -> tuple[Path, dict[str, CaptionSplit]]:
    """``(folder, {split: CaptionSplit})`` for ``"shapes"``, ``"flickr8k"``, ``"coco"`` or a folder.

    ``smoke`` and ``seed`` choose which Shapes Captions to draw (``shapes_config`` chooses
    any other). For COCO the folder only holds the feature cache: its records live in
    tensorflow-datasets' own folder.
    """
    data = str(data)
    if data == "coco":
        if smoke:
            raise UserError("--smoke is a check on the small shapes data; it cannot shrink "
                            "MS-COCO's 37.6 GiB download: leave out --data coco or --smoke")
        return default_data_root() / "coco", load_coco(splits, progress=progress)
    if data == "flickr8k":
        folder = flickr8k.prepare(default_data_root() / "flickr8k", progress=progress)
    elif data == "shapes":
        if shapes_config is None:
            shapes_config = smoke_shapes(seed) if smoke else shapes.ShapesConfig(seed=seed)
        folder = shapes_data(shapes_config, progress)
    else:
        folder = Path(data)
    return folder, load_captions(folder, splits)


def load_spoken_dataset(data: str | Path, splits=SPLITS, smoke: bool = False, seed: int = 0,
                        progress: bool = True) -> tuple[Path, dict[str, spoken.SpokenSplit]]:
    """``(folder, {split: SpokenSplit})`` for ``"spoken"`` (the default or, with ``smoke``, the
    small Shapes Captions spoken, the first time) or a Spoken Shapes folder."""
    if str(data) == "spoken":
        shapes_config = smoke_shapes(seed) if smoke else shapes.ShapesConfig(seed=seed)
        shapes_dir = shapes_data(shapes_config, progress)
        folder = spoken.ensure(default_data_root() / f"spoken-{shapes_dir.name}", shapes_dir,
                               spoken.SpokenConfig(seed=seed), progress)
    else:
        folder = Path(data)
    return folder, spoken.load_spoken(folder, splits)


def image_size_of(data: str, split: CaptionSplit) -> int:
    """The side to build a model at when none is asked for.

    A named dataset's own (:data:`mmkeras.config.DATASETS`); for a folder of square images
    (Shapes Captions, drawn at any size), their side; for other folders, the shapes' 64.
    """
    if str(data) in DATASETS:
        return DATASETS[str(data)]["image_size"]
    with Image.open(split.image_paths[0]) as first_image:
        width, height = first_image.size
    return width if width == height else DATASETS["shapes"]["image_size"]


def first_images(split: CaptionSplit, count: int) -> CaptionSplit:
    """The split's first ``count`` images only (``--train-images``)."""
    return dataclasses.replace(split, image_paths=split.image_paths[:count],
                               captions=split.captions[:count])
