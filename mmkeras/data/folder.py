"""Read a captioning folder in the Flickr8k layouts into image paths and captions.

One loader serves the bundled Shapes Captions data and the original Flickr8k release:
a token file of ``{image}#{k}<TAB>{caption}`` lines, an image folder, and one file per
split listing image names. Introduced in ``01_preprocessing.ipynb``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mmkeras.errors import UserError

# (our name, the original Flickr8k release's name), first found wins.
IMAGE_DIRS = ("Images", "Flicker8k_Dataset")
CAPTION_FILES = ("captions.txt", "Flickr8k.token.txt")
# Karpathy's split of Flickr8k, with its captions; when present, it wins over the files below.
KARPATHY_SPLIT = "dataset_flickr8k.json"
SPLIT_FILES = {
    "train": ("train.txt", "Flickr_8k.trainImages.txt"),
    "val": ("val.txt", "Flickr_8k.devImages.txt"),
    "test": ("test.txt", "Flickr_8k.testImages.txt"),
}
SPLITS = ("train", "val", "test")
# What tf.io.decode_image can read; anything else would fail mid-epoch.
DECODABLE_FORMATS = {"PNG", "JPEG", "GIF", "BMP"}
# The largest image read: PIL's decompression-bomb threshold, 89 million pixels (about 1 GB as
# float32 while it is resized). PIL itself only warns there and refuses at twice that, which
# let images of 2.7 GB each through, several at once.
MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS by default
# An encoded image is at most about its raw pixels (up to 8 bytes each: 16-bit RGBA; every
# frame of an animated GIF) plus its metadata (EXIF, colour profile, previews): a file larger
# than that by more than MAX_METADATA_BYTES is not an image.
MAX_BYTES_PER_PIXEL = 8
MAX_METADATA_BYTES = 16 * 2**20
SHOWN_NAMES = 5
SHOWN_NAME_LENGTH = 80


class SkippedDataWarning(UserWarning):
    """Some lines or images of a dataset could not be used and were left out."""


@dataclass
class CaptionSplit:
    """One split: ``image_paths[i]`` is described by every caption in ``captions[i]``.

    A split streamed from records (MS-COCO, :mod:`mmkeras.data.coco`) names its images by id in
    ``image_paths`` and gives them through ``image_source(image_size)``, a ``tf.data``
    dataset of uint8 images in the same order.
    """

    name: str
    image_paths: list[str]
    captions: list[list[str]]
    image_source: Callable | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)


def _first_existing(root: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (root / name).exists():
            return root / name
    raise UserError(f"{root}: no {what} found; expected one of {', '.join(names)}")


def read_text(path: Path) -> str:
    """A text file's UTF-8 contents; a file that is not (or cannot be read) is refused by name."""
    try:
        return path.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark is not text
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error}); re-save it as UTF-8") from None
    except OSError as error:  # a folder, no permission, a broken disk
        raise UserError(f"{path}: cannot be read ({error.strerror or error}); expected a UTF-8 text file") from None


def _read_lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a training image, or None if it can."""
    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                return f"format {image.format} (expected PNG, JPEG, GIF or BMP)"
            if image.width * image.height > MAX_PIXELS:  # before decoding the pixels
                return f"too large ({image.width} x {image.height} pixels; at most {MAX_PIXELS:,})"
            needed = image.width * image.height * MAX_BYTES_PER_PIXEL * getattr(image, "n_frames", 1)
            if (size := path.stat().st_size) > needed + MAX_METADATA_BYTES:
                # Read whole to be decoded: a small image's header over gigabytes of data
                # would take their memory.
                return f"{size:,} bytes for {image.width} x {image.height} pixels"
            if image.format == "BMP" and (problem := _bmp_problem(path, image.mode)):
                return problem
    except FileNotFoundError:
        return "missing"
    except Exception as error:  # PIL raises many types for damaged headers
        if isinstance(error, OSError) and error.errno is not None:  # the file system's, not PIL's
            return f"cannot be read ({error.strerror})"
        return f"does not decode ({type(error).__name__})"
    # Here, not at the top: the command line imports this module for its split names, and
    # `--help` should not wait for TensorFlow.
    import tensorflow as tf

    # PIL reads the header only; the pixels are decoded by what training decodes them with.
    # (PIL's own decoding let through files TensorFlow refuses, found by the loader's fuzzer:
    # a PNG cut inside its last chunk would have failed in the middle of an epoch.)
    try:
        tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
    except OSError as error:  # gone or unreadable since its header was read
        return f"cannot be read ({error.strerror})"
    except tf.errors.OpError:
        return "does not decode (damaged or cut short)"
    return None


def _bmp_problem(path: Path, mode: str) -> str | None:
    """What in a BMP that PIL reads TensorFlow's decoder does not: it fails mid-epoch on
    1-, 4- and 16-bit files and on trailing bytes, and reads a palette as grey levels."""
    with open(path, "rb") as handle:
        header = handle.read(30)
    declared_size = int.from_bytes(header[2:6], "little")
    bits = int.from_bytes(header[28:30], "little")
    if bits not in (24, 32) and not (bits == 8 and mode == "L"):
        kind = "palette " if mode == "P" else ""
        return f"a {bits}-bit {kind}BMP (TensorFlow reads 24- and 32-bit BMPs, and 8-bit grey ones)"
    size = path.stat().st_size
    if declared_size and size != declared_size:
        return f"a BMP of {size} bytes whose header says {declared_size} (TensorFlow refuses it)"
    return None


def _shown(name: str) -> str:
    """A name as a message shows it: control characters escaped (a terminal would obey
    them), and cut to :data:`SHOWN_NAME_LENGTH` characters."""
    shown = name if name.isprintable() else repr(name)
    return shown if len(shown) <= SHOWN_NAME_LENGTH else shown[:SHOWN_NAME_LENGTH] + "..."


class _Skips:
    """Collects what was left out, so it can be reported in one warning per reason."""

    def __init__(self):
        self.by_reason: dict[str, list[str]] = {}

    def add(self, reason: str, name: str, detail: str = "") -> None:
        self.by_reason.setdefault(reason, []).append(_shown(name) + (f": {detail}" if detail else ""))

    def report(self, root: Path) -> None:
        if not self.by_reason:
            return
        parts = []
        for reason, names in self.by_reason.items():
            shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
            parts.append(f"{len(names)} {reason} ({shown})")
        warnings.warn(f"{root}: skipped " + "; ".join(parts), SkippedDataWarning, stacklevel=3)


def load_captions(data_dir: str | Path, splits=SPLITS,
                  check_images: bool = True) -> dict[str, CaptionSplit]:
    """Read ``data_dir`` and return ``{split: CaptionSplit}`` for the requested splits.

    Lines and images that cannot be used are skipped and reported in one
    :class:`SkippedDataWarning` with their count and first names, never silently, and
    never later as a crash in the middle of an epoch.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found; create it with "
                        f"`python -m mmkeras data shapes --out {root}` or point --data at "
                        "a folder in the Flickr8k layout")
    if not any(root.iterdir()):
        raise UserError(f"{root}: the data folder is empty; expected Images/, captions.txt "
                        "and train.txt, val.txt, test.txt")
    image_dir = _first_existing(root, IMAGE_DIRS, "image folder")
    skips = _Skips()
    if (root / KARPATHY_SPLIT).is_file():
        caption_file = root / KARPATHY_SPLIT
        captions_by_image, names_by_split = _read_karpathy_split(caption_file, skips)
    else:
        caption_file = _first_existing(root, CAPTION_FILES, "caption file")
        captions_by_image = _read_caption_lines(caption_file, skips)
        names_by_split = {}
        for split in splits:
            split_file = _first_existing(root, SPLIT_FILES[split], f"{split} split list")
            names_by_split[split] = (split_file, [n.strip() for n in _read_lines(split_file) if n.strip()])

    image_root = image_dir.resolve()
    result = {}
    for split in splits:
        split_file, names = names_by_split[split]
        candidates = []
        for name in dict.fromkeys(names):  # a name listed twice is one image
            if "\0" in name:  # no file system allows it; resolve() would raise
                skips.add("names with a NUL byte (refused)", name)
                continue
            path = (image_dir / name).resolve()
            if not path.is_relative_to(image_root):
                skips.add(f"names outside {image_dir.name}/ (refused)", name)
            elif name not in captions_by_image:
                skips.add("images without captions", name)
            else:
                candidates.append((name, path))
        problems = _check_images([p for _, p in candidates]) if check_images else None
        paths, captions = [], []
        for index, (name, path) in enumerate(candidates):
            problem = problems[index] if problems else None
            if problem == "missing":
                skips.add("captioned images that are missing", name)
            elif problem:
                skips.add("images that cannot be used", name, problem)
            else:
                paths.append(str(path))
                captions.append(captions_by_image[name])
        if not paths:
            skips.report(root)
            raise UserError(f"{split_file}: no usable images in the {split} split; expected "
                            f"names of images in {image_dir} that have captions in "
                            f"{caption_file.name}")
        result[split] = CaptionSplit(split, paths, captions)
    skips.report(root)
    return result


def _read_caption_lines(caption_file: Path, skips: _Skips) -> dict[str, list[str]]:
    """``{image name: captions}`` from ``{image}#{k}<TAB>{caption}`` lines."""
    captions_by_image: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()  # a set, not a scan of the list: a million lines stay fast
    for line_number, line in enumerate(_read_lines(caption_file), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image_name = key.rsplit("#", 1)[0].strip()
        if not tab:
            skips.add("lines without a tab", f"{caption_file.name}:{line_number}")
        elif not caption.strip():
            skips.add("empty captions", f"{caption_file.name}:{line_number}")
        elif (image_name, caption.strip()) in seen:
            # A repeated line would count twice in training and in the BLEU references.
            skips.add("duplicate captions", f"{caption_file.name}:{line_number}")
        else:
            seen.add((image_name, caption.strip()))
            captions_by_image.setdefault(image_name, []).append(caption.strip())
    return captions_by_image


def _read_karpathy_split(path: Path, skips: _Skips):
    """Captions and the train/val/test split from Karpathy's ``dataset_flickr8k.json``.

    His "restval" images join train, as in the papers that use his split.
    """
    try:
        images = json.loads(read_text(path))["images"]
        captions_by_image: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        names: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for image in images:
            split = "train" if image["split"] == "restval" else image["split"]
            name = str(image["filename"])
            names[split].append(name)
            for sentence in image["sentences"]:
                caption = sentence["raw"].strip()
                if not caption:
                    skips.add("empty captions", f"{path.name}: {name}")
                elif (name, caption) in seen:
                    skips.add("duplicate captions", f"{path.name}: {name}")
                else:
                    seen.add((name, caption))
                    captions_by_image.setdefault(name, []).append(caption)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise UserError(f"{path}: not Karpathy's split file ({type(error).__name__}: {error}); "
                        'expected {"images": [{"filename", "split", "sentences": [{"raw"}]}]}') from None
    return captions_by_image, {split: (path, names_in) for split, names_in in names.items()}


def _check_images(paths: list[Path]) -> list[str | None]:
    # Decoding is I/O and C code that releases the GIL, so threads do help here.
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(image_problem, paths))
