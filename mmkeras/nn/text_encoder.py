"""The text encoder the classifiers and the dual encoder share: word embedding, then an LSTM.

Introduced in ``04_multimodal_tasks.ipynb``.
"""

from __future__ import annotations

from keras import layers

from mmkeras.nn.layers import WordEmbedding


def encode_text(text_ids, vocabulary: list[str], embedding_dim: int, units: int):
    """``(word_states, summary)``: the LSTM's state after each word, ``(batch, words, units)``,
    and after the last real word, ``(batch, units)``; padding (id 0) is masked throughout."""
    words = WordEmbedding(vocabulary, embedding_dim, name="word_embedding")(text_ids)
    word_states, summary, _ = layers.LSTM(
        units, return_sequences=True, return_state=True, name="text_lstm")(words)
    return word_states, summary
