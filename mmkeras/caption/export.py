"""A trained caption model as a self-contained TensorFlow SavedModel, and as TensorFlow Lite.

The SavedModel's ``serve`` signature takes a batch of encoded images (JPEG, PNG, GIF or
BMP bytes, any size) and returns caption strings: image decoding and resizing, the
vocabulary and greedy decoding are all inside, so the user of the export needs TensorFlow
only, not mmkeras (TensorFlow Serving, a web service, another team's code)::

    serving = tf.saved_model.load("export/caption_model")
    captions = serving.serve(tf.constant([open("photo.jpg", "rb").read()]))["captions"]

``serve_beam`` does the same with beam search (its second input is the beam width), and
``serve_pixels`` takes images already decoded and resized to the model's size (uint8).

The TensorFlow Lite model (:func:`export_tflite`) is greedy decoding of one image already
decoded and resized, returning the words; it uses TensorFlow Lite's built-in operations
only. Decoding image bytes stays outside it: ``DecodeImage`` is a "select TF" (Flex) op,
which the Python TensorFlow Lite interpreter of TensorFlow 2.21 cannot run, and the
antialiased resize the model was trained with (``ScaleAndTranslate``) converts to neither.
Apps decode and resize with their platform's image API. Beam search is not in it.
``python -m mmkeras export`` runs :func:`export_saved_model` and :func:`export_tflite`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from mmkeras import atomic
from mmkeras.caption.decoding import CaptionDecoder
from mmkeras.data.folder import MAX_PIXELS
from mmkeras.data.images import decode_image, encoded_pixels
from mmkeras.data.text import END, PAD, START
from mmkeras.errors import UserError

IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="images")
BEAM_WIDTH = tf.TensorSpec([], tf.int32, name="beam_width")
# What serve_beam accepts at most: a caller's beam_width of a million must not ask for a
# million beams' memory. Wider beams gain nothing on captions (notebook 03).
MAX_BEAM_WIDTH = 16


def token_ids_to_text(token_ids: tf.Tensor, vocabulary: list[str]) -> tf.Tensor:
    """:func:`mmkeras.data.text.ids_to_captions` in TensorFlow ops, so it can live in a graph."""
    end_id, start_id = vocabulary.index(END), vocabulary.index(START)
    words = tf.gather(tf.constant(vocabulary), token_ids)
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(token_ids, end_id), tf.int32), axis=1), 0)
    keep = before_end & tf.not_equal(token_ids, vocabulary.index(PAD)) & tf.not_equal(token_ids, start_id)
    return tf.strings.reduce_join(tf.ragged.boolean_mask(words, keep), axis=1, separator=" ")


def serving_functions(caption_model: keras.Model):
    """``serve(images)`` and ``serve_beam(images, beam_width)`` on encoded image bytes."""
    decoder = CaptionDecoder(caption_model)
    image_size = caption_model.input["image"].shape[1]

    def decode_one(image):
        # Bytes from anyone: the size their header claims is checked before they are decoded
        # (TensorFlow alone would decode up to 2^29 pixels, 1.5 GB, per image).
        check = tf.debugging.assert_less_equal(
            encoded_pixels(image), tf.constant(MAX_PIXELS, tf.int64),
            message=f"an image of more than {MAX_PIXELS:,} pixels")
        with tf.control_dependencies([check]):
            return decode_image(image, image_size)

    def decode_all(images):
        return tf.map_fn(decode_one, images,
                         fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))

    def serve(images):
        token_ids, _ = decoder.greedy_search(decode_all(images))
        return {"captions": token_ids_to_text(token_ids, decoder.vocabulary)}

    def serve_pixels(images):
        token_ids, _ = decoder.greedy_search(images)
        return {"captions": token_ids_to_text(token_ids, decoder.vocabulary)}

    def serve_beam(images, beam_width):
        token_ids = decoder.beam_search(decode_all(images), tf.clip_by_value(beam_width, 1, MAX_BEAM_WIDTH))
        return {"captions": token_ids_to_text(token_ids, decoder.vocabulary)}

    # tf.function with AutoGraph, so the decoders' Python loops become graph loops.
    pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, name="images")
    return {"serve": tf.function(serve, input_signature=[IMAGE_BYTES]),
            "serve_beam": tf.function(serve_beam, input_signature=[IMAGE_BYTES, BEAM_WIDTH]),
            "serve_pixels": tf.function(serve_pixels, input_signature=[pixels])}


def export_saved_model(caption_model: keras.Model, out) -> Path:
    """Write the SavedModel with its ``serve``, ``serve_beam`` and ``serve_pixels`` signatures."""
    out = Path(out)
    if out.exists() and not (out / "saved_model.pb").is_file():
        # Never delete what is not ours: an existing folder is replaced only if it is a SavedModel.
        raise UserError(f"{out}: exists and is not a SavedModel; choose a new folder for --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    archive = keras.export.ExportArchive()
    archive.track(caption_model)
    for name, function in serving_functions(caption_model).items():
        archive.add_endpoint(name, function)
    # Written beside the destination, then renamed: a failed export leaves no half folder.
    partial = atomic.partial_path(out)
    shutil.rmtree(partial, ignore_errors=True)
    archive.write_out(str(partial), verbose=False)
    atomic.replace_folder(partial, out)
    return out


def export_tflite(caption_model: keras.Model, path) -> Path:
    """Write ``path`` (``.tflite``): one uint8 image, ``(1, size, size, 3)``, to its words.

    Its signature ``caption_words`` returns ``words`` (strings, ``"[end]"`` then padding
    after the caption) and ``token_ids``. A batch of exactly one keeps the decoding loop
    within TensorFlow Lite's built-in operations (an unknown batch size needs Flex ops).
    """
    path = Path(path)
    decoder = CaptionDecoder(caption_model)
    image_size = caption_model.input["image"].shape[1]

    @tf.function(input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.uint8,
                                                name="images")])
    def caption_words(images):
        token_ids, _ = decoder.greedy_search(images)
        return {"token_ids": token_ids, "words": tf.gather(tf.constant(decoder.vocabulary), token_ids)}

    with tempfile.TemporaryDirectory() as staging:
        # Converting from a SavedModel freezes the weights into the flatbuffer; converting the
        # function directly leaves the variables read inside the loop uninitialised.
        archive = keras.export.ExportArchive()
        archive.track(caption_model)
        archive.add_endpoint("caption_words", caption_words)
        archive.write_out(staging, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=["caption_words"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, flatbuffer)
    return path
