"""The audio encoder: raw samples in, a feature map out, the spectrogram made inside the model.

A saved model takes a waveform, as a saved caption model takes pixels: Keras'
``MelSpectrogram`` (``tf.signal``'s short-time Fourier transform under TensorFlow) turns it
into log-mel frames, each band's mean over the clip is taken out (a fixed filter
of microphone or voice gone), SpecAugment masks bands and stretches of them while training (Park et
al., 2019), and convolutions over the spectrogram, as over an image, shrink it to a sequence
of frame features. The map is ``(frames, 1, channels)``: what the caption decoders and the
dual encoder already read from an image, one row of positions in time.
"""

from __future__ import annotations

import keras
from keras import layers, ops

# 25 ms windows every 10 ms, 40 mel bands up to 4 kHz: the usual speech front end, at
# Spoken Shapes' 8 kHz.
WINDOW_SECONDS = 0.025
STRIDE_SECONDS = 0.010
MEL_BANDS = 40
BATCH_NORM_MOMENTUM = 0.9
PADDING_DB = -99.0  # a frame whose every band is below this is padding (silence is -100)


@keras.saving.register_keras_serializable(package="mmkeras")
class SpecAugment(layers.Layer):
    """While training, blank ``frequency_masks`` bands of up to ``frequency_width`` bins and
    ``time_masks`` stretches of up to ``time_width`` frames of each ``(frames, bins)``
    spectrogram (to 0, the mean of a normalised one); at inference, the identity.

    The encoder cannot lean on any one band or moment: it learns what survives a voice it
    has not heard, the point of held-out speakers.
    """

    def __init__(self, frequency_masks: int = 2, frequency_width: int = 6, time_masks: int = 2,
                 time_width: int = 20, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.frequency_masks, self.frequency_width = frequency_masks, frequency_width
        self.time_masks, self.time_width = time_masks, time_width
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _stretches(self, batch, length: int, count: int, width: int):
        """``(batch, length)``, True inside any of ``count`` random stretches of 0..width."""
        positions = ops.arange(length)[None, :]
        masked = ops.zeros((batch, length), dtype="bool")
        for _ in range(count):
            widths = ops.floor(keras.random.uniform((batch, 1), 0, width + 1, seed=self.seed_generator))
            starts = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator)
                               * (length - widths + 1))
            positions_f = ops.cast(positions, starts.dtype)
            masked = ops.logical_or(masked, ops.logical_and(positions_f >= starts,
                                                            positions_f < starts + widths))
        return masked

    def call(self, spectrogram, training=False):
        if not training:
            return spectrogram
        batch = ops.shape(spectrogram)[0]
        frames, bins = spectrogram.shape[1], spectrogram.shape[2]
        masked = ops.logical_or(
            self._stretches(batch, frames, self.time_masks, self.time_width)[:, :, None],
            self._stretches(batch, bins, self.frequency_masks, self.frequency_width)[:, None, :])
        return ops.where(masked, ops.zeros_like(spectrogram), spectrogram)

    def get_config(self):
        return {**super().get_config(), "frequency_masks": self.frequency_masks,
                "frequency_width": self.frequency_width, "time_masks": self.time_masks,
                "time_width": self.time_width, "seed": self.seed}


@keras.saving.register_keras_serializable(package="mmkeras")
class UtteranceMeanNormalization(layers.Layer):
    """Subtracts from each band of a ``(frames, bands)`` log-mel spectrogram its mean over the
    clip's frames (cepstral mean normalisation); the zero padding after the clip (every band
    at the -100 dB floor) is left out of the mean and set to 0.

    A microphone, a room or a voice's own tilt is a fixed filter: in decibels, a constant
    added to each band for the whole clip, which this removes. Without it a recogniser
    trained on eSpeak NG's voices mishears a held-out voice whose only oddity is such a
    filter (variant m8: its highs 20 dB down), 0.29 of its words against 0.002 for the
    other.
    """

    def call(self, log_mel):
        sounding = ops.cast(ops.max(log_mel, axis=2, keepdims=True) > PADDING_DB, log_mel.dtype)
        frames = ops.maximum(ops.sum(sounding, axis=1, keepdims=True), 1.0)
        mean = ops.sum(log_mel * sounding, axis=1, keepdims=True) / frames
        return (log_mel - mean) * sounding


def log_mel_front_end(audio, sample_rate: int = 8000):
    """Waveforms ``(batch, samples)`` to ``(batch, frames, bands)`` log-mel spectrograms in
    decibels, each band's mean over the clip taken out, the padding after a clip 0: the
    audio encoder's first layers, and what the tri-modal autoencoder makes back."""
    window, stride = round(WINDOW_SECONDS * sample_rate), round(STRIDE_SECONDS * sample_rate)
    mel = layers.MelSpectrogram(fft_length=1 << (window - 1).bit_length(), sequence_length=window,
                                sequence_stride=stride, sampling_rate=sample_rate,
                                num_mel_bins=MEL_BANDS, min_freq=20.0, max_freq=sample_rate / 2,
                                # Not Keras' floor of 80 dB under the loudest frame of the
                                # *batch*, which changes a clip's features with the clips
                                # beside it: 1000 dB never binds (None is not accepted), and
                                # min_power's fixed -100 dB floor does the work.
                                top_db=1000.0, name="log_mel")(audio)
    frames_first = layers.Permute((2, 1), name="frames_first")(mel)  # (frames, bands)
    return UtteranceMeanNormalization(name="utterance_mean_norm")(frames_first)


def build_audio_encoder(max_samples: int, sample_rate: int = 8000, filters=(16, 32, 64),
                        feature_dim: int | None = 128, augment: bool = True) -> keras.Model:
    """``(max_samples,)`` float waveforms in -1..1 (zero-padded) to a
    ``(frames / 2 ** len(filters), 1, feature_dim)`` feature map.

    ``filters``: the channels of each convolution stage. 16, 32, 64 train a recogniser at
    311 ms a step on 4.5 s clips (batches of 64, 2-core Intel Xeon), 32, 64, 96 at 679.
    """
    audio = keras.Input((max_samples,), name="audio")
    x = log_mel_front_end(audio, sample_rate)
    # Decibels to about unit scale, band by band, from the training data's statistics. Every
    # batch normalisation here averages its statistics with momentum 0.9, not Keras' 0.99:
    # they settle in tens of steps, so that a short run is not judged on statistics still
    # near their starting values (its predictions wrong on the very clips it trained on).
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name="log_mel_norm")(x)
    if augment:
        x = SpecAugment(name="spec_augment")(x)
    x = layers.Reshape((x.shape[1], MEL_BANDS, 1), name="spectrogram_image")(x)
    for stage, width in enumerate(filters):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"audio_conv_{stage}")(x)
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"audio_norm_{stage}")(x)
        x = layers.Activation("relu", name=f"audio_relu_{stage}")(x)
        x = layers.MaxPooling2D(2, name=f"audio_pool_{stage}")(x)
    # Each frame's bands into one vector: the frequency axis has said what it can.
    frames, bands, channels = x.shape[1:]
    x = layers.Reshape((frames, 1, bands * channels), name="frame_features")(x)
    if feature_dim is not None:
        x = layers.Conv2D(feature_dim, 1, activation="relu", name="feature_projection")(x)
    return keras.Model(audio, x, name="audio_encoder")
