"""The image encoder, the two Embedding + LSTM decoders and the functional caption model.

Every layer is a built-in Keras layer or one of the small registered layers below, so a
model saved as ``.keras`` loads with ``safe_mode=True`` (no Lambda layers, no pickle).
Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
from keras import layers, ops

from mmkeras.errors import UserError

DECODERS = ("attention", "init")


@keras.saving.register_keras_serializable(package="mmkeras")
class WordEmbedding(layers.Embedding):
    """An Embedding that carries its vocabulary, so the words travel inside the saved model."""

    def __init__(self, vocabulary, output_dim, **kwargs):
        kwargs.pop("input_dim", None)
        kwargs.setdefault("mask_zero", True)  # id 0 is padding: masked out of LSTM and loss
        super().__init__(input_dim=len(vocabulary), output_dim=output_dim, **kwargs)
        self.vocabulary = [str(word) for word in vocabulary]

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary}


@keras.saving.register_keras_serializable(package="mmkeras")
class PositionEmbedding(layers.Layer):
    """Adds a learned vector per position of a ``(batch, positions, channels)`` sequence.

    Attention itself is blind to where a feature came from; captions about "left of" and
    "above" need to know.
    """

    def build(self, input_shape):
        self.position_vectors = self.add_weight(
            name="position_vectors", shape=tuple(input_shape[1:]), initializer="zeros")

    def call(self, features):
        return features + ops.cast(self.position_vectors, features.dtype)


@keras.saving.register_keras_serializable(package="mmkeras")
class BackbonePreprocessing(layers.Layer):
    """Runs a ``keras.applications`` backbone's own ``preprocess_input`` on uint8 images."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        module = sys.modules[_backbone_constructor(backbone).__module__]
        self._preprocess_input = module.preprocess_input

    def call(self, images):
        return self._preprocess_input(ops.cast(images, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def _backbone_constructor(name: str):
    constructor = getattr(keras.applications, name, None)
    if not callable(constructor):
        known = [n for n in dir(keras.applications) if n[0].isupper()]
        raise ValueError(f"unknown backbone {name!r}; expected a keras.applications model "
                         f"such as {', '.join(known[:6])}, ...")
    return constructor


def build_backbone(backbone: str, image_size: int = 224, weights: str | None = "imagenet",
                   fine_tune: bool = False, fine_tune_layers: int = 20) -> keras.Model:
    """A ``keras.applications`` model by name, on uint8 images with its own ``preprocess_input``.

    Frozen unless ``fine_tune``: then its features never change, and
    :mod:`mmkeras.feature_cache` computes them once for all epochs. With ``fine_tune``,
    its top ``fine_tune_layers`` layers train (0: all of them), as the Keras transfer
    learning guide does it: the lower layers hold generic edges and textures worth keeping.
    """
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    x = BackbonePreprocessing(backbone, name="backbone_preprocessing")(images)
    constructor = _backbone_constructor(backbone)
    try:
        base = constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    except Exception as error:  # keras.utils.get_file raises several types when offline
        if weights is None:
            raise
        raise UserError(f"could not load the {weights} weights of {backbone} "
                        f"({type(error).__name__}: {error}); Keras downloads them on first "
                        "use into ~/.keras/models, which needs internet access (Colab has "
                        "it), or copy the file there by hand") from None
    base.trainable = fine_tune
    if fine_tune:
        trained = base.layers[-fine_tune_layers:] if fine_tune_layers else base.layers
        for layer in base.layers:
            # BatchNormalization stays frozen: its statistics, re-estimated on small caption
            # batches, would wreck the pretrained features.
            layer.trainable = layer in trained and not isinstance(layer, layers.BatchNormalization)
    # training=False runs BatchNormalization in inference mode, fine-tuned or not.
    features = base(x, training=False)
    model = keras.Model(images, features, name=f"backbone_{backbone.lower()}")
    if not fine_tune:  # (setting it True would make every layer trainable again)
        model.trainable = False
    return model


def small_cnn(pixels):
    """The from-scratch CNN body: pixels in 0..1 to a map 8 times smaller a side.

    One convolution per scale is enough for flat-coloured shapes, and keeps an epoch of
    8000 images well under a minute on two CPU cores.
    """
    x = pixels
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    return x


def build_image_encoder(image_size: int = 64, feature_dim: int = 128, backbone: str | None = None,
                        backbone_weights: str | None = "imagenet",
                        fine_tune: bool = False, fine_tune_layers: int = 20) -> keras.Model:
    """uint8 images to a ``(rows, cols, feature_dim)`` feature map.

    With no ``backbone``, a small CNN trained from scratch (right for 64 px shapes);
    otherwise a ``keras.applications`` model by name (a name, or a model from
    :func:`build_backbone`), frozen unless ``fine_tune``.
    """
    if isinstance(backbone, keras.Model):
        image_size = backbone.input_shape[1]
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    if backbone is None:
        x = small_cnn(layers.Rescaling(1 / 255, name="rescale")(images))
    else:
        if not isinstance(backbone, keras.Model):
            backbone = build_backbone(backbone, image_size, backbone_weights, fine_tune,
                                      fine_tune_layers)
        x = backbone(images)
    features = layers.Conv2D(feature_dim, 1, activation="relu", name="feature_projection")(x)
    return keras.Model(images, features, name="image_encoder")


def build_feature_encoder(feature_shape, feature_dim: int = 128) -> keras.Model:
    """The trainable top of a frozen-backbone encoder, on cached backbone features."""
    features = keras.Input(tuple(feature_shape), name="image")
    projected = layers.Conv2D(feature_dim, 1, activation="relu", name="feature_projection")(features)
    return keras.Model(features, projected, name="image_encoder")


def with_backbone(feature_caption_model: keras.Model, backbone: keras.Model) -> keras.Model:
    """The caption model on images: ``backbone`` under a model trained on its cached features.

    The same layers, with the trained weights copied over: what is saved and decoded.
    """
    trained = feature_caption_model.get_layer
    projection = trained("image_encoder").get_layer("feature_projection")
    encoder = build_image_encoder(feature_dim=projection.filters, backbone=backbone)
    caption_model = build_caption_model(
        vocabulary_of(feature_caption_model), max_caption_length_of(feature_caption_model),
        decoder_kind(feature_caption_model), encoder,
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
    prediction.

    Layer names are part of the contract with :mod:`mmkeras.decoding`, which runs the same
    layers one step at a time. ``use_cudnn=False`` forces the generic LSTM kernel on a GPU
    (only to measure what cuDNN is worth).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    image_encoder = image_encoder or build_image_encoder(image_size)
    # uint8 images, or float features of a frozen backbone (mmkeras.feature_cache).
    image = keras.Input(image_encoder.input_shape[1:], dtype=image_encoder.input.dtype, name="image")
    caption_in = keras.Input((max_caption_length + 1,), dtype="int32", name="caption_in")

    feature_map = image_encoder(image)
    rows, cols, channels = feature_map.shape[1:]
    # Flatten, not average: "left of" and "above" depend on where each feature lies.
    summary = layers.Flatten(name="image_summary")(feature_map)
    state_h = layers.Dense(units, activation="tanh", name="init_h")(summary)
    state_c = layers.Dense(units, name="init_c")(summary)
    if decoder == "attention":
        positions = layers.Reshape((rows * cols, channels), name="feature_sequence")(feature_map)
        positions = PositionEmbedding(name="position_embedding")(positions)
        memory = layers.Dense(units, activation="tanh", name="attention_memory")(positions)

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
    return keras.Model({"image": image, "caption_in": caption_in}, logits,
                       name=f"caption_model_{decoder}")


def decoder_kind(caption_model: keras.Model) -> str:
    names = {layer.name for layer in caption_model.layers}
    return "attention" if "attention" in names else "init"


def vocabulary_of(caption_model: keras.Model) -> list[str]:
    return list(caption_model.get_layer("word_embedding").vocabulary)


def max_caption_length_of(caption_model: keras.Model) -> int:
    return caption_model.get_layer("word_embedding").input.shape[1] - 1


@keras.saving.register_keras_serializable(package="mmkeras")
class MaskedAccuracy(keras.metrics.Mean):
    """Next-word accuracy over real tokens only; padding (id 0) counts neither way."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        correct = ops.cast(ops.equal(y_true, ops.cast(ops.argmax(y_pred, axis=-1), "int32")), "float32")
        mask = ops.cast(ops.not_equal(y_true, 0), "float32")
        return super().update_state(correct, sample_weight=mask)


def masked_loss() -> keras.losses.Loss:
    """Cross-entropy over real tokens only: id 0 (padding) is ignored."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)


def compile_caption_model(caption_model: keras.Model, learning_rate: float = 2e-3,
                          decay_steps: int | None = None,
                          jit_compile: bool | str = "auto") -> keras.Model:
    """Adam with clipped gradients; with ``decay_steps``, a cosine decay of the learning rate.

    The decay is what lets the last epochs settle: at a constant rate the validation loss
    keeps jumping around its minimum. ``jit_compile=True`` asks for XLA.
    """
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.02)
    caption_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate, clipnorm=5.0),
        loss=masked_loss(), metrics=[MaskedAccuracy()], jit_compile=jit_compile)
    return caption_model


def load_caption_model(path) -> keras.Model:
    """Load a ``.keras`` caption model safely; a missing or damaged file is the user's to fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model file not found; expected a model.keras written by "
                        "`python -m mmkeras train`")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise UserError(f"{path}: not a readable .keras model ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200]}); train one with "
                        "`python -m mmkeras train`") from None
