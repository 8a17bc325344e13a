"""Recall at k and its chance level, the contrastive loss, and a retrieval run."""

import json

import keras
import numpy as np
import pytest

from mmkeras.config import RetrievalConfig
from mmkeras.errors import UserError
from mmkeras.nn import layers, losses
from mmkeras.tasks import retrieval


def test_recall_of_a_perfect_and_of_a_known_ranking():
    caption_image = np.repeat(np.arange(4), 2)  # 4 images, 2 captions each
    perfect = np.eye(4)[caption_image]
    recalls = retrieval.recall_at_k(perfect, caption_image, ks=(1, 2))
    assert recalls == {"text_to_image": {"r1": 1.0, "r2": 1.0}, "image_to_text": {"r1": 1.0, "r2": 1.0}}
    # Every caption prefers the next image; its own comes second.
    shifted = np.eye(4)[(caption_image + 1) % 4] + 0.5 * np.eye(4)[caption_image]
    recalls = retrieval.recall_at_k(shifted, caption_image, ks=(1, 2))
    assert recalls["text_to_image"] == {"r1": 0.0, "r2": 1.0}
    # Each image's own captions score 0.5 for it, image i-1's captions 1.0: ranks 3 and 4.
    assert recalls["image_to_text"] == {"r1": 0.0, "r2": 0.0}


def test_ties_count_against_the_model():
    caption_image = np.arange(3)
    recalls = retrieval.recall_at_k(np.zeros((3, 3)), caption_image, ks=(1, 3))
    assert recalls["text_to_image"] == {"r1": 0.0, "r3": 1.0}


def test_chance_recall_is_what_random_rankings_score():
    rng = np.random.default_rng(0)
    num_images, per_image = 50, 5
    caption_image = np.repeat(np.arange(num_images), per_image)
    runs = [retrieval.recall_at_k(rng.random((num_images * per_image, num_images)), caption_image)
            for _ in range(200)]
    chance = retrieval.chance_recall(num_images, per_image)
    for direction in ("text_to_image", "image_to_text"):
        for key, expected in chance[direction].items():
            measured = np.mean([run[direction][key] for run in runs])
            assert abs(measured - expected) < 0.02, (direction, key, measured, expected)


def test_symmetric_contrastive_loss_is_the_mean_of_both_cross_entropies():
    logits = np.array([[3.0, 1.0, 0.0], [0.5, 2.0, 0.1], [1.0, 1.0, 1.0]], dtype="float32")
    labels = np.arange(3)

    def cross_entropy(rows):
        rows = rows - rows.max(axis=1, keepdims=True)
        log_softmax = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        return -log_softmax[labels, labels].mean()

    expected = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    loss = losses.SymmetricContrastiveLoss()(labels, logits)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_false_captions_compete_for_their_image_but_pick_no_image():
    """Logits (images, captions + false twins): the twins join the image-to-text softmax
    only; a loss that let them pick an image, or ignored them, would differ."""
    logits = np.array([[3.0, 1.0, 2.5, 0.0], [0.5, 2.0, 0.0, 4.0]], dtype="float32")
    labels = np.arange(2)

    def cross_entropy(rows):
        rows = rows - rows.max(axis=1, keepdims=True)
        log_softmax = rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))
        return -log_softmax[labels, labels].mean()

    expected = (cross_entropy(logits) + cross_entropy(logits[:, :2].T)) / 2
    loss = losses.SymmetricContrastiveLoss()(labels, logits)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_false_captions_are_false_and_come_beside_their_caption(small_shapes):
    from mmkeras.data.folder import load_captions
    from mmkeras.data.shapes import describes, scenes_of
    from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary
    split = load_captions(small_shapes)["train"]
    false_captions = retrieval.false_captions_of(split, seed=0)
    scenes = scenes_of(split)
    for scene, references, twins in zip(scenes, split.captions, false_captions):
        assert len(twins) == len(references)
        assert not any(describes(twin, scene) for twin in twins)
    vectorizer = build_vectorizer([c for refs in split.captions for c in refs], 14)
    vocabulary = np.array(vectorizer_vocabulary(vectorizer))
    inputs, labels = next(iter(retrieval.retrieval_dataset(split, vectorizer, 64, 4, shuffle=False,
                                                           false_captions=false_captions)))
    assert labels.numpy().tolist() == [0, 1, 2, 3]

    def words(ids):
        return " ".join(w for w in vocabulary[ids] if w not in ("", "[start]", "[end]"))

    for image in range(4):
        caption = words(inputs["text"].numpy()[image])
        twin = words(inputs["false_text"].numpy()[image])
        index = split.captions[image].index(caption)
        assert twin == false_captions[image][index]


def test_scene_labels_are_those_of_the_caption_picked_and_each_tower_is_asked_them(small_shapes):
    from mmkeras.data.folder import load_captions
    from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary
    from mmkeras.tasks.examples import SCENE_CLASSES, SCENE_SLOTS, said_scene_targets, scene_targets
    split = load_captions(small_shapes)["train"]
    scenes = retrieval.shapes_scenes(split)
    vectorizer = build_vectorizer([c for refs in split.captions for c in refs], 14)
    vocabulary = np.array(vectorizer_vocabulary(vectorizer))
    batch = len(split)
    inputs, labels = next(iter(retrieval.retrieval_dataset(
        split, vectorizer, 64, batch, shuffle=True, seed=3,
        false_captions=retrieval.false_captions_of(split, seed=0), scenes=scenes)))
    assert labels["logits"].numpy().tolist() == list(range(batch))
    unsaid_sizes = set()
    for row in range(batch):
        caption = " ".join(w for w in vocabulary[inputs["text"].numpy()[row]]
                           if w not in ("", "[start]", "[end]"))
        image = next(i for i, refs in enumerate(split.captions) if caption in refs and
                     np.array_equal(labels["image_scene"][row], scene_targets([scenes[i]])[0]))
        said = said_scene_targets([caption], [scenes[image]])[0]
        np.testing.assert_array_equal(labels["text_scene"][row], said)
        unsaid_sizes.add(int((said == -1).sum()))
    assert unsaid_sizes == {0, 1, 2}  # captions that say both sizes, one, none were all picked

    model, _, _ = retrieval.build_dual_encoder(vectorizer_vocabulary(vectorizer), 15)
    trainer = retrieval.DualEncoderTrainer(model, scene_readers=True)
    outputs = trainer(inputs)
    assert outputs["logits"].shape == (batch, 2 * batch)  # own captions, then the false twins
    for tower in ("image", "text"):
        assert outputs[f"{tower}_scene"].shape == (batch, len(SCENE_SLOTS), SCENE_CLASSES)
    assert retrieval.DualEncoderTrainer(model)(inputs).shape == (batch, 2 * batch)


def test_contrastive_logits_scale_cosine_similarities():
    layer = layers.ContrastiveLogits()
    vectors = np.eye(3, dtype="float32")
    logits = np.asarray(layer([vectors, vectors]))
    np.testing.assert_allclose(logits, np.eye(3) / 0.07, rtol=1e-5)


def test_train_retrieval_writes_records_and_its_loss_goes_down(tmp_path):
    result = retrieval.train_retrieval(RetrievalConfig(smoke=True, out=str(tmp_path)),
                                       verbose=0, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_captions"] == 5 * metrics["n_images"]
    for direction in ("text_to_image", "image_to_text"):
        assert set(metrics[direction]) == {"r1", "r5", "r10", "r1_any", "r5_any", "r10_any"}
        assert metrics[direction]["r1"] <= metrics[direction]["r5"] <= metrics[direction]["r10"]
    loss_per_epoch = result["history"]["loss"]
    assert loss_per_epoch[-1] < loss_per_epoch[0]
    assert "text_scene_loss" in result["history"]  # the shapes: both towers read the scene
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["epochs"] == 15 and config["epochs_run"] == 2
    assert "tensorflow" in config["versions"]
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    images = np.zeros((2, 64, 64, 3), dtype="uint8")
    text = np.ones((2, reloaded.input["text"].shape[1]), dtype="int32")
    np.testing.assert_allclose(reloaded.predict({"image": images, "text": text}, verbose=0),
                               result["model"].predict({"image": images, "text": text}, verbose=0),
                               rtol=1e-5)


def test_any_match_recall_counts_every_image_a_caption_is_true_of():
    from mmkeras.data.shapes import Scene, SceneObject, captions_for, describes
    from mmkeras.tasks.retrieval import any_match_recall, describes_matrix
    red_circle_above = Scene(SceneObject("small", "red", "circle"),
                             SceneObject("large", "blue", "square"), "above")
    bigger_twin = Scene(SceneObject("large", "red", "circle"),
                        SceneObject("large", "blue", "square"), "above")
    below = Scene(SceneObject("small", "red", "circle"), SceneObject("large", "blue", "square"), "below")
    scenes = [red_circle_above, bigger_twin, below]
    captions = [captions_for(red_circle_above)[0], captions_for(red_circle_above)[2],
                captions_for(below)[4]]
    truth = describes_matrix(captions, scenes)
    # The sized caption fits its own scene only; the one without sizes fits the twin too;
    # the last (read with its objects swapped) fits the scene drawn the other way up.
    assert truth.tolist() == [[True, False, False], [True, True, False], [False, False, True]]
    for caption, row in zip(captions, truth):
        assert row.tolist() == [describes(caption, scene) for scene in scenes]
    # Each caption's best image is the twin: strict recall would count only the second.
    similarity = np.array([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.0, 0.1, 0.9]])
    recall = any_match_recall(similarity, truth, ks=(1, 2))
    assert recall["text_to_image"] == {"r1_any": 2 / 3, "r2_any": 1.0}
    # Images' best captions: image 0 -> caption 1 (true of it), the twin -> caption 0 (false
    # of it: its circle is large), scene 2 -> caption 2.
    assert recall["image_to_text"] == {"r1_any": 2 / 3, "r2_any": 1.0}


def test_no_false_captions_for_a_folder_with_a_caption_of_another_form(small_shapes):
    import dataclasses

    from mmkeras.data.folder import load_captions
    split = load_captions(small_shapes)["train"]
    assert retrieval.false_captions_of(split, seed=0) is not None
    captions = [list(refs) for refs in split.captions]
    captions[3].append("two shapes on a black background")
    assert retrieval.false_captions_of(dataclasses.replace(split, captions=captions), seed=0) is None


def test_dual_encoder_similarity_is_each_images_cosine_to_its_own_candidates():
    vocabulary = ["", "[UNK]", "[start]", "[end]", "a", "red", "blue", "circle", "square"]
    model, image_tower, text_tower = retrieval.build_dual_encoder(vocabulary, 6)
    similarity = retrieval.dual_encoder_similarity(model)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    candidates = [["a red circle", "a blue square", "a red square"], ["a blue circle", "a red circle", "a"]]
    scores = similarity(images, candidates)
    assert scores.shape == (2, 3)
    ids = {"a red circle": [2, 4, 5, 7, 3, 0], "a blue square": [2, 4, 6, 8, 3, 0],
           "a red square": [2, 4, 5, 8, 3, 0], "a blue circle": [2, 4, 6, 7, 3, 0], "a": [2, 4, 3, 0, 0, 0]}
    for row, (image, options) in enumerate(zip(images, candidates)):
        text = np.asarray(text_tower(np.array([ids[caption] for caption in options], "int32")))
        expected = text @ np.asarray(image_tower(image[None]))[0]
        np.testing.assert_allclose(scores[row], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="--image-size"):
        similarity(np.zeros((1, 32, 32, 3), np.uint8), [["a red circle"]])


def test_rerank_top_orders_each_rows_nearest_by_the_margin_and_leaves_the_rest():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],
                       [0.2, 0.8, 0.1, 0.7]])
    asked = []

    def margin(rows, columns):
        asked.extend(zip(rows.tolist(), columns.tolist()))
        # row 0 prefers its second-nearest (column 2); row 1's two nearest tie
        return np.array([{(0, 0): 1.0, (0, 2): 5.0}.get((r, c), 0.0) for r, c in zip(rows, columns)])

    reranked = retrieval.rerank_top(scores, margin, top=2)
    assert sorted(asked) == [(0, 0), (0, 2), (1, 1), (1, 3)]  # only each row's two nearest
    # equal margins: the higher score first
    assert np.argsort(-reranked, axis=1).tolist() == [[2, 0, 3, 1], [1, 3, 0, 2]]
    # the rest keep their scores, below the re-ranked ones
    assert reranked[0, 3] == 0.3 and reranked[1, 0] == 0.2
    assert min(reranked[0, 2], reranked[0, 0]) > 0.9


def test_a_matcher_that_says_nothing_changes_no_recall_even_among_identical_captions():
    """Identical captions tie under the dual encoder, and recall counts a tie against it; a
    constant margin must leave them tied, not order them by where they lie."""
    rng = np.random.default_rng(0)
    num_images, per_image = 6, 3
    caption_image = np.repeat(np.arange(num_images), per_image)
    similarity = rng.normal(size=(num_images * per_image, num_images))
    similarity[[4, 7, 10]] = similarity[1]  # one caption said of four images
    similarity[:, 3] = similarity[:, 0]  # and two images that look alike
    truth = rng.random(similarity.shape) < 0.3

    def says_nothing(rows, columns):
        return np.zeros(len(rows))

    for top in (2, 4, num_images):
        text_scores = retrieval.rerank_top(similarity, says_nothing, top)
        image_scores = retrieval.rerank_top(similarity.T, says_nothing, top).T
        before = retrieval.recalls(similarity, caption_image, truth)
        assert retrieval.recalls(text_scores, caption_image, truth)["text_to_image"] == before["text_to_image"]
        assert retrieval.recalls(image_scores, caption_image, truth)["image_to_text"] == before["image_to_text"]


def test_a_matcher_that_knows_the_truth_lifts_r1_any_to_the_dual_encoders_r_top_any(small_shapes):
    """With a margin that is 1 for every true (image, caption) pair, the re-ranked R@1 any is
    the dual encoder's R@top any, each way; R@top itself does not change. A margin asked
    about the wrong pairs (rows and columns swapped, captions of the wrong image) fails."""
    from mmkeras.data.folder import load_captions
    from mmkeras.data.shapes import describes, scenes_of
    split = load_captions(small_shapes)["test"]
    scenes = scenes_of(split)

    def oracle(image_index, captions):
        return np.array([float(describes(caption, scenes[i])) for i, caption in zip(image_index, captions)])

    caption_image = np.repeat(np.arange(len(split)), [len(refs) for refs in split.captions])
    similarity = np.random.default_rng(0).normal(size=(len(caption_image), len(split)))
    dual = retrieval.recalls(similarity, caption_image, retrieval.caption_truth(split))
    reranked = retrieval.reranked_recalls(split, similarity, caption_image, oracle, top=5)
    assert reranked["top"] == 5
    for direction in ("text_to_image", "image_to_text"):
        assert reranked[direction]["r1_any"] == dual[direction]["r5_any"] > dual[direction]["r1_any"]
        assert reranked[direction]["r5"] == dual[direction]["r5"]
