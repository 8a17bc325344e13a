"""What attention over an image reads from: its feature map as a sequence of positions.

The caption decoder's words and the classifiers' words attend over the same memory.
Introduced in ``02_training.ipynb``.
"""

from __future__ import annotations

from keras import layers

from mmkeras.nn.layers import PositionEmbedding


def attention_memory(feature_map, units: int):
    """``(batch, rows, cols, channels)`` to ``(batch, rows * cols, units)``, one entry per
    position, each knowing where it lies (a learned position vector is added first)."""
    rows, cols, channels = feature_map.shape[1:]
    positions = layers.Reshape((rows * cols, channels), name="feature_sequence")(feature_map)
    positions = PositionEmbedding(name="position_embedding")(positions)
    return layers.Dense(units, activation="tanh", name="attention_memory")(positions)
