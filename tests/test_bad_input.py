"""What real datasets contain, fed to the loader, the pipeline and the command line.

One messy copy of a small shapes folder holds every case at once, as a scraped dataset
would; each test states what happens to its case: skipped with a count, converted, or a
clear error naming the file. Nothing else in the folder is lost along the way.
"""

import json
import shutil
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_cli import run_cli

from mmkeras.data.folder import SkippedDataWarning, load_captions
from mmkeras.data.images import decode_image
from mmkeras.data.pairs import caption_dataset
from mmkeras.data.text import build_vectorizer, standardize_list
from mmkeras.errors import UserError

LONG_CAPTION = " ".join(("a red circle left of a blue square".split() * 63)[:500])
CHINESE = "一个红色的圆在蓝色方块的左边。"


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path.name


def _messy_images(images):
    """{file name: caption} for one image of each awkward kind, written into ``images``."""
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    jpeg = images / "whole.jpg"
    red.save(jpeg, quality=90)
    (images / "truncated.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (images / "empty.jpg").write_bytes(b"")
    deep = np.full((64, 64), 40000, np.uint16)
    deep[:, :32] = 65535
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((0, 200, 0), (0, 0, 200))]
    frames[0].save(images / "animated.gif", save_all=True, append_images=frames[1:])
    return {
        "truncated.jpg": "a truncated photo",
        "empty.jpg": "a file of zero bytes",
        _save(red, images / "png_named.jpg", format="PNG"): "a png named jpg",
        _save(red.convert("L"), images / "grey.png"): "a grey image",
        _save(red.convert("RGBA"), images / "rgba.png"): "an image with alpha",
        _save(Image.fromarray(deep), images / "deep.png"): "a sixteen bit image",
        "animated.gif": "a green frame then a blue one",
        _save(Image.new("RGB", (8000, 8000), (10, 10, 200)), images / "huge.png"): "a huge blue image",
    }


@pytest.fixture(scope="module")
def messy(small_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("messy") / "data"
    shutil.copytree(small_shapes, root)
    images = _messy_images(root / "Images")
    lines = (root / "captions.txt").read_text(encoding="utf-8").splitlines()
    first_image = lines[0].split("#")[0]
    lines += [f"{name}#0\t{caption}" for name, caption in images.items()]
    lines += [
        "a line with no tab at all",
        lines[0],  # the first caption again, word for word
        f"{first_image}#7\t{LONG_CAPTION}",
        f"{first_image}#8\t{CHINESE}",
    ]
    # Windows line endings and a byte-order mark, as Notepad writes them.
    (root / "captions.txt").write_bytes("\ufeff".encode() + "\r\n".join(lines).encode() + b"\r\n")
    train_names = (root / "train.txt").read_text().split()
    (root / "train.txt").write_text("\r\n".join(train_names + list(images)) + "\r\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = load_captions(root)
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedDataWarning)]
    assert len(skipped) == 1, "everything left out is reported in one warning"
    return root, splits, skipped[0], first_image


def _train_names(splits):
    return {path.rsplit("/", 1)[-1]: captions
            for path, captions in zip(splits["train"].image_paths, splits["train"].captions)}


def test_nothing_usable_is_lost(messy, small_shapes):
    _, splits, _, _ = messy
    clean = load_captions(small_shapes)
    assert len(splits["train"]) == len(clean["train"]) + 6  # 8 awkward images, 2 unusable
    assert len(splits["val"]) == len(clean["val"]) and len(splits["test"]) == len(clean["test"])


def test_truncated_and_zero_byte_images_are_skipped_with_a_count(messy):
    _, splits, skipped, _ = messy
    assert "2 images that cannot be used" in skipped
    assert "truncated.jpg: does not decode" in skipped and "empty.jpg: does not decode" in skipped
    assert not {"truncated.jpg", "empty.jpg"} & set(_train_names(splits))


@pytest.mark.parametrize("name", ["png_named.jpg", "grey.png", "rgba.png", "deep.png",
                                  "animated.gif", "huge.png"])
def test_other_formats_and_sizes_are_converted_to_rgb_of_the_model_size(messy, name):
    root, splits, _, _ = messy
    assert name in _train_names(splits)
    image = decode_image(tf.io.read_file(str(root / "Images" / name)), 64).numpy()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_conversions_keep_the_colours(messy):
    root = messy[0]

    def pixel(name, x=48):
        return decode_image(tf.io.read_file(str(root / "Images" / name)), 64).numpy()[32, x]

    assert pixel("png_named.jpg").tolist() == [220, 30, 30]
    assert len(set(pixel("grey.png").tolist())) == 1, "grey becomes three equal channels"
    assert pixel("rgba.png").tolist() == [220, 30, 30], "alpha dropped"
    assert pixel("deep.png", x=8).tolist() == [255] * 3
    assert pixel("deep.png", x=56).tolist() == [156] * 3, "16 bits scaled, not cut: 40000/257"
    assert pixel("animated.gif").tolist() == [0, 200, 0], "the first frame"
    assert pixel("huge.png").tolist() == [10, 10, 200]


def test_windows_line_endings_and_byte_order_mark_are_read_as_text(messy):
    _, splits, _, first_image = messy
    captions = _train_names(splits)
    assert first_image in captions, "the BOM is not part of the first image's name"
    assert all("\r" not in c for refs in captions.values() for c in refs)
    assert captions["grey.png"] == ["a grey image"]


def test_line_without_tab_and_duplicate_line_are_skipped_with_a_count(messy):
    _, splits, skipped, first_image = messy
    assert "1 lines without a tab (captions.txt:" in skipped
    assert "1 duplicate captions (captions.txt:" in skipped
    references = _train_names(splits)[first_image]
    assert len(references) == len(set(references)) == 7  # its 5, the long one and the Chinese


def test_a_500_word_caption_is_kept_and_cut_to_the_model_length(messy):
    _, splits, _, first_image = messy
    assert LONG_CAPTION in _train_names(splits)[first_image]
    assert len(LONG_CAPTION.split()) == 500
    vectorizer = build_vectorizer([LONG_CAPTION, "a red circle"], max_caption_length=12)
    batch = next(iter(caption_dataset(splits["train"], vectorizer, 64, batch_size=4)))
    assert batch[0]["caption_in"].shape == (4, 13) and batch[1].shape == (4, 13)


def test_chinese_captions_become_one_word_per_character(messy):
    _, splits, _, first_image = messy
    assert CHINESE in _train_names(splits)[first_image]
    assert standardize_list([CHINESE]) == ["一 个 红 色 的 圆 在 蓝 色 方 块 的 左 边"]
    vocabulary = build_vectorizer([CHINESE], max_caption_length=16).get_vocabulary()
    assert {"红", "圆", "蓝"} <= set(vocabulary)


def test_the_messy_folder_trains_from_the_command_line(messy, tmp_path):
    root = messy[0]
    completed = run_cli("train", "--data", root, "--epochs", 1, "--batch-size", 16,
                        "--decoder", "init", "--out", tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "warning:" in completed.stderr and "skipped 1 lines without a tab" in completed.stderr
    assert "2 images that cannot be used" in completed.stderr
    assert (tmp_path / "model.keras").is_file()
    # The 500-word caption: the model reads and writes 40 words at most.
    assert json.loads((tmp_path / "config.json").read_text())["max_caption_length"] == 40


def test_caption_file_that_is_not_utf8_is_an_error_from_the_command_line(small_shapes, tmp_path):
    root = tmp_path / "latin1"
    shutil.copytree(small_shapes, root)
    text = (root / "captions.txt").read_text() + "test_00000.png#5\tun cercle à gauche\n"
    (root / "captions.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(UserError, match="captions.txt: not UTF-8 text"):
        load_captions(root)
    completed = run_cli("train", "--data", root, "--epochs", 1, "--out", tmp_path / "run")
    assert completed.returncode == 2
    assert "captions.txt: not UTF-8 text" in completed.stderr and "re-save it as UTF-8" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def test_caption_command_names_the_unusable_image(messy, tmp_path):
    root = messy[0]
    model = tmp_path / "model.keras"  # never reached: the images are checked first
    for name in ("empty.jpg", "truncated.jpg"):
        completed = run_cli("caption", "--model", model, root / "Images" / name)
        assert completed.returncode == 2
        assert f"{name}: does not decode" in completed.stderr
        assert "expected an image file (BMP, GIF, JPEG, PNG)" in completed.stderr


def _copy_of(small_shapes, tmp_path, name="copy"):
    root = tmp_path / name
    shutil.copytree(small_shapes, root)
    return root


def test_a_split_name_with_a_nul_byte_is_skipped_with_a_count(small_shapes, tmp_path):
    root = _copy_of(small_shapes, tmp_path)
    with open(root / "test.txt", "a") as handle:
        handle.write("test_00000.png\0.png\n")
    with pytest.warns(SkippedDataWarning, match="1 names with a NUL byte"):
        splits = load_captions(root, check_images=False)
    assert len(splits["test"]) == 8


def test_a_caption_file_that_cannot_be_read_is_one_line_naming_it(small_shapes, tmp_path):
    root = _copy_of(small_shapes, tmp_path)
    (root / "captions.txt").unlink()
    (root / "captions.txt").mkdir()
    with pytest.raises(UserError, match="captions.txt: cannot be read .* expected a UTF-8 text file"):
        load_captions(root)


def test_a_karpathy_file_nested_too_deep_is_one_line_naming_it(small_shapes, tmp_path):
    root = _copy_of(small_shapes, tmp_path)
    (root / "dataset_flickr8k.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(UserError, match="dataset_flickr8k.json: not Karpathy's split file"):
        load_captions(root)


def test_an_image_over_the_pixel_limit_is_skipped_before_it_is_decoded(small_shapes, monkeypatch):
    from mmkeras.data import folder
    monkeypatch.setattr(folder, "MAX_PIXELS", 64 * 64 - 1)  # the shapes are 64 x 64
    path = next((small_shapes / "Images").glob("test_*.png"))
    assert folder.image_problem(path) == "too large (64 x 64 pixels; at most 4,095)"
    monkeypatch.undo()
    assert folder.MAX_PIXELS <= Image.MAX_IMAGE_PIXELS, "PIL alone lets twice as many through"


def test_a_png_cut_inside_its_last_chunk_is_skipped(small_shapes, tmp_path):
    """PIL decodes it (its pixels are all there); TensorFlow refuses it: found by the fuzzer."""
    from mmkeras.data.folder import image_problem
    png = next((small_shapes / "Images").glob("test_*.png")).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[:png.rindex(b"IEND") - 4 - 6])  # before IEND's length, IDAT's CRC and 2 bytes
    with Image.open(cut) as image:
        image.load()
    assert image_problem(cut) == "does not decode (damaged or cut short)"


def test_a_small_image_over_a_large_file_is_skipped_before_it_is_read(small_shapes, tmp_path, monkeypatch):
    from mmkeras.data import folder
    monkeypatch.setattr(folder, "MAX_METADATA_BYTES", 1000)  # as 16 MB of padding would, in 1 kB
    padded = tmp_path / "padded.png"
    padded.write_bytes(next((small_shapes / "Images").glob("test_*.png")).read_bytes() + bytes(64 * 64 * 8 + 1000))
    monkeypatch.setattr(tf.io, "decode_image", lambda *a, **k: pytest.fail("read before its size was checked"))
    assert folder.image_problem(padded).endswith("bytes for 64 x 64 pixels")


def test_bmps_tensorflow_cannot_read_are_skipped_with_a_reason(small_shapes, tmp_path):
    from mmkeras.data.folder import image_problem
    rng = np.random.default_rng(0)
    colours = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    _save(colours.convert("1"), tmp_path / "one_bit.bmp")
    _save(colours.convert("P", palette=Image.ADAPTIVE, colors=16), tmp_path / "palette.bmp")
    _save(colours, tmp_path / "trailing.bmp")
    with open(tmp_path / "trailing.bmp", "ab") as handle:
        handle.write(b"\0\0")
    _save(colours, tmp_path / "fine.bmp")
    _save(colours.convert("L"), tmp_path / "grey.bmp")
    assert image_problem(tmp_path / "one_bit.bmp").startswith("a 1-bit BMP")
    assert image_problem(tmp_path / "palette.bmp").startswith("a 8-bit palette BMP")
    assert "whose header says" in image_problem(tmp_path / "trailing.bmp")
    for readable in ("fine.bmp", "grey.bmp"):  # and TensorFlow reads them with their colours
        assert image_problem(tmp_path / readable) is None
        pixels = decode_image(tf.io.read_file(str(tmp_path / readable)), 64).numpy()
        np.testing.assert_array_equal(pixels, np.asarray(Image.open(tmp_path / readable).convert("RGB")))
    # Why the others are skipped: TensorFlow fails on two and reads the palette as grey.
    for unreadable in ("one_bit.bmp", "trailing.bmp"):
        with pytest.raises(tf.errors.InvalidArgumentError):
            decode_image(tf.io.read_file(str(tmp_path / unreadable)), 64)
    palette = decode_image(tf.io.read_file(str(tmp_path / "palette.bmp")), 64).numpy()
    assert not np.array_equal(palette, np.asarray(Image.open(tmp_path / "palette.bmp").convert("RGB")))


def test_match_on_a_folder_with_a_free_form_caption_is_one_line(small_shapes, tmp_path):
    root = _copy_of(small_shapes, tmp_path)
    with open(root / "captions.txt", "a") as handle:
        handle.write("train_00003.png#5\ttwo shapes on a black background\n")
    completed = run_cli("match", "--data", root, "--epochs", 1, "--out", tmp_path / "run")
    assert completed.returncode == 2
    assert "train_00003.png: its caption 'two shapes on a black background' has none of Shapes " \
           "Captions' five forms" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "run").exists()
