"""The text-to-image diffusion model's parts: the noise schedule, the denoiser, its training
step and the guided DDIM sampler."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmkeras.data.images import to_pixels, to_unit_range
from mmkeras.data.text import END, START, vectorizer_for
from mmkeras.errors import UserError
from mmkeras.generation import diffusion
from mmkeras.nn.layers import NoiseLevelEmbedding, WordEmbedding
from mmkeras.nn.unet import build_denoiser, cross_attention

VOCABULARY = ["", "[UNK]", START, END, "a", "red", "blue", "circle", "square", "above"]
MAX_TEXT_LENGTH = 6


@pytest.fixture(scope="module")
def denoiser():
    keras.utils.set_random_seed(0)
    return build_denoiser(VOCABULARY, MAX_TEXT_LENGTH, image_size=16, widths=(8, 16), block_depth=1,
                          embedding_dim=8, units=16)


def test_schedule_rates_are_a_unit_mix_from_nearly_clean_to_nearly_noise():
    times = tf.linspace(0.0, 1.0, 11)
    noise_rates, signal_rates = (r.numpy() for r in diffusion.diffusion_schedule(times))
    np.testing.assert_allclose(noise_rates ** 2 + signal_rates ** 2, 1.0, rtol=1e-6)
    assert signal_rates[0] == pytest.approx(diffusion.MAX_SIGNAL_RATE)
    assert signal_rates[-1] == pytest.approx(diffusion.MIN_SIGNAL_RATE, abs=1e-6)
    assert (np.diff(signal_rates) < 0).all()


def test_noise_level_embedding_is_sines_and_cosines_of_the_variance():
    embedded = np.asarray(NoiseLevelEmbedding(8)(np.array([[0.0], [0.1]], "float32")))
    assert embedded.shape == (2, 8)
    np.testing.assert_allclose(embedded[0], [0] * 4 + [1] * 4, atol=1e-6)
    frequencies = np.exp(np.linspace(0, np.log(1000), 4))
    np.testing.assert_allclose(embedded[1, :4], np.sin(2 * np.pi * 0.1 * frequencies), atol=1e-3)  # float32 angles


def test_pixels_survive_the_round_trip_through_the_unit_range():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    np.testing.assert_array_equal(to_pixels(to_unit_range(pixels)).numpy(), pixels)
    assert to_pixels(tf.constant([[-3.0, 3.0]])).numpy().tolist() == [[0, 255]]


def test_the_denoiser_starts_at_zero_and_loads_with_safe_mode(denoiser, tmp_path):
    inputs = {"noisy_images": np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32"),
              "noise_variances": np.array([[0.5], [0.9]], "float32"),
              "text": np.array([[2, 4, 5, 7, 0, 0], [2, 0, 0, 0, 0, 0]], "int32")}
    np.testing.assert_array_equal(np.asarray(denoiser(inputs)), 0.0)
    denoiser.get_layer("predicted_velocity").kernel.assign(
        np.random.default_rng(1).normal(size=denoiser.get_layer("predicted_velocity").kernel.shape))
    denoiser.save(tmp_path / "denoiser.keras")
    reloaded = keras.saving.load_model(tmp_path / "denoiser.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(inputs)), np.asarray(denoiser(inputs)), rtol=1e-5)
    denoiser.get_layer("predicted_velocity").kernel.assign(np.zeros(denoiser.get_layer("predicted_velocity").kernel.shape))


def test_only_blocks_at_the_attention_size_and_coarser_attend_over_the_words():
    model = build_denoiser(VOCABULARY, MAX_TEXT_LENGTH, image_size=16, widths=(8, 16), block_depth=1,
                           embedding_dim=8, units=16, attention_size=8)
    attending = sorted(layer.name for layer in model.layers if layer.name.endswith("_words_attention"))
    assert attending == ["middle_0_words_attention"]
    film_only = build_denoiser(VOCABULARY, MAX_TEXT_LENGTH, image_size=16, widths=(8, 16), block_depth=1,
                               embedding_dim=8, units=16, attention_size=0)
    assert not any("attention" in layer.name for layer in film_only.layers)


def test_cross_attention_reads_the_words_and_never_the_padding():
    keras.utils.set_random_seed(0)
    feature_map = keras.Input((4, 4, 8))
    text = keras.Input((5,), dtype="int32")
    words = keras.layers.Embedding(10, 8, mask_zero=True, name="words")(text)
    model = keras.Model([feature_map, text], cross_attention(feature_map, words, "block_words"))
    features = np.random.default_rng(0).normal(size=(1, 4, 4, 8)).astype("float32")
    read = np.asarray(model([features, np.array([[4, 5, 0, 0, 0]])]))
    assert np.abs(read - np.asarray(model([features, np.array([[4, 6, 0, 0, 0]])]))).max() > 1e-3
    embedding = model.get_layer("words").embeddings
    embedding.assign(np.concatenate([np.full((1, 8), 9.0, "float32"), embedding.numpy()[1:]]))
    np.testing.assert_allclose(np.asarray(model([features, np.array([[4, 5, 0, 0, 0]])])), read, atol=1e-6)


def test_training_lowers_the_velocity_loss_on_a_few_images(denoiser):
    keras.utils.set_random_seed(0)
    model = build_denoiser(VOCABULARY, MAX_TEXT_LENGTH, image_size=16, widths=(8, 16), block_depth=1,
                           embedding_dim=8, units=16)
    vectorizer = vectorizer_for(VOCABULARY, MAX_TEXT_LENGTH - 1)
    trainer = diffusion.DiffusionTrainer(model, diffusion.empty_caption_ids(vectorizer), seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    images = np.zeros((32, 16, 16, 3), np.uint8)
    images[:16, :8] = 255  # two kinds of picture (top half white, or bottom), each its own caption
    images[16:, 8:] = 255
    text = np.array([[2, 4, 5, 7, 0, 0]] * 16 + [[2, 4, 6, 8, 0, 0]] * 16, "int32")
    data = tf.data.Dataset.from_tensor_slices({"image": images, "text": text}).repeat(30).batch(16)
    history = trainer.fit(data, epochs=2, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]


def test_the_empty_caption_is_start_and_end():
    vectorizer = vectorizer_for(VOCABULARY, MAX_TEXT_LENGTH - 1)
    assert diffusion.empty_caption_ids(vectorizer).tolist() == [2, 3, 0, 0, 0, 0]


def test_generation_is_seeded_uint8_and_guidance_changes_it(denoiser):
    denoiser.get_layer("predicted_velocity").kernel.assign(
        np.random.default_rng(2).normal(size=denoiser.get_layer("predicted_velocity").kernel.shape) * 0.1)
    generator = diffusion.ImageGenerator(denoiser)
    images = generator.generate(["a red circle", "a blue square"], steps=3, guidance=2.0, seed=1)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, generator.generate(["a red circle", "a blue square"], steps=3,
                                                             guidance=2.0, seed=1))
    assert not np.array_equal(images, generator.generate(["a red circle", "a blue square"], steps=3,
                                                         guidance=2.0, seed=2))
    assert not np.array_equal(images, generator.generate(["a red circle", "a blue square"], steps=3,
                                                         guidance=0.0, seed=1))
    assert generator.unknown_words(["a red circle", "a Pink circle", "a pink star"]) == ["pink", "star"]
    every_step = generator.generate_every_step(["a red circle", "a blue square"], steps=3, guidance=2.0, seed=1)
    assert every_step.shape == (3, 2, 16, 16, 3) and every_step.dtype == np.uint8
    np.testing.assert_array_equal(every_step[-1], images)  # the last step's are the images
    assert not np.array_equal(every_step[0], every_step[-1])
    denoiser.get_layer("predicted_velocity").kernel.assign(np.zeros(denoiser.get_layer("predicted_velocity").kernel.shape))


class _ExactVelocity(keras.layers.Layer):
    """A perfect denoiser of one image: from a noisy image and its noise variance, the
    velocity of the noise mixed into ``target`` (whatever the caption)."""

    def __init__(self, target, **kwargs):
        super().__init__(**kwargs)
        self.target = tf.constant(target, tf.float32)

    def call(self, inputs):
        noisy_images, noise_variances, _ = inputs  # (the caption: not needed)
        noise_rates = tf.sqrt(noise_variances)[:, :, None, None]
        signal_rates = tf.sqrt(1.0 - noise_variances)[:, :, None, None]
        noises = (noisy_images - signal_rates * self.target) / noise_rates
        return signal_rates * noises - noise_rates * self.target


def _perfect_denoiser(target, output_name="predicted_velocity"):
    noisy = keras.Input((16, 16, 3), name="noisy_images")
    variances = keras.Input((1,), name="noise_variances")
    text = keras.Input((MAX_TEXT_LENGTH,), dtype="int32", name="text")
    words = WordEmbedding(VOCABULARY, 2, mask_zero=False, name="word_embedding")(text)  # the generator reads its vocabulary
    return keras.Model({"noisy_images": noisy, "noise_variances": variances, "text": text},
                       _ExactVelocity(target, name=output_name)([noisy, variances, words]), name="denoiser")


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_sampling_with_a_perfect_denoiser_draws_its_image_in_any_number_of_steps(steps):
    target = np.random.default_rng(3).uniform(-0.9, 0.9, (1, 16, 16, 3)).astype("float32")
    drawn = diffusion.ImageGenerator(_perfect_denoiser(target)).generate(["a red circle"], steps=steps,
                                                                        guidance=3.0, seed=5)
    np.testing.assert_array_equal(drawn, to_pixels(target).numpy())


def test_training_asks_for_the_velocity_the_sampler_reads():
    target = np.random.default_rng(4).integers(0, 256, (1, 16, 16, 3)).astype("uint8")
    vectorizer = vectorizer_for(VOCABULARY, MAX_TEXT_LENGTH - 1)
    trainer = diffusion.DiffusionTrainer(_perfect_denoiser(to_unit_range(target).numpy()),
                                         diffusion.empty_caption_ids(vectorizer), seed=0)
    batch = {"image": np.repeat(target, 8, 0), "text": np.array([[2, 4, 5, 7, 3, 0]] * 8, "int32")}
    assert float(trainer.velocity_loss(batch, training=True)) == pytest.approx(0.0, abs=1e-8)


def test_a_denoiser_that_predicts_the_noise_is_refused():
    with pytest.raises(UserError, match="predicts the noise"):
        diffusion.ImageGenerator(_perfect_denoiser(np.zeros((1, 16, 16, 3), "float32"), "predicted_noise"))
