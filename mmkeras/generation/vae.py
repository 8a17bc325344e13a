"""A conditional VAE (Sohn et al., 2015): the text-to-image baseline, fast to train and to
sample (one pass of the decoder per image).

The encoder reads an image and its caption into a Gaussian over a small latent space; the
decoder draws the image back from a point of that space and the caption. Trained on the
reconstruction error plus the KL divergence of the encoder's Gaussian from the unit
Gaussian, so that to draw a caption one decodes a point drawn from the unit Gaussian with
it. The caption is read by the text encoder the tasks share, once for both halves. What is
saved is the decoder (with the text encoder inside). Introduced in ``06_text_to_image.ipynb``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mmkeras.data.images import to_pixels, to_unit_range
from mmkeras.data.text import unknown_words, vectorizer_for
from mmkeras.nn.text_encoder import encode_text
from mmkeras.tasks.retrieval import caption_ids


def build_vae(vocabulary: list[str], max_text_length: int, image_size: int = 32, latent_dim: int = 16,
              widths: tuple[int, ...] = (32, 64, 128), embedding_dim: int = 64, units: int = 128):
    """``(encoder, decoder)``. Encoder: ``{"image" (-1..1), "text"}`` to ``(z_mean,
    z_log_var)``; decoder, the model saved: ``{"latent", "text"}`` to an image in -1..1.
    ``widths``: the channels of each stride-2 convolution (the image halves each time)."""
    text = keras.Input((max_text_length,), dtype="int32", name="text")
    _, summary = encode_text(text, vocabulary, embedding_dim, units)
    text_encoder = keras.Model(text, summary, name="text_encoder")

    image = keras.Input((image_size, image_size, 3), name="image")
    encoder_text = keras.Input((max_text_length,), dtype="int32", name="text")
    x = image
    for level, width in enumerate(widths):
        x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu", name=f"encoder_conv_{level}")(x)
    x = layers.Concatenate(name="image_and_caption")([layers.Flatten()(x), text_encoder(encoder_text)])
    x = layers.Dense(256, activation="relu", name="encoder_hidden")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    encoder = keras.Model({"image": image, "text": encoder_text}, [z_mean, z_log_var], name="vae_encoder")

    latent = keras.Input((latent_dim,), name="latent")
    decoder_text = keras.Input((max_text_length,), dtype="int32", name="text")
    smallest = image_size // 2 ** len(widths)
    x = layers.Concatenate(name="latent_and_caption")([latent, text_encoder(decoder_text)])
    x = layers.Dense(256, activation="relu", name="decoder_hidden")(x)
    x = layers.Dense(smallest * smallest * widths[-1], activation="relu", name="decoder_grid")(x)
    x = layers.Reshape((smallest, smallest, widths[-1]))(x)
    for level, width in reversed(list(enumerate(widths))):
        x = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu",
                                   name=f"decoder_conv_{level}")(x)
    drawn = layers.Conv2D(3, 3, padding="same", activation="tanh", name="drawn_image")(x)
    decoder = keras.Model({"latent": latent, "text": decoder_text}, drawn, name="vae_decoder")
    return encoder, decoder


class VAETrainer(keras.Model):
    """Trains the encoder and decoder on batches of ``{"image": uint8, "text": ids}``: the
    loss is the squared error summed over an image's pixels plus the KL divergence, each a
    mean over the batch. Only for training; what is saved is the decoder."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "reconstruction", "kl")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        z_mean, _ = self.encoder(inputs, training=training)
        return self.decoder({"latent": z_mean, "text": inputs["text"]}, training=training)

    def losses_of(self, data, training: bool) -> dict:
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = to_unit_range(inputs["image"])
        text = tf.cast(inputs["text"], tf.int32)
        z_mean, z_log_var = self.encoder({"image": images, "text": text}, training=training)
        latent = z_mean + tf.exp(0.5 * z_log_var) * keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
        drawn = tf.cast(self.decoder({"latent": latent, "text": text}, training=training), tf.float32)
        reconstruction = tf.reduce_mean(tf.reduce_sum(tf.square(images - drawn), axis=[1, 2, 3]))
        kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=1))
        return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.losses_of(data, training=True)
            scaled_loss = self.optimizer.scale_loss(losses["loss"])  # mixed precision's loss scale
        variables = self.trainable_variables  # the text encoder both halves share, once
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return self._update(losses)

    def test_step(self, data):
        return self._update(self.losses_of(data, training=False))

    def _update(self, losses):
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class VAEGenerator:
    """Images for captions from a saved VAE decoder: each a point of the unit Gaussian,
    decoded with its caption. ``steps`` and ``guidance`` (the diffusion model's) do not apply."""

    def __init__(self, decoder: keras.Model):
        self.decoder = decoder
        self.vocabulary = decoder.get_layer("text_encoder").get_layer("word_embedding").vocabulary
        max_text_length = decoder.input["text"].shape[1]
        self.vectorizer = vectorizer_for(self.vocabulary, max_text_length - 1)
        self.image_size = decoder.output.shape[1]
        self.latent_dim = decoder.input["latent"].shape[1]

    def unknown_words(self, captions: list[str]) -> list[str]:
        return unknown_words(captions, self.vocabulary)

    def generate(self, captions: list[str], steps: int = 0, guidance: float = 0.0, seed: int = 0) -> np.ndarray:
        latent = tf.random.stateless_normal((len(captions), self.latent_dim), seed=[seed, 0])
        return self.decode(captions, latent)

    def decode(self, captions: list[str], latents) -> np.ndarray:
        """uint8 images of chosen points of the latent space, ``(len(captions), latent_dim)``,
        one per caption: a walk through the latent space shows what the caption leaves to it."""
        text = tf.cast(caption_ids(captions, self.vectorizer), tf.int32)
        latents = tf.convert_to_tensor(latents, tf.float32)
        return to_pixels(tf.cast(self.decoder({"latent": latents, "text": text}, training=False), tf.float32)).numpy()
