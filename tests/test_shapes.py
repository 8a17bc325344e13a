import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmkeras.atomic import write_text
from mmkeras.data import shapes
from mmkeras.data.folder import load_captions
from mmkeras.data.shapes import ShapesConfig
from mmkeras.errors import UserError

VOCABULARY = set("a is there small large red green blue yellow purple circle square triangle "
                 "to the left right of above below".split())


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_same_seed_gives_identical_files(tmp_path):
    config = ShapesConfig(num_train=6, num_val=2, num_test=2)
    first = shapes.generate(tmp_path / "a", config, progress=False)
    second = shapes.generate(tmp_path / "b", config, progress=False)
    for name in ["captions.txt", "train.txt", "Images/train_00005.png", "Images/test_00001.png"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_other_seed_gives_other_images(tmp_path):
    a = shapes.generate(tmp_path / "a", ShapesConfig(num_train=3, num_val=1, num_test=1), progress=False)
    b = shapes.generate(tmp_path / "b", ShapesConfig(seed=1, num_train=3, num_val=1, num_test=1),
                        progress=False)
    assert (a / "Images/train_00000.png").read_bytes() != (b / "Images/train_00000.png").read_bytes()


def test_test_split_does_not_depend_on_train_size(tmp_path):
    a = shapes.generate(tmp_path / "a", ShapesConfig(num_train=3, num_val=1, num_test=2), progress=False)
    b = shapes.generate(tmp_path / "b", ShapesConfig(num_train=9, num_val=1, num_test=2), progress=False)
    assert (a / "Images/test_00001.png").read_bytes() == (b / "Images/test_00001.png").read_bytes()


def test_layout_and_caption_templates(small_shapes):
    assert len(_lines(small_shapes / "train.txt")) == 40
    assert len(_lines(small_shapes / "test.txt")) == 8
    assert _lines(small_shapes / "val.txt")[0] == "val_00000.png"
    lines = _lines(small_shapes / "captions.txt")
    assert len(lines) == 5 * (40 + 8 + 8)
    by_image = {}
    for line in lines:
        key, caption = line.split("\t")
        name, k = key.split("#")
        assert (small_shapes / "Images" / name).is_file()
        by_image.setdefault(name, []).append((int(k), caption))
        assert set(caption.split()) <= VOCABULARY
        assert caption == caption.strip() and "  " not in caption
    obj = r"(small|large) (red|green|blue|yellow|purple) (circle|square|triangle)"
    rel = r"(to the left of|to the right of|above|below)"
    for _name, captions in by_image.items():
        assert [k for k, _ in captions] == [0, 1, 2, 3, 4]
        first = re.fullmatch(f"a {obj} {rel} a {obj}", captions[0][1])
        assert first, captions[0][1]
        s1, c1, h1, relation, s2, c2, h2 = first.groups()
        assert (c1, h1) != (c2, h2), "the two objects must differ in colour or shape"
        inverse = shapes.INVERSE_RELATION[relation]
        assert captions[1][1] == f"a {s2} {c2} {h2} {inverse} a {s1} {c1} {h1}"
        assert captions[4][1] == f"a {c2} {h2} {inverse} a {c1} {h1}"


@pytest.mark.parametrize("relation", shapes.RELATIONS)
def test_placement_obeys_the_relation(relation):
    rng = np.random.default_rng(3)
    for _ in range(200):
        r1, r2 = rng.integers(5, 13, size=2)
        (x1, y1), (x2, y2) = shapes._place(rng, r1, r2, relation, 64)
        dx, dy = x2 - x1, y2 - y1
        for x, y, r in ((x1, y1, r1), (x2, y2, r2)):
            assert r + 2 <= x <= 63 - r - 2 and r + 2 <= y <= 63 - r - 2
        if relation in ("to the left of", "to the right of"):
            assert abs(dx) >= r1 + r2 + 4 and abs(dy) <= abs(dx) / 4
            assert (dx > 0) == (relation == "to the left of")
        else:
            assert abs(dy) >= r1 + r2 + 4 and abs(dx) <= abs(dy) / 4
            assert (dy > 0) == (relation == "above")


def test_objects_are_drawn_in_their_colours():
    image, captions = shapes.draw_scene(np.random.default_rng(0))
    colour = captions[0].split()[2]
    distances = np.abs(image.reshape(-1, 3).astype(int) - shapes.COLOURS[colour]).max(axis=1)
    assert (distances <= 22).sum() > 50, f"no {colour} pixels found"
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)


def test_a_redrawn_scene_keeps_its_colours_and_relation_in_new_places():
    scene = shapes.Scene(shapes.SceneObject("small", "red", "circle"),
                         shapes.SceneObject("large", "blue", "square"), "above")
    rng = np.random.default_rng(0)
    images = [shapes.redraw_scene(rng, scene, 32) for _ in range(5)]
    for image in images:
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
        rows = {}
        for colour in ("red", "blue"):
            near = np.abs(image.astype(int) - shapes.COLOURS[colour]).max(axis=-1) <= 22
            assert near.sum() > 10, f"no {colour} pixels"
            rows[colour] = np.argwhere(near)[:, 0].mean()
        assert rows["red"] < rows["blue"]  # the red circle is above (rows grow downward)
    assert len({image.tobytes() for image in images}) == 5


def test_cogent_split_holds_pairs_out(tmp_path):
    folder = shapes.generate(tmp_path, ShapesConfig(num_train=60, num_val=10, num_test=30, cogent=True),
                             progress=False)
    pattern = re.compile(r"(red|green|blue|yellow|purple) (circle|square|triangle)")
    for line in _lines(folder / "captions.txt"):
        key, caption = line.split("\t")
        if not key.endswith("#0"):
            continue
        pairs = set(pattern.findall(caption))
        held_out = pairs & shapes.HELD_OUT_PAIRS
        if key.startswith("test_"):
            assert held_out, caption
        else:
            assert not held_out, caption


def test_image_size_scales_the_canvas(tmp_path):
    import cv2
    folder = shapes.generate(tmp_path, ShapesConfig(num_train=1, num_val=1, num_test=1, image_size=96),
                             progress=False)
    assert cv2.imread(str(folder / "Images/train_00000.png")).shape == (96, 96, 3)


def test_ensure_reuses_a_complete_folder(tmp_path):
    config = ShapesConfig(num_train=2, num_val=1, num_test=1)
    shapes.ensure(tmp_path, config, progress=False)
    marker = tmp_path / "Images/train_00000.png"
    marker.write_bytes(b"kept")
    shapes.ensure(tmp_path, config, progress=False)
    assert marker.read_bytes() == b"kept"
    shapes.ensure(tmp_path, ShapesConfig(num_train=3, num_val=1, num_test=1), progress=False)
    assert marker.read_bytes() != b"kept", "another configuration must regenerate"


def test_a_kill_while_drawing_again_never_leaves_old_captions_over_new_images(tmp_path, monkeypatch):
    small = ShapesConfig(num_train=3, num_val=1, num_test=1)
    folder = shapes.generate(tmp_path, small, progress=False)
    old_images = (folder / "Images" / "train_00000.png").read_bytes()

    def killed_writing(path, content):
        if Path(path).name == "captions.txt":
            raise KeyboardInterrupt
        write_text(path, content)

    monkeypatch.setattr(shapes, "write_text", killed_writing)
    with pytest.raises(KeyboardInterrupt):
        shapes.generate(tmp_path, ShapesConfig(seed=1, num_train=3, num_val=1, num_test=1), progress=False)
    assert (folder / "Images" / "train_00000.png").read_bytes() != old_images, "the new images are in"
    assert not (folder / "captions.txt").exists(), "the old captions are gone with the old images"
    assert not shapes.is_complete(folder, small)
    with pytest.raises(UserError, match="no caption file found"):
        load_captions(folder)


def test_a_kill_while_drawing_keeps_the_old_images_whole(tmp_path, monkeypatch):
    small = ShapesConfig(num_train=3, num_val=1, num_test=1)
    folder = shapes.generate(tmp_path, small, progress=False)
    before = {p.name: p.read_bytes() for p in (folder / "Images").iterdir()}
    calls, real_imwrite = [], cv2.imwrite

    def killed_on_the_third_image(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_imwrite(path, image)

    monkeypatch.setattr(shapes.cv2, "imwrite", killed_on_the_third_image)
    with pytest.raises(KeyboardInterrupt):
        shapes.generate(tmp_path, ShapesConfig(seed=1, num_train=3, num_val=1, num_test=1), progress=False)
    assert {p.name: p.read_bytes() for p in (folder / "Images").iterdir()} == before
    assert shapes.is_complete(folder, small), "the old folder is still whole and usable"


def test_an_image_that_cannot_be_written_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shapes.cv2, "imwrite", lambda path, image: False)
    with pytest.raises(UserError, match="train_00000.png: could not be written"):
        shapes.generate(tmp_path, ShapesConfig(num_train=1, num_val=1, num_test=1), progress=False)
