"""The Transformer's input layer: ``keras_hub``'s token and position embedding, carrying its
vocabulary as :class:`~mmkeras.nn.layers.WordEmbedding` does, so the words travel inside the
saved model.

Kept out of :mod:`mmkeras.nn.layers`: importing ``keras_hub`` costs two seconds, which only
a Transformer should pay (:func:`mmkeras.runs.load_model` imports this module for models
that need it).
"""

from __future__ import annotations

import keras

from mmkeras.errors import UserError

try:
    import keras_hub
except ModuleNotFoundError:  # an optional dependency: the LSTM models never need it
    raise UserError("the Transformer decoder and the ViT encoder need keras-hub: "
                    "pip install 'mmkeras[transformer]' (or pip install keras-hub)") from None


@keras.saving.register_keras_serializable(package="mmkeras")
class TokenAndPositionWords(keras_hub.layers.TokenAndPositionEmbedding):
    """Token ids to word vectors plus learned position vectors.

    No padding mask (``mask_zero=False``): captions are padded at the end and attention is
    causal, so no word ever attends to padding, and the loss ignores the padding's outputs.
    ``call(tokens, start_index=t)`` embeds tokens that start at position ``t``: one word of
    cached decoding.
    """

    def __init__(self, vocabulary, sequence_length, embedding_dim, **kwargs):
        kwargs.pop("vocabulary_size", None)
        super().__init__(vocabulary_size=len(vocabulary), sequence_length=sequence_length,
                         embedding_dim=embedding_dim, **kwargs)
        self.vocabulary = [str(word) for word in vocabulary]

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary}
