"""The text-to-image diffusion model's denoiser: a small U-Net whose every residual block the
caption and the noise level scale and shift (FiLM), and whose coarser blocks attend over the
caption's words.

After keras.io's DDIM example (residual blocks, average pooling down and bilinear upsampling
up, skips between the two halves, the noise variance embedded with sines, the last
convolution zero so that training starts from predicting zero). Added here: the caption,
read by the text encoder the tasks share, and the noise level enter every block, not only the
first, so each level of the U-Net is told what to draw; and each pixel's x and y join the
input, since "above" and "to the left of" say where, which a convolution cannot see. FiLM
gives every pixel the same summary of the caption, so it can say "red" and "square" but not
which object is red: after each block at 16 px and coarser, each position attends over the
caption's words (cross-attention, as in latent diffusion, Rombach et al., 2022). In a
2,500-step probe on the shapes it raised the relation read back from 0.41 to 0.63 and the
colour from 0.69 to 0.77, for a quarter more time per step; the 32 px blocks, with four
times the positions, go without.
Introduced in ``06_text_to_image.ipynb``.
"""

from __future__ import annotations

import keras
from keras import layers

from mmkeras.nn.layers import CoordinateChannels, NoiseLevelEmbedding
from mmkeras.nn.text_encoder import encode_text

NOISE_LEVEL_DIMS = 32


def build_denoiser(vocabulary: list[str], max_text_length: int, image_size: int = 32,
                   widths: tuple[int, ...] = (32, 64, 96), block_depth: int = 2,
                   embedding_dim: int = 64, units: int = 128, attention_size: int = 16) -> keras.Model:
    """``{"noisy_images", "noise_variances", "text"}`` to the velocity
    ``signal_rate * noise - noise_rate * image`` of the noisy images.

    ``noisy_images``: ``(image_size, image_size, 3)`` floats, an image scaled to -1..1 mixed
    with unit Gaussian noise; ``noise_variances``: ``(1,)``, the noise's share of the mix;
    ``text``: the ids of ``[start] words [end]`` (``[start] [end]``: no caption, for
    classifier-free guidance). ``widths``: the channels at each resolution, halved
    ``len(widths) - 1`` times. ``attention_size``: blocks whose feature maps are this many
    pixels across or fewer attend over the caption's words (0: none, FiLM alone).
    """
    noisy_images = keras.Input((image_size, image_size, 3), name="noisy_images")
    noise_variances = keras.Input((1,), name="noise_variances")
    text = keras.Input((max_text_length,), dtype="int32", name="text")

    words, caption = encode_text(text, vocabulary, embedding_dim, units)
    noise_level = NoiseLevelEmbedding(NOISE_LEVEL_DIMS, name="noise_level")(noise_variances)
    condition = layers.Dense(units, activation="swish", name="condition")(
        layers.Concatenate(name="caption_and_noise_level")([caption, noise_level]))

    x = layers.Conv2D(widths[0], 1, name="stem")(CoordinateChannels(name="pixel_coordinates")(noisy_images))
    def block(x, width, name):
        x = residual_block(x, condition, width, name)
        if x.shape[1] <= attention_size:
            x = cross_attention(x, words, f"{name}_words")
        return x

    skips = []
    for level, width in enumerate(widths[:-1]):
        for depth in range(block_depth):
            x = block(x, width, f"down_{level}_{depth}")
            skips.append(x)
        x = layers.AveragePooling2D(2, name=f"down_{level}_pool")(x)
    for depth in range(block_depth):
        x = block(x, widths[-1], f"middle_{depth}")
    for level in reversed(range(len(widths) - 1)):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up_{level}_upsample")(x)
        for depth in range(block_depth):
            x = layers.Concatenate(name=f"up_{level}_{depth}_skip")([x, skips.pop()])
            x = block(x, widths[level], f"up_{level}_{depth}")
    velocity = layers.Conv2D(3, 1, kernel_initializer="zeros", name="predicted_velocity")(x)
    return keras.Model({"noisy_images": noisy_images, "noise_variances": noise_variances, "text": text},
                       velocity, name="denoiser")


def residual_block(x, condition, width: int, name: str):
    """Normalise, scale and shift each channel by the condition (FiLM, Perez et al., 2018),
    two 3x3 convolutions, and the block's input added back."""
    residual = x if x.shape[-1] == width else layers.Conv2D(width, 1, name=f"{name}_residual")(x)
    channels = x.shape[-1]
    # No learned scale and shift of its own: the condition's gamma and beta are those.
    x = layers.BatchNormalization(center=False, scale=False, name=f"{name}_norm")(x)
    # (1 + gamma) starts each block near the identity; a (1, 1, C) map broadcasts.
    gamma = layers.Rescaling(1.0, offset=1.0, name=f"{name}_one_plus_gamma")(
        layers.Dense(channels, name=f"{name}_gamma")(condition))
    beta = layers.Dense(channels, name=f"{name}_beta")(condition)
    x = layers.Multiply(name=f"{name}_scaled")([x, layers.Reshape((1, 1, channels))(gamma)])
    x = layers.Add(name=f"{name}_shifted")([x, layers.Reshape((1, 1, channels))(beta)])
    x = layers.Conv2D(width, 3, padding="same", activation="swish", name=f"{name}_conv_1")(x)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv_2")(x)
    return layers.Add(name=name)([x, residual])


def cross_attention(x, words, name: str):
    """Each position of the feature map ``x`` attends over the caption's word states (4 heads;
    the padding is masked) and adds what it read: a pre-norm residual, so a block starts as
    the identity."""
    rows, cols, channels = x.shape[1:]
    positions = layers.Reshape((rows * cols, channels), name=f"{name}_positions")(x)
    read = layers.MultiHeadAttention(4, channels // 4, name=f"{name}_attention")(
        layers.LayerNormalization(name=f"{name}_norm")(positions), words)
    positions = layers.Add(name=f"{name}_added")([positions, read])
    return layers.Reshape((rows, cols, channels), name=name)(positions)
