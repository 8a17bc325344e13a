"""The image encoders: a small CNN or a small Vision Transformer trained from scratch, or any
``keras.applications`` backbone.

All give a ``(rows, cols, feature_dim)`` feature map of uint8 images, for every task.
Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

import sys

import keras
from keras import layers, ops

from mmkeras.config import ENCODERS
from mmkeras.errors import UserError
from mmkeras.nn.layers import CoordinateChannels, PositionEmbedding


@keras.saving.register_keras_serializable(package="mmkeras")
class BackbonePreprocessing(layers.Layer):
    """Runs a ``keras.applications`` backbone's own ``preprocess_input`` on uint8 images."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        module = sys.modules[backbone_constructor(backbone).__module__]
        self._preprocess_input = module.preprocess_input

    def call(self, images):
        return self._preprocess_input(ops.cast(images, self.compute_dtype))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def backbone_constructor(name: str):
    """The ``keras.applications`` function that builds ``name``; a UserError if none does."""
    constructor = getattr(keras.applications, name, None)
    if not callable(constructor):
        known = [n for n in dir(keras.applications) if n[0].isupper()]
        raise UserError(f"--backbone {name}: unknown; expected a keras.applications model "
                        f"such as {', '.join(known[:6])}, ...")
    return constructor


def build_backbone(backbone: str, image_size: int = 224, weights: str | None = "imagenet",
                   fine_tune: bool = False, fine_tune_layers: int = 20) -> keras.Model:
    """A ``keras.applications`` model by name, on uint8 images with its own ``preprocess_input``.

    Frozen unless ``fine_tune``: then its features never change, and
    :mod:`mmkeras.data.feature_cache` computes them once for all epochs. With ``fine_tune``,
    its top ``fine_tune_layers`` layers train (0: all of them), as the Keras transfer
    learning guide does it: the lower layers hold generic edges and textures worth keeping.
    """
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    x = BackbonePreprocessing(backbone, name="backbone_preprocessing")(images)
    constructor = backbone_constructor(backbone)
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


def small_cnn(pixels, filters=(16, 32, 64)):
    """The from-scratch CNN body: pixels in 0..1 to a map 8 times smaller a side.

    One convolution per scale is enough for flat-coloured shapes, and keeps an epoch of
    8000 images well under a minute on two CPU cores.
    """
    x = pixels
    for width in filters:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D()(x)
    return x


def small_vit(pixels, patch_size: int = 8, width: int = 128, blocks: int = 2, heads: int = 4):
    """The from-scratch Vision Transformer body: pixels in 0..1 to a map ``patch_size`` times
    smaller a side, as the CNN's (8 x 8 for 64 px), so everything after it is unchanged.

    Patches cut and embedded linearly in one strided convolution (the ViT paper's
    "linear projection of flattened patches"), a learned position vector each, then
    ``keras_hub``'s Transformer encoder blocks, and a final layer norm. No class token:
    the caption decoders read every position.
    """
    # Here, not at the top: a CNN or a backbone does not need keras_hub (an optional dependency).
    from mmkeras.nn.transformer_embedding import keras_hub

    if pixels.shape[1] % patch_size or pixels.shape[2] % patch_size:
        raise UserError(f"--encoder vit cuts {patch_size} x {patch_size} patches; the image size "
                        f"({pixels.shape[1]}) must be a multiple of {patch_size}")
    patches = layers.Conv2D(width, patch_size, strides=patch_size, name="patch_embedding")(pixels)
    rows, cols = patches.shape[1:3]
    x = layers.Reshape((rows * cols, width), name="patch_sequence")(patches)
    x = PositionEmbedding(name="patch_positions")(x)
    for block in range(blocks):
        x = keras_hub.layers.TransformerEncoder(intermediate_dim=2 * width, num_heads=heads,
                                                normalize_first=True, name=f"vit_block_{block}")(x)
    x = layers.LayerNormalization(epsilon=1e-6, name="vit_norm")(x)
    return layers.Reshape((rows, cols, width), name="patch_grid")(x)


def build_image_encoder(image_size: int = 64, feature_dim: int | None = 128, backbone: str | None = None,
                        backbone_weights: str | None = "imagenet",
                        fine_tune: bool = False, fine_tune_layers: int = 20,
                        coordinates: bool = False, filters=(16, 32, 64),
                        encoder: str = "cnn") -> keras.Model:
    """uint8 images to a ``(rows, cols, feature_dim)`` feature map.

    With no ``backbone``, a small CNN trained from scratch (right for 64 px shapes), of
    ``filters`` per scale, or with ``encoder="vit"`` a small Vision Transformer; otherwise a
    ``keras.applications`` model by name (a name, or a model from :func:`build_backbone`),
    frozen unless ``fine_tune``. With ``coordinates``,
    each position's x and y join the pixels (CoordConv): the multimodal tasks' questions
    about where things are need them. ``feature_dim=None``: the map as the body makes it,
    with no 1 x 1 projection.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    if backbone is not None and encoder != "cnn":
        raise ValueError(f"encoder={encoder!r} trains an encoder from scratch; a backbone replaces it")
    if isinstance(backbone, keras.Model):
        image_size = backbone.input_shape[1]
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    if backbone is None:
        x = layers.Rescaling(1 / 255, name="rescale")(images)
        if coordinates:
            x = CoordinateChannels(name="pixel_coordinates")(x)
        x = small_vit(x) if encoder == "vit" else small_cnn(x, filters)
    else:
        if not isinstance(backbone, keras.Model):
            backbone = build_backbone(backbone, image_size, backbone_weights, fine_tune,
                                      fine_tune_layers)
        x = backbone(images)
    if feature_dim is not None:
        x = layers.Conv2D(feature_dim, 1, activation="relu", name="feature_projection")(x)
    return keras.Model(images, x, name="image_encoder")


def build_feature_encoder(feature_shape, feature_dim: int = 128) -> keras.Model:
    """The trainable top of a frozen-backbone encoder, on cached backbone features."""
    features = keras.Input(tuple(feature_shape), name="image")
    projected = layers.Conv2D(feature_dim, 1, activation="relu", name="feature_projection")(features)
    return keras.Model(features, projected, name="image_encoder")
