"""The ``rnnsent`` command line: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from rnnsent import __version__

EXAMPLES = {
    "train": """examples:
  rnnsent train --preset seed --out runs/seed            # the notebook's recipe on IMDB
  rnnsent train --preset seed --maxlen 100 --epochs 3 --out runs/longer
  rnnsent train --preset bigru --out runs/bigru          # a much stronger model
  rnnsent train --preset best --out runs/best            # the most accurate (~0.916, ~5 min on 2 cores)
  rnnsent train --data reviews.csv --cell gru --hidden-size 32 --out runs/mine
  rnnsent train --resume runs/seed                       # continue an interrupted run
  torchrun --nproc-per-node 2 -m rnnsent train --preset seed --out runs/ddp

data (--data, else $RNNSENT_DATA, else the cache, else a download of aclImdb):
  aclImdb as a folder or .tar.gz; a folder with train/ and test/ holding one folder per
  label (neg/pos or 0/1); a folder of label folders; a .csv or .jsonl with 'text' and
  'label' columns (sources without a test split keep a fixed 20% of reviews for testing)""",
    "evaluate": """examples:
  rnnsent evaluate runs/seed
  rnnsent evaluate runs/seed --json""",
    "predict": """examples:
  rnnsent predict runs/seed "This movie was wonderful, I loved every minute of it."
  rnnsent predict runs/seed "Great!" "Awful." --json
  rnnsent predict runs/seed --file reviews.txt       # one review per line
  rnnsent predict runs/seed --file reviews.jsonl --json --output scores.jsonl
  rnnsent predict runs/seed --file reviews.csv --text-field review --batch-size 8192
  cat reviews.txt | rnnsent predict runs/seed
  rnnsent predict runs/seed --explain "Great acting, but the plot was dull."   # why: word by word
  rnnsent predict runs/seed --explain "..." --integrated-gradients --json

Files are streamed: any size is scored in constant memory, results are written in input
order as each batch is scored, and a progress bar shows on a terminal.

A text without words (empty, or only spaces/punctuation) is still scored from the start
token alone (the model's prior) and reported with "empty": true.""",
    "serve": """examples:
  rnnsent serve runs/seed                            # http://127.0.0.1:8000/ : the page; /docs : the API
  rnnsent serve runs/seed --host 0.0.0.0 --port 9000
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["Loved it."]}'""",
    "pretrain": """examples:
  rnnsent pretrain --out runs/vectors.safetensors                 # 20,000 words x 64 dims
  rnnsent pretrain --embedding-dim 100 --out runs/vectors100.safetensors
  rnnsent train --preset bigru --embeddings runs/vectors.safetensors --out runs/bigru-vectors

The vectors are an SVD of word co-occurrence statistics (PPMI) over the training reviews
and the 50,000 unlabelled ones (aclImdb's train/unsup); test reviews are never read.
Use the same --num-words (and data) for pretrain and train: the file is tied to the vocabulary.""",
    "summary": """examples:
  rnnsent summary --preset seed
  rnnsent summary --preset bigru --hidden-size 128""",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where to look, not a page of usage."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    from rnnsent.config import PRESETS, section_fields

    parser = Parser(
        prog="rnnsent", description="Train, evaluate, explain and serve recurrent-network text classifiers.",
        epilog="run 'rnnsent COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"rnnsent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, epilog=EXAMPLES.get(name),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def add_settings(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--preset", default="seed", choices=list(PRESETS), help="starting recipe (default: seed)")
        for section, fields in section_fields().items():
            group = sub.add_argument_group(f"{section} settings (override the preset)")
            for f in fields:
                flag = "--" + f.name.replace("_", "-")
                help_text = f"{f.metadata.get('help', '')} (default: {f.default})".strip()
                if f.type in (bool, "bool"):
                    group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
                else:
                    kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
                    group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(), help=help_text)

    train = command("train", "train a model and save it as a model directory")
    train.add_argument("--out", type=Path, help="model directory to write (checkpoints go in OUT/checkpoint)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--data", help="data source (see below)")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings(train)

    evaluate = command("evaluate", "score a saved model on the test split")
    evaluate.add_argument("model", type=Path, help="model directory")
    evaluate.add_argument("--data", help="data source (default: as for train)")
    evaluate.add_argument("--limit", type=int, default=0, help="score a fixed random subset of N test reviews")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    evaluate.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0, all cores)")

    predict = command("predict", "label raw texts with a saved model")
    predict.add_argument("model", type=Path, help="model directory")
    predict.add_argument("texts", nargs="*", default=[], help="texts to label (default: read --file or standard input)")
    predict.add_argument("--file", help="read texts from a file of any size (streamed): plain text, .jsonl or .csv")
    predict.add_argument("--format", choices=["auto", "lines", "jsonl", "csv"], default="auto",
                         help="input format (default: auto: .jsonl/.ndjson as JSONL, .csv as CSV, else one text per line)")
    predict.add_argument("--text-field", default="text", help="JSONL field or CSV column holding the text (default: text)")
    predict.add_argument("--output", help="write the results to this file instead of standard output")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--batch-size", type=int, default=4096, help="texts read, scored and written at once (default: 4096)")
    predict.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: 0, all cores)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--explain", metavar="TEXT", help="explain one text: probability after each word and "
                         "each word's influence (coloured on a terminal)")
    predict.add_argument("--integrated-gradients", action="store_true",
                         help="with --explain: also integrated gradients on the word embeddings")

    serve = command("serve", "serve a saved model over HTTP: a JSON API and a web page")
    serve.add_argument("model", type=Path, help="model directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: 1; 0: all cores)")
    serve.add_argument("--max-texts", type=int, default=256, help="texts per /predict request (default: 256)")
    serve.add_argument("--max-text-chars", type=int, default=20_000, help="characters per text (default: 20000)")
    serve.add_argument("--max-body-bytes", type=int, default=2 * 1024 * 1024, help="request body size limit (default: 2 MiB)")
    serve.add_argument("--batch-wait-ms", type=float, default=0.0,
                       help="wait this long for more requests before each model call (default: 0, take what is queued)")
    serve.add_argument("--access-log", action="store_true", help="log every request")

    pretrain = command("pretrain", "build word vectors from training and unlabelled reviews for --embeddings")
    pretrain.add_argument("--out", type=Path, required=True, help="word-vectors file to write (.safetensors)")
    pretrain.add_argument("--data", help="data source (default: as for train)")
    pretrain.add_argument("--num-words", type=int, default=None, help="vocabulary size, as given to train (default: 20000)")
    pretrain.add_argument("--embedding-dim", type=int, default=None, help="vector size, as given to train (default: 64)")
    pretrain.add_argument("--window", type=int, default=5, help="words either side that count as context (default: 5)")
    pretrain.add_argument("--validation-split", type=float, default=0.1,
                          help="leave out the reviews train holds out with the same --validation-split (default: 0.1)")
    pretrain.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: all cores)")

    summary = command("summary", "print a model's layers and parameter counts")
    add_settings(summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Parse first: a mistyped flag or --version answers at once, without importing torch.
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras and args.command == "predict" and not any(extra.startswith("-") for extra in extras):
        # Texts may come after flags too: `rnnsent predict MODEL --json "text"`.
        args.texts = [*args.texts, *extras]
    elif extras:
        parser.parse_args(argv)  # reports the unknown arguments the usual way
    try:
        from rnnsent.errors import ArtifactError
        from rnnsent.training.loop import TrainingInterrupted
    except KeyboardInterrupt:
        return 130
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "serve": cmd_serve, "pretrain": cmd_pretrain,
               "summary": cmd_summary}[args.command]
    try:
        return handler(args) or 0
    except TrainingInterrupted as stop:
        # Under torchrun every rank stops; one message (from rank 0) is enough.
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted: {stop}; continue with 'rnnsent train --resume {args.out or args.resume}'", file=sys.stderr)
        return 130
    except (ValueError, ArtifactError, UserError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1


class UserError(Exception):
    """A mistake on the command line."""


def _overrides(args: argparse.Namespace) -> dict:
    from rnnsent.config import field_owner

    return {name: getattr(args, name) for name in field_owner() if getattr(args, name, None) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from rnnsent.artifact.directory import save_artifact
    from rnnsent.config import RunConfig, build_config
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source
    from rnnsent.data.splits import limit_split
    from rnnsent.inference.evaluate import evaluate_model
    from rnnsent.metrics import format_metrics
    from rnnsent.model.composed import StackedClassifier
    from rnnsent.model.scoring import predict_part_logits
    from rnnsent.model.summary import count_parameters
    from rnnsent.training import checkpoint as checkpoint
    from rnnsent.training.distributed import barrier, setup, teardown
    from rnnsent.training.loop import Trainer
    from rnnsent.training.tensors import Tensors, prepare_data

    if args.resume:
        if args.out or _overrides(args):
            raise UserError("--resume continues a run with its saved settings: drop --out and the setting flags")
        meta, _ = checkpoint.load_checkpoint(args.resume)
        config = RunConfig.from_dict(meta["config"])
        out, data_arg = args.resume, args.data or meta.get("data")
    else:
        if not args.out:
            raise UserError("say where to save the model: --out DIR (e.g. --out runs/seed)")
        config = build_config(args.preset, _overrides(args))
        out, data_arg = args.out, args.data
    world = setup(args.device)
    try:
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        source = resolve_source(data_arg)
        # One process per machine reads and encodes the data into the cache; the others wait
        # for it and then read the cache, instead of all decoding the source at once.
        if world.local_rank != 0:
            barrier(world)
        corpus = load_encoded(source, config.text, quiet=not world.is_main)
        if world.local_rank == 0:
            barrier(world)
        data = prepare_data(corpus, config)
        log = print if world.is_main else (lambda message: None)
        if not args.resume and checkpoint.has_checkpoint(out) and world.is_main:
            log(f"note: starting afresh in {out} (its previous checkpoint is replaced)")
        validation = f", {len(data.validation)} validation" if data.validation is not None else ""
        log(f"preset {config.preset}: {len(data.train)} training reviews{validation}, "
            f"maxlen {config.text.maxlen}, {config.model.cell} cell, device {world.device}")
        started = time.perf_counter()
        initial_weights, preparation = {}, {"pretrain_seconds": 0.0}
        if not args.resume:
            initial_weights, preparation = _initial_weights(config, corpus, source, data, log)
        trainer = Trainer(config, data, config.text.num_words, out, world, log=log,
                          progress_bar=None if not args.quiet else False,
                          extra_checkpoint_fields={"data": str(source.resolve())},
                          initial_weights=initial_weights)
        result = trainer.fit(resume=bool(args.resume))
        stacking_stats = {}
        if isinstance(result.model, StackedClassifier):
            from rnnsent.training.ngram_regression import fit_blend

            lengths = data.validation.lengths if config.model.use_lengths else None
            parts = predict_part_logits(result.model, data.validation.ids, lengths)
            stacking_stats = fit_blend(result.model, parts, data.validation.labels.numpy(), log=log)
        seconds = time.perf_counter() - started
        if world.is_main:
            test = Tensors.from_split(limit_split(corpus.test, config.train.limit), config)
            lengths = test.lengths if config.model.use_lengths else None
            metrics = evaluate_model(result.model, test.ids, lengths, test.labels.numpy())
            metrics.update({"train_seconds": round(seconds, 2), **preparation,
                            "parameters": count_parameters(result.model),
                            "steps": result.steps, "best_epoch": result.best_epoch})
            if stacking_stats:
                metrics["validation_accuracy"] = stacking_stats
            save_artifact(out, config, corpus.vocabulary, result.model.cpu(), metrics, result.history)
            log(f"trained in {seconds:.1f}s; model saved to {out}")
            log(format_metrics(metrics))
    finally:
        teardown(world)
    return 0


def _initial_weights(config, corpus, source: Path, data, log) -> tuple[dict, dict]:
    """Starting weights built before the network trains, and figures of their making for the metrics.

    Pretrained word vectors (loaded, or built from the training and unlabelled reviews), and a
    stacked model's n-gram regression. Every process builds the same ones.
    """
    weights, figures = {}, {"pretrain_seconds": 0.0}
    if config.model.embeddings:
        from rnnsent.training.vectors import load_vectors

        weights["embedding.weight"] = load_vectors(Path(config.model.embeddings), corpus.vocabulary,
                                                   config.text.num_words, config.model.embedding_dim)
    elif config.model.pretrain_window:
        from rnnsent.training.vectors import build_vectors, pretraining_reviews

        started = time.perf_counter()
        reviews = pretraining_reviews(corpus, source, config.train.validation_split, config.train.limit)
        weights["embedding.weight"] = build_vectors(reviews, config.text.num_words, config.model.embedding_dim,
                                                    config.model.pretrain_window, log=log)
        figures["pretrain_seconds"] = round(time.perf_counter() - started, 2)
        log(f"word vectors built from {sum(len(r[1]) - 1 for r in reviews)} reviews in {figures['pretrain_seconds']:.1f}s")
    if config.model.ngram_buckets and config.model.ngram_fit == "stacked":
        from rnnsent.model.ngrams import NgramBranch
        from rnnsent.training.ngram_regression import fit_ngram_regression

        branch = NgramBranch(config.text.num_words, config.model.ngram_buckets, config.model.ngram_order, binary=True)
        stats = fit_ngram_regression(branch, data.train.ids, data.train.labels, config.model.ngram_c, log=log)
        figures["ngram_regression"] = {key: round(value, 4) for key, value in stats.items()}
        weights["ngrams.weight.weight"], weights["ngrams.bias"] = branch.weight.weight.detach(), branch.bias
    return weights, figures


def _check_threads(threads: int) -> None:
    if threads < 0:
        raise UserError("--threads must be 0 (all cores) or more")


def _set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch (0: leave torch's default, all cores)."""
    _check_threads(threads)
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnsent.artifact.directory import load_artifact, update_metrics
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source
    from rnnsent.data.sources import read_corpus
    from rnnsent.data.splits import limit_split
    from rnnsent.inference.evaluate import evaluate_model
    from rnnsent.metrics import format_metrics

    _set_threads(args.threads)
    artifact = load_artifact(args.model)
    config = artifact.config
    source = resolve_source(args.data)
    corpus = load_encoded(source, config.text, quiet=args.json)
    training_source = corpus.vocabulary.words == artifact.vocabulary.words
    if training_source:
        test = limit_split(corpus.test, args.limit)
        ids, lengths = test.padded(config.text)
        labels = test.labels
    else:
        # Another source than the training one: encode its raw test texts with the model's vocabulary.
        raw = read_corpus(source).test
        ids, lengths = artifact.encoder.encode_batch(raw.texts)
        labels = raw.labels
        if args.limit:
            from rnnsent.data.splits import HELD_OUT_SEED, stratified_split

            _, chosen = stratified_split(labels, min(1.0, args.limit / len(labels)), HELD_OUT_SEED)
            ids, lengths, labels = ids[chosen], lengths[chosen], labels[chosen]
    metrics = evaluate_model(artifact.model, ids, lengths if config.model.use_lengths else None, labels)
    if training_source and not args.limit:
        # Only the full test split of the training data may replace the model's recorded metrics.
        update_metrics(args.model, {**artifact.metrics, **metrics})
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics(metrics))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rnnsent.inference.predictor import Predictor

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.texts and args.file:
        raise UserError("give texts on the command line or --file, not both")
    if args.integrated_gradients and args.explain is None:
        raise UserError("--integrated-gradients goes with --explain TEXT")
    if args.explain is not None and (args.texts or args.file):
        raise UserError("--explain takes one text: drop the other texts and --file")
    _check_threads(args.threads)
    if args.explain is None:
        if args.file and args.file != "-" and not Path(args.file).is_file():
            raise UserError(f"{args.file}: no such file")
        if args.output and args.file and args.file != "-" and Path(args.output).resolve() == Path(args.file).resolve():
            raise UserError("--output must not be the input file")
        if not args.texts and not args.file and sys.stdin.isatty():
            raise UserError("no texts: pass them as arguments, with --file, or on standard input")
    _set_threads(args.threads)
    predictor = Predictor.load(args.model)
    if args.explain is not None:
        return _explain(predictor, args)
    return _score_stream(predictor, args)


def _score_stream(predictor, args: argparse.Namespace) -> int:
    """Score command-line texts, a file or standard input, streaming (see :mod:`rnnsent.streaming`)."""
    from rnnsent.inference.streaming import (
        ProgressBar,
        detect_format,
        read_texts,
        score_to,
    )

    handle = None
    if args.texts:
        texts: Iterator[str] = iter(args.texts)
    elif args.file and args.file != "-":
        handle = open(args.file, "rb")
        texts = read_texts(handle, args.file, detect_format(args.file, args.format), args.text_field)
    else:
        handle = sys.stdin.buffer
        texts = read_texts(handle, "<stdin>", detect_format("", args.format), args.text_field)
    bar = ProgressBar(handle, enabled=handle is not None and not args.quiet and sys.stderr.isatty())
    # Any str may arrive (lone surrogates from undecodable argv bytes or JSON escapes, emoji on
    # a Latin-1 terminal): write what cannot be encoded as a backslash escape.
    if args.output:
        out = open(args.output, "w", encoding="utf-8", errors="backslashreplace")
    else:
        out = sys.stdout
        if hasattr(out, "reconfigure"):
            out.reconfigure(errors="backslashreplace")
    try:
        count = score_to(predictor, texts, out, args.batch_size, as_json=args.json, progress=bar)
    finally:
        bar.close()
        if handle is not None and handle is not sys.stdin.buffer:
            handle.close()
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"scored {count} texts into {args.output}", file=sys.stderr)
    return 0


def _explain(predictor, args: argparse.Namespace) -> int:
    import os

    from rnnsent.cli.render import render_text

    explanation = predictor.explain(args.explain, integrated_gradients=args.integrated_gradients)
    if args.json:
        print(json.dumps(explanation.to_dict()))
    else:
        # Colour only for a terminal that wants it (https://no-color.org).
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        print(render_text(explanation, color))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:

    from rnnsent.serve.app import ServeLimits, serve

    if not 0 <= args.port <= 65535:
        raise UserError("--port must be between 0 and 65535")
    _set_threads(args.threads)
    limits = ServeLimits(max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                         max_body_bytes=args.max_body_bytes, max_batch_texts=max(1024, args.max_texts),
                         batch_wait_seconds=args.batch_wait_ms / 1000)
    serve(args.model, args.host, args.port, limits, access_log=args.access_log)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:

    from rnnsent.config import build_config
    from rnnsent.data.cache import load_encoded
    from rnnsent.data.download import resolve_source
    from rnnsent.training.vectors import (
        build_vectors,
        pretraining_reviews,
        save_vectors,
    )

    overrides = {name: value for name, value in (("num_words", args.num_words), ("embedding_dim", args.embedding_dim))
                 if value is not None}
    config = build_config("seed", {"embedding_dim": 64, "validation_split": args.validation_split, **overrides})
    _set_threads(args.threads)
    started = time.perf_counter()
    source = resolve_source(args.data)
    corpus = load_encoded(source, config.text)
    reviews = pretraining_reviews(corpus, source, args.validation_split)
    counts = [len(offsets) - 1 for _, offsets in reviews]
    print(f"{counts[0]} training and {sum(counts[1:])} unlabelled reviews (validation and test reviews are not used)")
    vectors = build_vectors(reviews, config.text.num_words, config.model.embedding_dim, args.window, log=print)
    save_vectors(args.out, vectors, corpus.vocabulary)
    print(f"word vectors {tuple(vectors.shape)} written to {args.out} in {time.perf_counter() - started:.1f}s")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from rnnsent.config import build_config
    from rnnsent.model.build import build_model
    from rnnsent.model.summary import summary_table

    config = build_config(args.preset, _overrides(args))
    model = build_model(config.model, config.text.num_words)
    print(f'Model: "{config.preset}"')
    print(summary_table(model, config.text.maxlen))
    return 0
