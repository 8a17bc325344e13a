"""The command line as a user meets it: real subprocesses, exit codes, messages."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mmkeras.caption.metrics import HELD_OUT_KEYS, METRIC_KEYS, TRUTH_KEYS


def run_cli(*args, env_extra=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mmkeras", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("command", ["data shapes", "train", "evaluate", "caption", "vqa", "match",
                                     "retrieval", "fusion", "text2image", "generate"])
def test_every_command_has_help(command):
    completed = run_cli(*command.split(), "--help")
    assert completed.returncode == 0
    assert "usage: python -m mmkeras" in completed.stdout
    assert completed.stderr == ""  # TensorFlow's start-up lines included


def test_the_command_line_starts_without_tensorflow():
    """--help and argument errors answer at once: TensorFlow is imported by the commands."""
    completed = subprocess.run([sys.executable, "-c", "import sys, mmkeras.cli; print(sorted(sys.modules))"],
                               capture_output=True, text=True, timeout=60)
    assert "'tensorflow'" not in completed.stdout and "'keras'" not in completed.stdout


def test_data_command_writes_the_requested_sizes(tmp_path):
    completed = run_cli("data", "shapes", "--out", tmp_path, "--num-train", 5, "--num-val", 2,
                        "--num-test", 3, "--seed", 7)
    assert completed.returncode == 0, completed.stderr
    assert len((tmp_path / "test.txt").read_text().split()) == 3
    assert len(list((tmp_path / "Images").glob("*.png"))) == 10


@pytest.mark.parametrize("task", ["vqa", "match"])
def test_a_task_command_without_flags_trains_what_task_config_trains(task):
    """The command line and TaskConfig (the notebooks' way in) train the same default model."""
    from mmkeras.cli import build_parser, task_config
    from mmkeras.config import TaskConfig
    assert task_config(build_parser().parse_args([task])) == TaskConfig(task=task, out=f"runs/{task}")


def test_bad_flag_value_exits_non_zero():
    completed = run_cli("data", "shapes", "--out", "x", "--num-train", 0)
    assert completed.returncode == 2
    assert "expected a positive whole number" in completed.stderr


@pytest.mark.parametrize("weight", ["-1", "nan", "inf", "heavy"])
def test_an_about_weight_that_is_not_a_finite_non_negative_number_exits_2(weight):
    from mmkeras.cli import build_parser
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["vqa", "--about-weight", weight])
    assert exit_info.value.code == 2


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_run")
    completed = run_cli("train", "--smoke", "--decoder", "init", "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out, completed


def test_train_writes_model_records_and_metrics(cli_run):
    out, completed = cli_run
    for name in ("model.keras", "config.json", "history.csv", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    # on Shapes Captions, whether the captions are true of their scenes comes after BLEU & co,
    # then how they name the objects of the held-out pairs (64 scenes have some)
    assert list(metrics) == [*METRIC_KEYS, *TRUTH_KEYS, *HELD_OUT_KEYS]
    assert all(0.0 <= metrics[k] <= 1.0 for k in (*METRIC_KEYS, *TRUTH_KEYS) if k not in ("cider", "n_images"))
    assert metrics["n_images"] == 64
    assert "bleu_4" in completed.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["decoder"] == "init" and "tensorflow" in config["versions"]
    assert len((out / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs


def test_evaluate_prints_and_writes_the_metrics(cli_run, tmp_path):
    out, _ = cli_run
    data = json.loads((out / "config.json").read_text())["data_dir"]
    metrics_file = tmp_path / "eval" / "metrics.json"
    completed = run_cli("evaluate", "--model", out / "model.keras", "--data", data,
                        "--beam", 2, "--out", metrics_file)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # On Shapes Captions, whether the captions are true of their scenes too.
    assert set(json.loads(metrics_file.read_text())) == {*METRIC_KEYS, *TRUTH_KEYS, *HELD_OUT_KEYS}
    assert "bleu_4" in completed.stdout and "true_captions" in completed.stdout


def test_evaluate_takes_a_dataset_name_as_train_does(cli_run, monkeypatch, capsys):
    """`evaluate --data shapes` goes through the same catalog as `train --data shapes`."""
    from mmkeras import cli
    from mmkeras.data import catalog
    out, _ = cli_run
    smoke_data = json.loads((out / "config.json").read_text())["data_dir"]
    asked = []
    # The default shapes are 10,000 images; the smoke model's own data stand in for them.
    monkeypatch.setattr(catalog, "shapes_data", lambda config, progress=True: (
        asked.append(config) or Path(smoke_data)))
    assert cli.main(["evaluate", "--model", str(out / "model.keras"), "--data", "shapes"]) == 0
    assert asked == [catalog.shapes.ShapesConfig()]
    assert "bleu_4" in capsys.readouterr().out


def test_caption_prints_one_tab_separated_line_per_image(cli_run):
    out, _ = cli_run
    data = json.loads((out / "config.json").read_text())["data_dir"]
    images = [f"{data}/Images/test_0000{i}.png" for i in range(3)]
    completed = run_cli("caption", "--model", out / "model.keras", *images)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == images
    assert all(len(line.split("\t")[1].split()) >= 1 for line in lines)


def test_caption_on_a_file_that_is_not_an_image(cli_run, tmp_path):
    out, _ = cli_run
    not_image = tmp_path / "notes.png"
    not_image.write_text("just text")
    completed = run_cli("caption", "--model", out / "model.keras", not_image)
    assert completed.returncode == 2
    assert f"error: {not_image}: does not decode" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_missing_or_corrupt_model(tmp_path, small_shapes, content):
    model = tmp_path / "model.keras"
    if content is not None:
        model.write_bytes(content)
    completed = run_cli("evaluate", "--model", model, "--data", small_shapes)
    assert completed.returncode == 2
    assert str(model) in completed.stderr and "Traceback" not in completed.stderr


def test_missing_data_folder(cli_run, tmp_path):
    out, _ = cli_run
    completed = run_cli("evaluate", "--model", out / "model.keras", "--data", tmp_path / "nope")
    assert completed.returncode == 2
    assert "data folder not found" in completed.stderr and "Traceback" not in completed.stderr


def test_vqa_prints_accuracy_per_question_type_beside_chance(tmp_path, small_shapes):
    completed = run_cli("vqa", "--data", small_shapes, "--epochs", 1, "--fusion", "concat",
                        "--about-weight", 0.5, "--out", tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fusion"] == "concat"
    recorded = json.loads((tmp_path / "config.json").read_text())["config"]
    assert (recorded["epochs"], recorded["about_weight"]) == (1, 0.5)
    for kind, score in metrics["by_kind"].items():
        assert f"{kind:<12} {score['accuracy']:.3f}  (chance {score['chance']:.3f}" in completed.stdout

    # evaluate on the data it was trained on: the same questions, the same scores
    completed = run_cli("evaluate", "--model", tmp_path / "model.keras", "--data", small_shapes,
                        "--out", tmp_path / "evaluated.json")
    assert completed.returncode == 0, completed.stderr[-3000:]
    evaluated = json.loads((tmp_path / "evaluated.json").read_text())
    assert evaluated == {"task": "vqa", **{key: metrics[key] for key in
                                            ("accuracy", "chance", "by_kind", "n_examples")}}


def _untrained_task_model(path, task: str, image_size: int = 64):
    """A fused classifier as `vqa` or `match` saves one, untrained (what its answers are
    does not matter where it is only read)."""
    from mmkeras.tasks.classification import MAX_TEXT_LENGTH, class_names
    from mmkeras.tasks.fusion import build_fused_classifier
    words = ["", "[UNK]", "a", "red", "circle", "left", "of", "blue", "square"]
    build_fused_classifier(words, MAX_TEXT_LENGTH + 1, len(class_names(task)), "concat",
                           image_size=image_size, units=8).save(path)
    return path


def test_retrieval_prints_recall_beside_chance(tmp_path, small_shapes, cli_run, capsys):
    # the matcher reads its own image size, not the dual encoder's 64 px
    matcher = _untrained_task_model(tmp_path / "match.keras", "match", image_size=32)
    out = tmp_path / "retrieval"
    completed = run_cli("retrieval", "--data", small_shapes, "--epochs", 1, "--batch-size", 8,
                        "--matcher", matcher, "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 8 test images: chance of R@1 text to image is 1/8
    assert "R@1 {:.3f} (0.125)".format(metrics["text_to_image"]["r1"]) in completed.stdout
    assert {"r1", "r5", "r10", "r1_any", "r5_any", "r10_any"} == set(metrics["image_to_text"])
    # any image a caption is true of counts: never below the recall of its own image
    assert metrics["text_to_image"]["r1_any"] >= metrics["text_to_image"]["r1"]
    # re-ranked by the matcher, beside the dual encoder's own recalls
    reranked = metrics["reranked"]
    assert reranked["matcher"] == str(matcher) and reranked["top"] == 10
    assert f"re-ranked by {matcher}" in completed.stdout
    for direction in ("text_to_image", "image_to_text"):
        assert set(reranked[direction]) == set(metrics[direction])
    # 8 test images: each caption's 10 nearest are all of them; each image's 10 nearest
    # captions (of 40) are the same ten, re-ordered
    assert reranked["image_to_text"]["r10"] == metrics["image_to_text"]["r10"]

    completed = run_cli("evaluate", "--model", out / "model.keras", "--data", small_shapes,
                        "--matcher", matcher, "--out", tmp_path / "evaluated.json")
    assert completed.returncode == 0, completed.stderr[-3000:]
    evaluated = json.loads((tmp_path / "evaluated.json").read_text())
    assert evaluated["task"] == "retrieval"
    for direction in ("text_to_image", "image_to_text"):
        assert evaluated[direction] == pytest.approx(metrics[direction], abs=1e-6), direction
        assert evaluated["reranked"][direction] == pytest.approx(reranked[direction], abs=1e-6), direction
    for key in ("chance", "n_images", "n_captions"):
        assert evaluated[key] == metrics[key], key

    # The dual encoder chooses among a captioner's beams and sampled captions.
    captioner, _ = cli_run
    data = json.loads((captioner / "config.json").read_text())["data_dir"]
    images = [f"{data}/Images/test_0000{i}.png" for i in range(2)]
    from mmkeras import cli
    capsys.readouterr()
    assert cli.main(["caption", "--model", str(captioner / "model.keras"), "--rerank", str(out / "model.keras"),
                     "--beam", "3", "--samples", "4", *images]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == images


def test_rerank_asks_for_a_dual_encoder_and_candidates(cli_run, small_shapes, capsys):
    from argparse import Namespace

    from mmkeras import cli
    from mmkeras.cli import _reranker
    from mmkeras.errors import UserError
    captioner = cli_run[0] / "model.keras"
    assert cli.main(["evaluate", "--model", str(captioner), "--data", str(small_shapes), "--beam", "2",
                     "--rerank", str(captioner)]) == 2
    assert f"--rerank {captioner}: expected a dual encoder" in capsys.readouterr().err
    with pytest.raises(UserError, match="--samples: .* give it too"):
        _reranker(Namespace(rerank=None, samples=4, beam=1))
    with pytest.raises(UserError, match="nothing to choose"):
        _reranker(Namespace(rerank=str(captioner), samples=0, beam=1))
    assert _reranker(Namespace(rerank=None, samples=0, beam=3)) is None


def test_a_matcher_must_be_a_matching_model(tmp_path, cli_run, small_shapes, capsys):
    """Found before training (the folder named by --out stays as it was), and before scoring."""
    from mmkeras import cli
    vqa_model = _untrained_task_model(tmp_path / "vqa.keras", "vqa")
    assert cli.main(["retrieval", "--data", str(small_shapes), "--matcher", str(vqa_model),
                     "--out", str(tmp_path / "retrieval")]) == 2
    assert (f"--matcher {vqa_model}: expected a model.keras written by `python -m mmkeras match`, "
            "found the model 'fused_classifier_concat' (a VQA model)") in capsys.readouterr().err
    assert not (tmp_path / "retrieval").exists()
    captioner = cli_run[0] / "model.keras"
    assert cli.main(["evaluate", "--model", str(captioner), "--data", str(small_shapes),
                     "--matcher", str(vqa_model)]) == 2
    assert "--matcher re-ranks what a dual encoder retrieves" in capsys.readouterr().err

    from mmkeras.tasks.retrieval import build_dual_encoder
    dual_encoder = tmp_path / "dual_encoder.keras"
    build_dual_encoder(["", "[UNK]", "a"], 15)[0].save(dual_encoder)
    for matcher, message in ((vqa_model, "(a VQA model)"),
                             (tmp_path / "missing.keras", "model file not found; expected a model.keras "
                                                          "written by `python -m mmkeras match`")):
        assert cli.main(["evaluate", "--model", str(dual_encoder), "--data", str(small_shapes),
                         "--matcher", str(matcher), "--out", str(tmp_path / "scores.json")]) == 2
        assert f"--matcher {matcher}: " in (err := capsys.readouterr().err) and message in err
        assert not (tmp_path / "scores.json").exists()
    # photos: nothing for a matcher of shapes to judge
    match_model = _untrained_task_model(tmp_path / "match.keras", "match")
    assert cli.main(["evaluate", "--model", str(dual_encoder), "--data", str(_one_photo_folder(tmp_path)),
                     "--matcher", str(match_model)]) == 2
    assert "a matching model re-ranks captions of Shapes Captions scenes" in capsys.readouterr().err


def test_fusion_writes_one_row_per_fusion(tmp_path, small_shapes):
    completed = run_cli("fusion", "--data", small_shapes, "--fusions", "gate,text_only",
                        "--epochs", 1, "--seeds", 2, "--out", tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    table = (tmp_path / "fusion.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["gate", "text_only"]
    assert table in completed.stdout
    rows = json.loads((tmp_path / "fusion.json").read_text())["rows"]
    for row in rows:  # two seeds each: their mean, and their spread in the table
        assert len(row["accuracies"]) == 2 and row["accuracy"] == pytest.approx(sum(row["accuracies"]) / 2)
        assert f"{row['accuracy']:.3f} ± {row['accuracy_sd']:.3f}" in table
        assert (tmp_path / row["fusion"] / "seed1" / "model.keras").exists()
        seed_metrics = [json.loads((tmp_path / row["fusion"] / f"seed{k}" / "metrics.json").read_text())
                        for k in (0, 1)]
        assert set(row["by_kind"]) == set(seed_metrics[0]["by_kind"])  # every question type
        for kind, score in row["by_kind"].items():
            assert score["accuracy"] == pytest.approx(sum(m["by_kind"][kind]["accuracy"] for m in seed_metrics) / 2)
            assert score["chance"] == seed_metrics[1]["by_kind"][kind]["chance"]


def _one_photo_folder(tmp_path):
    """A folder in the Flickr8k layout whose one image has a caption of no Shapes template."""
    from PIL import Image
    data = tmp_path / "photos"
    (data / "Images").mkdir(parents=True)
    Image.new("RGB", (16, 16), "white").save(data / "Images" / "dog.png")
    (data / "captions.txt").write_text("dog.png#0\ta dog on a beach\n")
    for split in ("train", "val", "test"):
        (data / f"{split}.txt").write_text("dog.png\n")
    return data


def test_tasks_on_data_that_are_not_shapes_captions_exit_2(tmp_path):
    data = _one_photo_folder(tmp_path)
    for command in ("vqa", "match"):
        completed = run_cli(command, "--data", data, "--out", tmp_path / command)
        assert completed.returncode == 2
        assert "dog.png" in completed.stderr and "Shapes Captions" in completed.stderr
        assert "Traceback" not in completed.stderr
        assert not (tmp_path / command / "model.keras").exists()


def test_evaluate_of_a_task_model_on_photos_exits_2(tmp_path):
    """A VQA model scored on a folder with no scenes to ask about: one line, exit 2."""
    vqa_model = _untrained_task_model(tmp_path / "vqa.keras", "vqa")
    data = _one_photo_folder(tmp_path)
    completed = run_cli("evaluate", "--model", vqa_model, "--data", data)
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert "Shapes Captions" in completed.stderr and "Traceback" not in completed.stderr


def test_unknown_fusion_exits_2(tmp_path):
    completed = run_cli("fusion", "--fusions", "concat,sum", "--out", tmp_path)
    assert completed.returncode == 2
    assert "unknown sum" in completed.stderr


def test_evaluate_out_naming_a_folder_is_refused_before_the_evaluation(tmp_path):
    completed = run_cli("evaluate", "--model", tmp_path / "never_read.keras", "--data", "shapes",
                        "--out", tmp_path)
    assert completed.returncode == 2
    assert f"--out {tmp_path}: is a folder; expected the name of a JSON file" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_negative_number_of_fine_tuned_layers_is_refused(tmp_path):
    completed = run_cli("train", "--fine-tune-layers", "-1", "--out", tmp_path / "run")
    assert completed.returncode == 2
    assert "expected a whole number of 0 or more, got -1" in completed.stderr
    assert not (tmp_path / "run").exists()


def test_a_transformer_on_a_vision_transformer_trains_and_captions(tmp_path, small_shapes):
    out = tmp_path / "run"
    # No per-epoch validation captions: the test is about the encoder, and they cost a compile.
    completed = run_cli("train", "--data", small_shapes, "--decoder", "transformer", "--encoder", "vit",
                        "--epochs", 1, "--batch-size", 16, "--val-bleu-images", 0, "--out", out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["decoder"], config["encoder"]) == ("transformer", "vit")
    # Cross-attention reads where things are from each feature times its coordinates.
    assert "features_at_coordinates" in zipfile.ZipFile(out / "model.keras").read("config.json").decode()
    image = sorted((small_shapes / "Images").glob("test_*.png"))[0]
    captioned = run_cli("caption", "--model", out / "model.keras", image, "--beam", 2)
    assert captioned.returncode == 0, captioned.stderr[-3000:]
    assert captioned.stdout.startswith(f"{image}\t")


def test_an_encoder_and_a_backbone_together_are_refused(tmp_path):
    completed = run_cli("train", "--encoder", "vit", "--backbone", "MobileNetV2", "--out", tmp_path / "run")
    assert completed.returncode == 2
    assert "--encoder vit and --backbone MobileNetV2: choose one" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "run").exists()


def test_a_transformer_without_keras_hub_says_how_to_install_it(tmp_path):
    without_keras_hub = ("import sys; sys.modules['keras_hub'] = None; "
                         "from mmkeras.cli import main; sys.exit(main(sys.argv[1:]))")
    completed = subprocess.run(
        [sys.executable, "-c", without_keras_hub, "train", "--decoder", "transformer",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "need keras-hub: pip install 'mmkeras[transformer]'" in completed.stderr
    assert not (tmp_path / "run").exists()
