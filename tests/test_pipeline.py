import numpy as np
import pytest
import tensorflow as tf

from mmkeras.data import images, pairs, text
from mmkeras.data.folder import load_captions
from mmkeras.nn import losses


@pytest.fixture(scope="module")
def splits(small_shapes):
    return load_captions(small_shapes)


@pytest.fixture(scope="module")
def vectorizer(splits):
    captions = [c for refs in splits["train"].captions for c in refs]
    return text.build_vectorizer(captions, max_caption_length=13)


def test_batches_are_teacher_forcing_pairs(splits, vectorizer):
    data = pairs.caption_dataset(splits["train"], vectorizer, image_size=64, batch_size=16, seed=0)
    inputs, caption_out = next(iter(data))
    assert inputs["image"].shape == (16, 64, 64, 3) and inputs["image"].dtype == tf.uint8
    assert inputs["caption_in"].shape == (16, 14) and caption_out.shape == (16, 14)
    start = text.vectorizer_vocabulary(vectorizer).index(text.START)
    assert np.all(inputs["caption_in"].numpy()[:, 0] == start)
    # The target is the input shifted left by one word.
    np.testing.assert_array_equal(inputs["caption_in"].numpy()[:, 1:], caption_out.numpy()[:, :-1])


def test_one_caption_per_image_per_epoch_or_all_pairs(splits, vectorizer):
    one_each = pairs.caption_dataset(splits["train"], vectorizer, 64, batch_size=8, seed=0)
    every_pair = pairs.caption_dataset(splits["train"], vectorizer, 64, batch_size=8,
                                       all_pairs=True, seed=0)
    assert sum(int(y.shape[0]) for _, y in one_each) == 40
    targets = np.concatenate([y.numpy() for _, y in every_pair])
    assert len(targets) == 200
    assert len({tuple(row) for row in targets}) > 150, "the five captions of an image all appear"


def test_unshuffled_batches_keep_file_order(splits, vectorizer):
    data = pairs.caption_dataset(splits["val"], vectorizer, 64, batch_size=8, shuffle=False)
    batch_images = next(iter(data))[0]["image"].numpy()
    first = images.load_image(tf.constant(splits["val"].image_paths[0]), 64).numpy()
    np.testing.assert_array_equal(batch_images[0], first)


def test_decode_image_gives_rgb_uint8_of_the_asked_size(small_shapes):
    import cv2
    path = str(small_shapes / "Images/train_00000.png")
    image = images.load_image(tf.constant(path), 32).numpy()
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    full = images.load_image(tf.constant(path), 64).numpy()
    # OpenCV reads BGR; the pipeline gives RGB.
    np.testing.assert_array_equal(full, cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB))


def test_padding_is_masked_out_of_loss_and_accuracy():
    loss = losses.masked_loss()
    accuracy = losses.MaskedAccuracy()
    y_true = np.array([[4, 5, 0, 0]])
    logits = np.zeros((1, 4, 6), np.float32)
    logits[0, 0, 4] = logits[0, 1, 5] = 10.0  # both real words right
    changed = logits.copy()
    changed[0, 2:, 1] = 50.0  # wildly wrong on the padding only
    assert float(loss(y_true, logits)) == pytest.approx(float(loss(y_true, changed)))
    accuracy.update_state(y_true, changed)
    assert float(accuracy.result()) == 1.0
    logits[0, 1, 5] = -10.0  # now one real word is wrong
    accuracy.reset_state()
    accuracy.update_state(y_true, logits)
    assert float(accuracy.result()) == 0.5
