"""The registered layers every model may use; each loads from a ``.keras`` file with
``safe_mode=True`` (no Lambda layers, no pickle).

Their registered names (``mmkeras>WordEmbedding`` and so on) are what saved models refer
to: they never change, wherever the classes live.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


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
class OuterProduct(layers.Layer):
    """Flattened outer product of two vectors, each with a constant 1 appended.

    The appended ones keep each vector's own features in the product (the row and column
    of the 1), as tensor fusion (Zadeh et al., 2017) does.
    """

    def call(self, inputs):
        image, text = inputs
        ones = ops.ones_like(image[:, :1])
        image = ops.concatenate([image, ones], axis=-1)
        text = ops.concatenate([text, ops.cast(ones, text.dtype)], axis=-1)
        product = ops.einsum("bi,bj->bij", image, text)
        return ops.reshape(product, (-1, image.shape[-1] * text.shape[-1]))

    def compute_output_shape(self, input_shapes):
        image_shape, text_shape = input_shapes
        return (image_shape[0], (image_shape[-1] + 1) * (text_shape[-1] + 1))


@keras.saving.register_keras_serializable(package="mmkeras")
class ContrastiveLogits(layers.Layer):
    """Every image of a batch against every caption: cosine similarities times a learned scale.

    The scale (an inverse temperature, learned in log space as CLIP does, starting at
    1 / 0.07 and capped at 100) sharpens the softmax over the batch as training goes on.
    """

    def build(self, input_shapes):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(),
            initializer=keras.initializers.Constant(math.log(1 / 0.07)))

    def call(self, inputs):
        image_embeddings, text_embeddings = inputs
        scale = ops.exp(ops.minimum(self.log_scale, math.log(100.0)))
        return scale * ops.matmul(image_embeddings, ops.transpose(text_embeddings))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[1][0])


@keras.saving.register_keras_serializable(package="mmkeras")
class LearnedQueries(layers.Layer):
    """``count`` learned vectors of ``dim`` numbers, the same for every example of the input's
    batch: the queries with which attention pools a sequence of any length into ``count``
    vectors (the Set Transformer's pooling by multi-head attention, Lee et al., 2019)."""

    def __init__(self, count: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.count, self.dim = count, dim

    def build(self, input_shape):
        self.queries = self.add_weight(name="queries", shape=(self.count, self.dim),
                                       initializer="glorot_uniform")

    def call(self, sequence):
        queries = ops.cast(self.queries, sequence.dtype)[None]
        return ops.broadcast_to(queries, (ops.shape(sequence)[0], self.count, self.dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count, self.dim)

    def get_config(self):
        return {**super().get_config(), "count": self.count, "dim": self.dim}


@keras.saving.register_keras_serializable(package="mmkeras")
class MeanOfPresent(layers.Layer):
    """The mean of the vectors of the modalities given: inputs ``[codes (batch, modalities,
    d), present (batch, modalities)]``, ``present`` 1 for a modality given and 0 for one
    not; none given gives 0 (what the decoders make knowing nothing).

    A mean, not a sum or a concatenation: one modality alone gives a code of the same scale
    as all three, so that what the decoders learn from one serves the others."""

    def call(self, inputs):
        codes, present = inputs
        present = ops.cast(present, codes.dtype)[:, :, None]
        return ops.sum(codes * present, axis=1) / ops.maximum(ops.sum(present, axis=1), 1.0)

    def compute_output_shape(self, input_shapes):
        codes_shape, _ = input_shapes
        return (codes_shape[0], codes_shape[2])


@keras.saving.register_keras_serializable(package="mmkeras")
class CoordinateChannels(layers.Layer):
    """Appends two channels to a ``(batch, rows, cols, channels)`` map: each position's x and
    y, from -1 to 1 (CoordConv, Liu et al., 2018).

    A convolution is blind to where it is; "left of", "above" and counting two apart need
    it to know, and a CNN learns it from padding effects only slowly.
    """

    def call(self, features):
        rows, cols = features.shape[1], features.shape[2]
        grid = ops.cast(ops.stack(_coordinates(rows, cols), axis=-1), features.dtype)
        grid = ops.broadcast_to(grid[None], (ops.shape(features)[0], rows, cols, 2))
        return ops.concatenate([features, grid], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 2)


@keras.saving.register_keras_serializable(package="mmkeras")
class FeaturesAtCoordinates(layers.Layer):
    """Appends each channel times its position's x, and times its y, to a ``(batch, rows,
    cols, channels)`` map: three times the channels.

    Averaged over the positions, ``feature * x`` says where a feature lies (its centre along
    x, weighted by how strongly it fires), bound to what it is. So an attention spread over
    the whole map, as a Transformer's cross-attention is early in training, reads where the
    red circle is and where the blue square is, not only that both are there: without it the
    Transformer captioner stalled with the direction of "left of" and "above" at chance.
    """

    def call(self, features):
        xs, ys = (ops.cast(grid, features.dtype)[None, :, :, None]
                  for grid in _coordinates(features.shape[1], features.shape[2]))
        return ops.concatenate([features, features * xs, features * ys], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3 * input_shape[-1])


@keras.saving.register_keras_serializable(package="mmkeras")
class NoiseLevelEmbedding(layers.Layer):
    """A diffusion model's noise variance, ``(batch, 1)``, as sines and cosines of it at
    ``dims // 2`` frequencies spaced evenly in log space from 1 to 1,000 (as keras.io's DDIM
    example, and Transformers' positions): a denoiser must act very differently at nearby
    noise levels, and one number fed to a Dense layer changes its output too smoothly.
    """

    def __init__(self, dims: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.dims = dims

    def call(self, noise_variances):
        frequencies = ops.exp(ops.linspace(0.0, math.log(1000.0), self.dims // 2))
        angles = 2.0 * math.pi * ops.cast(noise_variances, "float32") * frequencies
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * (self.dims // 2))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


def _coordinates(rows: int, cols: int):
    """Each position's x (left to right) and y (top to bottom), from -1 to 1, as two
    ``(rows, cols)`` grids."""
    return ops.meshgrid(ops.linspace(-1.0, 1.0, cols), ops.linspace(-1.0, 1.0, rows), indexing="xy")
