"""Fusing an image and a text into one classifier: eight ways of joining the two branches.

The image branch is the captioner's kind of CNN encoder
(:func:`mmkeras.nn.image_encoders.build_image_encoder`), with each position's coordinates
joined to its pixels and to its feature map (CoordConv); the text branch the shared text
encoder (:func:`mmkeras.nn.text_encoder.encode_text`: word embedding and LSTM). What
differs is where and how they meet:

- ``concat`` (late): the image summary and the text summary side by side, then dense layers;
- ``gate`` (late): a gated multimodal unit (Arevalo et al., 2017): a learned sigmoid gate
  weighs the image against the text, feature by feature;
- ``product`` (late): the outer product of the two summaries, each with a 1 appended (tensor
  fusion, Zadeh et al., 2017), so every image feature multiplies every text feature;
- ``film`` (a learned transform, in the middle): residual blocks in which the text scales
  and shifts each channel of the image's normalised feature map (FiLM, Perez et al., 2018);
- ``attention`` (cross-modal attention): every word's LSTM state attends over the 8 x 8
  feature map, as the caption decoder does, and the words with what they found are pooled;
- ``film_attention``: FiLM, beside one glimpse per object the text names,
  each bringing what it found and where (FiLM alone learns slowly which is which);
- ``early``: the text, squeezed to a few numbers, is painted onto every pixel and the CNN
  sees image and text together from its first layer;
- ``objects`` (object slots, the default): the image encoder reads the scene into one
  vector per object, in reading order, and one for their layout; the text picks out the
  objects it names by a score against each slot, and the head reads what it picked and how
  well each fitted.

The two blind baselines (``text_only``, ``image_only``) are built here too, as classifiers
that read one branch: the honest chance levels of a task, and a fused model close to one
of them shows which branch it ignores.

Introduced in ``04_multimodal_tasks.ipynb``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from mmkeras.config import BLIND_BASELINES, FUSIONS
from mmkeras.nn.attention import attention_memory
from mmkeras.nn.image_encoders import build_image_encoder, small_cnn
from mmkeras.nn.layers import CoordinateChannels, OuterProduct
from mmkeras.nn.text_encoder import encode_text
from mmkeras.tasks.examples import OBJECT_ATTRIBUTES, SCENE_CLASSES, SCENE_SLOTS


def _gated_unit(image_summary, text_summary, units: int):
    image_part = layers.Dense(units, activation="tanh", name="gate_image")(image_summary)
    text_part = layers.Dense(units, activation="tanh", name="gate_text")(text_summary)
    gate = layers.Dense(units, activation="sigmoid", name="gate")(
        layers.Concatenate()([image_summary, text_summary]))
    # gate * image + (1 - gate) * text, with built-in layers only (loads with safe_mode)
    return layers.Add(name="gated_sum")([
        layers.Multiply()([gate, image_part]),
        layers.Subtract()([text_part, layers.Multiply()([gate, text_part])]),
    ])


def _film(feature_map, question, units: int, blocks: int, width: int):
    """FiLM as in its paper (Perez et al., 2018): residual blocks whose normalised
    convolution the question scales and shifts, channel by channel, with each position's
    coordinates joined before every block; then a map of where the answer lies, flattened."""
    x = feature_map
    for block in range(1, blocks + 1):
        x = layers.Conv2D(width, 1, activation="relu", name=f"film_{block}_input")(
            CoordinateChannels(name=f"film_{block}_coordinates")(x))
        modulated = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"film_{block}_conv")(x)
        # No learned scale and shift of its own: the question's gamma and beta are those.
        modulated = layers.BatchNormalization(center=False, scale=False, name=f"film_{block}_norm")(modulated)
        gamma = layers.Dense(width, name=f"film_{block}_gamma")(question)
        beta = layers.Dense(width, name=f"film_{block}_beta")(question)
        # (1 + gamma) starts each block near the identity; a (1, 1, C) map broadcasts.
        gamma = layers.Reshape((1, 1, width))(layers.Rescaling(1.0, offset=1.0)(gamma))
        beta = layers.Reshape((1, 1, width))(beta)
        modulated = layers.Activation("relu")(
            layers.Add()([layers.Multiply()([modulated, gamma]), beta]))
        x = layers.Add(name=f"film_{block}")([x, modulated])
    x = layers.Conv2D(units, 1, activation="relu", name="film_output")(
        CoordinateChannels(name="film_output_coordinates")(x))
    # Flatten, not pool: "how many" and "left of" depend on how many places light up, where.
    return layers.Dense(units, activation="relu", name="film_summary")(layers.Flatten()(x))


def _cross_attention(feature_map, word_states, units: int):
    memory = attention_memory(feature_map, units)
    context = layers.Attention(name="attention")([word_states, memory])
    per_word = layers.Dense(units, activation="relu", name="attention_combine")(
        layers.Concatenate()([word_states, context]))
    return layers.GlobalAveragePooling1D(name="pool_words")(per_word)  # padding masked out


def _glimpses(feature_map, question, units: int, roles=("first", "second")):
    """One glimpse over the map per object the text names, each steered by the text: what
    lies where it looks, and the x and y of that place (its attention-weighted mean).

    "Is the red circle left of the blue square" needs both places; FiLM's per-channel
    transform finds what is where, but learns slowly to tell which named object is which.
    """
    rows, cols, channels = feature_map.shape[1:]
    keys = attention_memory(feature_map, units)
    values = layers.Reshape((rows * cols, channels + 2), name="places")(
        CoordinateChannels(name="glimpse_coordinates")(feature_map))
    found = []
    for role in roles:
        query = layers.Reshape((1, units))(layers.Dense(units, name=f"{role}_query")(question))
        glimpse = layers.Attention(name=f"{role}_glimpse")([query, values, keys])
        found.append(layers.Flatten(name=f"{role}_found")(glimpse))
    return layers.Concatenate(name="glimpses")(found)


def _object_slots(feature_map, units: int):
    """The feature map read into ``(3, units)``: the object ahead in reading order (the left
    or upper one), the one behind, and their layout.

    Training reads each slot back into its object's colour, shape and size (the layout slot
    into the axis) with one reader for both objects (:class:`SeveralTextsPerImage`), so the
    two object slots describe their objects in the same terms, and a text can be compared
    with each by the same score.
    """
    hidden = layers.Dense(2 * units, activation="relu", name="scene_hidden")(
        layers.Flatten()(feature_map))
    slots = layers.Reshape((3, units))(layers.Dense(3 * units, name="slot_values")(hidden))
    return layers.LayerNormalization(name="object_slots")(slots)  # each slot on one scale


def _pick_objects(slots, question, units: int, roles=("first", "second")):
    """For each object the text names, a score against each object slot and the slots
    weighed by those scores (each a sigmoid, not a softmax: "how many red shapes" may name
    both objects, or neither), with the layout slot and the text's summary.

    Training's "about" target (which objects the text is about) is read linearly from all
    of this (:class:`SeveralTextsPerImage`): the queries are free to share the work.
    """
    objects = layers.Cropping1D((0, 1), name="objects")(slots)  # (2, units): ahead, behind
    layout = layers.Flatten(name="layout")(layers.Cropping1D((2, 0))(slots))
    picked = []
    for role in roles:
        query = layers.Reshape((units, 1))(layers.Dense(units, name=f"{role}_query")(question))
        # Scaled as attention's are: over layer-normed slots a dot product grows as sqrt(units).
        scores = layers.Rescaling(units ** -0.5, name=f"{role}_scores")(
            layers.Flatten()(layers.Dot(axes=(2, 1))([objects, query])))
        weights = layers.Reshape((1, 2))(layers.Activation("sigmoid")(scores))
        found = layers.Flatten(name=f"{role}_object")(layers.Dot(axes=(2, 1))([weights, objects]))
        picked += [scores, found]
    return layers.Concatenate(name="picked_objects")([*picked, layout, question])


def build_fused_classifier(vocabulary: list[str], max_text_length: int, num_classes: int,
                           fusion: str = "film", image_size: int = 64, units: int = 128,
                           embedding_dim: int = 64, dropout: float = 0.1,
                           early_channels: int = 8, film_blocks: int = 2, film_width: int = 64,
                           cnn_filters=(32, 64, 64)) -> keras.Model:
    """``{"image": uint8 images, "text": token ids}`` to ``num_classes`` logits.

    One model for visual question answering (the text is a question, the classes its
    answers) and for image-text matching (the text is a caption, the classes no and yes).
    Two parts, so that training can read an image once for several texts
    (:class:`SeveralTextsPerImage`): ``image_encoder`` (the image alone) and
    ``fusion_head`` (what the encoder made of it, and the text).
    """
    if fusion not in (*FUSIONS, *BLIND_BASELINES):
        raise ValueError(f"fusion must be one of {FUSIONS + BLIND_BASELINES}, got {fusion!r}")
    image = keras.Input((image_size, image_size, 3), dtype="uint8", name="image")
    text = keras.Input((max_text_length,), dtype="int32", name="text")
    if fusion == "early":  # the text joins at the pixels: nothing to read before it comes
        image_encoder = keras.Model(image, layers.Rescaling(1 / 255, name="rescale")(image),
                                    name="image_encoder")
    else:
        image_encoder = build_image_encoder(image_size, feature_dim=None, coordinates=True,
                                            filters=cnn_filters)
    if fusion == "objects":  # what the encoder gives the head: the scene as object slots
        image_encoder = keras.Model(image_encoder.input, _object_slots(image_encoder.output, units),
                                    name="image_encoder")

    encoded = keras.Input(image_encoder.output_shape[1:], name="encoded_image")
    head_text = keras.Input((max_text_length,), dtype="int32", name="text")
    if fusion != "image_only":
        word_states, text_summary = encode_text(head_text, vocabulary, embedding_dim, units)
    if fusion == "early":
        painted = layers.Dense(early_channels, activation="tanh", name="text_to_pixels")(text_summary)
        painted = layers.UpSampling2D(size=image_size, name="paint_text")(
            layers.Reshape((1, 1, early_channels))(painted))
        pixels_and_text = CoordinateChannels(name="pixel_coordinates")(
            layers.Concatenate(name="pixels_and_text")([encoded, painted]))
        feature_map = small_cnn(pixels_and_text, cnn_filters)
    else:
        feature_map = encoded
    # Flatten, not average: answers about "left of" and "above" depend on where things are.
    image_summary = layers.Dense(units, activation="relu", name="image_summary")(
        layers.Flatten()(feature_map))

    if fusion == "text_only":  # a blind baseline: the image is read, and never used
        fused = text_summary
    elif fusion == "image_only":  # the other: the text is given, and never read
        fused = image_summary
    elif fusion in ("concat", "early"):
        fused = layers.Concatenate(name="concat")([image_summary, text_summary])
    elif fusion == "gate":
        fused = _gated_unit(image_summary, text_summary, units)
    elif fusion == "product":
        small = units // 4  # (32 + 1) x (32 + 1) products, not 129 x 129
        fused = OuterProduct(name="outer_product")([
            layers.Dense(small, activation="tanh", name="image_small")(image_summary),
            layers.Dense(small, activation="tanh", name="text_small")(text_summary)])
    elif fusion == "film":
        fused = _film(feature_map, text_summary, units, film_blocks, film_width)
    elif fusion == "attention":
        fused = _cross_attention(feature_map, word_states, units)
    elif fusion == "objects":
        fused = _pick_objects(encoded, text_summary, units)
    else:  # film_attention: FiLM, and a glimpse at each named object
        fused = layers.Concatenate(name="film_and_glimpses")([
            _film(feature_map, text_summary, units, film_blocks, film_width),
            _glimpses(feature_map, text_summary, units), text_summary])

    hidden = layers.Dense(units, activation="relu", name="fused_hidden")(
        layers.Dropout(dropout)(fused))
    logits = layers.Dense(num_classes, dtype="float32", name="class_logits")(hidden)
    fusion_head = keras.Model([encoded, head_text], logits, name="fusion_head")
    return keras.Model({"image": image, "text": text}, fusion_head([image_encoder(image), text]),
                       name=f"fused_classifier_{fusion}")


class SeveralTextsPerImage(keras.Model):
    """Trains a fused classifier on ``{"image": (batch, ...), "text": (batch, texts, words)}``:
    each image's encoder runs once for all its texts, which then go through the fusion
    head together. Outputs ``{"answers": (batch, texts, classes), "about": (batch, texts,
    2), "scene": ...}``.

    Six questions of one image cost little more than one: the image encoder is most of
    the work. Beside the answers, a small head reads the scene from the encoder alone
    (:func:`mmkeras.tasks.examples.scene_targets`: each object's colour, shape and size, in
    reading order): the captions' supervision, which the captioner's encoder learns from,
    makes the encoder see every object and where it is within an epoch or two, where
    the answers alone take many. And a linear read of the fused image and text, before the
    head's hidden layer: which of the two objects the text is about
    (:func:`mmkeras.tasks.examples.about_targets`): the half of "is the red circle left of
    the blue square" that the answers teach slowly, and the two terms of "how many". With
    ``reads_mentions`` (matching on object slots), ``"mentions"`` too, ``(batch, texts, 2,
    3, classes)``: each query read back by the slots' reader as the object its caption names
    (:func:`mmkeras.tasks.examples.mention_targets`). Only for training; what is saved is
    the classifier.
    """

    def __init__(self, classifier: keras.Model, reads_mentions: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = classifier.get_layer("image_encoder")
        # An encoder that gives object slots (the "objects" fusion) is read slot by slot.
        self.reads_slots = any(layer.name == "object_slots" for layer in self.image_encoder.layers)
        if reads_mentions and not self.reads_slots:
            raise ValueError("reads_mentions needs the object slots' queries (fusion 'objects')")
        self.reads_mentions = reads_mentions
        if self.reads_slots:
            self.object_reader = layers.Dense(len(OBJECT_ATTRIBUTES) * SCENE_CLASSES, name="object_reader")
            self.layout_reader = layers.Dense(SCENE_CLASSES, name="layout_reader")
        else:
            self.scene_reader = keras.Sequential([
                layers.Flatten(), layers.Dense(128, activation="relu"),
                layers.Dense(len(SCENE_SLOTS) * SCENE_CLASSES),
                layers.Reshape((len(SCENE_SLOTS), SCENE_CLASSES))], name="scene_reader")
        # The fusion head's layers, with what its hidden layer reads as a second output.
        fusion_head = classifier.get_layer("fusion_head")
        queries = ([fusion_head.get_layer(f"{role}_query").output for role in ("first", "second")]
                   if reads_mentions else [])
        self.head_and_fused = keras.Model(
            fusion_head.inputs,
            [fusion_head.output, fusion_head.get_layer("fused_hidden").input, *queries],
            name="fusion_head_and_fused")
        # A linear read, not one of the head's own layers: asked of the object slots' first
        # query alone, the about target left yes/no questions at 0.871 (0.997 this way).
        self.about_reader = layers.Dense(2, name="about_reader")  # logits, one per object

    def call(self, inputs, training=False):
        texts = inputs["text"]
        texts_per_image, words = texts.shape[1], texts.shape[2]
        encoded = self.image_encoder(inputs["image"], training=training)
        repeated = ops.repeat(encoded, texts_per_image, axis=0)  # image i, i, ..., then i + 1
        logits, fused, *queries = self.head_and_fused([repeated, ops.reshape(texts, (-1, words))],
                                                      training=training)
        about = self.about_reader(fused)
        outputs = {"answers": ops.reshape(logits, (-1, texts_per_image, logits.shape[-1])),
                   "about": ops.reshape(about, (-1, texts_per_image, 2)),
                   "scene": self._read_scene(encoded, training)}
        if self.reads_mentions:  # the slots' own reader: a query and a slot in the same terms
            mentions = self.object_reader(ops.stack(queries, axis=1))
            outputs["mentions"] = ops.reshape(
                mentions, (-1, texts_per_image, 2, len(OBJECT_ATTRIBUTES), SCENE_CLASSES))
        return outputs

    def _read_scene(self, encoded, training):
        if not self.reads_slots:
            return self.scene_reader(encoded, training=training)
        # (colour, shape, size) of each object slot by the same reader, then the layout's axis
        objects = ops.reshape(self.object_reader(encoded[:, :2]),
                              (-1, 2 * len(OBJECT_ATTRIBUTES), SCENE_CLASSES))
        axis = ops.expand_dims(self.layout_reader(encoded[:, 2]), 1)
        return ops.concatenate([objects, axis], axis=1)
