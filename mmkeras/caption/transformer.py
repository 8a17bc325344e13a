"""The Transformer caption decoder: words and their positions, decoder blocks, next-word logits.

Each block is ``keras_hub.layers.TransformerDecoder``, the Keras team's own: causal
self-attention over the caption so far, cross-attention over the image's positions (the
same memory the attention LSTM reads), a feed-forward layer, each with a residual and a
layer norm. Decoding runs one position at a time with a key/value cache per block (the
cache ``keras_hub``'s layers take), so a step costs one position, not the whole prefix.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from mmkeras.nn.attention import attention_memory
from mmkeras.nn.layers import FeaturesAtCoordinates
from mmkeras.nn.transformer_embedding import TokenAndPositionWords, keras_hub


def build_transformer_caption_model(vocabulary: list[str], max_caption_length: int,
                                    image_encoder: keras.Model, width: int = 128,
                                    feedforward: int = 256, blocks: int = 2, heads: int = 4,
                                    dropout: float = 0.1) -> keras.Model:
    """``{"image", "caption_in"}`` to next-word logits, as the LSTM caption models.

    ``width``: the size of every word's vector, position's vector and block output (the
    image's positions are projected to it too); ``feedforward``: the hidden size of each
    block's feed-forward layer. 128 and 256 train twice as fast as 256 and 512 on a CPU,
    with a higher BLEU-4 on the shapes (see the README). The vocabulary travels inside the
    model, in the embedding layer
    (:class:`~mmkeras.nn.transformer_embedding.TokenAndPositionWords`).
    """
    image = keras.Input(image_encoder.input_shape[1:], dtype=image_encoder.input.dtype, name="image")
    caption_in = keras.Input((max_caption_length + 1,), dtype="int32", name="caption_in")
    # Each feature also times its x and its y: the decoder's cross-attention then reads where
    # things are even while it is spread over the whole image (see FeaturesAtCoordinates).
    feature_map = FeaturesAtCoordinates(name="features_at_coordinates")(image_encoder(image))
    memory = attention_memory(feature_map, width)

    x = TokenAndPositionWords(vocabulary, max_caption_length + 1, width, name="word_embedding")(caption_in)
    for block in range(blocks):
        # The causal mask is the layer's default: position t sees the words up to t only.
        x = keras_hub.layers.TransformerDecoder(intermediate_dim=feedforward, num_heads=heads,
                                                dropout=dropout, name=f"transformer_block_{block}")(x, memory)
    x = layers.Dropout(dropout, name="decoder_dropout")(x)
    logits = layers.Dense(len(vocabulary), dtype="float32", name="word_logits")(x)
    return keras.Model({"image": image, "caption_in": caption_in}, logits,
                       name="caption_model_transformer")


def decoder_blocks(caption_model: keras.Model) -> list:
    return [layer for layer in caption_model.layers
            if isinstance(layer, keras_hub.layers.TransformerDecoder)]


def transformer_settings(caption_model: keras.Model) -> dict:
    """The arguments of :func:`build_transformer_caption_model` that made ``caption_model``."""
    blocks = decoder_blocks(caption_model)
    return {"width": caption_model.get_layer("word_embedding").embedding_dim,
            "feedforward": blocks[0].intermediate_dim, "blocks": len(blocks),
            "heads": blocks[0].num_heads, "dropout": caption_model.get_layer("decoder_dropout").rate}


class TransformerSteps:
    """The Transformer caption model one word at a time, as
    :class:`~mmkeras.caption.model.StepwiseDecoder` runs the LSTM ones.

    The state carried from step to step is the next position, then each block's
    self-attention cache (keys and values of the words so far, filled one position a step)
    and cross-attention cache (keys and values of the image's positions, computed once).
    Every piece has the batch first, so beam search can reorder and tile it.
    """

    uses_attention = False  # no attention map to show: a Transformer has a map per head and block

    def __init__(self, caption_model: keras.Model):
        layer = caption_model.get_layer
        self.embedding = layer("word_embedding")
        self.blocks = decoder_blocks(caption_model)
        self.word_logits = layer("word_logits")
        self.length = layer("word_embedding").input.shape[1]
        self.encoder = keras.Model(caption_model.input["image"], layer("attention_memory").output,
                                   name="caption_encoder")

    def _cache(self, batch, length, block):
        key_dim = self.embedding.embedding_dim // block.num_heads
        return tf.zeros([batch, 2, length, block.num_heads, key_dim], self.embedding.compute_dtype)

    def encode(self, images):
        """``(state, memory)``: position 0, empty self-attention caches and the cross-attention
        caches of the image; and the image's positions."""
        memory = self.encoder(images, training=False)
        batch = tf.shape(memory)[0]
        state = [tf.zeros([batch], tf.int32)]
        nothing_yet = tf.zeros([batch, 1, memory.shape[-1]], memory.dtype)
        for block in self.blocks:
            # cross_attention_cache_update_index=0 fills the whole cross cache from memory.
            _, _, cross_cache = block(
                nothing_yet, memory, self_attention_cache=self._cache(batch, self.length, block),
                self_attention_cache_update_index=0,
                cross_attention_cache=self._cache(batch, memory.shape[1], block),
                cross_attention_cache_update_index=0, training=False)
            state += [self._cache(batch, self.length, block), cross_cache]
        return state, memory

    def step(self, tokens, state, memory):
        """``(logits, state, None)`` for the next word after ``tokens``."""
        # Every row is at the same position; the sum of the first (none in an empty batch).
        position = tf.reduce_sum(state[0][:1])
        x = self.embedding(tokens[:, None], start_index=position)
        new_state = [state[0] + 1]
        for index, block in enumerate(self.blocks):
            x, self_cache, cross_cache = block(
                x, memory, self_attention_cache=state[1 + 2 * index],
                self_attention_cache_update_index=position,
                cross_attention_cache=state[2 + 2 * index], cross_attention_cache_update_index=None,
                training=False)
            new_state += [self_cache, cross_cache]
        return self.word_logits(x[:, 0]), new_state, None
