"""MS-COCO through tensorflow-datasets, offline: ``tfds.testing.mock_data`` stands in for the records."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from mmkeras.caption.train import train
from mmkeras.config import TrainConfig
from mmkeras.data.catalog import load_dataset
from mmkeras.data.coco import load_coco
from mmkeras.data.images import evaluation_images
from mmkeras.data.pairs import caption_dataset
from mmkeras.data.text import build_vectorizer


def _png(colour):
    return tf.io.encode_png(np.full((48, 40, 3), colour, np.uint8)).numpy()


# Karpathy's COCO splits in miniature: what tfds' records hold, per split.
FAKE_COCO = {
    split: [{"image": _png((40 * i, 200 - 30 * i, 90)), "image/id": 1000 * n + i,
             "captions": {"text": [f"{split} photo {i} caption {k}" for k in range(5 + i % 2)],
                          "id": list(range(5 + i % 2))}}
            for i in range(count)]
    for n, (split, count) in enumerate({"train": 6, "restval": 3, "val": 2, "test": 4}.items())
}


def _fake_records(self, split, decoders=None, read_config=None, shuffle_files=False):
    """Stands in for tfds' reading of the records; ``split`` may be "train+restval"."""
    assert decoders is not None and "image" in decoders, "images are decoded by mmkeras"
    examples = [example for name in str(split).split("+") for example in FAKE_COCO[name]]
    signature = {"image": tf.TensorSpec([], tf.string), "image/id": tf.TensorSpec([], tf.int64),
                 "captions": {"text": tf.TensorSpec([None], tf.string),
                              "id": tf.TensorSpec([None], tf.int64)}}
    return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)


@pytest.fixture
def mock_coco():
    with tfds.testing.mock_data(as_dataset_fn=_fake_records, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_coco_splits_stream_images_from_the_records(mock_coco):
    _, splits = load_dataset("coco", splits=("train", "test"))
    train_split, test = splits["train"], splits["test"]
    assert len(train_split) == 9, "train and restval"
    assert test.image_paths == [f"coco:{3000 + i}" for i in range(4)]
    assert test.captions[1] == [f"test photo 1 caption {k}" for k in range(6)]
    images = np.concatenate([batch.numpy() for batch in evaluation_images(test, 32, batch_size=3)])
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    expected = [[40 * i, 200 - 30 * i, 90] for i in range(4)]
    assert images[:, 16, 16].tolist() == expected, "each image in the order of its captions"


def test_coco_batches_for_training(mock_coco):
    train_split = load_coco(("train",), progress=False)["train"]
    vectorizer = build_vectorizer([c for refs in train_split.captions for c in refs], 8)
    (inputs, targets) = next(iter(caption_dataset(train_split, vectorizer, 32, batch_size=4, seed=0)))
    assert inputs["image"].shape == (4, 32, 32, 3) and inputs["caption_in"].shape == (4, 9)
    assert targets.shape == (4, 9)


def test_train_on_coco_end_to_end(mock_coco, tmp_path):
    config = TrainConfig(data="coco", decoder="init", epochs=1, batch_size=4, image_size=32,
                         max_caption_length=8, out=str(tmp_path))
    result = train(config, verbose=0, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == 4
    assert result["run"]["config"]["data"] == "coco"


def test_smoke_is_refused_for_coco(tmp_path):
    from mmkeras.errors import UserError
    with pytest.raises(UserError, match="--smoke is a check on the small shapes data"):
        train(TrainConfig(data="coco", smoke=True, out=str(tmp_path)), verbose=0, progress=False)
