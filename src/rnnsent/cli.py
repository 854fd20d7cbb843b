"""The ``rnnsent`` command line: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import json
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
  rnnsent predict runs/seed --file reviews.txt       # one review per line (or .jsonl with "text")
  cat reviews.txt | rnnsent predict runs/seed

A text without words (empty, or only spaces/punctuation) is still scored from the start
token alone (the model's prior) and reported with "empty": true.""",
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


def build_parser() -> argparse.ArgumentParser:
    from rnnsent.config import PRESETS, section_fields

    parser = argparse.ArgumentParser(
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

    predict = command("predict", "label raw texts with a saved model")
    predict.add_argument("model", type=Path, help="model directory")
    predict.add_argument("texts", nargs="*", help="texts to label (default: read --file or standard input)")
    predict.add_argument("--file", help="read texts from a file: one per line, or JSONL objects with 'text'")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--batch-size", type=int, default=4096, help="texts scored at once (default: 4096)")

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
    from rnnsent.artifact import ArtifactError
    from rnnsent.train import TrainingInterrupted

    args = build_parser().parse_args(argv)
    handler = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "pretrain": cmd_pretrain,
               "summary": cmd_summary}[args.command]
    try:
        return handler(args) or 0
    except TrainingInterrupted as stop:
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

    from rnnsent import checkpoint
    from rnnsent.artifact import save_artifact
    from rnnsent.config import RunConfig, build_config
    from rnnsent.data import limit_split, load_encoded, resolve_source
    from rnnsent.distributed import setup, teardown
    from rnnsent.evaluate import classification_metrics, format_metrics, predict_logits
    from rnnsent.model import count_parameters
    from rnnsent.train import Tensors, Trainer, prepare_data

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
        corpus = load_encoded(source, config.text, quiet=not world.is_main)
        data = prepare_data(corpus, config)
        log = print if world.is_main else (lambda message: None)
        if not args.resume and checkpoint.has_checkpoint(out) and world.is_main:
            log(f"note: starting afresh in {out} (its previous checkpoint is replaced)")
        validation = f", {len(data.validation)} validation" if data.validation is not None else ""
        log(f"preset {config.preset}: {len(data.train)} training reviews{validation}, "
            f"maxlen {config.text.maxlen}, {config.model.cell} cell, device {world.device}")
        started = time.perf_counter()
        initial_embedding, pretrain_seconds = None, 0.0
        if config.model.embeddings and not args.resume:
            from rnnsent.pretrain import load_vectors

            initial_embedding = load_vectors(Path(config.model.embeddings), corpus.vocabulary,
                                             config.text.num_words, config.model.embedding_dim)
        elif config.model.pretrain_window and not args.resume:
            from rnnsent.pretrain import build_vectors, pretraining_reviews

            # Every process builds the same vectors; the time counts as training time.
            reviews = pretraining_reviews(corpus, source, config.train.validation_split, config.train.limit)
            initial_embedding = build_vectors(reviews, config.text.num_words, config.model.embedding_dim,
                                              config.model.pretrain_window, log=log)
            pretrain_seconds = time.perf_counter() - started
            log(f"word vectors built from {sum(len(r[1]) - 1 for r in reviews)} reviews in {pretrain_seconds:.1f}s")
        trainer = Trainer(config, data, config.text.num_words, out, world, log=log,
                          progress_bar=None if not args.quiet else False,
                          extra_checkpoint_fields={"data": str(source.resolve())},
                          initial_embedding=initial_embedding)
        result = trainer.fit(resume=bool(args.resume))
        seconds = time.perf_counter() - started
        if world.is_main:
            test = Tensors.from_split(limit_split(corpus.test, config.train.limit), config)
            lengths = test.lengths if config.model.use_lengths else None
            metrics = classification_metrics(test.labels.numpy(), predict_logits(result.model, test.ids, lengths))
            metrics.update({"train_seconds": round(seconds, 2), "pretrain_seconds": round(pretrain_seconds, 2),
                            "parameters": count_parameters(result.model),
                            "steps": result.steps, "best_epoch": result.best_epoch})
            save_artifact(out, config, corpus.vocabulary, result.model.cpu(), metrics, result.history)
            log(f"trained in {seconds:.1f}s; model saved to {out}")
            log(format_metrics(metrics))
    finally:
        teardown(world)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnsent.artifact import load_artifact, update_metrics
    from rnnsent.data import limit_split, load_encoded, read_corpus, resolve_source
    from rnnsent.evaluate import classification_metrics, format_metrics, predict_logits

    artifact = load_artifact(args.model)
    config = artifact.config
    source = resolve_source(args.data)
    corpus = load_encoded(source, config.text, quiet=args.json)
    if corpus.vocabulary.words == artifact.vocabulary.words:
        test = limit_split(corpus.test, args.limit)
        ids, lengths = test.padded(config.text)
        labels = test.labels
    else:
        # Another source than the training one: encode its raw test texts with the model's vocabulary.
        raw = read_corpus(source).test
        ids, lengths = artifact.encoder.encode_batch(raw.texts)
        labels = raw.labels
        if args.limit:
            from rnnsent.data import HELD_OUT_SEED, stratified_split

            _, chosen = stratified_split(labels, min(1.0, args.limit / len(labels)), HELD_OUT_SEED)
            ids, lengths, labels = ids[chosen], lengths[chosen], labels[chosen]
    logits = predict_logits(artifact.model, ids, lengths if config.model.use_lengths else None)
    metrics = classification_metrics(labels, logits)
    if not args.limit:
        update_metrics(args.model, {**artifact.metrics, **metrics})
    if args.json:
        print(json.dumps(metrics))
    else:
        print(format_metrics(metrics))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from rnnsent.predict import Predictor

    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.texts and args.file:
        raise UserError("give texts on the command line or --file, not both")
    predictor = Predictor.load(args.model)
    if args.texts:
        texts: Iterator[str] = iter(args.texts)
    elif args.file and args.file != "-":
        texts = _read_texts(Path(args.file))
    else:
        if sys.stdin.isatty():
            raise UserError("no texts: pass them as arguments, with --file, or on standard input")
        texts = _read_lines(sys.stdin.buffer, "<stdin>", jsonl=False)
    out = sys.stdout
    for text, prediction in _zip_stream(texts, predictor, args.batch_size):
        if args.json:
            out.write(json.dumps({"text": text, **prediction.to_dict()}) + "\n")
        else:
            snippet = " ".join(text.split())
            snippet = snippet if len(snippet) <= 70 else snippet[:67] + "..."
            out.write(f"{prediction.label}\t{prediction.probability:.4f}\t{snippet}\n")
    out.flush()
    return 0


def _zip_stream(texts: Iterator[str], predictor, batch_size: int):
    """Pairs of (text, prediction) in input order, scored ``batch_size`` at a time."""
    from rnnsent.data import iter_text_chunks

    for chunk in iter_text_chunks(texts, batch_size):
        yield from zip(chunk, predictor.predict(chunk, batch_size))


def _read_texts(path: Path) -> Iterator[str]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    handle = open(path, "rb")
    return _read_lines(handle, str(path), jsonl=path.suffix.lower() in (".jsonl", ".ndjson"))


def _read_lines(handle, name: str, jsonl: bool) -> Iterator[str]:
    """Texts from a binary stream, one per line (or one JSON object with 'text' per line)."""
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise UserError(f"{name}:{number}: not UTF-8 text ({error.reason}); convert the file to UTF-8") from None
            if jsonl:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UserError(f"{name}:{number}: not valid JSON ({error.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise UserError(f"{name}:{number}: each JSONL line needs a string 'text'")
                line = record["text"]
            yield line


def cmd_pretrain(args: argparse.Namespace) -> int:
    import torch

    from rnnsent.config import build_config
    from rnnsent.data import load_encoded, resolve_source
    from rnnsent.pretrain import build_vectors, pretraining_reviews, save_vectors

    overrides = {name: value for name, value in (("num_words", args.num_words), ("embedding_dim", args.embedding_dim))
                 if value is not None}
    config = build_config("seed", {"embedding_dim": 64, "validation_split": args.validation_split, **overrides})
    if args.threads < 0:
        raise UserError("--threads must be 0 (all cores) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
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
    from rnnsent.model import RecurrentClassifier, summary_table

    config = build_config(args.preset, _overrides(args))
    model = RecurrentClassifier(config.model, config.text.num_words)
    print(f'Model: "{config.preset}"')
    print(summary_table(model, config.text.maxlen))
    return 0
