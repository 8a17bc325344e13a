"""mmkeras: multimodal deep learning with Keras, taught by building an image captioner.

The folders follow the data, and imports flow one way: ``config``, ``errors`` and
``atomic`` -> ``data`` (reads and makes data) -> ``nn`` (what every model shares) ->
``runs`` (what every training run shares) -> ``caption`` and ``tasks`` (VQA, matching,
retrieval), which never import each other -> ``cli``.
"""

import os

# TensorFlow reads this once, when it is first imported: quiet its C++ start-up chatter.
# Level 3, not 2: on a machine without a GPU, TensorFlow logs "failed call to cuInit" as an
# error; C++ errors that matter reach Python as exceptions anyway.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
