"""Every run's settings, and the names the command line offers, with their defaults.

Kept apart from TensorFlow (this module imports nothing heavy), so that ``python -m mmkeras
--help`` answers at once. A new decoder, fusion, task or dataset starts with a name here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The caption decoders (mmkeras.caption.model): show and tell, show, attend and tell, and
# Transformer blocks (mmkeras.caption.transformer).
DECODERS = ("attention", "init", "transformer")
# The image encoders trained from scratch (mmkeras.nn.image_encoders); --backbone NAME takes
# a pretrained keras.applications model instead.
ENCODERS = ("cnn", "vit")
# How the image and text branches of a fused classifier meet (mmkeras.tasks.fusion).
FUSIONS = ("concat", "gate", "product", "film", "attention", "film_attention", "early", "objects")
# Classifiers that read only the text or only the image: what each task allows a blind guesser.
BLIND_BASELINES = ("text_only", "image_only")
# The fused-classifier tasks (mmkeras.tasks.classification).
TASKS = ("vqa", "match")
# The named datasets, and what to train on each unless told otherwise: photos need a
# pretrained encoder, at the size it was trained at. Anything else is a folder.
DATASETS = {
    "shapes": {"image_size": 64, "backbone": None},
    "flickr8k": {"image_size": 224, "backbone": "MobileNetV2"},
    "coco": {"image_size": 224, "backbone": "MobileNetV2"},
}
# The text-to-image generators (mmkeras.generation).
GENERATORS = ("diffusion", "vae")
# The smoke size of every run (--smoke, the tests, CI): every step in seconds.
SMOKE_SHAPES = {"num_train": 256, "num_val": 64, "num_test": 64}
SMOKE_EPOCHS = 2


@dataclass
class TrainConfig:
    """Every setting of a caption training run; saved in ``config.json`` beside the model."""

    data: str = "shapes"  # "shapes", "flickr8k", "coco", or a folder in the Flickr8k layout
    decoder: str = "attention"
    encoder: str = "cnn"  # from scratch, when there is no backbone: "cnn" or "vit"
    epochs: int = 15
    out: str = "runs/caption"
    batch_size: int = 64
    learning_rate: float = 2e-3
    embedding_dim: int = 128
    units: int = 256
    feature_dim: int = 128
    dropout: float = 0.1
    image_size: int = 64
    max_caption_length: int = 0  # 0: the longest training caption, capped at 40 words
    all_pairs: bool = False
    backbone: str | None = None  # a keras.applications model, e.g. "MobileNetV2"
    backbone_weights: str | None = "imagenet"  # None: random weights (tests, offline)
    fine_tune: bool = False
    fine_tune_layers: int = 20  # with fine_tune: the backbone's top layers that train (0: all)
    feature_cache: bool = True  # a frozen backbone's features computed once, read from disk
    patience: int = 4
    beam_width: int = 1  # for the final test-split evaluation
    # Validation images captioned after every epoch for the history's val_bleu_4 (0: none).
    val_bleu_images: int = 250
    seed: int = 0
    smoke: bool = False


# Each task's default epochs. VQA: about 6 minutes on a 2-core Intel Xeon, 11 on a 2-core AMD
# EPYC. Matching: 12, not 8: with 8 its changed relations stopped at 0.82 (0.98 with 12; one
# run each, Intel Xeon, 2026-12-07); 9 minutes on the Xeon, about 15 on the AMD EPYC.
TASK_EPOCHS = {"vqa": 8, "match": 12}


@dataclass
class TaskConfig:
    """Everything a VQA or matching run depends on; saved beside its model."""

    task: str = "vqa"
    data: str = "shapes"
    # The best measured for both tasks (README, "More multimodal tasks, measured").
    fusion: str = "objects"
    epochs: int | None = None  # None: the task's TASK_EPOCHS
    batch_size: int = 32  # images; each with all its texts (questions_per_image, 2 x pairs_per_image)
    learning_rate: float = 2e-3
    units: int = 128
    # Training texts per image: the image encoder reads an image once for all of them, so
    # six cost little more than one, and each epoch teaches six times as much.
    questions_per_image: int = 6  # VQA: each type the scene answers, then more yes/no
    pairs_per_image: int = 6  # matching: true captions, each beside a false one (8 epochs, before
    # the mention target: 3 gave 0.849, 6 gave 0.902)
    # The weight of training's second target, which object each text is about
    # (mmkeras.tasks.examples.about_targets), beside the answers' 1. Measured in VQA's default
    # 8 epochs on the 2-core AMD EPYC, 2026-12-07, one run each: with object slots, VQA 0.990
    # (every type 0.98 or more). With film_attention, the old default, it was fragile:
    # weighted 0.2, 0.945 (yes/no 0.76); weighted 1, 0.872 in 8 epochs, 0.864 in 9, 0.994 in
    # 10 and 0.999 in 16, a slow start that a shorter schedule does not always leave.
    about_weight: float = 1.0
    # Matching: the share of training negatives that are another image's caption instead
    # of a one-word change, for the first half of the epochs (then none). Without them the
    # model never learned to compare image and text at all (it stayed at chance when tried;
    # exercise 2 of 04_multimodal_tasks.ipynb). Test negatives are all one-word changes.
    other_image_negatives: float = 0.5
    train_images: int | None = None  # use only the first N training images
    seed: int = 0
    smoke: bool = False
    out: str = "runs/vqa"

    def __post_init__(self):
        if self.epochs is None and self.task in TASK_EPOCHS:
            self.epochs = TASK_EPOCHS[self.task]


@dataclass
class RetrievalConfig:
    """Everything a retrieval run depends on; saved beside its model."""

    data: str = "shapes"
    epochs: int = 15
    batch_size: int = 128  # more negatives per batch; 128 of 8,000 images rarely repeat a scene
    learning_rate: float = 2e-3
    embedding_dim: int = 64
    units: int = 128
    # Shapes Captions: each caption's false twin (one word or the relation changed) as an
    # extra negative, so that the embeddings must say where things are, not only what.
    false_captions: bool = True
    # Shapes Captions: the weight of each tower's reading of the scene, beside the contrastive
    # loss (mmkeras.tasks.retrieval.DualEncoderTrainer); 0 turns the readers off.
    scene_weight: float = 1.0
    # A matching model's model.keras (`python -m mmkeras match`): the test recalls are also
    # given with each caption's 10 nearest images (and each image's 10 nearest captions)
    # re-ranked by it (mmkeras.tasks.retrieval.RERANK_TOP).
    matcher: str | None = None
    seed: int = 0
    smoke: bool = False
    out: str = "runs/retrieval"


@dataclass
class SpeechToTextConfig:
    """Every setting of a speech recognition run; saved in ``config.json`` beside the model."""

    data: str = "spoken"
    decoder: str = "attention"  # the caption decoders': attention or init
    epochs: int = 12  # about 11 minutes on a 2-core CPU
    batch_size: int = 64
    learning_rate: float = 2e-3
    embedding_dim: int = 64
    units: int = 128
    beam_width: int = 1
    seed: int = 0
    smoke: bool = False
    out: str = "runs/speech2text"


@dataclass
class SpeechToImageConfig:
    """Every setting of a speech-to-image retrieval run; saved beside its model."""

    data: str = "spoken"
    epochs: int = 10
    batch_size: int = 128  # more negatives per batch, as the text-image dual encoder's
    learning_rate: float = 2e-3
    embedding_dim: int = 64
    units: int = 128
    scene_weight: float = 1.0  # the scene readers' losses beside the contrastive one (0: none)
    # A speech2text model whose audio encoder (trained with the words as targets) the audio
    # tower starts from; None: from scratch.
    audio_encoder_from: str | None = None
    seed: int = 0
    smoke: bool = False
    out: str = "runs/speech2image"


@dataclass
class AutoencoderConfig:
    """Every setting of a tri-modal autoencoder run; saved in ``config.json`` beside the model."""

    data: str = "spoken"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    image_size: int = 32  # the pictures it reads and draws (the captioner reads them upsampled)
    code_dim: int = 128
    embedding_dim: int = 64
    units: int = 128
    captioner: str | None = None  # reads the pictures drawn from speech; None: one trained into out/judges
    seed: int = 0
    smoke: bool = False
    out: str = "runs/autoencoder"


@dataclass
class TextToImageConfig:
    """Every setting of a text-to-image run; saved in ``config.json`` beside the model."""

    kind: str = "diffusion"  # one of GENERATORS
    data: str = "shapes"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    # Drawn at 32 px, a quarter of the captioner's pixels: on a 2-core CPU a 64 px U-Net
    # costs four times as much, and the captioner reads 32 px shapes back (upsampled) as
    # well as 64 px ones (06_text_to_image.ipynb).
    image_size: int = 32
    widths: tuple[int, ...] = (32, 64, 96)  # the diffusion U-Net's channels at 32, 16 and 8 px
    block_depth: int = 2
    attention_size: int = 16  # blocks this many pixels across or fewer attend over the words
    embedding_dim: int = 64
    units: int = 128
    latent_dim: int = 16  # the VAE's
    caption_dropout: float = 0.1  # the share trained without a caption, for guidance
    ema_momentum: float = 0.999
    sampling_steps: int = 20  # DDIM steps of each generated image
    guidance: float = 3.0
    seed: int = 0
    smoke: bool = False
    out: str = "runs/text2image"
