"""``python -m mmkeras``: generate data, train, evaluate and caption from the command line.

Heavy imports (TensorFlow) happen inside the commands, so ``--help`` answers at once.
A user's mistake ends with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from mmkeras.errors import UserError
from mmkeras.flickr8k import MIRROR as FLICKR8K_MIRROR
from mmkeras.training_config import TrainConfig


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def _show_warnings_plainly():
    """Data warnings are for the user: print them as one line, without a source location."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)
    warnings.showwarning = show


def cmd_data(args) -> int:
    from mmkeras import shapes
    config = shapes.ShapesConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                                 num_test=args.num_test, image_size=args.image_size,
                                 cogent=args.cogent)
    out = shapes.generate(args.out, config)
    print(f"wrote {config.num_train + config.num_val + config.num_test} images to {out}")
    return 0


def cmd_flickr8k(args) -> int:
    from mmkeras import flickr8k
    from mmkeras.download import Archive
    mirror = args.mirror.rstrip("/")
    archives = tuple(Archive(f"{mirror}/{a.name}", a.md5) for a in flickr8k.ARCHIVES)
    out = flickr8k.prepare(args.out, archives, keep_archives=args.keep_archives)
    print(f"Flickr8k is ready in {out}; train on it with "
          f"`python -m mmkeras train --data {out} --backbone MobileNetV2 --image-size 224`")
    return 0


def cmd_train(args) -> int:
    from mmkeras.evaluation import format_metrics
    from mmkeras.training import train
    config = TrainConfig(data=args.data, decoder=args.decoder, epochs=args.epochs,
                         batch_size=args.batch_size, backbone=args.backbone,
                         backbone_weights=None if args.backbone_weights == "none" else "imagenet",
                         fine_tune=args.fine_tune, fine_tune_layers=args.fine_tune_layers,
                         feature_cache=not args.no_feature_cache,
                         image_size=args.image_size,
                         all_pairs=args.all_pairs, beam_width=args.beam, seed=args.seed,
                         out=args.out, smoke=args.smoke)
    # Keras' live progress bar is for terminals; logs and CI get one line per epoch.
    verbose = "auto" if sys.stdout.isatty() else 2
    result = train(config, verbose=verbose)
    out = Path(args.out)
    print(f"wrote {out / 'model.keras'}, config.json, history.csv, metrics.json "
          f"({result['run']['total_seconds']:.0f} s)")
    for path, caption in result["examples"][:3]:
        print(f"  {Path(path).name}: {caption}")
    print(format_metrics(result["metrics"]))
    return 0


def cmd_evaluate(args) -> int:
    from mmkeras.dataset import load_splits
    from mmkeras.decoding import CaptionDecoder
    from mmkeras.evaluation import caption_metrics, format_metrics
    from mmkeras.models import load_caption_model
    from mmkeras.pipeline import evaluation_images
    caption_model = load_caption_model(args.model)
    split = load_splits(args.data, splits=(args.split,))[args.split]
    image_size = caption_model.input["image"].shape[1]
    hypotheses = CaptionDecoder(caption_model).caption_batches(
        evaluation_images(split, image_size), beam_width=args.beam)
    metrics = caption_metrics(split.captions, hypotheses)
    print(format_metrics(metrics))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def cmd_caption(args) -> int:
    import numpy as np
    import tensorflow as tf
    from mmkeras.dataset import DECODABLE_FORMATS, image_problem
    from mmkeras.decoding import CaptionDecoder
    from mmkeras.models import load_caption_model
    from mmkeras.pipeline import decode_image
    for image in args.images:
        problem = image_problem(Path(image))
        if problem:
            raise UserError(f"{image}: {problem}; expected an image file "
                            f"({', '.join(sorted(DECODABLE_FORMATS))})")
    caption_model = load_caption_model(args.model)
    image_size = caption_model.input["image"].shape[1]
    images = np.stack([decode_image(tf.io.read_file(image), image_size).numpy()
                       for image in args.images])
    for image, caption in zip(args.images, CaptionDecoder(caption_model).captions(images, args.beam)):
        print(f"{image}\t{caption}")
    return 0


def cmd_export(args) -> int:
    from mmkeras.export import export_saved_model, export_tflite
    from mmkeras.models import load_caption_model
    caption_model = load_caption_model(args.model)
    out = export_saved_model(caption_model, args.out)
    print(f"wrote {out}: a SavedModel; its `serve` signature takes encoded image bytes and "
          "returns captions, with no need of mmkeras")
    if args.tflite:
        path = export_tflite(caption_model, args.tflite)
        print(f"wrote {path}: TensorFlow Lite, one {caption_model.input['image'].shape[1]} px "
              "uint8 image to its words")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmkeras", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="generate a dataset")
    data_kinds = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    shapes = data_kinds.add_parser("shapes", help="draw the Shapes Captions dataset")
    shapes.add_argument("--out", required=True, help="folder to write (Flickr8k layout)")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--num-train", type=_positive, default=8000)
    shapes.add_argument("--num-val", type=_positive, default=1000)
    shapes.add_argument("--num-test", type=_positive, default=1000)
    shapes.add_argument("--image-size", type=_positive, default=64, help="pixels a side")
    shapes.add_argument("--cogent", action="store_true",
                        help="hold five colour-shape pairs out of train and val")
    shapes.set_defaults(run=cmd_data)
    flickr = data_kinds.add_parser("flickr8k", help="download and unpack Flickr8k (1.1 GB)")
    flickr.add_argument("--out", required=True, help="folder to unpack into")
    flickr.add_argument("--mirror", default=FLICKR8K_MIRROR,
                        help="URL (or file:// folder) holding Flickr8k_Dataset.zip and "
                             "Flickr8k_text.zip; their checksums are checked either way")
    flickr.add_argument("--keep-archives", action="store_true",
                        help="keep the zip files after unpacking")
    flickr.set_defaults(run=cmd_flickr8k)

    train = commands.add_parser("train", help="train a caption model, then score it on the test split")
    train.add_argument("--data", default="shapes",
                       help="'shapes' (generated on first use), 'flickr8k' (downloaded on "
                            "first use), 'coco' (MS-COCO through tensorflow-datasets) or a "
                            "folder in the Flickr8k layout")
    train.add_argument("--decoder", choices=("attention", "init"), default="attention",
                       help="attention: show, attend and tell; init: show and tell")
    train.add_argument("--epochs", type=_positive, default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=_positive, default=TrainConfig.batch_size)
    train.add_argument("--backbone", help="a keras.applications model, e.g. MobileNetV2")
    train.add_argument("--backbone-weights", choices=("imagenet", "none"), default="imagenet",
                       help="none: random weights (offline checks; no download)")
    train.add_argument("--fine-tune", action="store_true",
                       help="train the backbone's top layers too (default: frozen)")
    train.add_argument("--fine-tune-layers", type=int, default=TrainConfig.fine_tune_layers,
                       metavar="N", help="with --fine-tune: how many top layers train (0: all)")
    train.add_argument("--no-feature-cache", action="store_true",
                       help="run a frozen backbone every epoch instead of caching its features")
    train.add_argument("--image-size", type=_positive, default=TrainConfig.image_size,
                       help="pixels a side the images are resized to (224 suits ImageNet backbones)")
    train.add_argument("--all-pairs", action="store_true",
                       help="train on every (image, caption) pair each epoch")
    train.add_argument("--beam", type=_positive, default=1, help="beam width for the test scores")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/caption", help="folder for the model and its records")
    train.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs, for a quick check")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a saved model on a data split")
    evaluate.add_argument("--model", required=True, help="a model.keras written by train")
    evaluate.add_argument("--data", required=True,
                          help="a folder in the Flickr8k layout, or 'coco'")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument("--beam", type=_positive, default=1, help="beam width (1: greedy)")
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    evaluate.set_defaults(run=cmd_evaluate)

    caption = commands.add_parser("caption", help="caption image files")
    caption.add_argument("--model", required=True, help="a model.keras written by train")
    caption.add_argument("images", nargs="+", metavar="IMAGE")
    caption.add_argument("--beam", type=_positive, default=1, help="beam width (1: greedy)")
    caption.set_defaults(run=cmd_caption)

    export = commands.add_parser("export", help="write a SavedModel that captions image bytes, "
                                                "and optionally a TensorFlow Lite model")
    export.add_argument("--model", required=True, help="a model.keras written by train")
    export.add_argument("--out", required=True, help="folder to write the SavedModel to")
    export.add_argument("--tflite", metavar="FILE", help="also write a TensorFlow Lite model here")
    export.set_defaults(run=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_warnings_plainly()
    try:
        return args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
