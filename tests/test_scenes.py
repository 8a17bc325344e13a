"""Scenes read back from captions; VQA questions and false captions made from them."""

import collections
import re

import numpy as np
import pytest

from mmkeras.data import shapes
from mmkeras.data.folder import load_captions
from mmkeras.data.shapes import Scene, SceneObject
from mmkeras.errors import UserError
from mmkeras.tasks import matching, vqa


def drawn_scenes(count=600, seed=3):
    """Random scenes as the spec allows them, with the captions the generator writes."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        first, second = (SceneObject(str(rng.choice(list(shapes.SIZES))),
                                     str(rng.choice(list(shapes.COLOURS))),
                                     str(rng.choice(shapes.SHAPES))) for _ in range(2))
        if first.name == second.name:
            continue  # the spec never draws two objects of the same shape and colour
        scene = Scene(first, second, str(rng.choice(shapes.RELATIONS)))
        out.append((scene, shapes.captions_for(scene)))
    return out


def test_the_five_templates_are_the_specs():
    scene = Scene(SceneObject("small", "red", "circle"), SceneObject("large", "blue", "square"),
                  "to the left of")
    assert shapes.captions_for(scene) == [
        "a small red circle to the left of a large blue square",
        "a large blue square to the right of a small red circle",
        "a red circle is to the left of a blue square",
        "there is a small red circle to the left of a blue square",
        "a blue square to the right of a red circle",
    ]


def test_every_template_reads_back_to_what_it_says():
    for scene, captions in drawn_scenes(300):
        for template, caption in zip(shapes.TEMPLATES, captions):
            reading = shapes.read_caption(caption)
            sizes_named = (reading.first.size is not None, reading.second.size is not None)
            assert sizes_named == ("{s1}" in template, "{s2}" in template), caption
            mentioned = {(o.colour, o.shape) for o in (reading.first, reading.second)}
            assert mentioned == {(o.colour, o.shape) for o in scene.objects}
            first = next(o for o in scene.objects if o.name == reading.first.name)
            second = next(o for o in scene.objects if o.name == reading.second.name)
            assert scene.holds(first, reading.relation, second), caption
    assert shapes.read_caption("a dog on a mat") is None
    assert shapes.read_caption("a red circle is to the left of") is None


def test_parse_scene_reads_back_what_the_generator_drew():
    for scene, captions in drawn_scenes():
        assert shapes.parse_scene(captions[0]) == scene
        # the second caption states the same scene the other way round
        swapped = shapes.parse_scene(captions[1])
        assert (swapped.first, swapped.second) == (scene.second, scene.first)
        assert swapped.relation == shapes.INVERSE_RELATION[scene.relation]
        assert shapes.parse_scene(captions[2]) is None  # no sizes: not the whole scene


def test_every_caption_of_a_scene_describes_it_and_no_other_relation_does():
    for scene, captions in drawn_scenes():
        assert all(shapes.describes(caption, scene) for caption in captions)
        for relation in shapes.RELATIONS:
            if relation != scene.relation:
                assert not shapes.describes(captions[0].replace(scene.relation, relation), scene)


def test_a_mismatched_caption_changes_one_thing_and_is_false_of_the_scene():
    rng = np.random.default_rng(0)
    changed_kinds = collections.Counter()
    for scene, captions in drawn_scenes(1500):
        for caption in captions:
            false_caption, kind = matching.mismatched_caption(caption, rng)
            changed_kinds[kind] += 1
            assert not shapes.describes(false_caption, scene), (caption, false_caption)
            # never "a red circle ... a red circle": no true caption names one object twice
            named = re.findall(r"(red|green|blue|yellow|purple) (circle|square|triangle)", false_caption)
            assert named[0] != named[1], false_caption
            before, after = caption.split(), false_caption.split()
            if kind != "relation":  # one word swapped for another of its kind
                assert len(before) == len(after)
                assert sum(a != b for a, b in zip(before, after)) == 1
    assert set(changed_kinds) == set(matching.CHANGES)
    assert min(changed_kinds.values()) > 500


def test_questions_have_the_answers_the_scene_gives():
    scene = Scene(SceneObject("small", "red", "circle"), SceneObject("large", "red", "square"),
                  "to the left of")
    questions = {}
    for seed in range(200):
        for question in vqa.questions_for(scene, np.random.default_rng(seed)):
            questions[question.text] = question.answer
    assert questions["what colour is the circle"] == "red"
    assert questions["what shape is the small shape"] == "circle"  # colours alike: by size
    assert questions["what size is the red square"] == "large"
    assert questions["how many red shapes are there"] == "2"
    assert questions["how many triangles are there"] == "0"
    assert questions["what is to the left of the red square"] == "circle"
    assert questions["what is to the right of the red circle"] == "square"
    assert questions["is the small shape to the left of the large one"] == "yes"
    assert questions["is the red square above the red circle"] == "no"
    assert all(answer in vqa.ANSWERS for answer in questions.values())


def test_ambiguous_questions_are_not_asked():
    # Same shape and size, colours differ: "the circle" names neither.
    scene = Scene(SceneObject("small", "red", "circle"), SceneObject("small", "blue", "circle"),
                  "above")
    for seed in range(100):
        texts = [q.text for q in vqa.questions_for(scene, np.random.default_rng(seed))]
        assert "what colour is the circle" not in texts
        assert not any(t.startswith("what colour is the small circle") for t in texts)


def test_yes_no_and_count_answers_are_not_one_sided():
    rng = np.random.default_rng(1)
    answers = collections.defaultdict(collections.Counter)
    for scene, _ in drawn_scenes(2000):
        for question in vqa.questions_for(scene, rng, kinds=("yes_no", "count")):
            answers[question.kind][question.answer] += 1
    yes, no = answers["yes_no"]["yes"], answers["yes_no"]["no"]
    assert 0.4 < yes / (yes + no) < 0.6
    assert set(answers["count"]) == {"0", "1", "2"}
    assert max(answers["count"].values()) / sum(answers["count"].values()) < 0.6


def test_scenes_of_a_folder_that_is_not_shapes_captions_names_the_image(tmp_path):
    (tmp_path / "Images").mkdir()
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "Images" / "dog.png")
    (tmp_path / "captions.txt").write_text("dog.png#0\ta dog runs on the grass\n")
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text("dog.png\n")
    split = load_captions(tmp_path, splits=("train",))["train"]
    with pytest.raises(UserError, match="dog.png.*Shapes Captions"):
        shapes.scenes_of(split)
