"""`python -m mmkeras export`: a SavedModel that captions image bytes without mmkeras, and TF Lite."""

import json
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_cli import run_cli

from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.caption.model import build_caption_model
from mmkeras.data.folder import load_captions
from mmkeras.data.images import decode_image
from mmkeras.data.text import END, build_vectorizer, vectorizer_vocabulary


@pytest.fixture(scope="module")
def model_file(small_shapes, tmp_path_factory):
    """An untrained attention model: its random weights give long, varied captions, which
    test the decoding and the end-of-caption handling harder than a trained model's."""
    keras.utils.set_random_seed(1)
    train = load_captions(small_shapes)["train"]
    vocabulary = vectorizer_vocabulary(build_vectorizer([c for refs in train.captions for c in refs], 12))
    path = tmp_path_factory.mktemp("export_model") / "model.keras"
    build_caption_model(vocabulary, 12, "attention").save(path)
    return path


@pytest.fixture(scope="module")
def exported(model_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    completed = run_cli("export", "--model", model_file, "--out", out / "saved",
                        "--tflite", out / "model.tflite")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out / "saved", out / "model.tflite"


@pytest.fixture(scope="module")
def image_files(small_shapes, tmp_path_factory):
    """Two PNGs of the dataset and a JPEG of another size made from a third one."""
    pngs = sorted((small_shapes / "Images").glob("test_*.png"))[:3]
    jpeg = tmp_path_factory.mktemp("photos") / "photo.jpg"
    Image.open(pngs[2]).convert("RGB").resize((200, 150)).save(jpeg, quality=95)
    return [pngs[0], pngs[1], jpeg]


def _expected_captions(model_file, image_files, beam_width=1):
    caption_model = keras.saving.load_model(model_file, safe_mode=True)
    images = np.stack([decode_image(tf.io.read_file(str(f)), 64).numpy() for f in image_files])
    return CaptionDecoder(caption_model).captions(images, beam_width)


SERVE_WITHOUT_MMKERAS = textwrap.dedent("""
    import json, sys
    sys.modules["mmkeras"] = None  # any import of mmkeras would now fail
    import tensorflow as tf
    serving = tf.saved_model.load(sys.argv[1])
    images = tf.constant([open(path, "rb").read() for path in sys.argv[2:]])
    greedy = serving.signatures["serve"](images=images)["captions"]
    beam = serving.serve_beam(images, tf.constant(3))["captions"]
    print(json.dumps({"greedy": [c.decode() for c in greedy.numpy()],
                      "beam": [c.decode() for c in beam.numpy()]}))
""")


def test_saved_model_captions_image_bytes_without_mmkeras(exported, model_file, image_files):
    saved, _ = exported
    completed = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_MMKERAS, str(saved), *map(str, image_files)],
        capture_output=True, text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                                          "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    captions = json.loads(completed.stdout.splitlines()[-1])
    assert captions["greedy"] == _expected_captions(model_file, image_files)
    assert captions["beam"] == _expected_captions(model_file, image_files, beam_width=3)
    assert all(captions["greedy"]), "no empty captions"


def test_tflite_model_gives_the_same_greedy_words(exported, model_file, image_files):
    _, tflite = exported
    with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT replaces it
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(tflite))
    caption_words = interpreter.get_signature_runner("caption_words")
    expected = _expected_captions(model_file, image_files[:2])
    for path, caption in zip(image_files[:2], expected):
        image = decode_image(tf.io.read_file(str(path)), 64).numpy()[None]
        words = [w.decode() for w in caption_words(images=image)["words"][0]]
        caption_words_only = words[: words.index(END)] if END in words else words
        assert " ".join(caption_words_only) == caption


def test_serve_beam_caps_the_beam_width(model_file, image_files):
    from mmkeras.caption.export import MAX_BEAM_WIDTH, serving_functions
    serve_beam = serving_functions(keras.saving.load_model(model_file, safe_mode=True))["serve_beam"]
    images = tf.constant([open(path, "rb").read() for path in image_files[:1]])
    captions = serve_beam(images, tf.constant(10**6))["captions"].numpy()
    assert [c.decode() for c in captions] == _expected_captions(model_file, image_files[:1], MAX_BEAM_WIDTH)


def test_serve_refuses_an_image_whose_header_claims_too_many_pixels(model_file, image_files, tmp_path):
    import io
    import struct

    from mmkeras.caption.export import serving_functions
    from mmkeras.data.images import encoded_pixels
    for path in image_files:  # PNG and JPEG, read from the header as PIL reads them
        width, height = Image.open(path).size
        assert int(encoded_pixels(tf.constant(open(path, "rb").read()))) == width * height
    for fmt in ("GIF", "BMP"):
        buffer = io.BytesIO()
        Image.new("RGB", (30, 20)).save(buffer, fmt)
        assert int(encoded_pixels(tf.constant(buffer.getvalue()))) == 600
    png = bytearray(open(image_files[0], "rb").read())
    png[16:24] = struct.pack(">II", 30_000, 30_000)  # a bomb's header: 900 million pixels
    serve = serving_functions(keras.saving.load_model(model_file, safe_mode=True))["serve"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than 89,478,485 pixels"):
        serve(tf.constant([bytes(png)]))


def test_export_refuses_to_replace_a_folder_that_is_not_a_saved_model(model_file, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    completed = run_cli("export", "--model", model_file, "--out", tmp_path)
    assert completed.returncode == 2
    assert "is not a SavedModel" in completed.stderr and str(tmp_path) in completed.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_export_of_a_missing_model_is_a_clear_error(tmp_path):
    completed = run_cli("export", "--model", tmp_path / "none.keras", "--out", tmp_path / "out")
    assert completed.returncode == 2
    assert "model file not found" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_token_ids_become_the_same_text_in_the_graph_as_in_python():
    vocabulary = ["", "[UNK]", "[start]", "[end]", "a", "red", "circle"]
    token_ids = np.array([[4, 5, 6, 3, 4, 0],   # stops at the end token
                          [2, 4, 1, 6, 0, 0],   # start token dropped, unknown kept
                          [3, 4, 4, 4, 4, 4],   # ends at once: empty caption
                          [6, 6, 6, 6, 6, 6]])  # never ends: every word
    from mmkeras.caption.export import token_ids_to_text
    from mmkeras.data.text import ids_to_captions
    in_graph = [c.decode() for c in token_ids_to_text(tf.constant(token_ids), vocabulary).numpy()]
    assert in_graph == ids_to_captions(token_ids, vocabulary)
    assert in_graph == ["a red circle", "a [UNK] circle", "", "circle circle circle circle circle circle"]


def test_a_transformer_captioner_exports_with_the_same_captions(small_shapes, image_files, tmp_path):
    from mmkeras.caption.export import export_saved_model
    keras.utils.set_random_seed(2)
    train = load_captions(small_shapes)["train"]
    vocabulary = vectorizer_vocabulary(build_vectorizer([c for refs in train.captions for c in refs], 12))
    model_file = tmp_path / "transformer.keras"
    build_caption_model(vocabulary, 12, "transformer", units=64, embedding_dim=32).save(model_file)
    serving = tf.saved_model.load(str(export_saved_model(keras.saving.load_model(model_file),
                                                         tmp_path / "saved")))
    images = tf.constant([open(path, "rb").read() for path in image_files])
    greedy = [c.decode() for c in serving.serve(images)["captions"].numpy()]
    beam = [c.decode() for c in serving.serve_beam(images, tf.constant(3))["captions"].numpy()]
    assert greedy == _expected_captions(model_file, image_files)
    assert beam == _expected_captions(model_file, image_files, beam_width=3)


@pytest.mark.parametrize("decoder", ["init", "transformer"])
def test_every_decoder_converts_to_tflite_with_the_same_greedy_words(decoder, tmp_path):
    from mmkeras.caption.export import export_tflite
    keras.utils.set_random_seed(3)
    vocabulary = ["", "[UNK]", "[start]", END] + [f"w{i}" for i in range(12)]
    caption_model = build_caption_model(vocabulary, 6, decoder, units=32, embedding_dim=16)
    interpreter = tf.lite.Interpreter(model_path=str(export_tflite(caption_model, tmp_path / "m.tflite")))
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    token_ids = interpreter.get_signature_runner("caption_words")(images=image)["token_ids"]
    np.testing.assert_array_equal(token_ids, CaptionDecoder(caption_model).token_ids(image))
