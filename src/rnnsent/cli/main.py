"""The ``rnnsent`` command: parse the arguments, call the Python API, print, map errors to exit codes.

Every flag of a setting is generated from its config field (:mod:`rnnsent.config`), with the
field's help, range or choices. Errors a user can cause (``ValueError`` subclasses, see
:mod:`rnnsent.errors`) print one line ``error: ...`` and exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import Field
from pathlib import Path
from typing import Any, Iterator, Sequence

from rnnsent import __version__
from rnnsent.cli.streams import reader_may_leave
from rnnsent.config import BEST, TextConfig
from rnnsent.errors import TrainingInterrupted
from rnnsent.threads import configure_process

EXAMPLES = {
    "train": """examples:
  rnnsent train --preset seed --out runs/seed            # the notebook's recipe on IMDB
  rnnsent train --preset seed --maxlen 100 --epochs 3 --out runs/longer
  rnnsent train --preset bigru --out runs/bigru          # a much stronger model
  rnnsent train --preset best --out runs/best            # the most accurate (~0.922, ~14 min on 2 cores)
  rnnsent train --data reviews.csv --cell gru --hidden-size 32 --out runs/mine
  rnnsent train --resume runs/seed                       # continue an interrupted run
  rnnsent train --config runs/tune/best.json --data reviews.csv --out runs/tuned   # a saved recipe
  rnnsent train --preset seed --out runs/seed --tensorboard runs/logs/seed   # then: tensorboard --logdir runs/logs
  torchrun --nproc-per-node 2 -m rnnsent train --preset seed --out runs/ddp

data (--data, else $RNNSENT_DATA, else the cache, else a download of aclImdb):
  aclImdb as a folder or .tar.gz; a folder with train/ and test/ holding one folder per
  label (any names); a folder of label folders; a .csv or .jsonl with 'text' and 'label'
  columns (--text-field, --label-field for others; sources without a test split keep a
  fixed 20% of texts for testing)""",
    "tune": """examples:
  rnnsent tune --data reviews.csv --out runs/tune --budget 20m
  rnnsent tune --data reviews.csv --out runs/tune --budget 2m --trials 10 --metric macro_f1
  rnnsent tune --preset bigru --cell gru --out runs/tune-gru --budget 1h   # flags fix settings: not searched
  rnnsent train --config runs/tune/best.json --data reviews.csv --out runs/again   # the winner, retrained

Searched: cell, hidden and embedding size, pooling, dropout, optimizer, learning rate, epochs,
maxlen, class weights and the n-gram branch (off/joint/stacked, its order and strength), with a
seeded TPE sampler; trial 0 is the base recipe (--preset and the flags). Trials are chosen on
the validation split (10% is held out when the recipe has none) and hopeless ones are pruned
from their per-epoch validation scores (median rule); only the winner is scored on the test
split. OUT holds study.sqlite (run the same command again to continue after Ctrl-C),
trials/NNN (each trial's model), trials.csv, trials.png, best/ (the winner), best.json (its
recipe) and summary.json. Needs optuna: pip install 'rnnsent[tune]'.""",
    "evaluate": """examples:
  rnnsent evaluate runs/seed
  rnnsent evaluate runs/seed --json
  rnnsent evaluate runs/seed --data other-reviews.csv --limit 1000
  rnnsent evaluate runs/stars --data other.csv --text-field review --label-field stars

The report ends with how many texts were scored and where they came from.""",
    "predict": """examples:
  rnnsent predict runs/seed "This movie was wonderful, I loved every minute of it."
  rnnsent predict runs/seed "Great!" "Awful." --json
  rnnsent predict runs/seed --file reviews.txt       # one review per line
  rnnsent predict runs/seed --file reviews.jsonl --json --output scores.jsonl
  rnnsent predict runs/seed --file reviews.csv --text-field review --batch-size 8192
  cat reviews.txt | rnnsent predict runs/seed
  rnnsent predict runs/seed --explain "Great acting, but the plot was dull."   # why: word by word
  rnnsent predict runs/seed --explain "..." --integrated-gradients --json
  rnnsent predict runs/topics --explain "..." --class sports     # influence towards one class

Each line is label<TAB>probability<TAB>text: binary models give the probability of the class
their logit scores (positive for sentiment), other models the most probable label and its
probability; multi-label models print the labels over their thresholds joined with "," ("-"
for none). With --json: "label", "probability", "empty", and for K-class models
"probabilities" (every label) and, multi-label, "labels". The other fields of JSONL or CSV
input (an "id", say) come along in --json results unchanged.

Files are streamed: any size is scored in constant memory, results are written in input
order as each batch is scored, and a progress bar shows on a terminal.

A text without words (empty, or only spaces/punctuation) is still scored from the start
token alone (the model's prior) and reported with "empty": true.""",
    "serve": """examples:
  rnnsent serve runs/seed                            # http://127.0.0.1:8000/ : the page; /docs : the API
  rnnsent serve runs/seed --host 0.0.0.0 --port 9000
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"texts": ["Loved it."]}'""",
    "export": """examples:
  rnnsent export runs/seed --format onnx --out runs/seed.onnx     # also writes runs/seed.onnx.json
  rnnsent export runs/best --out deploy/best.onnx

The graph takes ids (batch, time) and lengths (batch,), int64, and returns probabilities
(batch, K), float32: K is 1 for a binary model (the probability of its second label), else one
per label. The n-gram branch, the blend and the calibrated temperature are inside the graph.
FILE.json holds what a deployment computes to make the ids from raw text: the tokenizer's rules,
the vocabulary, maxlen, padding and truncation, and the label names (docs/cli.md#export).
Before writing, onnxruntime scores 64 check rows and the largest difference from rnnsent's
probabilities is printed. Needs the export extra: pip install 'rnnsent[export]'.""",
    "pretrain": f"""examples:
  rnnsent pretrain --out runs/vectors.safetensors                 # best's recipe: {TextConfig.num_words:,} words x \
{BEST["embedding_dim"]} dims, window {BEST["pretrain_window"]}
  rnnsent pretrain --embedding-dim 100 --out runs/vectors100.safetensors
  rnnsent train --preset bigru --embeddings runs/vectors.safetensors --out runs/bigru-vectors

The vectors are an SVD of word co-occurrence statistics (PPMI) over the training reviews
and the 50,000 unlabelled ones (aclImdb's train/unsup); test reviews are never read.
Use the same --num-words (and data) for pretrain and train: the file is tied to the vocabulary.
The settings (--num-words, --embedding-dim, --pretrain-window, --validation-split) are the
training recipe's, from --preset (default: best) and the flags: give train the same --preset
(on a person's own data train's default is small, 32-wide, which best's 64-wide vectors do not fit).
Another source than aclImdb has no unlabelled texts of its own: name them with --unlabelled-data.

language model (--language-model):
  rnnsent pretrain --language-model --out runs/encoder    # best's BiGRU encoder: its {BEST["lm_steps"]:,} steps
  rnnsent pretrain --language-model --lm-steps 20000 --max-minutes 10 --out runs/long   # longer
  rnnsent pretrain --language-model --resume runs/long --max-minutes 10   # ten minutes more
  rnnsent train --preset best --encoder runs/long --out runs/best-long    # instead of best's own

The recipe's embedding and recurrent layers learn to predict the next word (and, for a
bidirectional recipe, a backward model the previous word) over the training and unlabelled
reviews read as contiguous streams; a slice of the unlabelled reviews is held out for
perplexity. It runs --lm-steps steps, or until --max-steps or --max-minutes (checkpointed in
the folder; continue with --resume) and writes ENCODER_DIR/encoder.safetensors, tied to the
vocabulary and to the settings that shape the weights (--num-words, --cell, --embedding-dim,
--hidden-size, --num-layers, --bidirectional).""",
    "summary": """examples:
  rnnsent summary --preset seed
  rnnsent summary --preset bigru --hidden-size 128
  rnnsent summary runs/seed                              # a saved model: its layers, task and labels""",
}




TUNE_METRICS = ["accuracy", "macro_f1", "mae", "log_loss"]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where to look, not a page of usage.
    ``commands`` holds the parser of each command (on the top-level parser)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str):
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def unknown_arguments(extras: Sequence[str], command: argparse.ArgumentParser) -> str:
    """The message for arguments ``command`` does not take, with the nearest flag it does take
    for each mistyped one (``--epocs`` -> ``--epochs``)."""
    import re

    from rnnsent.config import nearest_name

    flags = sorted(set(re.findall(r"--[a-z][a-z0-9-]*", command.format_usage())))
    hints = {}
    for extra in extras:
        flag = extra.split("=", 1)[0]
        near = nearest_name(flag, flags) if flag.startswith("--") else None
        if near:
            hints[flag] = near
    message = f"unrecognized arguments: {' '.join(extras)}"
    if len(hints) == 1:
        return f"{message} (did you mean {next(iter(hints.values()))}?)"
    if hints:
        return f"{message} (did you mean {', '.join(f'{near} for {flag}' for flag, near in hints.items())}?)"
    return message


def preset_values(name: str, default: Any, presets: dict[str, dict[str, Any]]) -> str:
    """Each preset's value of a recipe setting, presets with equal values together:
    ``"seed 30; bigru, best 1000; small 400"``; ``"default: 20000"`` when no preset changes it."""
    groups: dict[str, tuple[Any, list[str]]] = {}
    for preset, overrides in presets.items():
        value = overrides.get(name, default)
        groups.setdefault(repr(value), (value, []))[1].append(preset)
    if len(groups) == 1:
        return f"default: {default}"
    return "; ".join(f"{', '.join(names)} {value}" for value, names in groups.values())


def _add_field(group, f: Field, default=None, help: str | None = None,
               presets: dict[str, dict[str, Any]] | None = None) -> None:
    """A flag for a config field, with the field's help, choices and default in ``--help``
    (with ``presets``: each preset's value, see :func:`preset_values`)."""
    flag = "--" + f.name.replace("_", "-")
    # Choices and ranges are shown here but checked by the config, so that a flag and the
    # same keyword in Python get the same message.
    choices, bounds = f.metadata.get("choices"), f.metadata.get("range")
    shown = f.default if default is None else default
    accepted = f"one of {', '.join(choices)}; " if choices else ""
    if bounds is not None:
        low, high, low_inclusive, high_inclusive = bounds
        accepted = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}; "
    values = preset_values(f.name, shown, presets) if presets else f"default: {shown}"
    text = f"{help or f.metadata.get('help', '')} ({accepted}{values})".strip()
    if f.type in (bool, "bool"):
        group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        return
    kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
    group.add_argument(flag, dest=f.name, type=kind, default=default, metavar=f.name.upper(), help=text)


def build_parser() -> argparse.ArgumentParser:
    from rnnsent.config import AUTO_PRESET, PRESETS, option_fields, section_fields

    recipe_fields = {f.name: f for fields in section_fields().values() for f in fields}
    options = {f.name: f for f in option_fields()}
    parser = Parser(
        prog="rnnsent", description="Train, evaluate, explain and serve recurrent-network text classifiers.",
        epilog="run 'rnnsent COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"rnnsent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser.commands[name] = commands.add_parser(name, help=help, description=help, epilog=EXAMPLES.get(name),
                                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        return parser.commands[name]

    def add_recipe(sub: argparse.ArgumentParser, preset: str = "seed", names: Sequence[str] | None = None) -> None:
        names_allowed = [*PRESETS, AUTO_PRESET] if preset == AUTO_PRESET else list(PRESETS)
        chosen_from = ": seed on aclImdb sentiment, small on other data" if preset == AUTO_PRESET else ""
        # train and summary leave --preset unset (None) unless it is given, so that a resumed run
        # or a saved model can refuse one.
        sub.add_argument("--preset", default=None if preset in (AUTO_PRESET, "seed") else preset, choices=names_allowed,
                         help=f"starting recipe (default: {preset}{chosen_from})")
        for section, fields in section_fields().items():
            chosen = [f for f in fields if names is None or f.name in names]
            if chosen:
                group = sub.add_argument_group(f"{section} settings (override the preset; the brackets "
                                               "end with each preset's value)")
                for f in chosen:
                    _add_field(group, f, presets=PRESETS)

    def add_threads(sub: argparse.ArgumentParser, default: int = 0) -> None:
        _add_field(sub, options["threads"], default=default,
                   help="CPU threads (0: the cores other processes leave free; see docs/performance.md)")

    train = command("train", "train a model and save it as a model directory")
    train.add_argument("--out", type=Path, help="model directory to write (checkpoints go in OUT/checkpoint)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    train.add_argument("--data", help="data source (see below)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--config", type=Path, metavar="FILE",
                       help="start from a saved recipe instead of a preset: a JSON recipe such as rnnsent tune's "
                            "best.json, or a model directory's config.json (the flags still override it)")
    add_recipe(train, preset=AUTO_PRESET)
    group = train.add_argument_group("run options (how this run executes; not saved in the model's recipe)")
    for f in options.values():
        _add_field(group, f)

    tune = command("tune", "search recipes with Optuna within a time budget and keep the best")
    tune.add_argument("--data", help="data source (as for train)")
    tune.add_argument("--out", type=Path, help="folder of the study: trials, the winner, its recipe")
    tune.add_argument("--budget", default="20m", help="wall time for the trials: 90s, 20m, 1h (default: 20m); no "
                      "trial starts when less than the median trial time is left")
    tune.add_argument("--metric", choices=TUNE_METRICS, default="accuracy",
                      help="validation score to optimise (default: accuracy; mae needs ordered labels)")
    tune.add_argument("--trials", type=int, metavar="N", help="at most N trials in all, resumed ones included "
                      "(default: as many as the budget allows)")
    add_recipe(tune, preset=AUTO_PRESET)
    group = tune.add_argument_group("run options (how every trial executes)")
    for f in options.values():
        _add_field(group, f)

    evaluate = command("evaluate", "score a saved model on the test split")
    evaluate.add_argument("model", type=Path, help="model directory")
    evaluate.add_argument("--data", help="data source (default: as for train)")
    for name in ("text_field", "label_field", "label_separator"):
        evaluate.add_argument("--" + name.replace("_", "-"), dest=name, metavar=name.upper(),
                              help=f"{recipe_fields[name].metadata['help']} (default: the model's, as it was trained)")
    _add_field(evaluate, options["limit"], default=0, help="score a fixed random subset of N test reviews (0: all)")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    add_threads(evaluate)

    predict = command("predict", "label raw texts with a saved model")
    predict.add_argument("model", type=Path, help="model directory")
    predict.add_argument("texts", nargs="*", default=[], help="texts to label (default: read --file or standard input)")
    predict.add_argument("--file", help="read texts from a file of any size (streamed): plain text, .jsonl or .csv")
    predict.add_argument("--format", choices=["auto", "lines", "jsonl", "csv"], default="auto",
                         help="input format (default: auto: .jsonl/.ndjson as JSONL, .csv as CSV, else one text per line)")
    predict.add_argument("--text-field", help="JSONL field or CSV column holding the text (default: the one the model "
                                              "was trained from, usually text)")
    predict.add_argument("--output", help="write the results to this file instead of standard output")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--batch-size", type=int, default=4096, help="texts read, scored and written at once (default: 4096)")
    add_threads(predict)
    predict.add_argument("--quantize", action="store_true",
                         help="int8 dynamic quantization of the network's linear and recurrent layers (CPU): "
                         "faster, probabilities differ slightly")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--explain", metavar="TEXT", help="explain one text: probability after each word and "
                         "each word's influence (coloured on a terminal)")
    predict.add_argument("--integrated-gradients", action="store_true",
                         help="with --explain: also integrated gradients on the word embeddings")
    predict.add_argument("--class", dest="class_name", metavar="NAME",
                         help="with --explain: the class to explain (default: the predicted one; "
                         "binary models: the class the model scores, positive for sentiment)")

    serve = command("serve", "serve a saved model over HTTP: a JSON API and a web page")
    serve.add_argument("model", type=Path, help="model directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    add_threads(serve, default=1)
    serve.add_argument("--max-texts", type=int, default=256, help="texts per /predict request (default: 256)")
    serve.add_argument("--max-text-chars", type=int, default=20_000, help="characters per text (default: 20000)")
    serve.add_argument("--max-body-bytes", type=int, default=None,
                       help="request body size limit (default: enough for --max-texts texts of --max-text-chars "
                            "characters at 4 bytes each, 19.5 MiB with the defaults)")
    serve.add_argument("--max-explain-chars", type=int, default=5_000,
                       help="characters of the text of one /explain request (default: 5000)")
    serve.add_argument("--explain-timeout-seconds", type=float, default=10.0,
                       help="an explanation not done this long after it arrived gets a 503 (default: 10)")
    serve.add_argument("--max-header-bytes", type=int, default=64 * 1024,
                       help="request line and headers together; larger gets a 431 (default: 65536)")
    serve.add_argument("--header-timeout-seconds", type=float, default=10.0,
                       help="time a client has to send the request line and headers; slower gets a 408 (default: 10)")
    serve.add_argument("--body-timeout-seconds", type=float, default=60.0,
                       help="time a client has to send a request's body once its headers are in; slower gets a 408 "
                            "(default: 60)")
    serve.add_argument("--batch-wait-ms", type=float, default=0.0,
                       help="wait this long for more requests before each model call (default: 0, take what is queued)")
    key = serve.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", metavar="NAME",
                     help="require 'Authorization: Bearer KEY' with KEY read from environment variable NAME "
                          "(default: RNNSENT_API_KEY, when it is set); GET /health, the page and the API docs "
                          "(/docs, /openapi.json) stay open")
    key.add_argument("--api-key-file", type=Path, metavar="PATH", help="as --api-key-env, with the key read from a file")
    serve.add_argument("--access-log", action="store_true", help="log every request")

    export = command("export", "write a saved model as an ONNX graph and the settings a deployment tokenizes by")
    export.add_argument("model", type=Path, help="model directory")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="graph format (default: onnx)")
    export.add_argument("--out", type=Path, metavar="FILE", help="file to write (FILE.json is written beside it)")

    pretrain = command("pretrain", "build word vectors (--embeddings) or pretrain the encoder as a language model "
                                   "(--encoder) from training and unlabelled reviews")
    pretrain.add_argument("--out", type=Path, help="word-vectors file to write (.safetensors); with --language-model, "
                                                   "the encoder folder")
    pretrain.add_argument("--data", help="data source (default: as for train)")
    pretrain.add_argument("--language-model", action="store_true",
                          help="pretrain the recipe's embedding and recurrent encoder as next-word language models "
                               "(forward, and backward when bidirectional) instead of building word vectors")
    pretrain.add_argument("--resume", type=Path, metavar="ENCODER_DIR",
                          help="with --language-model: continue the pretraining in ENCODER_DIR from its checkpoint")
    pretrain.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                          help="with --language-model: stop after M minutes, checkpointed, and write the encoder "
                               "(default: 0, no time limit)")
    add_recipe(pretrain, preset="best", names=("num_words", "index_from", "embedding_dim", "pretrain_window",
                                               "validation_split", "validation_by", "cell", "hidden_size", "num_layers",
                                               "bidirectional", "nonlinearity", "recurrent_init", "input_init_std",
                                               "lm_steps", "lm_batch_size", "lm_bptt", "lm_lr", "lm_embedding", "clip_norm",
                                               "seed", "unlabelled_data"))
    group = pretrain.add_argument_group("run options (with --language-model)")
    for name in ("device", "max_steps", "limit"):
        _add_field(group, options[name])
    add_threads(pretrain)

    summary = command("summary", "print a model's layers and parameter counts")
    summary.add_argument("model", type=Path, nargs="?", help="a saved model directory (default: the recipe of the flags)")
    add_recipe(summary)
    assert set(recipe_fields).isdisjoint(options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before anything imports torch: for scoring, OpenMP threads that sleep rather than spin while waiting.
    words = list(sys.argv[1:] if argv is None else argv)
    configure_process(next((word for word in words if not word.startswith("-")), None))
    # Parse first: a mistyped flag or --version answers at once, without importing torch.
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras and args.command == "predict" and not any(extra.startswith("-") for extra in extras):
        # Texts may come after flags too: `rnnsent predict MODEL --json "text"`.
        args.texts = [*args.texts, *extras]
    elif extras:
        parser.commands[args.command].error(unknown_arguments(extras, parser.commands[args.command]))
    handler = {"train": cmd_train, "tune": cmd_tune, "evaluate": cmd_evaluate, "predict": cmd_predict, "serve": cmd_serve,
               "export": cmd_export, "pretrain": cmd_pretrain, "summary": cmd_summary}[args.command]
    try:
        if args.command in ("train", "tune", "pretrain"):
            # Their output is a log: a reader that leaves (`| head`) must not end the run unsaved.
            with reader_may_leave():
                return handler(args) or 0
        return handler(args) or 0
    except TrainingInterrupted as stop:
        # Under torchrun every rank stops; one message (from rank 0) is enough.
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted: {stop}; continue with 'rnnsent train --resume {args.out or args.resume}'", file=sys.stderr)
        return 130
    except ValueError as error:
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


def _settings(args: argparse.Namespace, names) -> dict:
    """The flags of ``names`` the user gave (flags left out fall back to the preset and defaults)."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _recipe_settings(args: argparse.Namespace) -> dict:
    from rnnsent.config import field_owner

    return _settings(args, field_owner())


def cmd_train(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.config import option_fields
    from rnnsent.errors import UsageError

    options = _settings(args, [f.name for f in option_fields()])
    if args.config is not None and (args.resume or args.preset is not None):
        raise UsageError("--config is a whole recipe: drop " + ("--resume" if args.resume else "--preset"))
    if args.resume:
        if args.out or _recipe_settings(args) or args.preset is not None:
            raise UsageError("--resume continues a run with its saved settings: drop --out, --preset and the setting flags")
        rnnsent.train(data=args.data, resume=args.resume, progress=False if args.quiet else None, **options)
        return 0
    if not args.out:
        raise UsageError("say where to save the model: --out DIR (e.g. --out runs/seed)")
    rnnsent.train(args.preset, args.data, args.out, progress=False if args.quiet else None, config=args.config,
                  **_recipe_settings(args), **options)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.config import option_fields
    from rnnsent.errors import UsageError

    if not args.out:
        raise UsageError("say where to keep the study: --out DIR (e.g. --out runs/tune)")
    options = _settings(args, [f.name for f in option_fields()])
    try:
        rnnsent.tune(args.data, args.out, args.budget, args.preset, args.metric, trials=args.trials,
                     **_recipe_settings(args), **options)
    except (KeyboardInterrupt, TrainingInterrupted):
        print(f"interrupted: the finished trials are kept in {args.out / 'study.sqlite'}; run the same command "
              "again to continue", file=sys.stderr)
        return 130
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import rnnsent

    fields = _settings(args, ("text_field", "label_field", "label_separator"))
    metrics = rnnsent.evaluate(args.model, args.data, limit=args.limit, threads=args.threads, verbose=not args.json,
                               fields=fields or None)
    from rnnsent.metrics import finite_for_json

    # JSON has no NaN: an undefined score (ROC-AUC over texts of one label) is null.
    print(json.dumps(finite_for_json(metrics)) if args.json else str(metrics))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.api import set_threads
    from rnnsent.errors import UsageError

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.texts and args.file:
        raise UsageError("give texts on the command line or --file, not both")
    if args.integrated_gradients and args.explain is None:
        raise UsageError("--integrated-gradients goes with --explain TEXT")
    if args.class_name is not None and args.explain is None:
        raise UsageError("--class goes with --explain TEXT")
    if args.explain is not None and (args.texts or args.file):
        raise UsageError("--explain takes one text: drop the other texts and --file")
    if args.explain is None:
        if args.file and args.file != "-" and not Path(args.file).is_file():
            raise UsageError(f"{args.file}: no such file")
        if args.output and args.file and args.file != "-" and Path(args.output).resolve() == Path(args.file).resolve():
            raise UsageError("--output must not be the input file")
        if not args.texts and not args.file and sys.stdin.isatty():
            raise UsageError("no texts: pass them as arguments, with --file, or on standard input")
    threads = set_threads(args.threads)
    model = rnnsent.load(args.model, quantize=args.quantize, threads=threads)
    if args.explain is not None:
        return _explain(model, args)
    return _score_stream(model, args)


def _score_stream(model, args: argparse.Namespace) -> int:
    """Score command-line texts, a file or standard input, streaming (see :mod:`rnnsent.inference.streaming`)."""
    from rnnsent.inference.streaming import (
        ProgressBar,
        detect_format,
        read_inputs,
        score_to,
    )

    handle = None
    # The column the model's training texts came from, unless another is named.
    text_field = args.text_field or model.config.data.text_field
    if args.texts:
        texts: Iterator = iter(args.texts)
    elif args.file and args.file != "-":
        handle = open(args.file, "rb")
        texts = read_inputs(handle, args.file, detect_format(args.file, args.format), text_field)
    else:
        handle = sys.stdin.buffer
        texts = read_inputs(handle, "<stdin>", detect_format("", args.format), text_field)
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
        count = score_to(model, texts, out, args.batch_size, as_json=args.json, progress=bar)
    finally:
        bar.close()
        if handle is not None and handle is not sys.stdin.buffer:
            handle.close()
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"scored {count} texts into {args.output}", file=sys.stderr)
    return 0


def _explain(model, args: argparse.Namespace) -> int:
    from rnnsent.cli.render import render_text

    explanation = model.explain(args.explain, integrated_gradients=args.integrated_gradients, label=args.class_name)
    if args.json:
        print(json.dumps(explanation.to_dict()))
    else:
        # Colour only for a terminal that wants it (https://no-color.org).
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        print(render_text(explanation, color))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rnnsent.api import set_threads
    from rnnsent.errors import UsageError

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    set_threads(args.threads)
    from rnnsent.serve.app import ServeLimits, serve

    limits = ServeLimits(max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                         max_body_bytes=args.max_body_bytes, max_batch_texts=max(1024, args.max_texts),
                         batch_wait_seconds=args.batch_wait_ms / 1000, max_explain_chars=args.max_explain_chars,
                         explain_timeout_seconds=args.explain_timeout_seconds, max_head_bytes=args.max_header_bytes,
                         head_timeout_seconds=args.header_timeout_seconds,
                         body_timeout_seconds=args.body_timeout_seconds)
    serve(args.model, args.host, args.port, limits, access_log=args.access_log, api_key=_api_key(args))
    return 0


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file or --api-key-env, else from RNNSENT_API_KEY when set (None: no key)."""
    from rnnsent.errors import UsageError

    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read --api-key-file {args.api_key_file} ({error})") from None
        where = f"--api-key-file {args.api_key_file}"
    elif args.api_key_env is not None:
        key = os.environ.get(args.api_key_env, "").strip()
        where = f"environment variable {args.api_key_env} (--api-key-env)"
    else:
        key = os.environ.get("RNNSENT_API_KEY", "").strip()
        if not key:
            return None
        where = "environment variable RNNSENT_API_KEY"
    if not key:
        raise UsageError(f"the API key from {where} is empty or not set")
    if any(ord(c) < 33 or ord(c) > 126 for c in key):
        raise UsageError(f"the API key from {where} must be printable ASCII without spaces")
    return key


def cmd_export(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.errors import UsageError

    if not args.out:
        raise UsageError("say where to write the graph: --out FILE (e.g. --out runs/seed.onnx)")
    result = rnnsent.export(args.model, args.out, format=args.format)
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB): ids (batch, time) int64, lengths (batch,) int64 "
          f"-> probabilities (batch, {result.outputs}) float32")
    print(f"wrote {result.settings_path}: vocabulary, text settings and labels for tokenizing")
    print(f"onnxruntime matches rnnsent within {result.max_difference:.1e} on {result.check_rows} check rows")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.errors import UsageError

    options = _settings(args, ("device", "max_steps", "limit"))
    if not args.language_model:
        if args.resume or args.max_minutes or options:
            raise UsageError("--resume, --max-minutes, --device, --max-steps and --limit go with --language-model")
        if not args.out:
            raise UsageError("say where to write the word vectors: --out FILE (e.g. --out runs/vectors.safetensors)")
        rnnsent.pretrain(args.out, args.data, args.preset, threads=args.threads, **_recipe_settings(args))
        return 0
    from rnnsent.training.language_model import PretrainingInterrupted

    if args.resume and (args.out or _recipe_settings(args)):
        raise UsageError("--resume continues a pretraining with its saved settings: drop --out and the setting flags")
    if not args.resume and not args.out:
        raise UsageError("say where to write the encoder: --out DIR (e.g. --out runs/encoder)")
    recipe = {} if args.resume else _recipe_settings(args)
    try:
        rnnsent.pretrain(None if args.resume else args.out, args.data, args.preset, language_model=True,
                         resume=args.resume, max_minutes=args.max_minutes, threads=args.threads, **recipe, **options)
    except PretrainingInterrupted as stop:
        print(f"interrupted: {stop}; continue with 'rnnsent pretrain --language-model --resume "
              f"{args.resume or args.out}'", file=sys.stderr)
        return 130
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import rnnsent
    from rnnsent.errors import UsageError

    if args.model is not None:
        if _recipe_settings(args) or args.preset is not None:
            raise UsageError("a saved model has its own recipe: drop --preset and the setting flags")
        model = rnnsent.load(args.model)
        print(f'Model: "{model.config.preset}" at {args.model}')
        print(model.summary())
        return 0
    print(f'Model: "{args.preset or "seed"}"')
    print(rnnsent.summary(args.preset or "seed", **_recipe_settings(args)))
    return 0
