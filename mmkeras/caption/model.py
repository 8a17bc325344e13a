"""The caption model: an image encoder and a decoder in one functional model.

Three decoders: ``init`` (show and tell) and ``attention`` (show, attend and tell), an
Embedding and an LSTM, built here; and ``transformer`` (:mod:`mmkeras.caption.transformer`).
For decoding, :func:`stepwise_decoder` gives each one's two halves: the encoder, run once
per image, and one decoding step, run once per word (:mod:`mmkeras.caption.decoding`
searches over that step). Every layer is a built-in Keras layer, a ``keras_hub`` one or a
registered one from :mod:`mmkeras.nn`, so a model saved as ``.keras`` loads with
``safe_mode=True``. Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

import keras
from keras import layers

from mmkeras import runs
from mmkeras.config import DECODERS
from mmkeras.nn.attention import attention_memory
from mmkeras.nn.image_encoders import build_image_encoder
from mmkeras.nn.layers import WordEmbedding
from mmkeras.nn.losses import MaskedAccuracy, masked_loss


def with_backbone(feature_caption_model: keras.Model, backbone: keras.Model) -> keras.Model:
    """The caption model on images: ``backbone`` under a model trained on its cached features.

    The same layers, with the trained weights copied over: what is saved and decoded.
    """
    trained = feature_caption_model.get_layer
    projection = trained("image_encoder").get_layer("feature_projection")
    encoder = build_image_encoder(feature_dim=projection.filters, backbone=backbone)
    vocabulary, max_caption_length = (caption_vocabulary(feature_caption_model),
                                      max_caption_length_of(feature_caption_model))
    if is_transformer(feature_caption_model):
        from mmkeras.caption.transformer import build_transformer_caption_model, transformer_settings
        caption_model = build_transformer_caption_model(
            vocabulary, max_caption_length, encoder, **transformer_settings(feature_caption_model))
    else:
        caption_model = build_caption_model(
            vocabulary, max_caption_length, decoder_kind(feature_caption_model), encoder,
            embedding_dim=trained("word_embedding").output_dim, units=trained("decoder_lstm").units,
            dropout=trained("decoder_dropout").rate)
    caption_model.get_layer("image_encoder").get_layer("feature_projection").set_weights(
        projection.get_weights())
    for layer in feature_caption_model.layers:
        if layer.weights and layer.name != "image_encoder":
            caption_model.get_layer(layer.name).set_weights(layer.get_weights())
    return caption_model


def build_caption_model(vocabulary: list[str], max_caption_length: int, decoder: str = "attention",
                        image_encoder: keras.Model | None = None, image_size: int = 64,
                        embedding_dim: int = 128, units: int = 256,
                        dropout: float = 0.1, use_cudnn: bool | str = "auto") -> keras.Model:
    """The functional caption model: ``{"image", "caption_in"}`` to next-word logits.

    ``decoder="init"`` (show and tell): the image sets the LSTM's initial state.
    ``decoder="attention"`` (show, attend and tell): the same, and the LSTM output at each
    step also attends over the encoder's spatial feature map (Luong-style, after the LSTM,
    so that decoding one word costs one attention), the attended context joining the
    prediction. ``decoder="transformer"``: Transformer decoder blocks instead of the LSTM
    (:mod:`mmkeras.caption.transformer`): ``embedding_dim`` wide (a Transformer's words keep
    their width through every block), with feed-forward layers ``units`` wide.

    :class:`StepwiseDecoder` runs the same layers one word at a time, finding them by the
    names given here. ``use_cudnn=False`` forces the generic LSTM kernel on a GPU
    (only to measure what cuDNN is worth).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    image_encoder = image_encoder or build_image_encoder(image_size)
    if decoder == "transformer":
        # Imported here: keras_hub adds two seconds to every start-up that never needs it.
        from mmkeras.caption.transformer import build_transformer_caption_model
        return build_transformer_caption_model(vocabulary, max_caption_length, image_encoder,
                                               width=embedding_dim, feedforward=units,
                                               dropout=dropout)
    # uint8 images, float features of a frozen backbone (mmkeras.data.feature_cache), or a
    # waveform: the input takes the encoder's input's name ("image" or "audio").
    image = keras.Input(image_encoder.input_shape[1:], dtype=image_encoder.input.dtype,
                        name=source_name(image_encoder))
    caption_in = keras.Input((max_caption_length + 1,), dtype="int32", name="caption_in")

    feature_map = image_encoder(image)
    # Flatten, not average: "left of" and "above" depend on where each feature lies.
    summary = layers.Flatten(name="image_summary")(feature_map)
    state_h = layers.Dense(units, activation="tanh", name="init_h")(summary)
    state_c = layers.Dense(units, name="init_c")(summary)
    if decoder == "attention":
        memory = attention_memory(feature_map, units)

    words = WordEmbedding(vocabulary, embedding_dim, name="word_embedding")(caption_in)
    # Defaults (tanh, sigmoid, no recurrent dropout, right padding) keep Keras on the cuDNN path.
    hidden = layers.LSTM(units, return_sequences=True, use_cudnn=use_cudnn, name="decoder_lstm")(
        words, initial_state=[state_h, state_c])
    if decoder == "attention":
        context = layers.Attention(name="attention")([hidden, memory])
        hidden = layers.Concatenate(name="attention_concat")([hidden, context])
        hidden = layers.Dense(units, activation="tanh", name="attention_combine")(hidden)
    hidden = layers.Dropout(dropout, name="decoder_dropout")(hidden)
    # float32 logits keep the softmax stable under mixed precision.
    logits = layers.Dense(len(vocabulary), dtype="float32", name="word_logits")(hidden)
    return keras.Model({source_name(image_encoder): image, "caption_in": caption_in}, logits,
                       name=f"caption_model_{decoder}")


def source_name(encoder: keras.Model) -> str:
    """What a caption model built on ``encoder`` calls what it describes: ``"audio"`` for a
    speech recogniser's (:mod:`mmkeras.speech.recognition`), else ``"image"``."""
    return "audio" if encoder.inputs[0].name == "audio" else "image"


def source_input(caption_model: keras.Model):
    """The caption model's input besides ``caption_in``: the images (or features), or audio."""
    return next(tensor for name, tensor in caption_model.input.items() if name != "caption_in")


def is_transformer(caption_model: keras.Model) -> bool:
    # By the class's name, so that LSTM models never import keras_hub.
    return any(type(layer).__name__ == "TransformerDecoder" for layer in caption_model.layers)


def decoder_kind(caption_model: keras.Model) -> str:
    if is_transformer(caption_model):
        return "transformer"
    names = {layer.name for layer in caption_model.layers}
    return "attention" if "attention" in names else "init"


def caption_vocabulary(caption_model: keras.Model) -> list[str]:
    """The words of the model's vocabulary, id by id (it travels inside the model)."""
    return list(caption_model.get_layer("word_embedding").vocabulary)


def max_caption_length_of(caption_model: keras.Model) -> int:
    return caption_model.get_layer("word_embedding").input.shape[1] - 1


def compile_caption_model(caption_model: keras.Model, learning_rate: float = 2e-3,
                          decay_steps: int | None = None,
                          jit_compile: bool | str = "auto") -> keras.Model:
    """Adam with clipped gradients and, with ``decay_steps``, a cosine decay
    (:func:`mmkeras.runs.optimizer`); the masked loss and accuracy. ``jit_compile=True`` asks
    for XLA."""
    caption_model.compile(
        optimizer=runs.optimizer(learning_rate, decay_steps, floor=runs.COSINE_FLOOR["caption"]),
        loss=masked_loss(), metrics=[MaskedAccuracy()], jit_compile=jit_compile)
    return caption_model


def stepwise_decoder(caption_model: keras.Model):
    """The caption model one word at a time: a :class:`StepwiseDecoder`, or for a
    Transformer a :class:`~mmkeras.caption.transformer.TransformerSteps`."""
    if is_transformer(caption_model):
        from mmkeras.caption.transformer import TransformerSteps
        return TransformerSteps(caption_model)
    return StepwiseDecoder(caption_model)


class StepwiseDecoder:
    """An LSTM caption model's decoder, one word at a time: :meth:`encode` once per image,
    then :meth:`step` once per word, carrying the LSTM state instead of re-reading the prefix.

    The same layers (the same weights) as the caption model, found by the names
    :func:`build_caption_model` gives them.
    """

    def __init__(self, caption_model: keras.Model):
        layer = caption_model.get_layer
        self.uses_attention = decoder_kind(caption_model) == "attention"
        self.embedding = layer("word_embedding")
        self.lstm_cell = layer("decoder_lstm").cell
        self.word_logits = layer("word_logits")
        encoded = [layer("init_h").output, layer("init_c").output]
        if self.uses_attention:
            self.attention = layer("attention")
            self.attention_concat = layer("attention_concat")
            self.attention_combine = layer("attention_combine")
            encoded.append(layer("attention_memory").output)
        # The encoding half of the caption model, as a model of its own.
        self.encoder = keras.Model(source_input(caption_model), encoded, name="caption_encoder")

    def encode(self, images):
        """``(state, memory)``: the LSTM's initial state, and what attention reads (or None)."""
        encoded = self.encoder(images, training=False)
        return [encoded[0], encoded[1]], (encoded[2] if self.uses_attention else None)

    def step(self, tokens, state, memory):
        """``(logits, state, attention)`` for the next word after ``tokens``; attention over
        the feature map's positions, or None without an attention decoder."""
        # .call, not __call__: a one-word step has no padding, and a mask here would only
        # trigger a warning from the LSTM cell, which cannot use one.
        words = self.embedding.call(tokens)
        hidden, state = self.lstm_cell(words, state)
        attention_scores = None
        if self.uses_attention:
            context, attention_scores = self.attention(
                [hidden[:, None, :], memory], return_attention_scores=True)
            hidden = self.attention_combine(self.attention_concat([hidden, context[:, 0, :]]))
            attention_scores = attention_scores[:, 0, :]
        return self.word_logits(hidden), state, attention_scores
