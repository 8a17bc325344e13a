"""Text to image end to end: the judges' arithmetic, a smoke run scored by the smoke
captioner, and the `generate` command."""

import json

import numpy as np
import pytest
from PIL import Image

from mmkeras.config import TextToImageConfig
from mmkeras.data import shapes
from mmkeras.data.shapes import Scene, SceneObject, ShapesConfig, captions_for
from mmkeras.generation import judges

SCENE = Scene(SceneObject("small", "red", "circle"), SceneObject("large", "blue", "square"), "above")


def test_a_caption_of_the_scene_in_either_order_gets_everything_right():
    whole, swapped, sizeless = captions_for(SCENE)[0], captions_for(SCENE)[1], captions_for(SCENE)[2]
    assert judges.compare_scene(whole, SCENE) == judges.compare_scene(swapped, SCENE) == {
        "colour": 2, "shape": 2, "size": 2, "sizes_read": 2, "relation": 1, "scene": 1}
    # No sizes said: nothing to judge them by, so not the whole scene.
    assert judges.compare_scene(sizeless, SCENE) == {
        "colour": 2, "shape": 2, "size": 0, "sizes_read": 0, "relation": 1, "scene": 0}


def test_each_wrong_attribute_is_counted_where_it_is_wrong():
    counts = judges.compare_scene("a small red square below a large blue square", SCENE)
    assert counts == {"colour": 2, "shape": 1, "size": 2, "sizes_read": 2, "relation": 0, "scene": 0}
    assert judges.compare_scene("a red red", SCENE)["colour"] == 0  # no template: nothing right
    shares = judges.round_trip([captions_for(SCENE)[0], "a small red square below a large blue square"],
                               [SCENE, SCENE])
    assert shares == {"colour": 1.0, "shape": 0.75, "size": 1.0, "relation": 0.5, "scene": 0.5,
                      "sizes_read": 1.0}


def test_read_back_takes_the_likeliest_beam_that_names_both_sizes(monkeypatch):
    whole, sizeless = captions_for(SCENE)[0], captions_for(SCENE)[2]
    beams = [[sizeless, "a red circle above a large blue square", whole],  # the third says both sizes
             [sizeless, "a red circle above a blue square", sizeless]]  # none does: the likeliest

    class TwoImagesDecoder:
        def __init__(self, captioner):
            pass

        def candidate_captions(self, images, beam_width):
            assert beam_width == 3
            return beams, np.zeros((2, 3))

    monkeypatch.setattr(judges, "CaptionDecoder", TwoImagesDecoder)
    monkeypatch.setattr(judges, "_resized", lambda images, size: images)
    captioner = type("Captioner", (), {"input": {"image": type("Input", (), {"shape": (None, 8)})()}})()
    assert judges.read_back(np.zeros((2, 8, 8, 3), np.uint8), captioner, beam_width=3) == [whole, sizeless]


def test_kernel_distance_is_the_unbiased_mmd_written_out():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.5

    def k(x, y):
        return (x @ y / 3 + 1) ** 3

    within_a = sum(k(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    within_b = sum(k(b[i], b[j]) for i in range(4) for j in range(4) if i != j) / (4 * 3)
    across = sum(k(x, y) for x in a for y in b) / (5 * 4)
    assert judges.kernel_inception_distance(a, b) == pytest.approx(within_a + within_b - 2 * across)
    # About zero for two samples of one distribution, however many; larger apart.
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    assert abs(judges.kernel_inception_distance(a, b)) < 0.1 < judges.kernel_inception_distance(a, b + 1.0)


def test_r_precision_is_one_for_a_perfect_match_zero_for_ties_and_chance_at_random():
    prompts = [f"caption {i}" for i in range(200)]
    vectors = np.eye(200)
    assert judges.r_precision(vectors, vectors, prompts) == 1.0
    assert judges.r_precision(vectors, np.ones((200, 200)), prompts) == 0.0  # a tie is not a win
    rng = np.random.default_rng(0)
    at_random = judges.r_precision(rng.normal(size=(200, 16)), rng.normal(size=(200, 16)), prompts)
    assert at_random < 0.05  # chance: 1 / 100
    # Another prompt of the same words is no distractor: image 0 ties with prompt 1, but
    # prompt 1 is "a red circle" too; prompt 2 is the only distractor, and it loses.
    images, texts = np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 0, 2]]
    assert judges.r_precision(images[:1], texts, ["a red circle", "a red circle", "a blue square"]) == 1.0
    assert judges.r_precision(images[:1], texts, ["a red circle", "a red square", "a blue square"]) == 0.0


def test_diversity_is_the_mean_distance_between_draws_of_one_prompt():
    same = np.tile(np.arange(4.0), (3, 5, 1))  # 3 prompts, 5 identical draws each
    assert judges.diversity(same) == 0.0
    two = np.array([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])  # distances 5 and 0
    assert judges.diversity(two) == pytest.approx(2.5)


def test_judges_of_the_compositional_split_learn_from_its_twin_with_every_pair(tmp_path, monkeypatch):
    sizes = {"num_train": 6, "num_val": 2, "num_test": 2}
    cogent = shapes.generate(tmp_path / "cogent", ShapesConfig(**sizes, cogent=True), progress=False)
    monkeypatch.setenv("MMKERAS_DATA", str(tmp_path / "data"))
    trained_on = []
    monkeypatch.setattr(judges, "train_captioner", lambda config, **_: trained_on.append(config.data))
    monkeypatch.setattr(judges, "train_retrieval", lambda config, **_: trained_on.append(config.data))
    monkeypatch.setattr(judges.runs, "load_model", lambda path: path)
    judges.trained_judges(str(cogent), tmp_path / "judges", verbose=0, progress=False)
    assert len(trained_on) == 2
    assert {shapes.config_of(data) for data in trained_on} == {ShapesConfig(**sizes, cogent=False)}


@pytest.fixture(scope="module")
def smoke_generator(tmp_path_factory, caption_model):
    from mmkeras.generation.train import train_text_to_image
    from mmkeras.tasks.retrieval import build_dual_encoder
    out = tmp_path_factory.mktemp("text2image")
    vocabulary = caption_model.get_layer("word_embedding").vocabulary
    dual_encoder = build_dual_encoder(vocabulary, 12)[0]  # untrained: the test checks the plumbing
    # Four sampling steps: the plumbing, not the pictures, is under test.
    result = train_text_to_image(TextToImageConfig(smoke=True, sampling_steps=4, out=str(out)), verbose=0,
                                 progress=False, captioner=caption_model, dual_encoder=dual_encoder)
    return out, result


def test_text2image_writes_a_model_and_its_judged_scores(smoke_generator):
    out, result = smoke_generator
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("round_trip", "round_trip_real", "round_trip_shuffled"):
        assert set(metrics[key]) == {"colour", "shape", "size", "relation", "scene", "sizes_read"}
    assert metrics["n_prompts"] == 64 and metrics["images_per_second"] > 0
    for key in ("r_precision", "r_precision_real", "r_precision_shuffled", "kid", "kid_real", "diversity"):
        assert np.isfinite(metrics[key]), key
    assert metrics["diversity_real"] > 0  # real redraws of a scene differ
    assert 0 <= metrics["held_out_named"] <= 1 and 0 <= metrics["held_out_named_real"] <= 1
    assert json.loads((out / "config.json").read_text())["config"]["kind"] == "diffusion"
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]


def test_generate_writes_one_png_per_caption_in_order(smoke_generator, tmp_path, capsys):
    from mmkeras import cli
    out, _ = smoke_generator
    captions_file = tmp_path / "captions.txt"
    captions_file.write_text("a large blue square\n\na small red circle above a large blue square\n")
    model = str(out / "model.keras")
    assert cli.main(["generate", "--model", model, "--out", str(tmp_path / "images"), "--steps", "2",
                     "a red circle", "--captions", str(captions_file)]) == 0
    written = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert written == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(tmp_path / "images" / "00000.png").size == (32, 32)
    # The same seed draws the same image for the same caption.
    assert cli.main(["generate", "--model", model, "--out", str(tmp_path / "again"), "--steps", "2",
                     "a red circle"]) == 0
    assert (tmp_path / "again" / "00000.png").read_bytes() == (tmp_path / "images" / "00000.png").read_bytes()

    capsys.readouterr()
    assert cli.main(["generate", "--model", model, "--out", str(tmp_path / "more"), "a pink circle"]) == 2
    assert "'pink': not in the model's vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "more").exists()
    assert cli.main(["generate", "--model", model, "--out", str(captions_file), "a red circle"]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err


def test_the_vae_trains_draws_and_loads_with_safe_mode(caption_model, tmp_path, capsys):
    import keras

    from mmkeras import cli
    from mmkeras.generation.train import train_text_to_image
    from mmkeras.generation.vae import VAEGenerator
    from mmkeras.tasks.retrieval import build_dual_encoder
    vocabulary = caption_model.get_layer("word_embedding").vocabulary
    result = train_text_to_image(TextToImageConfig(kind="vae", smoke=True, out=str(tmp_path / "vae")), verbose=0,
                                 progress=False, captioner=caption_model,
                                 dual_encoder=build_dual_encoder(vocabulary, 12)[0])
    assert result["kind"] == "vae" and "guidance" not in result
    history = result["history"]
    assert history["loss"][-1] < history["loss"][0]
    assert {"reconstruction", "kl", "val_loss"} <= set(history)
    decoder = keras.saving.load_model(tmp_path / "vae" / "model.keras", safe_mode=True)
    assert decoder.name == "vae_decoder"
    generator = VAEGenerator(decoder)
    latents = np.random.default_rng(0).normal(size=(2, generator.latent_dim))
    drawn = generator.decode(["a red circle", "a red circle"], latents)
    assert drawn.shape == (2, 32, 32, 3) and drawn.dtype == np.uint8
    assert not np.array_equal(drawn[0], drawn[1])  # another point of the latent space, another picture
    assert cli.main(["generate", "--model", str(tmp_path / "vae" / "model.keras"), "--out", str(tmp_path / "drawn"),
                     "a red circle", "a blue square"]) == 0
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["00000.png", "00001.png"]
    assert "wrote 2 images" in capsys.readouterr().out
