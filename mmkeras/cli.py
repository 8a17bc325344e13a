"""``python -m mmkeras``: generate data, train, evaluate and caption from the command line.

Heavy imports (TensorFlow) happen inside the commands, so ``--help`` answers at once.
A user's mistake ends with a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from mmkeras.atomic import write_json
from mmkeras.config import (
    BLIND_BASELINES,
    DECODERS,
    ENCODERS,
    FUSIONS,
    GENERATORS,
    TASK_EPOCHS,
    TASKS,
    AutoencoderConfig,
    RetrievalConfig,
    SpeechToImageConfig,
    SpeechToTextConfig,
    TaskConfig,
    TextToImageConfig,
    TrainConfig,
)
from mmkeras.data.flickr8k import MIRROR as FLICKR8K_MIRROR
from mmkeras.data.folder import SPLITS
from mmkeras.errors import UserError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # refused below, with the same message
    if not 0 <= value < float("inf"):  # false for nan too
        raise argparse.ArgumentTypeError(f"expected a finite number of 0 or more, got {text}")
    return value


def _show_warnings_plainly():
    """Data warnings are for the user: print them as one line, without a source location."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)
    warnings.showwarning = show


def cmd_data(args) -> int:
    from mmkeras.data import shapes
    config = shapes.ShapesConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                                 num_test=args.num_test, image_size=args.image_size,
                                 cogent=args.cogent)
    out = shapes.generate(args.out, config)
    print(f"wrote {config.num_train + config.num_val + config.num_test} images to {out}")
    return 0


def cmd_spoken(args) -> int:
    from mmkeras.data import catalog, spoken
    if args.shapes and not Path(args.shapes).is_dir():
        raise UserError(f"--shapes {args.shapes}: no such folder; expected a Shapes Captions folder "
                        "(python -m mmkeras data shapes --out DIR)")
    shapes_dir = args.shapes or catalog.shapes_data()
    config = spoken.SpokenConfig(seed=args.seed, clips_per_image=args.clips_per_image)
    out = spoken.generate(args.out, shapes_dir, config)
    clips = sum(len(split) for split in spoken.load_spoken(out).values())
    print(f"wrote {clips} spoken captions of the images of {shapes_dir} to {out}")
    return 0


def cmd_flickr8k(args) -> int:
    from mmkeras.data import flickr8k
    from mmkeras.data.download import Archive
    mirror = args.mirror.rstrip("/")
    archives = tuple(Archive(f"{mirror}/{a.name}", a.md5) for a in flickr8k.ARCHIVES)
    out = flickr8k.prepare(args.out, archives, keep_archives=args.keep_archives)
    print(f"Flickr8k is ready in {out}; train on it with "
          f"`python -m mmkeras train --data {out} --backbone MobileNetV2 --image-size 224`")
    return 0


def cmd_train(args) -> int:
    from mmkeras.caption.metrics import format_metrics
    from mmkeras.caption.train import train
    config = TrainConfig(data=args.data, decoder=args.decoder, encoder=args.encoder, epochs=args.epochs,
                         batch_size=args.batch_size, backbone=args.backbone,
                         backbone_weights=None if args.backbone_weights == "none" else "imagenet",
                         fine_tune=args.fine_tune, fine_tune_layers=args.fine_tune_layers,
                         feature_cache=not args.no_feature_cache,
                         image_size=args.image_size,
                         all_pairs=args.all_pairs, beam_width=args.beam,
                         val_bleu_images=args.val_bleu_images, seed=args.seed,
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
    from mmkeras.runs import load_model
    if args.out and Path(args.out).is_dir():  # found now, not after the whole evaluation
        raise UserError(f"--out {args.out}: is a folder; expected the name of a JSON file to write")
    model = load_model(args.model)
    if args.captioner and model.name != "trimodal_autoencoder":
        raise UserError(f"--captioner reads the pictures a tri-modal autoencoder draws; {args.model} "
                        f"is the model {model.name!r}")
    if (args.rerank or args.samples) and (model.name in ("dual_encoder", "trimodal_autoencoder")
                                          or model.name.startswith("fused_classifier")):
        raise UserError(f"--rerank and --samples choose among a captioner's captions; {args.model} "
                        f"is the model {model.name!r}")
    if args.matcher and model.name != "dual_encoder":
        raise UserError(f"--matcher re-ranks what a dual encoder retrieves; {args.model} "
                        f"is the model {model.name!r}")
    if model.name == "dual_encoder":
        metrics = _evaluate_retrieval(model, args)
    elif model.name.startswith("fused_classifier"):
        metrics = _evaluate_classifier(model, args)
    elif model.name == "speech_image_encoder":
        metrics = _evaluate_speech_to_image(model, args)
    elif model.name == "trimodal_autoencoder":
        metrics = _evaluate_autoencoder(model, args)
    elif isinstance(model.input, dict) and "audio" in model.input:
        metrics = _evaluate_speech_to_text(model, args)
    else:
        metrics = _evaluate_captions(model, args)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out), metrics)
    return 0


def _evaluate_captions(caption_model, args) -> dict:
    from mmkeras.caption.decoding import CaptionDecoder
    from mmkeras.caption.metrics import format_metrics, split_metrics
    from mmkeras.data.catalog import load_dataset
    from mmkeras.data.images import evaluation_images
    image_size = caption_model.input["image"].shape[1]
    rerank = _reranker(args, image_size)
    split = load_dataset(args.data, splits=(args.split,))[1][args.split]
    hypotheses = CaptionDecoder(caption_model).caption_batches(
        evaluation_images(split, image_size), beam_width=args.beam, rerank=rerank, samples=args.samples)
    metrics = split_metrics(split, hypotheses)
    print(format_metrics(metrics))
    return metrics


def _evaluate_speech_to_text(recogniser, args) -> dict:
    """A speech2text model's word error rate on a Spoken Shapes folder's split."""
    from mmkeras.data.catalog import load_spoken_dataset
    from mmkeras.data.spoken import read_clips
    from mmkeras.speech.recognition import score_transcripts
    if args.rerank or args.samples:
        raise UserError("--rerank and --samples choose among a captioner's captions of images; "
                        f"{args.model} transcribes speech")
    split = load_spoken_dataset(args.data, splits=(args.split,))[1][args.split]
    audio = read_clips(split.audio_paths, recogniser.input["audio"].shape[1])
    metrics = {"task": "speech2text", **score_transcripts(recogniser, audio, split, args.beam)}
    print(_speech_scores(metrics))
    return metrics


def _evaluate_speech_to_image(model, args) -> dict:
    """A speech2image model's recalls on a Spoken Shapes folder's split."""
    from mmkeras.data.catalog import load_spoken_dataset
    from mmkeras.speech.retrieval import evaluate_speech_retrieval
    if args.rerank or args.samples:
        raise UserError(f"--rerank and --samples choose among a captioner's captions; {args.model} "
                        "is a speech-image encoder")
    split = load_spoken_dataset(args.data, splits=(args.split,))[1][args.split]
    metrics = evaluate_speech_retrieval(model, split)
    print(_speech_retrieval_scores(metrics))
    return metrics


def _evaluate_autoencoder(autoencoder, args) -> dict:
    """A tri-modal autoencoder's reconstructions and probes on a Spoken Shapes folder (the
    probes learn from its training split), and with ``--captioner`` its pictures from speech
    read back."""
    from mmkeras.data.catalog import load_spoken_dataset
    from mmkeras.runs import load_model
    from mmkeras.speech.autoencoder import evaluate_autoencoder
    captioner = _image_captioner(load_model(args.captioner), args.captioner) if args.captioner else None
    splits = load_spoken_dataset(args.data, splits=tuple(dict.fromkeys(("train", args.split))))[1]
    metrics = evaluate_autoencoder(autoencoder, splits["train"], splits[args.split], captioner)
    print(_autoencoder_scores(metrics))
    return metrics


def _reranker(args, image_size: int | None = None):
    """With ``--rerank``, the dual encoder's similarity that picks among the candidates
    (checked to read images of the captioner's ``image_size``)."""
    if args.samples and not args.rerank:
        raise UserError("--samples: the drawn captions are candidates for --rerank; give it too")
    if not args.rerank:
        return None
    if args.beam == 1 and not args.samples:
        raise UserError("--rerank: one caption per image leaves nothing to choose; give "
                        "--beam 2 or more, or --samples")
    from mmkeras.runs import load_model
    from mmkeras.tasks.retrieval import dual_encoder_similarity
    dual_encoder = load_model(args.rerank)
    if dual_encoder.name != "dual_encoder":
        raise UserError(f"--rerank {args.rerank}: expected a dual encoder written by "
                        f"`python -m mmkeras retrieval`, found the model {dual_encoder.name!r}")
    reads = dual_encoder.get_layer("image_tower").input_shape[1]
    if image_size is not None and reads != image_size:
        raise UserError(f"--rerank {args.rerank}: reads {reads} px images, the captioner {image_size} px; "
                        "train both at one --image-size")
    return dual_encoder_similarity(dual_encoder)


def _evaluate_classifier(classifier, args) -> dict:
    from mmkeras.tasks.classification import evaluate_classifier
    _only_the_test_split(args)
    metrics = evaluate_classifier(classifier, args.data)
    print(_task_scores(metrics))
    return metrics


def _evaluate_retrieval(dual_encoder, args) -> dict:
    from mmkeras.data.catalog import load_dataset
    from mmkeras.tasks.classification import load_matcher
    from mmkeras.tasks.retrieval import evaluate_retrieval
    _only_the_test_split(args)
    matcher = load_matcher(args.matcher) if args.matcher else None  # before any data is made
    split = load_dataset(args.data, splits=("test",))[1]["test"]
    metrics = evaluate_retrieval(dual_encoder, split, matcher, args.matcher)
    print(_recalls(metrics))
    return metrics


def _only_the_test_split(args) -> None:
    if args.split != "test":
        raise UserError(f"--split {args.split}: the task models are scored on the test split "
                        "(their questions and false captions are made from its scenes)")


def cmd_caption(args) -> int:
    import numpy as np
    import tensorflow as tf

    from mmkeras.caption.decoding import CaptionDecoder
    from mmkeras.data.folder import DECODABLE_FORMATS, image_problem
    from mmkeras.data.images import decode_image
    from mmkeras.runs import load_model
    for image in args.images:
        problem = image_problem(Path(image))
        if problem:
            raise UserError(f"{image}: {problem}; expected an image file "
                            f"({', '.join(sorted(DECODABLE_FORMATS))})")
    caption_model = _image_captioner(load_model(args.model), args.model)
    image_size = caption_model.input["image"].shape[1]
    rerank = _reranker(args, image_size)
    images = np.stack([decode_image(tf.io.read_file(image), image_size).numpy()
                       for image in args.images])
    captions = CaptionDecoder(caption_model).captions(images, args.beam, rerank, args.samples)
    for image, caption in zip(args.images, captions):
        print(f"{image}\t{caption}")
    return 0


def _image_captioner(model, path):
    """``model`` if it captions images; a one-line refusal for any other model."""
    if not isinstance(model.input, dict) or "image" not in model.input or "caption_in" not in model.input:
        what = "transcribes speech" if isinstance(model.input, dict) and "audio" in model.input else \
            f"is the model {model.name!r}"
        raise UserError(f"{path}: this model {what}; expected a caption model (python -m mmkeras train)")
    return model


def cmd_export(args) -> int:
    from mmkeras.caption.export import export_saved_model, export_tflite
    from mmkeras.runs import load_model
    caption_model = _image_captioner(load_model(args.model), args.model)
    out = export_saved_model(caption_model, args.out)
    print(f"wrote {out}: a SavedModel; its `serve` signature takes encoded image bytes and "
          "returns captions, with no need of mmkeras")
    if args.tflite:
        path = export_tflite(caption_model, args.tflite)
        print(f"wrote {path}: TensorFlow Lite, one {caption_model.input['image'].shape[1]} px "
              "uint8 image to its words")
    return 0


def _task_scores(metrics: dict) -> str:
    """One line per question type (or kind of caption), accuracy beside its chance level."""
    guesser = ("the most common answer of its question type" if metrics["task"] == "vqa"
               else "a coin toss")
    lines = [f"accuracy {metrics['accuracy']:.3f} on {metrics['n_examples']} test examples "
             f"(chance, {guesser}: {metrics['chance']:.3f})"]
    for kind, score in metrics["by_kind"].items():
        lines.append(f"  {kind:<12} {score['accuracy']:.3f}  (chance {score['chance']:.3f}, "
                     f"n={score['n']})")
    return "\n".join(lines)


def task_config(args) -> TaskConfig:
    """The settings of a ``vqa`` or ``match`` command, as the notebooks' ``TaskConfig``."""
    return TaskConfig(task=args.command, data=args.data, fusion=args.fusion, epochs=args.epochs,
                      about_weight=args.about_weight, batch_size=args.batch_size,
                      train_images=args.train_images, seed=args.seed, smoke=args.smoke,
                      out=args.out or f"runs/{args.command}")


def cmd_task(args) -> int:
    from mmkeras.tasks.classification import train_task
    config = task_config(args)
    verbose = "auto" if sys.stdout.isatty() else 2
    result = train_task(config, verbose=verbose)
    print(f"wrote {Path(config.out) / 'model.keras'}, config.json, history.csv, metrics.json")
    print(_task_scores(result))
    return 0


def cmd_retrieval(args) -> int:
    from mmkeras.tasks.retrieval import train_retrieval
    config = RetrievalConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                             matcher=args.matcher, seed=args.seed, smoke=args.smoke, out=args.out)
    verbose = "auto" if sys.stdout.isatty() else 2
    result = train_retrieval(config, verbose=verbose)
    print(f"wrote {Path(config.out) / 'model.keras'}, config.json, history.csv, metrics.json")
    print(_recalls(result))
    return 0


def _recalls(metrics: dict) -> str:
    lines = [f"recall on {metrics['n_images']} test images and their {metrics['n_captions']} "
             "captions (chance in brackets; 'any': any image the caption is true of counts):"]
    for direction in ("text_to_image", "image_to_text"):
        recalls = "  ".join(
            f"R@{key[1:]} {value:.3f} ({metrics['chance'][direction][key]:.3f})"
            if key in metrics["chance"][direction] else f"R@{key[1:].replace('_', ' ')} {value:.3f}"
            for key, value in metrics[direction].items())
        lines.append(f"  {direction.replace('_', ' '):<14} {recalls}")
    if "reranked" in metrics:
        reranked = metrics["reranked"]
        lines.append(f"re-ranked by {reranked['matcher']} (each one's {reranked['top']} nearest, "
                     f"{reranked['seconds']:.0f} s):")
        for direction in ("text_to_image", "image_to_text"):
            recalls = "  ".join(f"R@{key[1:].replace('_', ' ')} {value:.3f}"
                                for key, value in reranked[direction].items())
            lines.append(f"  {direction.replace('_', ' '):<14} {recalls}")
    return "\n".join(lines)


def _train_and_report(train, config, scores) -> int:
    """Run ``train(config)``, then say what it wrote and print ``scores(metrics)``. Keras'
    live progress bar is for terminals; logs and CI get one line per epoch."""
    verbose = "auto" if sys.stdout.isatty() else 2
    metrics = train(config, verbose=verbose, progress=sys.stdout.isatty())
    print(f"wrote {Path(config.out) / 'model.keras'}, config.json, history.csv, metrics.json")
    print(scores(metrics))
    return 0


def cmd_text2image(args) -> int:
    from mmkeras.generation.train import train_text_to_image
    config = TextToImageConfig(kind=args.kind, data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                               seed=args.seed, smoke=args.smoke, out=args.out)
    return _train_and_report(train_text_to_image, config, _generation_scores)


def cmd_speech2text(args) -> int:
    from mmkeras.speech.recognition import train_speech_to_text
    config = SpeechToTextConfig(data=args.data, decoder=args.decoder, epochs=args.epochs,
                                batch_size=args.batch_size, seed=args.seed, smoke=args.smoke, out=args.out)
    return _train_and_report(train_speech_to_text, config, _speech_scores)


def cmd_speech2image(args) -> int:
    from mmkeras.speech.retrieval import train_speech_to_image
    config = SpeechToImageConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                                 audio_encoder_from=args.audio_encoder_from, seed=args.seed,
                                 smoke=args.smoke, out=args.out)
    return _train_and_report(train_speech_to_image, config, _speech_retrieval_scores)


def cmd_autoencoder(args) -> int:
    from mmkeras.speech.autoencoder import train_autoencoder
    config = AutoencoderConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                               captioner=args.captioner, seed=args.seed, smoke=args.smoke, out=args.out)
    return _train_and_report(train_autoencoder, config, _autoencoder_scores)


def _autoencoder_scores(metrics: dict) -> str:
    """Each modality's error from each subset, the probes, and the pictures from speech."""
    lines = [f"{metrics['n_clips']} test clips; made back from each subset of inputs: picture (mean "
             "absolute error), caption (word error rate), speech (mean absolute error, 20 dB)"]
    for subset, errors in metrics["reconstruction"].items():
        lines.append(f"  {subset:<21} " + "  ".join(f"{errors[m]:.3f}" for m in ("image", "caption", "speech")))
    for subset, accuracies in metrics["linear_probe"].items():
        lines.append(f"linear probe of the code from {subset}: "
                     + ", ".join(f"{a} {v:.3f}" for a, v in accuracies.items() if v is not None))
    if "speech_to_image" in metrics:
        drawn = metrics["speech_to_image"]
        lines.append("pictures drawn from speech alone, read back by the captioner: drawn (real, shuffled)")
        for key in ("colour", "shape", "size", "relation", "scene"):
            lines.append(f"  {key:<9} {drawn['round_trip'][key]:.3f}  ({drawn['round_trip_real'][key]:.3f}, "
                         f"{drawn['round_trip_shuffled'][key]:.3f})")
    return "\n".join(lines)


def _speech_retrieval_scores(metrics: dict) -> str:
    lines = [f"{metrics['n_clips']} clips, {metrics['n_images']} images: recall at 1, 5, 10 "
             "(any true image or clip counting)"]
    for direction in ("audio_to_image", "image_to_audio"):
        recalls = metrics[direction]
        lines.append(f"  {direction:<15} " + ", ".join(f"{recalls[f'r{k}']:.3f}" for k in (1, 5, 10))
                     + "  (" + ", ".join(f"{recalls[f'r{k}_any']:.3f}" for k in (1, 5, 10)) + ")")
    return "\n".join(lines)


def _speech_scores(metrics: dict) -> str:
    by_voice = ", ".join(f"{voice} {wer:.3f}" for voice, wer in metrics["wer_by_voice"].items())
    lines = [f"word error rate {metrics['wer']:.3f} on {metrics['test_clips']} clips (by voice variant: "
             f"{by_voice}); {metrics['sentence_accuracy']:.1%} without an error"]
    lines += [f"  said:  {e['said']}\n  heard: {e['heard']}" for e in metrics["examples"][:3]]
    return "\n".join(lines)


def _generation_scores(metrics: dict) -> str:
    """The round trip beside the real images and the shuffled captions, then the rest."""
    how = (f"{metrics['sampling_steps']} steps, guidance {metrics['guidance']:g}" if "guidance" in metrics
           else "one pass of the decoder each")
    lines = [f"{metrics['n_prompts']} test captions drawn by the {metrics['kind']} model ({how}), read back "
             "by the captioner: generated (real images, shuffled captions)"]
    for key in ("colour", "shape", "size", "relation", "scene"):
        lines.append(f"  {key:<9} {metrics['round_trip'][key]:.3f}  ({metrics['round_trip_real'][key]:.3f}, "
                     f"{metrics['round_trip_shuffled'][key]:.3f})")
    lines.append(f"  (sizes: of the objects the captioner gave a size, {metrics['round_trip']['sizes_read']:.0%} "
                 f"of the generated, {metrics['round_trip_real']['sizes_read']:.0%} of the real)")
    lines.append(f"R-precision {metrics['r_precision']:.3f} (real {metrics['r_precision_real']:.3f}, "
                 f"shuffled {metrics['r_precision_shuffled']:.3f}, chance {metrics['r_precision_chance']:.3f}); KID {metrics['kid']:.4f} "
                 f"(two halves of the real images: {metrics['kid_real']:.4f}); "
                 f"{metrics['images_per_second']:.1f} images a second")
    return "\n".join(lines)


def cmd_generate(args) -> int:
    captions = list(args.captions)
    if args.captions_file:
        path = Path(args.captions_file)
        try:
            captions += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{path}: cannot be read as UTF-8 text, one caption a line ({error})") from None
    if not captions:
        raise UserError("no captions: give them as arguments or in --captions FILE")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; expected a folder for the images")
    from PIL import Image

    from mmkeras.generation.train import generator_for
    from mmkeras.runs import load_model
    try:
        generator = generator_for(load_model(args.model))
    except UserError as error:
        raise UserError(f"--model {args.model}: {error}") from None
    unknown = generator.unknown_words(captions)
    if unknown:
        raise UserError(f"{', '.join(repr(w) for w in unknown)}: not in the model's vocabulary "
                        f"({len(generator.vocabulary)} words, e.g. {', '.join(generator.vocabulary[4:10])})")
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(captions), 100):
        images = generator.generate(captions[start:start + 100], args.steps, args.guidance, args.seed + start)
        for index, image in enumerate(images, start):
            Image.fromarray(image).save(out / f"{index:05d}.png")
    print(f"wrote {len(captions)} images to {out} ({generator.image_size} px, 00000.png first)")
    return 0


def cmd_fusion(args) -> int:
    from mmkeras.tasks.fusion_comparison import compare_fusions, fusion_table
    known = (*FUSIONS, *BLIND_BASELINES)
    fusions = args.fusions.split(",") if args.fusions else list(known)
    unknown = [f for f in fusions if f not in known]
    if unknown:
        raise UserError(f"--fusions: unknown {', '.join(unknown)}; expected some of {', '.join(known)}")
    rows = compare_fusions(args.task, fusions, args.epochs, args.train_images, args.smoke,
                           args.seed, args.out, args.data, seeds=args.seeds)
    table = fusion_table(rows)
    (Path(args.out) / "fusion.md").write_text(table + "\n")
    print(table)
    print(f"wrote {Path(args.out) / 'fusion.md'} and fusion.json")
    return 0


def _add_rerank_arguments(command) -> None:
    command.add_argument("--rerank", metavar="DUAL_ENCODER",
                         help="a model.keras written by retrieval: of the --beam beams (and "
                              "--samples), keep the caption it finds closest to the image")
    command.add_argument("--samples", type=_non_negative, default=0,
                         help="with --rerank, also this many captions per image drawn at "
                              "temperature 2 as candidates (default 0)")


SPOKEN_DATA_HELP = "'spoken' (Spoken Shapes, made on first use) or a Spoken Shapes folder"


def _add_matcher_argument(command) -> None:
    command.add_argument("--matcher", metavar="MATCH_MODEL",
                         help="a model.keras written by match: also give the dual encoder's test "
                              "recalls with each caption's 10 nearest images, and each image's 10 "
                              "nearest captions, re-ranked by it (a two-stage retriever)")


def _add_run_arguments(command, config_class, data_help: str = SPOKEN_DATA_HELP) -> None:
    """The flags a training run shares with the others, with its config's defaults."""
    command.add_argument("--data", default=config_class.data, help=data_help)
    command.add_argument("--epochs", type=_positive, default=config_class.epochs)
    command.add_argument("--batch-size", type=_positive, default=config_class.batch_size)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument("--out", default=config_class.out, help="folder for the model and its records")
    command.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs")


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
    spoken = data_kinds.add_parser("spoken", help="speak a Shapes Captions folder's captions (Spoken Shapes)")
    spoken.add_argument("--out", required=True, help="folder to write: the images and captions, "
                                                     "wavs/ and the lists of its clips")
    spoken.add_argument("--shapes", help="the Shapes Captions folder to speak (never changed); "
                                         "default: the default one, drawn if need be")
    spoken.add_argument("--seed", type=int, default=0)
    spoken.add_argument("--clips-per-image", type=_positive, default=1,
                        help="how many of each image's five captions are spoken (1 to 5)")
    spoken.set_defaults(run=cmd_spoken)
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
    train.add_argument("--decoder", choices=DECODERS, default=TrainConfig.decoder,
                       help="attention: show, attend and tell; init: show and tell; "
                            "transformer: Transformer decoder blocks")
    train.add_argument("--encoder", choices=ENCODERS, default=TrainConfig.encoder,
                       help="the image encoder trained from scratch: a small CNN or a small "
                            "Vision Transformer (--backbone NAME: a pretrained one instead)")
    train.add_argument("--epochs", type=_positive, default=TrainConfig.epochs)
    train.add_argument("--batch-size", type=_positive, default=TrainConfig.batch_size)
    train.add_argument("--backbone", help="a keras.applications model, e.g. MobileNetV2")
    train.add_argument("--backbone-weights", choices=("imagenet", "none"), default="imagenet",
                       help="none: random weights (offline checks; no download)")
    train.add_argument("--fine-tune", action="store_true",
                       help="train the backbone's top layers too (default: frozen)")
    train.add_argument("--fine-tune-layers", type=_non_negative, default=TrainConfig.fine_tune_layers,
                       metavar="N", help="with --fine-tune: how many top layers train (0: all)")
    train.add_argument("--no-feature-cache", action="store_true",
                       help="run a frozen backbone every epoch instead of caching its features")
    train.add_argument("--image-size", type=_positive, default=TrainConfig.image_size,
                       help="pixels a side the images are resized to (224 suits ImageNet backbones)")
    train.add_argument("--all-pairs", action="store_true",
                       help="train on every (image, caption) pair each epoch")
    train.add_argument("--beam", type=_positive, default=1, help="beam width for the test scores")
    train.add_argument("--val-bleu-images", type=_non_negative, default=TrainConfig.val_bleu_images,
                       help="validation images captioned after every epoch for the history's "
                            "val_bleu_4 (default %(default)s; 0: none)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/caption", help="folder for the model and its records")
    train.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs, for a quick check")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a saved model on a data split")
    evaluate.add_argument("--model", required=True,
                          help="a model.keras written by train, vqa, match, retrieval, speech2text, "
                               "speech2image or autoencoder")
    evaluate.add_argument("--data", required=True,
                          help="'shapes', 'flickr8k', 'coco' or a folder in the Flickr8k layout")
    evaluate.add_argument("--split", choices=SPLITS, default="test")
    evaluate.add_argument("--beam", type=_positive, default=1, help="beam width (1: greedy)")
    _add_rerank_arguments(evaluate)
    _add_matcher_argument(evaluate)
    evaluate.add_argument("--captioner", metavar="CAPTION_MODEL",
                          help="autoencoder only: a model written by train, to read back the pictures "
                               "drawn from speech")
    evaluate.add_argument("--out", help="also write the metrics to this JSON file")
    evaluate.set_defaults(run=cmd_evaluate)

    caption = commands.add_parser("caption", help="caption image files")
    caption.add_argument("--model", required=True, help="a model.keras written by train")
    caption.add_argument("images", nargs="+", metavar="IMAGE")
    caption.add_argument("--beam", type=_positive, default=1, help="beam width (1: greedy)")
    _add_rerank_arguments(caption)
    caption.set_defaults(run=cmd_caption)

    export = commands.add_parser("export", help="write a SavedModel that captions image bytes, "
                                                "and optionally a TensorFlow Lite model")
    export.add_argument("--model", required=True, help="a model.keras written by train")
    export.add_argument("--out", required=True, help="folder to write the SavedModel to")
    export.add_argument("--tflite", metavar="FILE", help="also write a TensorFlow Lite model here")
    export.set_defaults(run=cmd_export)
    for task, help_text in (("vqa", "train and score visual question answering on the shapes"),
                            ("match", "train and score image-text matching (does this caption "
                                      "describe this image?)")):
        command = commands.add_parser(task, help=help_text)
        command.add_argument("--data", default="shapes",
                             help="'shapes' or a Shapes Captions folder (questions and false "
                                  "captions are made from each scene's objects)")
        command.add_argument("--fusion", choices=(*FUSIONS, *BLIND_BASELINES), default=TaskConfig.fusion,
                             help="how the image and text branches meet (text_only, image_only: "
                                  "the blind baselines)")
        command.add_argument("--epochs", type=_positive, help=f"default {TASK_EPOCHS[task]}")
        command.add_argument("--about-weight", type=_non_negative_float, default=TaskConfig.about_weight,
                             help="weight of the training-only target 'which object is each text "
                                  f"about', beside the answers' 1 (default {TaskConfig.about_weight})")
        command.add_argument("--batch-size", type=_positive, default=TaskConfig.batch_size,
                             help="images per batch; each comes with all its training texts")
        command.add_argument("--train-images", type=_positive, metavar="N",
                             help="train on the first N training images only")
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--out", help=f"folder for the model and its records (runs/{task})")
        command.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs")
        command.set_defaults(run=cmd_task)

    retrieval = commands.add_parser("retrieval", help="train a dual encoder for image-text "
                                                      "retrieval; recall at 1, 5, 10")
    retrieval.add_argument("--data", default="shapes",
                           help="'shapes' or any folder in the Flickr8k layout")
    retrieval.add_argument("--epochs", type=_positive, default=RetrievalConfig.epochs)
    retrieval.add_argument("--batch-size", type=_positive, default=RetrievalConfig.batch_size,
                           help="pairs per batch; every other caption in it is a negative")
    _add_matcher_argument(retrieval)
    retrieval.add_argument("--seed", type=int, default=0)
    retrieval.add_argument("--out", default="runs/retrieval", help="folder for the model and records")
    retrieval.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs")
    retrieval.set_defaults(run=cmd_retrieval)

    text2image = commands.add_parser("text2image", help="train and score an image generator "
                                                        "that draws captions")
    text2image.add_argument("--kind", choices=GENERATORS, default=TextToImageConfig.kind)
    _add_run_arguments(text2image, TextToImageConfig, "'shapes' or a Shapes Captions folder (the images "
                                                      "are judged by reading their scenes back)")
    text2image.set_defaults(run=cmd_text2image)

    speech2text = commands.add_parser("speech2text", help="train and score a speech recogniser on "
                                                          "spoken captions")
    speech2text.add_argument("--decoder", choices=("attention", "init"), default=SpeechToTextConfig.decoder)
    _add_run_arguments(speech2text, SpeechToTextConfig)
    speech2text.set_defaults(run=cmd_speech2text)

    speech2image = commands.add_parser("speech2image", help="train and score a dual encoder of spoken "
                                                            "captions and images")
    _add_run_arguments(speech2image, SpeechToImageConfig)
    speech2image.add_argument("--audio-encoder-from", metavar="SPEECH2TEXT_MODEL",
                              help="start the audio tower from this recogniser's audio encoder "
                                   "(a model.keras written by speech2text on clips of the same length)")
    speech2image.set_defaults(run=cmd_speech2image)

    autoencoder = commands.add_parser("autoencoder", help="train and score a tri-modal autoencoder of "
                                                          "pictures, captions and speech")
    autoencoder.add_argument("--captioner", metavar="CAPTION_MODEL",
                             help="a model written by train, to read back the pictures drawn from speech "
                                  "(default: one trained with its defaults into OUT/judges, once)")
    _add_run_arguments(autoencoder, AutoencoderConfig)
    autoencoder.set_defaults(run=cmd_autoencoder)

    generate = commands.add_parser("generate", help="draw images for captions with a text2image model")
    generate.add_argument("--model", required=True, help="a model.keras written by text2image")
    generate.add_argument("--out", required=True, help="folder for the images: 00000.png, 00001.png, ...")
    generate.add_argument("captions", nargs="*", metavar="CAPTION")
    generate.add_argument("--captions", dest="captions_file", metavar="FILE",
                          help="also these captions, one a line (after those given as arguments)")
    generate.add_argument("--seed", type=int, default=0,
                          help="the noise of the first image; each next caption's follows from it "
                               "and its place in the list (default %(default)s)")
    generate.add_argument("--guidance", type=float, default=TextToImageConfig.guidance,
                          help="diffusion only: classifier-free guidance weight (0: no caption, 1: the "
                               "captioned prediction alone; default %(default)s)")
    generate.add_argument("--steps", type=_positive, default=TextToImageConfig.sampling_steps,
                          help="diffusion only: DDIM steps (default %(default)s)")
    generate.set_defaults(run=cmd_generate)

    fusion = commands.add_parser("fusion", help="compare the fusion methods on one task: "
                                                "accuracy, parameters, time per epoch")
    fusion.add_argument("--task", choices=TASKS, default="vqa")
    fusion.add_argument("--fusions", help=f"comma-separated, from {','.join((*FUSIONS, *BLIND_BASELINES))} "
                                          "(default: all)")
    fusion.add_argument("--epochs", type=_positive, default=6)
    fusion.add_argument("--data", default="shapes", help="'shapes' or a Shapes Captions folder")
    fusion.add_argument("--train-images", type=_positive, default=2000, metavar="N",
                        help="train each on the first N training images")
    fusion.add_argument("--seed", type=int, default=0)
    fusion.add_argument("--seeds", type=_positive, default=3,
                        help="models per fusion (seeds seed, seed + 1, ...): the table gives "
                             "their mean and standard deviation")
    fusion.add_argument("--out", default="runs/fusion", help="folder for the table and each model")
    fusion.add_argument("--smoke", action="store_true", help="tiny data and 2 epochs")
    fusion.set_defaults(run=cmd_fusion)
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
