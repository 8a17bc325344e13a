"""VQA and matching examples, their pipeline, their scores and chance levels, and a run."""

import json

import keras
import numpy as np
import pytest

from mmkeras.config import TASK_EPOCHS, TaskConfig
from mmkeras.data import shapes
from mmkeras.data.folder import load_captions
from mmkeras.data.images import images_in_memory
from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary
from mmkeras.tasks import classification, matching, vqa
from mmkeras.tasks.examples import (
    OBJECT_ATTRIBUTES,
    SCENE_CLASSES,
    SCENE_SLOTS,
    Examples,
    about_targets,
    caption_about,
    example_dataset,
    mention_targets,
    scene_targets,
    texts_per_image_dataset,
)


@pytest.fixture(scope="module")
def splits(small_shapes):
    return load_captions(small_shapes)


def test_vqa_examples_answer_their_questions(splits):
    split = splits["train"]
    examples = vqa.vqa_examples(split, questions_per_image=3, seed=0)
    assert np.bincount(examples.image_index).max() == 3
    all_scenes = shapes.scenes_of(split)
    for index, text, label, kind in zip(examples.image_index, examples.texts, examples.labels,
                                        examples.kinds):
        # The same question, asked again of the same scene, has the same answer.
        asked = {q.text: q for seed in range(400)
                 for q in vqa.questions_for(all_scenes[index], np.random.default_rng(seed))}
        assert asked[text].answer == vqa.ANSWERS[label]
        assert asked[text].kind == kind


def test_training_asks_every_type_a_scene_answers_and_more_where_it_answers_few(splits):
    split = splits["train"]
    scored = vqa.vqa_examples(split, questions_per_image=None, seed=0)
    trained = vqa.vqa_examples(split, questions_per_image=8, seed=0)
    assert (np.bincount(trained.image_index) == 8).all()
    for index in range(len(split)):
        types_answered = set(scored.kinds[scored.image_index == index])
        # scored: each type once; trained: each of those, and no other
        assert len(types_answered) == (scored.image_index == index).sum()
        assert set(trained.kinds[trained.image_index == index]) == types_answered


def test_matching_examples_are_balanced_and_the_false_ones_false(splits):
    split = splits["train"]
    examples = matching.matching_examples(split, seed=0)
    assert (examples.labels == 1).sum() == (examples.labels == 0).sum() == len(split)
    all_scenes = shapes.scenes_of(split)
    for index, text, label in zip(examples.image_index, examples.texts, examples.labels):
        assert shapes.describes(text, all_scenes[index]) == bool(label)
    mixed = matching.matching_examples(split, seed=0, other_image_negatives=1.0, pairs_per_image=3)
    assert set(mixed.kinds) == {"true", "other image"}
    assert (np.bincount(mixed.image_index) == 6).all() and mixed.labels.mean() == 0.5
    for index, text, label in zip(mixed.image_index, mixed.texts, mixed.labels):
        assert shapes.describes(text, all_scenes[index]) == bool(label)


def test_chance_levels():
    train = Examples(np.zeros(6, int), [""] * 6, np.array([3, 3, 1, 2, 2, 0]),
                     np.array(["size", "size", "size", "count", "count", "count"]))
    test = Examples(np.zeros(4, int), [""] * 4, np.array([3, 1, 2, 0]),
                    np.array(["size", "size", "count", "count"]))
    chance = classification.chance_by_kind("vqa", train, test)
    assert chance == {"size": 0.5, "count": 0.5, "all": 0.5}
    test.labels = np.array([3, 3, 2, 2])
    assert classification.chance_by_kind("vqa", train, test)["all"] == 1.0
    assert set(classification.chance_by_kind("match", train, test).values()) == {0.5}


def test_example_dataset_pairs_each_text_with_its_own_image(splits):
    split = splits["val"]
    images = images_in_memory(split, 64)
    assert images.shape == (len(split), 64, 64, 3) and images.dtype == np.uint8
    examples = vqa.vqa_examples(split, 6, seed=1)
    vectorizer = build_vectorizer(examples.texts, classification.MAX_TEXT_LENGTH)
    vocabulary = np.array(vectorizer_vocabulary(vectorizer))
    batch_inputs, labels = next(iter(example_dataset(images, examples, vectorizer, 16)))
    np.testing.assert_array_equal(batch_inputs["image"].numpy(), images[examples.image_index[:16]])
    words = [" ".join(w for w in vocabulary[ids] if w not in ("", "[end]"))
             for ids in batch_inputs["text"].numpy()]
    assert words == examples.texts[:16]
    np.testing.assert_array_equal(labels.numpy(), examples.labels[:16])


def test_scene_targets_read_objects_left_to_right_and_top_to_bottom():
    from mmkeras.data.shapes import Scene, SceneObject
    circle, square = SceneObject("small", "red", "circle"), SceneObject("large", "blue", "square")
    red_circle = [list(shapes.COLOURS).index("red"), shapes.SHAPES.index("circle"), list(shapes.SIZES).index("small")]
    blue_square = [list(shapes.COLOURS).index("blue"), shapes.SHAPES.index("square"), list(shapes.SIZES).index("large")]
    targets = scene_targets([Scene(circle, square, "to the left of"), Scene(circle, square, "to the right of"),
                             Scene(circle, square, "above"), Scene(square, circle, "above")])
    assert targets.tolist() == [red_circle + blue_square + [0], blue_square + red_circle + [0],
                                red_circle + blue_square + [1], blue_square + red_circle + [1]]


def _objects_asked_about(question: vqa.Question, scene: shapes.Scene) -> set:
    """The objects of ``scene`` a question asks about, read from its words: those it counts,
    the other than "what is RELATION the REFERENCE" names, or the one its words after the
    first "the" pick out."""
    words = question.text.split()
    if question.kind == "count":  # "how many circles", "how many red shapes"
        asked = words[2].removesuffix("s") if words[3] == "are" else words[2]
        return {o for o in scene.objects if asked in (o.colour, o.shape)}
    # The reference of a relation question is its last "the" ("to the left of the ...").
    after = (question.text.rsplit(" the ", 1) if question.kind == "relation"
             else question.text.split(" the ", 1))[1]
    named = []
    for word in after.split():
        if word not in (*shapes.COLOURS, *shapes.SHAPES, *shapes.SIZES):
            break
        named.append(word)
    found = {o for o in scene.objects if set(named) <= {o.colour, o.shape, o.size}}
    assert len(found) == 1, question.text
    return set(scene.objects) - found if question.kind == "relation" else found


def test_questions_and_captions_say_which_objects_they_are_about():
    circle = shapes.SceneObject("small", "red", "circle")
    square = shapes.SceneObject("large", "blue", "square")
    for scene in (shapes.Scene(circle, square, "to the right of"), shapes.Scene(circle, square, "below"),
                  shapes.Scene(circle, square, "to the left of")):
        for seed in range(20):
            for question in vqa.questions_for(scene, np.random.default_rng(seed)):
                assert set(question.about) == _objects_asked_about(question, scene), question.text
        # A caption is about the object it names first: the scene's first object in the
        # templates 1, 3 and 4, the second in 2 and 5.
        ahead, behind = shapes.reading_order(scene)
        circle_flags = [int(ahead == circle), int(behind == circle)]
        square_flags = [1 - flag for flag in circle_flags]
        assert [caption_about(caption, scene) for caption in shapes.captions_for(scene)] == [
            circle_flags, square_flags, circle_flags, circle_flags, square_flags]
        assert caption_about("a red triangle above a blue square", scene) == [0, 0]
        # One word changed: about no object, unless only the relation changed.
        true_caption = shapes.captions_for(scene)[0]
        relation = scene.relation
        for changed in (true_caption.replace("small red", "large red"),
                        true_caption.replace("large blue", "small blue"),
                        true_caption.replace("blue square", "green square")):
            assert caption_about(changed, scene) == [0, 0], changed
        other_relation = "above" if relation != "above" else "below"
        assert caption_about(true_caption.replace(relation, other_relation), scene) == circle_flags


def test_vqa_and_matching_examples_carry_what_each_text_is_about(splits):
    split = splits["val"]
    scenes = shapes.scenes_of(split)
    questions = vqa.vqa_examples(split, None, seed=0)
    by_kind = {}
    for index, text, kind, about in zip(questions.image_index, questions.texts, questions.kinds,
                                        questions.about):
        question = vqa.Question(text, "", kind)
        expected = about_targets(_objects_asked_about(question, scenes[index]), scenes[index])
        assert about.tolist() == expected, text
        by_kind.setdefault(kind, set()).add(tuple(expected))
    assert by_kind["yes_no"] == {(1, 0), (0, 1)} and (0, 0) in by_kind["count"]
    pairs = matching.matching_examples(split, seed=0, pairs_per_image=2)
    truths = pairs.kinds == "true"
    assert {tuple(flags) for flags in pairs.about[truths]} == {(1, 0), (0, 1)}
    # A caption with its relation changed has the same subject as its true twin.
    relation = np.flatnonzero(pairs.kinds == "relation")
    np.testing.assert_array_equal(pairs.about[relation], pairs.about[relation - 1])


def test_texts_per_image_dataset_gives_each_image_its_own_texts_padded_with_weight_0(splits):
    split = splits["val"]
    images = images_in_memory(split, 64)
    examples = vqa.vqa_examples(split, None, seed=1)  # 4 to 6 questions per image
    vectorizer = build_vectorizer(examples.texts, classification.MAX_TEXT_LENGTH)
    vocabulary = np.array(vectorizer_vocabulary(vectorizer))
    scenes = scene_targets(shapes.scenes_of(split))
    inputs, labels, weights = next(iter(texts_per_image_dataset(images, examples, scenes, vectorizer, 4, 6)))
    np.testing.assert_array_equal(inputs["image"].numpy(), images[:4])
    np.testing.assert_array_equal(labels["scene"].numpy(), scenes[:4])
    about = labels["about"].numpy()
    labels, weights = labels["answers"], weights["answers"]
    for image in range(4):
        mine = examples.image_index == image
        count = mine.sum()
        words = [" ".join(w for w in vocabulary[ids] if w not in ("", "[end]"))
                 for ids in inputs["text"].numpy()[image]]
        assert words[:count] == [t for t, m in zip(examples.texts, mine) if m]
        np.testing.assert_array_equal(labels.numpy()[image, :count], examples.labels[mine])
        np.testing.assert_array_equal(about[image, :count], examples.about[mine])
        assert weights.numpy()[image].tolist() == [1.0] * count + [0.0] * (6 - count)


@pytest.mark.parametrize("fusion", ["film_attention", "objects"])
def test_training_reads_an_image_once_and_gives_what_the_classifier_gives_each_pair(fusion):
    from mmkeras.tasks.fusion import SeveralTextsPerImage, build_fused_classifier
    keras.utils.set_random_seed(0)
    classifier = build_fused_classifier(["", "[UNK]", "a", "b", "c"], 5, 3, fusion, units=16)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    texts = rng.integers(1, 5, (2, 3, 5)).astype("int32")
    outputs = SeveralTextsPerImage(classifier)({"image": images, "text": texts})
    grouped = outputs["answers"]
    assert grouped.shape == (2, 3, 3) and outputs["scene"].shape == (2, len(SCENE_SLOTS), SCENE_CLASSES)
    assert outputs["about"].shape == (2, 3, 2)
    one_by_one = classifier.predict({"image": np.repeat(images, 3, axis=0),
                                     "text": texts.reshape(6, 5)}, verbose=0)
    np.testing.assert_allclose(np.asarray(grouped).reshape(6, 3), one_by_one, rtol=1e-4, atol=1e-5)


def test_object_slots_are_read_back_by_one_reader_in_reading_order():
    """Both object slots in the same terms: the scene read from slots swapped is the scene
    with its two objects swapped (and the same layout)."""
    from mmkeras.tasks.fusion import SeveralTextsPerImage, build_fused_classifier
    keras.utils.set_random_seed(0)
    trainer = SeveralTextsPerImage(build_fused_classifier(["", "[UNK]", "a"], 5, 3, "objects", units=16))
    slots = np.random.default_rng(0).normal(size=(2, 3, 16)).astype("float32")
    scene = np.asarray(trainer._read_scene(slots, training=False))
    swapped = np.asarray(trainer._read_scene(slots[:, [1, 0, 2]], training=False))
    assert scene.shape == (2, len(SCENE_SLOTS), SCENE_CLASSES)
    np.testing.assert_allclose(swapped, scene[:, [3, 4, 5, 0, 1, 2, 6]], rtol=1e-5, atol=1e-6)


def test_each_query_is_read_back_by_the_slots_reader_as_the_object_its_caption_names():
    """What a query says of the object it names is read in the very terms of the slots
    (one reader): the comparison of a stated size with a seen one needs both in one place."""
    from mmkeras.tasks.fusion import SeveralTextsPerImage, build_fused_classifier
    keras.utils.set_random_seed(0)
    classifier = build_fused_classifier(["", "[UNK]", "a", "b"], 5, 2, "objects", units=16)
    trainer = SeveralTextsPerImage(classifier, reads_mentions=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    texts = rng.integers(1, 4, (2, 3, 5)).astype("int32")
    mentions = np.asarray(trainer({"image": images, "text": texts})["mentions"])
    assert mentions.shape == (2, 3, 2, len(OBJECT_ATTRIBUTES), SCENE_CLASSES)
    head = classifier.get_layer("fusion_head")
    queries = keras.Model(head.inputs,
                          [head.get_layer(f"{role}_query").output for role in ("first", "second")])
    encoded = np.repeat(np.asarray(classifier.get_layer("image_encoder")(images)), 3, axis=0)
    for role, query in enumerate(queries.predict([encoded, texts.reshape(6, 5)], verbose=0)):
        read = np.asarray(trainer.object_reader(query)).reshape(2, 3, len(OBJECT_ATTRIBUTES), SCENE_CLASSES)
        np.testing.assert_allclose(mentions[:, :, role], read, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="objects"):
        SeveralTextsPerImage(build_fused_classifier(["", "[UNK]", "a"], 5, 2, "film", units=16),
                             reads_mentions=True)


def test_mention_targets_are_the_objects_a_caption_names_in_its_order():
    circle = shapes.SceneObject("small", "red", "circle")
    square = shapes.SceneObject("large", "blue", "square")
    scene = shapes.Scene(circle, square, "above")
    red, blue = list(shapes.COLOURS).index("red"), list(shapes.COLOURS).index("blue")
    small, large = list(shapes.SIZES).index("small"), list(shapes.SIZES).index("large")
    as_circle = [red, list(shapes.SHAPES).index("circle")]
    as_square = [blue, list(shapes.SHAPES).index("square")]
    # The five templates: both sizes; both, the square named first; none; the first's; none.
    assert [mention_targets(caption) for caption in shapes.captions_for(scene)] == [
        [as_circle + [small], as_square + [large]], [as_square + [large], as_circle + [small]],
        [as_circle + [-1], as_square + [-1]], [as_circle + [small], as_square + [-1]],
        [as_square + [-1], as_circle + [-1]]]
    with pytest.raises(ValueError, match="names 1"):
        mention_targets("what size is the red circle")


def test_matching_batches_carry_what_each_caption_names(splits):
    split = splits["val"]
    examples = matching.matching_examples(split, seed=0, pairs_per_image=2)
    vectorizer = build_vectorizer(examples.texts, classification.MAX_TEXT_LENGTH)
    vocabulary = np.array(vectorizer_vocabulary(vectorizer))
    scenes = scene_targets(shapes.scenes_of(split))
    inputs, labels, weights = next(iter(texts_per_image_dataset(
        images_in_memory(split, 64), examples, scenes, vectorizer, 4, 6, with_mentions=True)))
    assert labels["mentions"].shape == (4, 6, 2, 3) and weights["mentions"].shape == (4, 6, 2, 3)
    # Each text's weight for each of its attributes: the two padding texts of each image cost nothing.
    np.testing.assert_array_equal(weights["mentions"][..., 0, 0], weights["answers"])
    assert weights["answers"].numpy()[:, 4:].sum() == 0
    for image in range(4):
        for text, ids in enumerate(inputs["text"].numpy()[image]):
            caption = " ".join(w for w in vocabulary[ids] if w not in ("", "[end]"))
            np.testing.assert_array_equal(labels["mentions"][image, text], mention_targets(caption))
    with pytest.raises(ValueError, match="with_mentions"):
        texts_per_image_dataset(images_in_memory(split, 64), vqa.vqa_examples(split, None, seed=1), scenes,
                                vectorizer, 4, 6, with_mentions=True)


@pytest.mark.parametrize("task", ["vqa", "match"])
def test_train_task_writes_its_records_and_a_model_that_loads(task, tmp_path):
    result = classification.train_task(TaskConfig(task=task, smoke=True, out=str(tmp_path)),
                                       verbose=0, progress=False)
    for name in ("model.keras", "config.json", "history.csv", "metrics.json"):
        assert (tmp_path / name).exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == task and 0 <= metrics["accuracy"] <= 1
    kinds = vqa.QUESTION_TYPES if task == "vqa" else ("true", *matching.CHANGES)
    assert set(metrics["by_kind"]) == set(kinds)
    assert sum(k["n"] for k in metrics["by_kind"].values()) == metrics["n_examples"]
    if task == "vqa":
        losses = result["history"]["loss"]
        assert losses[-1] < losses[0]
    else:  # a curriculum: epoch 1 on mixed negatives, epoch 2 on one-word negatives
        assert [row.split(",")[0] for row in (tmp_path / "history.csv").read_text().split()[1:]] == ["0", "1"]
        assert "mentions_loss" in result["history"]  # the queries are read back in matching
    assert "mentions_loss" not in result["history"] or task == "match"
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.count_params() == metrics["parameters"]
    # The same record as every run writes: the settings, then facts about the run.
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["task"] == task and config["epochs_run"] == 2
    assert config["config"]["epochs"] == TASK_EPOCHS[task]  # the task's own default
    assert "tensorflow" in config["versions"]


def test_a_mistake_in_the_data_leaves_the_output_folder_as_it_was(tmp_path):
    from mmkeras.errors import UserError
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(UserError, match="data folder not found"):
        classification.train_task(TaskConfig(data=str(tmp_path / "typo"), out=str(tmp_path)),
                                  verbose=0, progress=False)
    assert (tmp_path / "history.csv").read_text() == "epoch,loss\n0,1.0\n"


def test_tasks_refuse_photo_datasets_before_downloading_anything(monkeypatch):
    from mmkeras.errors import UserError
    monkeypatch.setattr(classification, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    for data in ("flickr8k", "coco"):
        with pytest.raises(UserError, match="Shapes Captions"):
            classification.load_task_data(TaskConfig(task="vqa", data=data))


def test_a_shapes_folder_drawn_at_another_size_trains(tmp_path):
    from mmkeras.data import shapes
    folder = shapes.generate(tmp_path / "shapes96", shapes.ShapesConfig(
        num_train=16, num_val=8, num_test=8, image_size=96), progress=False)
    result = classification.train_task(TaskConfig(task="vqa", data=str(folder), epochs=1,
                                                  out=str(tmp_path / "run")), verbose=0, progress=False)
    assert result["model"].input["image"].shape[1] == 96
