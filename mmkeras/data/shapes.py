"""Shapes Captions: the bundled, procedurally drawn captioning dataset, drawn and read back.

Every number here is fixed by the spec, ``docs/shapes-captions.md``; the data are a pure
function of ``(seed, sizes, image_size)``. The five caption templates live here once:
:func:`captions_for` writes them and :func:`read_caption` reads any of them back into
objects and a relation, which the multimodal tasks build their questions and false
captions from. Introduced in ``01_preprocessing.ipynb``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from mmkeras.atomic import partial_path, replace_folder, write_json, write_text
from mmkeras.data.folder import SPLITS, CaptionSplit
from mmkeras.errors import UserError

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (150, 60, 190),
}
SIZES = {"small": (5, 7), "large": (10, 12)}
RELATIONS = ("to the left of", "to the right of", "above", "below")
INVERSE_RELATION = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}
# The compositional split's held-out (colour, shape) pairs.
HELD_OUT_PAIRS = frozenset(
    {("red", "square"), ("green", "triangle"), ("blue", "circle"),
     ("yellow", "square"), ("purple", "triangle")}
)
REFERENCE_SIZE = 64  # the spec gives every length for a 64 px canvas


@dataclass(frozen=True)
class ShapesConfig:
    """Everything the generated files depend on (and nothing else)."""

    seed: int = 0
    num_train: int = 8000
    num_val: int = 1000
    num_test: int = 1000
    image_size: int = 64
    cogent: bool = False

    def split_size(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


@dataclass(frozen=True)
class SceneObject:
    """One object as the captions name it (where it lies is the relation's business)."""

    size: str
    colour: str
    shape: str

    @property
    def name(self) -> str:
        """Colour and shape: unique in a scene (the two objects differ in one or both)."""
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects, and where the first lies from the second: all that the captions say."""

    first: SceneObject
    second: SceneObject
    relation: str

    @property
    def objects(self) -> tuple[SceneObject, SceneObject]:
        return self.first, self.second

    def holds(self, subject: SceneObject, relation: str, reference: SceneObject) -> bool:
        """Whether ``subject relation reference`` is true of this scene."""
        if (subject, reference) == (self.first, self.second):
            return relation == self.relation
        if (subject, reference) == (self.second, self.first):
            return relation == INVERSE_RELATION[self.relation]
        return False


# The spec's five captions of a scene, in its order: 1 is the first object, 2 the second,
# s size, c colour, h shape, REL the relation of 1 to 2 and INV its inverse.
TEMPLATES = (
    "a {s1} {c1} {h1} {REL} a {s2} {c2} {h2}",
    "a {s2} {c2} {h2} {INV} a {s1} {c1} {h1}",
    "a {c1} {h1} is {REL} a {c2} {h2}",
    "there is a {s1} {c1} {h1} {REL} a {c2} {h2}",
    "a {c2} {h2} {INV} a {c1} {h1}",
)


def captions_for(scene: Scene) -> list[str]:
    """The five captions of a scene, in the spec's order."""
    (s1, c1, h1), (s2, c2, h2) = ((o.size, o.colour, o.shape) for o in scene.objects)
    words = {"s1": s1, "c1": c1, "h1": h1, "s2": s2, "c2": c2, "h2": h2,
             "REL": scene.relation, "INV": INVERSE_RELATION[scene.relation]}
    return [template.format(**words) for template in TEMPLATES]


def _template_pattern(template: str) -> re.Pattern:
    choices = {"s": SIZES, "c": COLOURS, "h": SHAPES}
    pattern = template
    for field in re.findall(r"\{(\w+)\}", template):
        words = RELATIONS if field in ("REL", "INV") else choices[field[0]]
        pattern = pattern.replace(f"{{{field}}}", f"(?P<{field}>{'|'.join(words)})")
    return re.compile(f"^{pattern}$")


_TEMPLATE_PATTERNS = tuple(_template_pattern(t) for t in TEMPLATES)


@dataclass(frozen=True)
class CaptionReading:
    """What one caption says: two objects (a size is None where the template leaves it out)
    and the relation of the first to the second."""

    first: SceneObject
    second: SceneObject
    relation: str

    def scene(self) -> Scene | None:
        """The whole scene, if the caption names both sizes; else None."""
        if self.first.size is None or self.second.size is None:
            return None
        return Scene(self.first, self.second, self.relation)


def read_caption(caption: str) -> CaptionReading | None:
    """Read a caption of any of the five templates back; None if it follows none of them."""
    caption = caption.strip()
    for pattern in _TEMPLATE_PATTERNS:
        match = pattern.match(caption)
        if match is None:
            continue
        words = match.groupdict()
        first, second = (SceneObject(words.get(f"s{i}"), words[f"c{i}"], words[f"h{i}"])
                         for i in (1, 2))
        relation = words.get("REL") or INVERSE_RELATION[words["INV"]]
        return CaptionReading(first, second, relation)
    return None


def parse_scene(caption: str) -> Scene | None:
    """The scene a caption that names both sizes describes; None for other captions."""
    reading = read_caption(caption)
    return reading.scene() if reading else None


def describes(caption: str, scene: Scene) -> bool:
    """Whether a caption of any of the five templates is true of ``scene``.

    An object mentioned with or without its size must match one of the scene's objects,
    the two mentions distinct objects, and the relation must hold between them.
    """
    reading = read_caption(caption)
    if reading is None:
        raise ValueError(f"not a Shapes Captions caption: {caption!r}")
    for subject, reference in (scene.objects, scene.objects[::-1]):
        if mentions(reading.first, subject) and mentions(reading.second, reference):
            return scene.holds(subject, reading.relation, reference)
    return False


def mentions(mention: SceneObject, obj: SceneObject) -> bool:
    """Whether ``mention`` (an object as a caption names it, its size None where left out)
    names ``obj``: the same colour and shape, and the same size where one is said."""
    return (obj.colour, obj.shape) == (mention.colour, mention.shape) and mention.size in (None, obj.size)


def reading_order(scene: Scene) -> tuple[SceneObject, SceneObject]:
    """The scene's objects as a picture is read: the left one (or, one above the other, the
    upper one) first, whichever of them a caption happens to name first."""
    if scene.relation in ("to the right of", "below"):
        return scene.second, scene.first
    return scene.first, scene.second


def sizes_said(caption: str, scene: Scene) -> tuple[bool, bool]:
    """Whether a caption of ``scene`` says the size of its first and of its second object in
    :func:`reading_order` (two of the five templates say no size, one only the first-named
    object's)."""
    reading = read_caption(caption)
    mentions = () if reading is None else (reading.first, reading.second)
    return tuple(any((m.colour, m.shape) == (obj.colour, obj.shape) and m.size is not None for m in mentions)
                 for obj in reading_order(scene))


def scenes_of(split: CaptionSplit, source: str = "the dataset") -> list[Scene]:
    """Each image's scene, from the first of its captions that states the whole scene."""
    scenes = []
    for path, captions in zip(split.image_paths, split.captions):
        scene = next((s for s in map(parse_scene, captions) if s is not None), None)
        if scene is None:
            raise UserError(
                f"{path}: none of its captions has the form 'a SIZE COLOUR SHAPE RELATION a "
                f"SIZE COLOUR SHAPE' that Shapes Captions' first caption has; the multimodal "
                f"tasks are built from that caption, so they need a Shapes Captions folder "
                f"({source})")
        scenes.append(scene)
    return scenes


def _pick_attributes(rng: np.random.Generator, split: str, cogent: bool):
    """Draw (shape, colour, size) for both objects, honouring the split's constraints."""
    colours = list(COLOURS)
    while True:
        attributes = [
            (SHAPES[rng.integers(len(SHAPES))], colours[rng.integers(len(colours))],
             ("small", "large")[rng.integers(2)])
            for _ in range(2)
        ]
        (h1, c1, _), (h2, c2, _) = attributes
        if h1 == h2 and c1 == c2:
            continue  # the captions could not tell the two objects apart
        if cogent:
            held_out = [(c, h) in HELD_OUT_PAIRS for h, c, _ in attributes]
            if split == "test" and not any(held_out):
                continue
            if split != "test" and any(held_out):
                continue
        return attributes


def _place(rng: np.random.Generator, r1: float, r2: float, relation: str, image_size: int):
    """Rejection-sample two centres that satisfy the relation and stay on the canvas."""
    scale = image_size / REFERENCE_SIZE
    margin = 2 * scale
    gap = 4 * scale
    for _ in range(10_000):
        x1, y1 = (rng.uniform(r1 + margin, image_size - 1 - r1 - margin) for _ in range(2))
        x2, y2 = (rng.uniform(r2 + margin, image_size - 1 - r2 - margin) for _ in range(2))
        dx, dy = x2 - x1, y2 - y1
        if relation in ("to the left of", "to the right of"):
            ok = abs(dx) >= r1 + r2 + gap and abs(dy) <= abs(dx) / 4
            ok = ok and (dx > 0 if relation == "to the left of" else dx < 0)
        else:
            ok = abs(dy) >= r1 + r2 + gap and abs(dx) <= abs(dy) / 4
            ok = ok and (dy > 0 if relation == "above" else dy < 0)
        if ok:
            return (x1, y1), (x2, y2)
    raise RuntimeError(f"could not place two objects on a {image_size} px canvas")


# OpenCV draws with integer coordinates; a fixed-point shift keeps sub-pixel centres.
_SHIFT = 4
_ONE = 1 << _SHIFT


def _draw(canvas: np.ndarray, shape: str, centre: tuple[float, float], r: float,
          colour: tuple[int, int, int]) -> None:
    x, y = centre  # y grows downward
    if shape == "circle":
        cv2.circle(canvas, (round(x * _ONE), round(y * _ONE)), round(r * _ONE), colour,
                   thickness=-1, lineType=cv2.LINE_AA, shift=_SHIFT)
        return
    if shape == "square":
        corners = [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    else:  # isosceles triangle, apex up, base horizontal
        corners = [(x, y - r), (x + r, y + r), (x - r, y + r)]
    points = np.array([[round(px * _ONE), round(py * _ONE)] for px, py in corners], np.int32)
    cv2.fillConvexPoly(canvas, points, colour, lineType=cv2.LINE_AA, shift=_SHIFT)


def draw_scene(rng: np.random.Generator, split: str = "train", image_size: int = 64,
               cogent: bool = False) -> tuple[np.ndarray, list[str]]:
    """Draw one scene; returns the RGB image (uint8) and its five captions."""
    canvas = _background(rng, image_size)
    attributes = _pick_attributes(rng, split, cogent)
    radii = _radii(rng, attributes, image_size)
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    _paint(rng, canvas, attributes, radii, relation)
    objects = [SceneObject(size, colour, shape) for shape, colour, size in attributes]
    return canvas, captions_for(Scene(objects[0], objects[1], relation))


def redraw_scene(rng: np.random.Generator, scene: Scene, image_size: int = 64) -> np.ndarray:
    """Another image of ``scene``: the same objects and relation, new places, radii within
    each size, colour jitter and background. Many redraws of one scene are what "every
    image this caption is true of" looks like (text to image's diversity is judged by them)."""
    canvas = _background(rng, image_size)
    attributes = [(obj.shape, obj.colour, obj.size) for obj in scene.objects]
    _paint(rng, canvas, attributes, _radii(rng, attributes, image_size), scene.relation)
    return canvas


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    background = rng.integers(225, 256, size=3)
    noise = rng.normal(0.0, 4.0, size=(image_size, image_size, 3))
    return np.clip(background + noise, 0, 255).astype(np.uint8)


def _radii(rng: np.random.Generator, attributes, image_size: int) -> list[float]:
    scale = image_size / REFERENCE_SIZE
    return [rng.integers(*SIZES[size], endpoint=True) * scale for _, _, size in attributes]


def _paint(rng: np.random.Generator, canvas: np.ndarray, attributes, radii, relation: str) -> None:
    """Place both objects so that the relation holds and draw them, colours jittered."""
    centres = _place(rng, radii[0], radii[1], relation, canvas.shape[0])
    for (shape, colour, _), radius, centre in zip(attributes, radii, centres):
        jitter = rng.integers(-20, 21, size=3)
        rgb = np.clip(np.array(COLOURS[colour]) + jitter, 0, 255)
        _draw(canvas, shape, centre, float(radius), tuple(int(v) for v in rgb))


def generate(out_dir: str | Path, config: ShapesConfig = ShapesConfig(),
             progress: bool = True) -> Path:
    """Write the dataset in the Flickr8k line formats under ``out_dir``."""
    if config.image_size < 32:
        raise UserError(f"--image-size must be at least 32 pixels, got {config.image_size}")
    for split in SPLITS:
        if config.split_size(split) < 1:
            raise UserError(f"--num-{split} must be at least 1, got {config.split_size(split)}")
    out_dir = Path(out_dir)
    # Drawn beside the old images, which stay whole until the new ones are all there.
    images_dir = partial_path(out_dir / "Images")
    shutil.rmtree(images_dir, ignore_errors=True)
    images_dir.mkdir(parents=True)

    caption_lines, split_lists = [], {}
    total = sum(config.split_size(s) for s in SPLITS)
    # disable=None: tqdm draws the bar on a terminal only, so logs and CI stay clean.
    with tqdm(total=total, desc="drawing shapes", unit="img",
              disable=None if progress else True) as bar:
        for split_index, split in enumerate(SPLITS):
            # One generator per split: changing the test size leaves train untouched.
            rng = np.random.default_rng([config.seed, split_index])
            names = []
            for index in range(config.split_size(split)):
                image, captions = draw_scene(rng, split, config.image_size, config.cogent)
                name = f"{split}_{index:05d}.png"
                if not cv2.imwrite(str(images_dir / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                    raise UserError(f"{images_dir / name}: could not be written (disk full, or "
                                    "no permission?)")
                names.append(name)
                caption_lines += [f"{name}#{k}\t{c}" for k, c in enumerate(captions)]
                bar.update()
            split_lists[split] = "\n".join(names) + "\n"
    # The swap. The marker and the captions go first: killed from here until the marker is
    # written again, the folder has no captions (a clear error, and `ensure` draws it again),
    # never old captions over new images.
    (out_dir / "shapes.json").unlink(missing_ok=True)
    (out_dir / "captions.txt").unlink(missing_ok=True)
    replace_folder(images_dir, out_dir / "Images")
    for split, names in split_lists.items():
        write_text(out_dir / f"{split}.txt", names)
    write_text(out_dir / "captions.txt", "\n".join(caption_lines) + "\n")
    # Written last: its presence says the folder is complete.
    write_json(out_dir / "shapes.json", asdict(config))
    return out_dir


def is_complete(out_dir: str | Path, config: ShapesConfig) -> bool:
    """True when ``out_dir`` already holds exactly this configuration's data."""
    return config_of(out_dir) == config


def config_of(out_dir: str | Path) -> ShapesConfig | None:
    """The configuration a Shapes Captions folder was drawn with; None for any other folder."""
    try:
        return ShapesConfig(**json.loads((Path(out_dir) / "shapes.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def ensure(out_dir: str | Path, config: ShapesConfig = ShapesConfig(),
           progress: bool = True) -> Path:
    """Generate the dataset unless ``out_dir`` already holds it."""
    if not is_complete(out_dir, config):
        generate(out_dir, config, progress)
    return Path(out_dir)
