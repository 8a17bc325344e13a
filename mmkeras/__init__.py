"""mmkeras: multimodal deep learning with Keras, taught by building an image captioner.

The modules follow the data: shapes (the bundled dataset) -> dataset (loading) -> text ->
pipeline -> models -> training -> decoding -> evaluation. The other multimodal tasks build
on them: scenes (questions and false captions) -> fusion -> classification (VQA, matching),
and retrieval.
"""

import os

# TensorFlow reads this once, when it is first imported: quiet its C++ start-up chatter.
# Level 3, not 2: on a machine without a GPU, TensorFlow logs "failed call to cuInit" as an
# error; C++ errors that matter reach Python as exceptions anyway.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
