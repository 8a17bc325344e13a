"""VQA and matching examples, their pipeline, their scores and chance levels, and a run."""

import json

import keras
import numpy as np
import pytest

from mmkeras.config import TaskConfig
from mmkeras.data import shapes
from mmkeras.data.folder import load_captions
from mmkeras.data.images import images_in_memory
from mmkeras.data.text import build_vectorizer, vectorizer_vocabulary
from mmkeras.tasks import classification, matching, vqa
from mmkeras.tasks.examples import Examples, example_dataset


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


def test_matching_examples_are_balanced_and_the_false_ones_false(splits):
    split = splits["train"]
    examples = matching.matching_examples(split, seed=0)
    assert (examples.labels == 1).sum() == (examples.labels == 0).sum() == len(split)
    all_scenes = shapes.scenes_of(split)
    for index, text, label in zip(examples.image_index, examples.texts, examples.labels):
        assert shapes.describes(text, all_scenes[index]) == bool(label)
    mixed = matching.matching_examples(split, seed=0, other_image_negatives=1.0)
    assert set(mixed.kinds) == {"true", "other image"}


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
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert reloaded.count_params() == metrics["parameters"]
    # The same record as every run writes: the settings, then facts about the run.
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["task"] == task and config["epochs_run"] == 2
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
