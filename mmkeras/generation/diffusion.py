"""A caption-conditioned diffusion model: trained as DDPM (from an image mixed with noise at a
random noise level, predict what was mixed), sampled as DDIM (deterministic steps from pure
noise), with classifier-free guidance.

The schedule and the sampler follow keras.io's DDIM example: continuous diffusion times
from 0 to 1, a cosine schedule whose signal and noise rates are the cosine and sine of one
angle (their squares sum to 1). The training target is not that example's: the denoiser
predicts the *velocity* ``v = signal_rate * noise - noise_rate * image`` (Salimans and Ho,
2022), scored by its mean squared error. Why: with keras.io's target, the noise, and its
mean absolute error, our denoiser learned to ignore the caption altogether (a shuffled
caption cost it nothing, 06_text_to_image.ipynb). The caption matters where the noise
drowns the image, and there an error in the image costs little in the noise (in proportion
to the signal rate, 0.08 at diffusion time 0.95) but fully in the velocity; and the best
guess under an absolute error is the median image, the pale background wherever an object
is not more likely than not, which no caption changes, where under a squared error it is
the mean, which every caption tints. After 500 steps of training, a shuffled caption
raised the squared error of the predicted image at time 0.85 by 19% (0.073 to 0.087) with
the velocity and the squared error, by 0.2% with the noise and the squared error.

The caption is replaced by the empty caption in a share of the training examples, so the
one network also learns to denoise unconditioned; sampling then pushes each step away from
the unconditioned prediction and towards the captioned one (Ho and Salimans, 2022):
``velocity = unconditioned + guidance * (captioned - unconditioned)``.

What is saved is the denoiser itself (:func:`mmkeras.nn.unet.build_denoiser`), with the
exponential moving average of its weights (Keras' optimizer keeps it, ``use_ema``).
Introduced in ``06_text_to_image.ipynb``.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from mmkeras.data.images import to_pixels, to_unit_range
from mmkeras.data.text import unknown_words, vectorizer_for
from mmkeras.errors import UserError
from mmkeras.tasks.retrieval import caption_ids

# The signal rate at diffusion times 0 and 1: never a wholly clean or wholly noisy image,
# so that neither rate is ever 0 (the denoiser divides by the signal rate).
MAX_SIGNAL_RATE = 0.95
MIN_SIGNAL_RATE = 0.02


def diffusion_schedule(diffusion_times):
    """``(noise_rates, signal_rates)`` at diffusion times from 0 (clean) to 1 (noise)."""
    start_angle = math.acos(MAX_SIGNAL_RATE)
    end_angle = math.acos(MIN_SIGNAL_RATE)
    angles = start_angle + tf.cast(diffusion_times, tf.float32) * (end_angle - start_angle)
    return tf.sin(angles), tf.cos(angles)


class DiffusionTrainer(keras.Model):
    """Trains a denoiser on batches of ``{"image": uint8 images, "text": caption ids}``:
    each image mixed with fresh noise at a uniformly drawn diffusion time, the loss the mean
    squared error of the predicted velocity. Only for training; what is saved is the denoiser.

    ``empty_text``: the ids of the empty caption, which replaces a caption with probability
    ``caption_dropout`` (classifier-free guidance needs the unconditioned prediction).
    """

    def __init__(self, denoiser: keras.Model, empty_text, caption_dropout: float = 0.1,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.denoiser = denoiser
        self.empty_text = tf.constant(empty_text, tf.int32)
        self.caption_dropout = caption_dropout
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        return self.denoiser(inputs, training=training)

    def velocity_loss(self, data, training: bool):
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        images = to_unit_range(inputs["image"])
        text = tf.cast(inputs["text"], tf.int32)
        batch = tf.shape(images)[0]
        if training:
            dropped = keras.random.uniform((batch, 1), seed=self.seed_generator) < self.caption_dropout
            text = tf.where(dropped, self.empty_text[None], text)
        noises = keras.random.normal(tf.shape(images), seed=self.seed_generator)
        diffusion_times = keras.random.uniform((batch, 1), seed=self.seed_generator)
        noise_rates, signal_rates = diffusion_schedule(diffusion_times)
        noise_rate, signal_rate = noise_rates[:, :, None, None], signal_rates[:, :, None, None]
        noisy_images = signal_rate * images + noise_rate * noises
        velocities = signal_rate * noises - noise_rate * images
        predicted = self.denoiser({"noisy_images": noisy_images, "noise_variances": noise_rates ** 2,
                                   "text": text}, training=training)
        return tf.reduce_mean(tf.square(velocities - tf.cast(predicted, tf.float32)))

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.velocity_loss(data, training=True)
            # Under mixed precision the optimizer scales the loss up (and the gradients
            # back down) so that small float16 gradients do not vanish; else a no-op.
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.denoiser.trainable_variables
        self.optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(self.velocity_loss(data, training=False))
        return {"loss": self.loss_tracker.result()}


def empty_caption_ids(vectorizer) -> np.ndarray:
    """The ids the denoiser reads for no caption: ``[start] [end]``, then padding."""
    return caption_ids([""], vectorizer)[0].numpy()


class ImageGenerator:
    """Images for captions from a saved denoiser: DDIM steps with classifier-free guidance,
    compiled once for any batch size and number of steps."""

    def __init__(self, denoiser: keras.Model):
        if "predicted_velocity" not in {layer.name for layer in denoiser.layers}:
            raise UserError("this denoiser predicts the noise (an mmkeras before 2026-11-25 trained it); "
                            "it predicts the velocity now: train it again with text2image")
        self.denoiser = denoiser
        embedding = denoiser.get_layer("word_embedding")
        max_text_length = denoiser.input["text"].shape[1]
        self.vocabulary = embedding.vocabulary
        self.vectorizer = vectorizer_for(self.vocabulary, max_text_length - 1)
        self.image_size = denoiser.input["noisy_images"].shape[1]
        self.empty_text = tf.constant(empty_caption_ids(self.vectorizer), tf.int32)
        signature = [tf.TensorSpec([None, max_text_length], tf.int32),
                     tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32),
                     tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)]
        self._sample = tf.function(self.reverse_diffusion, input_signature=signature)
        self._sample_every_step = tf.function(functools.partial(self.reverse_diffusion, every_step=True),
                                              input_signature=signature)

    def text_ids(self, captions: list[str]) -> tf.Tensor:
        return tf.cast(caption_ids(captions, self.vectorizer), tf.int32)

    def unknown_words(self, captions: list[str]) -> list[str]:
        return unknown_words(captions, self.vocabulary)

    def reverse_diffusion(self, text, initial_noise, steps, guidance, every_step: bool = False):
        """``steps`` DDIM steps from ``initial_noise`` to images in -1..1; with
        ``every_step``, also the clean image predicted at each step, ``(steps, batch, ...)``."""
        batch = tf.shape(text)[0]
        predictions = tf.TensorArray(tf.float32, size=steps)
        both_texts = tf.concat([text, tf.tile(self.empty_text[None], [batch, 1])], axis=0)
        step_size = 1.0 / tf.cast(steps, tf.float32)
        noisy_images = initial_noise
        predicted_images = initial_noise
        for step in tf.range(steps):
            diffusion_times = tf.fill([batch, 1], 1.0 - tf.cast(step, tf.float32) * step_size)
            noise_rates, signal_rates = diffusion_schedule(diffusion_times)
            both = self.denoiser({"noisy_images": tf.concat([noisy_images, noisy_images], 0),
                                  "noise_variances": tf.concat([noise_rates, noise_rates], 0) ** 2,
                                  "text": both_texts}, training=False)
            both = tf.cast(both, tf.float32)
            captioned, unconditioned = both[:batch], both[batch:]
            # Guidance on the velocity is guidance on the noise: each is linear in the other.
            velocities = unconditioned + guidance * (captioned - unconditioned)
            noise_rate, signal_rate = noise_rates[:, :, None, None], signal_rates[:, :, None, None]
            # Guidance pushes past what the network predicts: keep the predicted image
            # within the pixels' range, and the noise consistent with it (as DDPM's
            # clipped sampling does), so that no step drifts off into saturated colours.
            predicted_images = tf.clip_by_value(signal_rate * noisy_images - noise_rate * velocities, -1.0, 1.0)
            predicted_noises = (noisy_images - signal_rate * predicted_images) / noise_rate
            if every_step:
                predictions = predictions.write(step, predicted_images)
            # Remix the two parts at the next step's rates.
            next_noise_rates, next_signal_rates = diffusion_schedule(diffusion_times - step_size)
            noisy_images = (next_signal_rates[:, :, None, None] * predicted_images
                            + next_noise_rates[:, :, None, None] * predicted_noises)
        return (predicted_images, predictions.stack()) if every_step else predicted_images

    def generate(self, captions: list[str], steps: int = 20, guidance: float = 3.0,
                 seed: int = 0) -> np.ndarray:
        """uint8 images, ``(len(captions), size, size, 3)``, one per caption; the same
        seed gives the same images."""
        images = self._sample(self.text_ids(captions), self._initial_noise(len(captions), seed),
                              tf.constant(steps), tf.constant(guidance, tf.float32))
        return to_pixels(images).numpy()

    def generate_every_step(self, captions: list[str], steps: int = 20, guidance: float = 3.0,
                            seed: int = 0) -> np.ndarray:
        """The clean image predicted after each DDIM step, uint8, ``(steps, len(captions),
        size, size, 3)``: how the picture comes out of the noise. The last step's are
        :meth:`generate`'s images."""
        _, predictions = self._sample_every_step(self.text_ids(captions), self._initial_noise(len(captions), seed),
                                                 tf.constant(steps), tf.constant(guidance, tf.float32))
        return to_pixels(predictions).numpy()

    def _initial_noise(self, count: int, seed: int):
        return tf.random.stateless_normal((count, self.image_size, self.image_size, 3), seed=[seed, 0])
