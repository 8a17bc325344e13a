"""Free-running caption decoding: greedy and beam search, batched and compiled.

The caption model is trained on whole teacher-forced sequences; to generate, the same
layers run one word at a time (:func:`~mmkeras.caption.model.stepwise_decoder`), carrying
the decoder's state (an LSTM's, or a Transformer's key/value caches) from step to step
instead of re-reading the whole prefix.
Introduced in ``03_evaluation.ipynb``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mmkeras.caption.model import caption_vocabulary, max_caption_length_of, source_input, stepwise_decoder
from mmkeras.data.text import END, START, ids_to_captions

NEG_INF = -1e9


class CaptionDecoder:
    """Greedy or beam-search captions for batches of uint8 images, from a caption model.

    :meth:`greedy_search` and :meth:`beam_search` are plain TensorFlow, to be traced into
    any graph (the export does); :meth:`token_ids` and :meth:`captions` run them compiled.
    """

    def __init__(self, caption_model: keras.Model):
        self.caption_model = caption_model
        self.vocabulary = caption_vocabulary(caption_model)
        self.max_caption_length = max_caption_length_of(caption_model)
        self.start_id = self.vocabulary.index(START)
        self.end_id = self.vocabulary.index(END)
        self.stepwise = stepwise_decoder(caption_model)
        self.uses_attention = self.stepwise.uses_attention
        # A fixed signature with an unknown batch size: one trace serves every batch, and the
        # loop variables keep the same (unknown) shapes from one step to the next.
        # uint8 images, a frozen backbone's float features while training on the cache, or
        # a speech recogniser's waveforms.
        image_input = source_input(caption_model)
        self.input_dtype = tf.as_dtype(image_input.dtype)
        images = tf.TensorSpec([None, *image_input.shape[1:]], self.input_dtype)
        self._greedy = tf.function(self.greedy_search, input_signature=[images])
        # XLA fuses each step's many small ops: on a 2-core CPU the Transformer's greedy
        # decoding runs about 1.6 times as fast (396 to 628 captions a second). It compiles
        # once per batch shape, so token_ids pads every batch up to a few fixed sizes
        # (see _padded_batch_size).
        self._greedy_xla = tf.function(self.greedy_search, jit_compile=True)
        beam_signature = [images, tf.TensorSpec([], tf.int32)]
        self._beam = tf.function(self.beam_search, input_signature=beam_signature)
        self._beam_candidates = tf.function(self.beam_candidates, input_signature=beam_signature)
        self._samples = tf.function(self.sample_search, input_signature=[
            images, tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])

    def greedy_search(self, images):
        """``(token_ids, attention)``: the likeliest word at each step, and where it looked
        (``(batch, steps, positions)``; zero positions without attention)."""
        state, memory = self.stepwise.encode(images)
        batch = tf.shape(images)[0]
        tokens = tf.fill([batch], self.start_id)
        finished = tf.zeros([batch], tf.bool)
        length = self.max_caption_length + 1
        words = tf.TensorArray(tf.int32, size=length)
        attention = tf.TensorArray(tf.float32, size=length)
        for t in tf.range(length):
            logits, state, scores = self.stepwise.step(tokens, state, memory)
            next_tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)
            next_tokens = tf.where(finished, 0, next_tokens)
            words = words.write(t, next_tokens)
            # Without attention, a column of zeros (cut off below) of a shape known when traced:
            # TensorFlow Lite converts no array left unwritten, or of a shape it cannot infer.
            maps = tf.zeros_like(logits[:, :1], tf.float32) if scores is None else scores
            attention = attention.write(t, tf.cast(maps, tf.float32))
            finished = finished | tf.equal(next_tokens, self.end_id)
            tokens = next_tokens
        attention = tf.transpose(attention.stack(), [1, 0, 2])
        return tf.transpose(words.stack()), attention if self.uses_attention else attention[..., :0]

    def sample_search(self, images, count, temperature, seed):
        """``token_ids`` of ``count`` captions per image, ``(batch, count, steps)``, each word
        drawn from the softmax of the logits divided by ``temperature`` (above 1, words the
        model finds unlikely come up more often: candidates for re-ranking)."""
        state, memory = self.stepwise.encode(images)
        batch = tf.shape(images)[0]
        state = [tf.repeat(s, count, axis=0) for s in state]
        memory = tf.repeat(memory, count, axis=0) if memory is not None else None
        tokens = tf.fill([batch * count], self.start_id)
        finished = tf.zeros([batch * count], tf.bool)
        length = self.max_caption_length + 1
        words = tf.TensorArray(tf.int32, size=length)
        for t in tf.range(length):
            logits, state, _ = self.stepwise.step(tokens, state, memory)
            next_tokens = tf.random.stateless_categorical(
                tf.cast(logits, tf.float32) / temperature, 1, seed=tf.stack([seed, t]), dtype=tf.int32)[:, 0]
            next_tokens = tf.where(finished, 0, next_tokens)
            words = words.write(t, next_tokens)
            finished = finished | tf.equal(next_tokens, self.end_id)
            tokens = next_tokens
        return tf.reshape(tf.transpose(words.stack()), [batch, count, length])

    def beam_search(self, images, beam_width):
        """``token_ids`` of the best of ``beam_width`` beams by mean log-probability per word."""
        return self.beam_candidates(images, beam_width)[0][:, 0]

    def beam_candidates(self, images, beam_width):
        """``(token_ids, scores)`` of every beam, best first: ``(batch, beam, steps)`` and
        each beam's mean log-probability per word, ``(batch, beam)``."""
        state, memory = self.stepwise.encode(images)
        batch = tf.shape(images)[0]
        vocab_size = len(self.vocabulary)
        length = self.max_caption_length + 1

        def tile(x):  # (batch, ...) to (batch * beam, ...), each image's beams adjacent
            return tf.repeat(x, beam_width, axis=0)

        state = [tile(s) for s in state]
        memory = tile(memory) if memory is not None else None
        tokens = tf.fill([batch * beam_width], self.start_id)
        # Only the first beam is live at the start, so the K beams do not all copy it.
        scores = tf.tile(tf.concat([[0.0], tf.fill([beam_width - 1], NEG_INF)], 0)[None], [batch, 1])
        finished = tf.zeros([batch, beam_width], tf.bool)
        lengths = tf.zeros([batch, beam_width], tf.float32)
        sequences = tf.zeros([batch, beam_width, length], tf.int32)
        pad_only = tf.one_hot(0, vocab_size, on_value=0.0, off_value=NEG_INF)

        for t in tf.range(length):
            logits, state, _ = self.stepwise.step(tokens, state, memory)
            log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)),
                                   [batch, beam_width, vocab_size])
            # A finished beam may only continue with padding, at no cost.
            log_probs = tf.where(finished[..., None], pad_only, log_probs)
            candidates = tf.reshape(scores[..., None] + log_probs, [batch, -1])
            scores, flat_index = tf.math.top_k(candidates, k=beam_width)
            parent = flat_index // vocab_size
            word = flat_index % vocab_size

            def reorder(x):  # pick each new beam's parent row
                return tf.gather(x, parent, batch_dims=1)  # noqa: B023 (used in this step only)

            sequences = tf.where(tf.range(length)[None, None, :] == t, word[..., None],
                                 reorder(sequences))
            was_finished = reorder(finished)
            lengths = reorder(lengths) + tf.cast(~was_finished, tf.float32)
            finished = was_finished | tf.equal(word, self.end_id)
            state = [_merge_beams(reorder(_split_beams(s, batch, beam_width))) for s in state]
            tokens = tf.reshape(word, [-1])
        # Mean log-probability per word, so long captions are not penalised for length.
        mean_scores = scores / tf.maximum(lengths, 1.0)
        order = tf.argsort(mean_scores, axis=-1, direction="DESCENDING", stable=True)
        return tf.gather(sequences, order, batch_dims=1), tf.gather(mean_scores, order, batch_dims=1)

    def token_ids(self, images, beam_width: int = 1) -> np.ndarray:
        images = tf.convert_to_tensor(images, self.input_dtype)
        if beam_width <= 1:
            count = int(images.shape[0])
            padding = [[0, _padded_batch_size(count) - count]] + [[0, 0]] * (images.shape.rank - 1)
            return self._greedy_xla(tf.pad(images, padding))[0].numpy()[:count]
        return self._beam(images, tf.constant(beam_width)).numpy()

    def captions(self, images, beam_width: int = 1, rerank=None, samples: int = 0, seed: int = 0) -> list[str]:
        """One caption per image: greedy, the best beam, or with ``rerank`` the candidate it
        scores highest (:meth:`reranked_captions`)."""
        if rerank is not None:
            return self.reranked_captions(images, beam_width, rerank, samples, seed=seed)
        return ids_to_captions(self.token_ids(images, beam_width), self.vocabulary)

    def candidate_captions(self, images, beam_width: int) -> tuple[list[list[str]], np.ndarray]:
        """Every beam's caption per image, best first, and their mean log-probabilities per
        word, ``(images, beam_width)``."""
        token_ids, scores = self._beam_candidates(tf.convert_to_tensor(images, self.input_dtype),
                                                  tf.constant(beam_width))
        token_ids = token_ids.numpy()
        flat = ids_to_captions(token_ids.reshape(-1, token_ids.shape[-1]), self.vocabulary)
        return [flat[i:i + beam_width] for i in range(0, len(flat), beam_width)], scores.numpy()

    def sampled_captions(self, images, count: int, temperature: float = 2.0,
                         seed: int = 0) -> list[list[str]]:
        """``count`` captions drawn per image (:meth:`sample_search`), repeats included."""
        token_ids = self._samples(tf.convert_to_tensor(images, self.input_dtype), tf.constant(count),
                                  tf.constant(temperature, tf.float32), tf.constant(seed)).numpy()
        flat = ids_to_captions(token_ids.reshape(-1, token_ids.shape[-1]), self.vocabulary)
        return [flat[i:i + count] for i in range(0, len(flat), count)]

    def reranked_captions(self, images, beam_width: int, rerank, samples: int = 0,
                          temperature: float = 2.0, seed: int = 0) -> list[str]:
        """Of each image's candidates, the caption ``rerank`` scores highest.

        The candidates: the ``beam_width`` beams, and with ``samples`` that many captions
        drawn at ``temperature`` (:meth:`sampled_captions`), each once. ``rerank(images,
        candidates)`` gives a score per candidate, ``(images, candidates)``: an image-text
        similarity, say (:func:`mmkeras.tasks.retrieval.dual_encoder_similarity`). The
        decoder proposes; a model that reads the image and the whole caption chooses
        (Nikolaus et al., CoNLL 2019). Ties go to the likelier beam.
        """
        candidates, _ = self.candidate_captions(images, beam_width)
        if samples:
            drawn = self.sampled_captions(images, samples, temperature, seed)
            candidates = [list(dict.fromkeys(beams + more)) for beams, more in zip(candidates, drawn)]
        # Images have different numbers of distinct candidates: pad with repeats of the best
        # beam, which wins any tie anyway (argmax takes the first).
        width = max(len(options) for options in candidates)
        candidates = [options + options[:1] * (width - len(options)) for options in candidates]
        scores = np.asarray(rerank(images, candidates))
        return [options[int(np.argmax(row))] for options, row in zip(candidates, scores)]

    def captions_with_attention(self, images):
        """Greedy captions and, per generated word, the attention over the feature map."""
        if not self.uses_attention:
            raise ValueError("this caption model has no attention map to show (it was trained "
                             "with --decoder init or transformer)")
        token_ids, attention = self._greedy(tf.convert_to_tensor(images, self.input_dtype))
        return ids_to_captions(token_ids.numpy(), self.vocabulary), attention.numpy()

    def caption_batches(self, images: tf.data.Dataset, beam_width: int = 1,
                        progress: bool = True, rerank=None, samples: int = 0) -> list[str]:
        """Captions for every batch of a dataset of uint8 image batches, in order."""
        captions = []
        total = images.cardinality().numpy()
        # disable=None: a bar on a terminal only, so logs and CI stay clean.
        for index, batch in enumerate(tqdm(images, total=total if total > 0 else None, desc="decoding",
                                           unit="batch", disable=None if progress else True)):
            # Each batch's samples drawn with their own seed: the same noise for every batch
            # would tie the candidates of the k-th image of each batch together.
            captions += self.captions(batch, beam_width, rerank, samples, seed=index)
        return captions


def _padded_batch_size(count: int) -> int:
    """The batch size a batch of ``count`` images is padded to for the XLA-compiled greedy
    decoding: a power of two up to 64, then a multiple of 64. An evaluation (batches of 128
    and one smaller last batch) compiles for two shapes; padding adds at most 63 images."""
    if count <= 64:
        return max(8, 1 << max(count - 1, 0).bit_length())
    return -(-count // 64) * 64


def _split_beams(x, batch, beam_width):
    """``(batch * beam, ...)`` to ``(batch, beam, ...)``."""
    return tf.reshape(x, [batch, beam_width, *x.shape[1:]])


def _merge_beams(x):
    """``(batch, beam, ...)`` to ``(batch * beam, ...)``."""
    return tf.reshape(x, [-1, *x.shape[2:]])


def naive_captions(caption_model: keras.Model, images) -> list[str]:
    """The loop popular tutorials use: one ``predict`` per word per image, whole prefix each time.

    Kept for comparison (``benchmarks/decode_speed.py``); :class:`CaptionDecoder` gives the
    same greedy captions, much faster.
    """
    vocabulary = caption_vocabulary(caption_model)
    positions = max_caption_length_of(caption_model) + 1
    start_id, end_id = vocabulary.index(START), vocabulary.index(END)
    captions = []
    for image in np.asarray(images):
        caption_in = np.zeros((1, positions), np.int32)
        caption_in[0, 0] = start_id
        words = []
        for position in range(positions):
            logits = caption_model.predict(
                {"image": image[None], "caption_in": caption_in}, verbose=0)
            word = int(np.argmax(logits[0, position]))
            if word == end_id:
                break
            words.append(word)
            if position + 1 < positions:
                caption_in[0, position + 1] = word
        captions.append(ids_to_captions(np.array([words + [end_id]]), vocabulary)[0])
    return captions
