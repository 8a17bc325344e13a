"""MS-COCO captions through tensorflow-datasets, in Karpathy's splits, streamed from the records.

``tfds`` dataset ``coco_captions``: COCO 2014 split as Karpathy and Li did, the split the
papers report on. Training uses his ``train`` and ``restval`` (113,287 images), and
``val`` and ``test`` hold 5,000 images each, with five or more captions per image. The first
use downloads 37.6 GiB and writes 18.8 GiB of records into tensorflow-datasets' folder
(``~/tensorflow_datasets``, or ``$TFDS_DATA_DIR``); after that, images are read from the
records batch by batch, never held in memory whole. ``python -m mmkeras train --data coco``.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from mmkeras.data.folder import SPLITS, CaptionSplit
from mmkeras.data.images import AUTOTUNE, decode_image

TFDS_NAME = "coco_captions"
TFDS_SPLITS = {"train": "train+restval", "val": "val", "test": "test"}


def load_coco(splits=SPLITS, data_dir: str | None = None,
              progress: bool = True) -> dict[str, CaptionSplit]:
    """``{split: CaptionSplit}`` whose images stream from the tensorflow-datasets records.

    The captions are read in one pass over the records (the images are skipped, not
    decoded) and kept in memory: a few tens of MB for all of COCO.
    """
    import tensorflow_datasets as tfds  # imported here: only COCO needs it

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    builder.download_and_prepare()

    result = {}
    for split in splits:
        def records(split=split):
            # SkipDecoding: the encoded bytes, decoded by our own decode_image, so images from
            # COCO are resized exactly as images from files are.
            return builder.as_dataset(split=TFDS_SPLITS[split], shuffle_files=False,
                                      decoders={"image": tfds.decode.SkipDecoding()})

        ids, captions = [], []
        texts = records().map(lambda example: (example["image/id"], example["captions"]["text"]),
                              num_parallel_calls=AUTOTUNE)
        for image_id, text in tqdm(texts.as_numpy_iterator(), desc=f"coco {split} captions",
                                   unit=" images", disable=None if progress else True):
            ids.append(f"coco:{int(image_id)}")
            captions.append([t.decode("utf-8") for t in text])

        def image_source(image_size, records=records):
            return records().map(lambda example: decode_image(example["image"], image_size),
                                 num_parallel_calls=AUTOTUNE)

        result[split] = CaptionSplit(split, ids, captions, image_source)
    return result
