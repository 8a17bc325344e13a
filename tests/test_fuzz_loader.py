"""A fuzzer of the data loader: folders damaged at random, the same way on every run (seeded).

Each damaged folder must have one of two outcomes, never a third: ``load_captions`` refuses it
in one line naming the file (a ``UserError``, which the command line prints and exits 2 on),
or it returns images that all decode as training decodes them, inside ``Images/``, with
everything it left out counted in one ``SkippedDataWarning``. The images a fuzzer writes are
small, so memory stays that of a small folder; the bounds for large input (pixels, caption
words, vocabulary) have their own tests in test_bad_input.py.
"""

import io
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmkeras.data.folder import SkippedDataWarning, load_captions
from mmkeras.data.images import load_image
from mmkeras.errors import UserError

# Seeds 69 and 93 found PNGs cut inside their last chunk, which PIL decoded and TensorFlow
# refused; kept as the fuzzer's corpus. FUZZ_FOLDERS=N runs N more seeds (300 pass in a minute).
SEEDS = sorted({*range(int(os.environ.get("FUZZ_FOLDERS", 24))), 69, 93})
# Names a hostile split list may hold: outside the folder, absolute, too long for any file
# system, empty, the folder itself, control characters and other scripts.
HOSTILE_NAMES = ["../captions.txt", "../../../../etc/passwd", "/etc/passwd", "Images/../../x.png",
                 "a" * 300 + ".png", "b" * 5000, ".", "..", "x\x00.png", "\x1b[31m.png",
                 "名前.png", " ", "#1", "\t", "CON", "a/b/c.png"]


def _random_bytes(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _damaged_image(rng: random.Random, image: bytes) -> bytes:
    """One of the ways an image file goes wrong: noise, cut, flipped bytes, added bytes, or
    another format damaged in turn."""
    how = rng.randrange(6)
    if how == 0:
        return _random_bytes(rng, rng.randrange(0, 3000))
    if how == 1:
        return image[:rng.randrange(len(image))]
    if how == 2:
        return image + _random_bytes(rng, rng.randrange(1, 200))
    if how == 3:
        with Image.open(io.BytesIO(image)) as decoded:
            converted = io.BytesIO()
            decoded.convert("RGB").save(converted, format=rng.choice(["JPEG", "BMP", "GIF"]))
        image = converted.getvalue()
    damaged = bytearray(image)
    for _ in range(rng.randrange(1, 12)):
        damaged[rng.randrange(len(damaged))] = rng.getrandbits(8)
    return bytes(damaged)


def _damaged_text(rng: random.Random, text: str) -> bytes:
    """Caption or split text with lines cut, swapped for noise or for hostile names, and
    characters that split lines or fields (tab, NUL, line separators) put in at random."""
    if rng.random() < 0.1:
        return _random_bytes(rng, rng.randrange(0, 2000))  # rarely valid UTF-8: refused
    lines = text.splitlines()
    for _ in range(rng.randrange(1, 8)):
        index = rng.randrange(len(lines))
        how = rng.randrange(4)
        if how == 0:
            lines[index] = rng.choice(HOSTILE_NAMES) + ("\t" + lines[index].partition("\t")[2]
                                                         if rng.random() < 0.5 else "")
        elif how == 1:
            lines[index] = lines[index][:rng.randrange(len(lines[index]) + 1)]
        elif how == 2:
            cut = rng.randrange(len(lines[index]) + 1)
            lines[index] = (lines[index][:cut] + rng.choice(["\t", "\x00", "\u2028", "\r", "#", "\ufeff", "\x85"])
                            + lines[index][cut:])
        else:
            lines.insert(index, lines[rng.randrange(len(lines))])  # a duplicate
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


def _damage(folder: Path, rng: random.Random) -> None:
    images = sorted((folder / "Images").iterdir())
    for path in rng.sample(images, rng.randrange(1, 12)):
        path.write_bytes(_damaged_image(rng, path.read_bytes()))
    for name in rng.sample(["captions.txt", "train.txt", "val.txt", "test.txt"], rng.randrange(0, 3)):
        (folder / name).write_bytes(_damaged_text(rng, (folder / name).read_text()))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_damaged_folder_is_refused_in_one_line_or_loads_images_that_all_decode(seed, small_shapes, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(small_shapes, folder, ignore=shutil.ignore_patterns("features"))
    _damage(folder, random.Random(seed))
    listed = {split: {line.strip() for line in (folder / f"{split}.txt").read_bytes()
                      .decode("utf-8", errors="replace").splitlines() if line.strip()}
              for split in ("train", "val", "test")}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            splits = load_captions(folder)
        except UserError as error:  # the one other outcome: one line naming the file
            message = str(error)
            assert "\n" not in message and str(folder) in message, message
            return
    skipped = [w for w in caught if issubclass(w.category, SkippedDataWarning)]
    image_root = (folder / "Images").resolve()
    for name, split in splits.items():
        if len(split) < len(listed[name]):
            assert skipped, f"{name}: {len(listed[name]) - len(split)} names left out, none reported"
        for path, captions in zip(split.image_paths, split.captions):
            assert Path(path).is_relative_to(image_root)
            assert captions and all(c.strip() for c in captions)
            pixels = load_image(path, 64).numpy()  # as training reads it: no crash mid-epoch
            assert pixels.shape == (64, 64, 3) and np.isfinite(pixels).all()


def test_each_hostile_name_is_refused_or_reported_in_a_short_escaped_line(small_shapes, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(small_shapes, folder, ignore=shutil.ignore_patterns("features"))
    with open(folder / "captions.txt", "a", encoding="utf-8") as captions:
        captions.writelines(f"{name}#0\ta red circle\n" for name in HOSTILE_NAMES if name.strip())
    with open(folder / "train.txt", "a", encoding="utf-8") as train:
        train.writelines(f"{name}\n" for name in HOSTILE_NAMES)
    with pytest.warns(SkippedDataWarning) as caught:
        splits = load_captions(folder)
    assert len(splits["train"]) == 40, "every real image kept, no hostile name"
    (message,) = [str(w.message) for w in caught]
    assert "names outside Images/ (refused) (../captions.txt, ../../../../etc/passwd, /etc/passwd" in message
    assert "'x\\x00.png'" in message and "'\\x1b[31m.png'" in message, "control characters escaped"
    assert "\x1b" not in message and "b" * 81 not in message, "no escape sequence, no 5,000 characters"
    assert "cannot be read (File name too long)" in message
