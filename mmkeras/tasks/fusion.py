"""Fusing an image and a text into one classifier: six ways of joining the two branches.

The image branch is the captioner's CNN encoder
(:func:`mmkeras.nn.image_encoders.build_image_encoder`), the text branch the shared text
encoder (:func:`mmkeras.nn.text_encoder.encode_text`: word embedding and LSTM). What
differs is where and how they meet:

- ``concat`` (late): the image summary and the text summary side by side, then dense layers;
- ``gate`` (late): a gated multimodal unit (Arevalo et al., 2017): a learned sigmoid gate
  weighs the image against the text, feature by feature;
- ``product`` (late): the outer product of the two summaries, each with a 1 appended (tensor
  fusion, Zadeh et al., 2017), so every image feature multiplies every text feature;
- ``film`` (a learned transform, in the middle): the text scales and shifts each channel of
  the image feature map before the image is summarised (FiLM, Perez et al., 2018);
- ``attention`` (cross-modal attention): every word's LSTM state attends over the 8 x 8
  feature map, as the caption decoder does, and the words with what they found are pooled;
- ``early``: the text, squeezed to a few numbers, is painted onto every pixel and the CNN
  sees image and text together from its first layer.

Introduced in ``04_multimodal_tasks.ipynb``.
"""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.config import FUSIONS
from mmkeras.nn.attention import attention_memory
from mmkeras.nn.image_encoders import build_image_encoder, small_cnn
from mmkeras.nn.layers import OuterProduct
from mmkeras.nn.text_encoder import encode_text


def _gated_unit(image_summary, text_summary, units: int):
    image_part = layers.Dense(units, activation="tanh", name="gate_image")(image_summary)
    text_part = layers.Dense(units, activation="tanh", name="gate_text")(text_summary)
    gate = layers.Dense(units, activation="sigmoid", name="gate")(
        layers.Concatenate()([image_summary, text_summary]))
    # gate * image + (1 - gate) * text, with built-in layers only (loads with safe_mode)
    return layers.Add(name="gated_sum")([
        layers.Multiply()([gate, image_part]),
        layers.Subtract()([text_part, layers.Multiply()([gate, text_part])]),
    ])


def _film(feature_map, text_summary, units: int):
    channels = feature_map.shape[-1]
    scale = layers.Dense(channels, name="film_scale")(text_summary)
    shift = layers.Dense(channels, name="film_shift")(text_summary)
    # (1 + scale) starts the transform near the identity; a (1, 1, C) map broadcasts
    scale = layers.Reshape((1, 1, channels))(layers.Rescaling(1.0, offset=1.0)(scale))
    shift = layers.Reshape((1, 1, channels))(shift)
    modulated = layers.Activation("relu")(
        layers.Add()([layers.Multiply()([feature_map, scale]), shift]))
    modulated = layers.Conv2D(units, 3, padding="same", activation="relu", name="film_conv")(modulated)
    return layers.Dense(units, activation="relu", name="film_summary")(layers.Flatten()(modulated))


def _cross_attention(feature_map, word_states, units: int):
    memory = attention_memory(feature_map, units)
    context = layers.Attention(name="attention")([word_states, memory])
    per_word = layers.Dense(units, activation="relu", name="attention_combine")(
        layers.Concatenate()([word_states, context]))
    return layers.GlobalAveragePooling1D(name="pool_words")(per_word)  # padding masked out


def build_fused_classifier(vocabulary: list[str], max_text_length: int, num_classes: int,
                           fusion: str = "attention", image_size: int = 64, units: int = 128,
                           embedding_dim: int = 64, dropout: float = 0.1,
                           early_channels: int = 8) -> keras.Model:
    """``{"image": uint8 images, "text": token ids}`` to ``num_classes`` logits.

    One model for visual question answering (the text is a question, the classes its
    answers) and for image-text matching (the text is a caption, the classes no and yes).
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    text = keras.Input((max_text_length,), dtype="int32", name="text")
    word_states, text_summary = encode_text(text, vocabulary, embedding_dim, units)

    if fusion == "early":
        pixels = layers.Rescaling(1 / 255, name="rescale")(image)
        painted = layers.Dense(early_channels, activation="tanh", name="text_to_pixels")(text_summary)
        painted = layers.UpSampling2D(size=image_size, name="paint_text")(
            layers.Reshape((1, 1, early_channels))(painted))
        x = small_cnn(layers.Concatenate(name="pixels_and_text")([pixels, painted]))
        feature_map = layers.Conv2D(units, 1, activation="relu", name="feature_projection")(x)
    else:
        feature_map = build_image_encoder(image_size, feature_dim=units)(image)
    # Flatten, not average: answers about "left of" and "above" depend on where things are.
    image_summary = layers.Dense(units, activation="relu", name="image_summary")(
        layers.Flatten()(feature_map))

    if fusion in ("concat", "early"):
        fused = layers.Concatenate(name="concat")([image_summary, text_summary])
    elif fusion == "gate":
        fused = _gated_unit(image_summary, text_summary, units)
    elif fusion == "product":
        small = units // 4  # (32 + 1) x (32 + 1) products, not 129 x 129
        fused = OuterProduct(name="outer_product")([
            layers.Dense(small, activation="tanh", name="image_small")(image_summary),
            layers.Dense(small, activation="tanh", name="text_small")(text_summary)])
    elif fusion == "film":
        fused = _film(feature_map, text_summary, units)
    else:
        fused = _cross_attention(feature_map, word_states, units)

    hidden = layers.Dense(units, activation="relu", name="fused_hidden")(
        layers.Dropout(dropout)(fused))
    logits = layers.Dense(num_classes, dtype="float32", name="class_logits")(hidden)
    return keras.Model({"image": image, "text": text}, logits, name=f"fused_classifier_{fusion}")
