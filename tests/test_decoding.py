import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.caption.decoding import CaptionDecoder, _padded_batch_size, naive_captions
from mmkeras.caption.model import build_caption_model
from mmkeras.data.images import load_image
from mmkeras.data.text import END, START


@pytest.fixture(scope="module")
def test_images(trained_run):
    _, result = trained_run
    paths = [path for path, _ in result["examples"]]
    return np.stack([load_image(tf.constant(p), 64).numpy() for p in paths])


def test_compiled_greedy_equals_the_per_word_predict_loop(caption_model, test_images):
    decoder = CaptionDecoder(caption_model)
    assert decoder.captions(test_images) == naive_captions(caption_model, test_images)


def test_decoding_is_batched_and_order_preserving(caption_model, test_images):
    decoder = CaptionDecoder(caption_model)
    together = decoder.captions(test_images)
    one_by_one = [decoder.captions(test_images[i:i + 1])[0] for i in range(len(test_images))]
    assert together == one_by_one


def test_xla_greedy_pads_batches_to_few_shapes_and_returns_each_images_own_caption(caption_model, test_images):
    decoder = CaptionDecoder(caption_model)
    unpadded = decoder._greedy(tf.constant(test_images))[0].numpy()  # the graph without XLA
    for count in (1, 3, 5):  # all padded to 8 images: one compilation
        np.testing.assert_array_equal(decoder.token_ids(test_images[:count]), unpadded[:count])
    assert decoder._greedy_xla.experimental_get_tracing_count() == 1
    sizes = [_padded_batch_size(n) for n in (1, 8, 9, 64, 65, 104, 128, 250)]
    assert sizes == [8, 8, 16, 64, 128, 128, 128, 256]


def test_beam_of_one_is_greedy_and_wider_beams_give_captions(caption_model, test_images):
    decoder = CaptionDecoder(caption_model)
    greedy = decoder.token_ids(test_images)
    np.testing.assert_array_equal(decoder._beam(tf.constant(test_images), tf.constant(1)).numpy(), greedy)
    beam = decoder.captions(test_images, beam_width=3)
    assert len(beam) == len(test_images)
    assert all(START not in caption and END not in caption for caption in beam)


def _log_probability(caption_model, image, token_ids, vocabulary):
    """Sum of log-probabilities the model gives a decoded sequence, up to its end token."""
    end = vocabulary.index(END)
    ids = list(token_ids)
    ids = ids[: ids.index(end) + 1] if end in ids else ids
    positions = caption_model.get_layer("word_embedding").input.shape[1]
    caption_in = np.zeros((1, positions), np.int32)
    caption_in[0, :len(ids)] = [vocabulary.index(START)] + ids[:-1]
    logits = caption_model({"image": image[None], "caption_in": caption_in}, training=False)
    log_probs = tf.nn.log_softmax(logits[0]).numpy()
    return sum(log_probs[t, word] for t, word in enumerate(ids)), len(ids)


def test_beam_search_finds_captions_at_least_as_likely_per_word_as_greedy():
    # An untrained model has flat, varied distributions: a real test of the search.
    vocabulary = ["", "[UNK]", START, END] + [f"w{i}" for i in range(12)]
    caption_model = build_caption_model(vocabulary, 6, "init", units=16, embedding_dim=8)
    images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    decoder = CaptionDecoder(caption_model)
    greedy, beam = decoder.token_ids(images), decoder.token_ids(images, beam_width=4)
    for image, greedy_ids, beam_ids in zip(images, greedy, beam):
        g_score, g_len = _log_probability(caption_model, image, greedy_ids, vocabulary)
        b_score, b_len = _log_probability(caption_model, image, beam_ids, vocabulary)
        assert b_score / b_len >= g_score / g_len - 1e-4


def test_attention_maps_cover_the_feature_map(caption_model, test_images):
    captions, attention = CaptionDecoder(caption_model).captions_with_attention(test_images[:2])
    assert attention.shape[0] == 2 and attention.shape[2] == 64  # 8 x 8 positions
    np.testing.assert_allclose(attention[:, 0].sum(axis=-1), 1.0, atol=1e-4)
    assert len(captions) == 2


# Untrained weights give flat, varied next-word distributions: every step of a search (and
# of the Transformer's cache) matters, where a trained model's near-certain words would hide
# a wrong one.
UNTRAINED_VOCABULARY = ["", "[UNK]", START, END] + [f"w{i}" for i in range(12)]


def _untrained(decoder: str, seed: int, **sizes):
    """An untrained caption model of 6-word captions, and three random images."""
    keras.utils.set_random_seed(seed)
    caption_model = build_caption_model(UNTRAINED_VOCABULARY, 6, decoder, **sizes)
    return caption_model, np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def untrained_transformer():
    return _untrained("transformer", 1, units=64, embedding_dim=32)


def test_transformer_cached_decoding_equals_rereading_the_whole_prefix(untrained_transformer):
    caption_model, images = untrained_transformer
    decoder = CaptionDecoder(caption_model)
    cached = decoder.captions(images)
    assert cached == naive_captions(caption_model, images)
    assert len(set(cached[0].split())) > 2, "varied words: every step of the cache is used"
    np.testing.assert_array_equal(decoder._beam(tf.constant(images), tf.constant(1)).numpy(),
                                  decoder.token_ids(images))


@pytest.fixture(scope="module")
def untrained_init_model():
    caption_model, images = _untrained("init", 2, units=16, embedding_dim=8)
    return caption_model, UNTRAINED_VOCABULARY, images


def test_beam_candidates_come_best_first_with_their_mean_log_probability(untrained_init_model):
    caption_model, vocabulary, images = untrained_init_model
    decoder = CaptionDecoder(caption_model)
    token_ids, scores = (x.numpy() for x in decoder._beam_candidates(tf.constant(images), tf.constant(4)))
    assert token_ids.shape[:2] == scores.shape == (3, 4)
    assert (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(token_ids[:, 0], decoder.token_ids(images, beam_width=4))
    for image, beams, beam_scores in zip(images, token_ids, scores):
        assert len({tuple(ids) for ids in beams}) == 4, "four different beams"
        for ids, score in zip(beams, beam_scores):
            total, length = _log_probability(caption_model, image, ids, vocabulary)
            assert score == pytest.approx(total / length, abs=1e-4)


def test_sampling_is_seeded_greedy_when_cold_and_varied_when_hot(untrained_init_model):
    caption_model, _, images = untrained_init_model
    decoder = CaptionDecoder(caption_model)
    cold = decoder.sampled_captions(images, 5, temperature=1e-3)
    assert cold == [[greedy] * 5 for greedy in decoder.captions(images)]
    hot = decoder.sampled_captions(images, 5, temperature=2.0, seed=7)
    assert hot == decoder.sampled_captions(images, 5, temperature=2.0, seed=7)
    assert all(len(set(drawn)) > 1 for drawn in hot)


def test_reranking_keeps_the_candidate_the_scorer_prefers(untrained_init_model):
    caption_model, _, images = untrained_init_model
    decoder = CaptionDecoder(caption_model)
    beams, _ = decoder.candidate_captions(images, 3)

    def prefer_the_last_beam(scored_images, candidates):
        assert len(scored_images) == len(candidates) == len(images)
        return np.array([[float(c == options[2]) for c in options] for options in candidates])

    assert decoder.captions(images, 3, rerank=prefer_the_last_beam) == [b[2] for b in beams]
    # A scorer that cannot tell them apart leaves the likeliest beam.
    indifferent = decoder.captions(images, 3, rerank=lambda i, c: np.zeros((len(c), len(c[0]))))
    assert indifferent == decoder.captions(images, 3)
    # Sampled candidates join the beams, each once.
    seen = []
    decoder.captions(images, 2, rerank=lambda i, c: seen.append(c) or np.zeros((len(c), len(c[0]))),
                     samples=6)
    for options, own_beams in zip(seen[0], decoder.candidate_captions(images, 2)[0]):
        assert options[:2] == own_beams and len(options) > 2
        # Each once (the best beam also pads every image's list to one length).
        others = [caption for caption in options if caption != options[0]]
        assert len(others) == len(set(others)) > 1
