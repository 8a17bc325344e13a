import shutil

import pytest

from mmkeras.data.folder import SkippedDataWarning, load_captions
from mmkeras.errors import UserError


@pytest.fixture
def shapes_copy(small_shapes, tmp_path):
    """A private copy of the small dataset that a test may damage."""
    return shutil.copytree(small_shapes, tmp_path / "data")


def test_loads_every_split(small_shapes):
    splits = load_captions(small_shapes)
    assert {name: len(split) for name, split in splits.items()} == {"train": 40, "val": 8, "test": 8}
    train = splits["train"]
    assert train.image_paths[0].endswith("train_00000.png")
    assert all(len(refs) == 5 for refs in train.captions)
    assert train.num_captions == 200


def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match="not found.*mmkeras data shapes"):
        load_captions(tmp_path / "nowhere")


def test_empty_folder_says_what_was_expected(tmp_path):
    with pytest.raises(UserError, match="empty.*captions.txt"):
        load_captions(tmp_path)


def test_folder_without_captions_names_the_file_it_wanted(shapes_copy):
    (shapes_copy / "captions.txt").unlink()
    with pytest.raises(UserError, match="no caption file.*Flickr8k.token.txt"):
        load_captions(shapes_copy)


def test_original_flickr8k_names_are_read(shapes_copy):
    (shapes_copy / "Images").rename(shapes_copy / "Flicker8k_Dataset")
    (shapes_copy / "captions.txt").rename(shapes_copy / "Flickr8k.token.txt")
    for ours, theirs in [("train", "train"), ("val", "dev"), ("test", "test")]:
        (shapes_copy / f"{ours}.txt").rename(shapes_copy / f"Flickr_8k.{theirs}Images.txt")
    splits = load_captions(shapes_copy)
    assert len(splits["val"]) == 8


def test_caption_naming_a_missing_image_is_skipped_and_reported(shapes_copy):
    (shapes_copy / "Images/train_00003.png").unlink()
    with pytest.warns(SkippedDataWarning, match=r"1 captioned images that are missing \(train_00003.png\)"):
        splits = load_captions(shapes_copy)
    assert len(splits["train"]) == 39
    assert not any(p.endswith("train_00003.png") for p in splits["train"].image_paths)


def test_image_that_will_not_decode_is_skipped(shapes_copy):
    (shapes_copy / "Images/train_00001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (shapes_copy / "Images/train_00002.png").write_bytes(b"")
    with pytest.warns(SkippedDataWarning, match="2 images that cannot be used") as record:
        splits = load_captions(shapes_copy)
    assert len(record) == 1, "one warning, not one per file"
    assert "train_00001.png" in str(record[0].message)
    assert len(splits["train"]) == 38


def test_truncated_image_is_skipped(shapes_copy):
    path = shapes_copy / "Images/val_00000.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.warns(SkippedDataWarning, match="val_00000.png"):
        splits = load_captions(shapes_copy)
    assert len(splits["val"]) == 7


def test_empty_caption_and_line_without_tab_are_skipped(shapes_copy):
    captions = shapes_copy / "captions.txt"
    lines = captions.read_text().splitlines()
    lines[0] = "train_00000.png#0\t   "
    lines[1] = "train_00000.png#1 no tab here"
    captions.write_text("\n".join(lines) + "\n")
    with pytest.warns(SkippedDataWarning, match=r"1 empty captions \(captions.txt:1\); "
                                                r"1 lines without a tab \(captions.txt:2\)"):
        splits = load_captions(shapes_copy)
    assert len(splits["train"].captions[0]) == 3, "the image keeps its other captions"


def test_name_outside_the_image_folder_is_refused(shapes_copy):
    with open(shapes_copy / "captions.txt", "a") as handle:
        handle.write("../../etc/passwd#0\ta caption\n")
    with open(shapes_copy / "test.txt", "a") as handle:
        handle.write("../../etc/passwd\n")
    with pytest.warns(SkippedDataWarning, match=r"outside Images/ \(refused\) \(../../etc/passwd\)"):
        splits = load_captions(shapes_copy)
    assert len(splits["test"]) == 8


def test_split_with_nothing_usable_is_an_error(shapes_copy):
    for path in (shapes_copy / "Images").glob("val_*.png"):
        path.unlink()
    with pytest.warns(SkippedDataWarning), pytest.raises(UserError, match="val.txt: no usable images"):
        load_captions(shapes_copy)


def test_caption_file_that_is_not_utf8_is_an_error(shapes_copy):
    (shapes_copy / "captions.txt").write_bytes(b"train_00000.png#0\ta caf\xe9\n")
    with pytest.raises(UserError, match="captions.txt: not UTF-8"):
        load_captions(shapes_copy)
