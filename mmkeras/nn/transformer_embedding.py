"""The Transformer's input layer: ``keras_hub``'s token and position embedding, carrying its
vocabulary as :class:`~mmkeras.nn.layers.WordEmbedding` does, so the words travel inside the
saved model.

Kept out of :mod:`mmkeras.nn.layers`: importing ``keras_hub`` costs two seconds, which only
a Transformer should pay (:func:`mmkeras.runs.load_model` imports this module for models
that need it).
"""

from __future__ import annotations

import warnings

import keras
import keras_hub

# keras_hub's blocks hand their masked inputs to inner layers that do not take masks (the
# attention's query, key and value projections); Keras warns at each. The padding mask is
# not lost: the blocks turn it into the attention mask themselves.
warnings.filterwarnings("ignore", category=UserWarning,
                        message=r"Layer '\w+' \(of type \w+\) was passed an input with a mask attached")


@keras.saving.register_keras_serializable(package="mmkeras")
class TokenAndPositionWords(keras_hub.layers.TokenAndPositionEmbedding):
    """Token ids to word vectors plus learned position vectors; id 0 (padding) masked.

    ``call(tokens, start_index=t)`` embeds tokens that start at position ``t``: one word of
    cached decoding.
    """

    def __init__(self, vocabulary, sequence_length, embedding_dim, **kwargs):
        kwargs.pop("vocabulary_size", None)
        kwargs.setdefault("mask_zero", True)
        super().__init__(vocabulary_size=len(vocabulary), sequence_length=sequence_length,
                         embedding_dim=embedding_dim, **kwargs)
        self.vocabulary = [str(word) for word in vocabulary]

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary}
