"""Captions to token ids and back: standardisation, start and end tokens, the vocabulary.

Introduced in ``01_preprocessing.ipynb``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers

PAD, UNKNOWN = "", "[UNK]"  # TextVectorization's own ids 0 and 1
START, END = "[start]", "[end]"  # brackets survive nowhere else: standardise strips them


def standardize(captions) -> tf.Tensor:
    """Lower case, punctuation and symbols to spaces, single spaces; works on any script.

    Chinese characters become words of their own, as BERT's tokenizer does: Chinese is
    written without spaces, and a whole sentence would otherwise be one "word".
    """
    text = tf.strings.lower(tf.convert_to_tensor(captions, tf.string), encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[\pP\pS]", " ")
    text = tf.strings.regex_replace(text, r"(\p{Han})", r" \1 ")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


def standardize_list(captions: list[str]) -> list[str]:
    """:func:`standardize` for plain Python strings (for references and metrics)."""
    if not captions:
        return []
    return [s.decode("utf-8") for s in standardize(captions).numpy()]


def unknown_words(captions: list[str], vocabulary: list[str]) -> list[str]:
    """The words of ``captions`` (standardised) outside ``vocabulary``, each once, in order."""
    known = set(vocabulary)
    words = [w for caption in standardize_list(captions) for w in caption.split()]
    return list(dict.fromkeys(w for w in words if w not in known))


# The words a vectorizer keeps at most, the most frequent first (Flickr8k has about 9,000).
MAX_VOCABULARY = 20_000
# The longest caption a model reads or writes, in words, whatever the data hold (a scraped
# caption of 500 words would make every step 500 long).
MAX_CAPTION_WORDS = 40


def add_start_end(captions) -> tf.Tensor:
    return tf.strings.join([START, standardize(captions), END], separator=" ")


def build_vectorizer(train_captions: list[str], max_caption_length: int,
                     max_vocabulary: int = MAX_VOCABULARY) -> layers.TextVectorization:
    """Adapt a TextVectorization layer on the training captions.

    ``max_caption_length`` counts words; the ids it returns have two more places, for the
    start and end tokens. Longer captions are cut, keeping the start token. The vocabulary
    is the ``max_vocabulary`` most frequent words of the captions as cut: words past the cut
    never reach the model, and one caption of a million distinct words must not make a
    softmax of a million (about 10 GB of logits a step).
    """
    vectorizer = layers.TextVectorization(
        max_tokens=max_vocabulary,
        standardize=None,  # done by add_start_end, so references get the very same
        split="whitespace",
        output_sequence_length=max_caption_length + 2,
    )
    tokens = tf.strings.split(add_start_end(train_captions))
    seen = max_caption_length + 2  # the tokens of a caption that reach the model
    as_cut = tf.strings.reduce_join(tokens[:, :seen], axis=1, separator=" ")
    # A caption that was cut keeps its end token, which must stay in the vocabulary; one
    # that was not is adapted on exactly as before.
    as_cut = tf.where(tokens.row_lengths() > seen, tf.strings.join([as_cut, END], separator=" "), as_cut)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(as_cut).batch(1024))
    return vectorizer


def vectorizer_vocabulary(vectorizer: layers.TextVectorization) -> list[str]:
    """The vectorizer's words, id by id (a saved caption model carries its own:
    :func:`mmkeras.caption.model.caption_vocabulary`)."""
    return [str(word) for word in vectorizer.get_vocabulary()]


def vectorizer_for(vocabulary: list[str], max_caption_length: int) -> layers.TextVectorization:
    """A TextVectorization with a fixed vocabulary, e.g. the one stored in a saved model."""
    return layers.TextVectorization(
        standardize=None, split="whitespace", vocabulary=vocabulary,
        output_sequence_length=max_caption_length + 2)


def ids_to_captions(token_ids: np.ndarray, vocabulary: list[str]) -> list[str]:
    """Turn decoder output back into text: stop at the end token, drop padding and start."""
    words = np.asarray(vocabulary, dtype=object)
    end_id = vocabulary.index(END)
    captions = []
    for row in np.asarray(token_ids):
        stops = np.flatnonzero(row == end_id)
        row = row[: stops[0]] if stops.size else row
        captions.append(" ".join(w for w in words[row] if w not in (PAD, START)))
    return captions


def caption_lengths(captions: list[str]) -> np.ndarray:
    """Words per caption after standardisation."""
    return np.array([len(c.split()) for c in standardize_list(captions)])
