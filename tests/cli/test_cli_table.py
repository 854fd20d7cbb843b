"""The command line as one table: arguments -> exit code and what the output must contain.

Every row runs ``rnnsent`` in this process against a tiny trained model (``MODEL``) and its
data (``DATA``); mistakes must exit 2 with one ``error:`` line and no traceback.
"""

from __future__ import annotations

import json

import pytest

from rnnsent import __version__
from rnnsent.cli.main import main

OK, MISTAKE = 0, 2

# (arguments, exit code, fragments of stdout, fragments of stderr)
TABLE = [
    (["--version"], OK, [f"rnnsent {__version__}"], []),
    (["--help"], OK, ["train", "evaluate", "predict", "serve", "export", "pretrain", "summary"], []),
    (["train", "--help"], OK, ["examples:", "rnnsent train --preset seed", "run options", "--threads THREADS",
                               "one of simple, lstm, gru", "--task TASK", "--label-field LABEL_FIELD"], []),
    (["evaluate", "--help"], OK, ["examples:", "rnnsent evaluate runs/seed --json"], []),
    (["predict", "--help"], OK, ["examples:", "--explain", "--file"], []),
    (["serve", "--help"], OK, ["examples:", "--host"], []),
    (["export", "--help"], OK, ["examples:", "rnnsent export runs/seed --format onnx --out runs/seed.onnx"], []),
    (["pretrain", "--help"], OK, ["examples:", "--pretrain-window"], []),
    (["summary", "--help"], OK, ["examples:", "rnnsent summary runs/seed"], []),
    (["summary", "--preset", "seed"], OK, ['Model: "seed"', "Total params: 1,000,286"], []),
    (["summary", "MODEL"], OK, ["Total params:", "Labels: binary task, 2 labels: negative, positive"], []),
    (["predict", "MODEL", "great wonderful film", "dull boring mess"], OK,
     ["positive\t", "great wonderful film", "negative\t"], []),
    (["predict", "MODEL", "--json", "great wonderful film"], OK, ['"label": "positive"', '"empty": false'], []),
    (["predict", "MODEL", "--explain", "great but dull", "--json"], OK, ['"trajectory"', '"influence"'], []),
    (["evaluate", "MODEL", "--data", "DATA", "--json"], OK, ['"accuracy"', '"confusion_matrix"', '"macro_f1"'], []),
    (["evaluate", "MODEL", "--data", "DATA", "--limit", "20"], OK, ["Test accuracy: ", "Scored 20 texts", ", 20 texts)"], []),
    # Mistakes: one line, exit 2.
    (["train"], MISTAKE, [], ["error: say where to save the model: --out DIR"]),
    (["train", "--out", "x", "--hidden-sise", "3"], MISTAKE, [], ["error: unrecognized arguments: --hidden-sise"]),
    # A mistyped flag names the nearest one and the command's own help (it pointed at 'rnnsent --help').
    (["train", "--out", "x", "--epocs", "3"], MISTAKE, [],
     ["(did you mean --epochs?); see 'rnnsent train --help'"]),
    (["summary", "--data", "x"], MISTAKE, [], ["error: unrecognized arguments: --data; see 'rnnsent summary --help'"]),
    (["train", "--out", "x", "--cell", "transformer"], MISTAKE, [], ["error: cell must be one of simple, lstm, gru"]),
    (["train", "--out", "x", "--task", "regression"], MISTAKE, [], ["error: task must be one of auto, binary"]),
    (["train", "--out", "x", "--preset", "seed", "--calibrate"], MISTAKE, [], ["--calibrate fits a temperature on a validation split"]),
    (["train", "--resume", "MODEL", "--maxlen", "5"], MISTAKE, [], ["--resume continues a run with its saved settings"]),
    (["summary", "MODEL", "--maxlen", "5"], MISTAKE, [], ["a saved model has its own recipe"]),
    (["predict", "MODEL", "a", "--file", "DATA"], MISTAKE, [], ["give texts on the command line or --file, not both"]),
    (["predict", "nowhere", "text"], MISTAKE, [], ["nowhere: no such model directory"]),
    (["evaluate", "MODEL", "--limit", "-5"], MISTAKE, [], ["limit must be 0 (all test reviews) or more"]),
    (["serve", "MODEL", "--port", "70000"], MISTAKE, [], ["--port must be between 0 and 65535"]),
]


@pytest.mark.parametrize("arguments, code, out, err", TABLE, ids=[" ".join(row[0])[:60] for row in TABLE])
def test_command_line(arguments, code, out, err, tiny_model_dir, capsys, monkeypatch):
    data = tiny_model_dir.parent / "reviews.csv"
    monkeypatch.setenv("RNNSENT_DATA", str(data))
    argv = [str(tiny_model_dir) if a == "MODEL" else str(data) if a == "DATA" else a for a in arguments]
    try:
        result = main(argv)
    except SystemExit as stop:  # argparse's --help, --version and its own errors
        result = stop.code
    captured = capsys.readouterr()
    assert result == code, captured.err
    flowing = " ".join(captured.out.split())  # --help wraps long lines wherever it likes
    for fragment in out:
        assert fragment in captured.out or fragment in flowing, captured.out
    for fragment in err:
        assert fragment in captured.err, captured.err
    assert "Traceback" not in captured.err
    if code == MISTAKE:
        lines = captured.err.strip().splitlines()
        assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1
    if "--json" in arguments and code == OK and "--explain" not in arguments:
        for line in captured.out.strip().splitlines():
            json.loads(line)


def test_pretrain_help_quotes_best_as_it_is(capsys):
    # The help once spelled best's figures out by hand and kept them after the preset changed.
    from rnnsent.config import BEST, build_config

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    best = build_config("best")
    assert f"its {BEST['lm_steps']:,} steps" in text
    assert f"{best.text.num_words:,} words x {best.model.embedding_dim} dims, window {best.model.pretrain_window}" in text


def test_preset_values_group_presets_with_equal_values():
    from rnnsent.cli.main import preset_values

    presets = {"seed": {}, "bigru": {"maxlen": 1000}, "best": {"maxlen": 1000, "epochs": 3}, "small": {"maxlen": 400}}
    assert preset_values("maxlen", 30, presets) == "seed 30; bigru, best 1000; small 400"
    assert preset_values("epochs", 10, presets) == "seed, bigru, small 10; best 3"
    assert preset_values("num_words", 20000, presets) == "default: 20000"


def test_train_help_shows_each_presets_value(capsys):
    from rnnsent.cli.main import preset_values
    from rnnsent.config import PRESETS, TextConfig, TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert preset_values("maxlen", TextConfig().maxlen, PRESETS) in text
    assert preset_values("epochs", TrainConfig().epochs, PRESETS) in text
    assert "best 1000" in text and "seed 30" in text


def test_a_limit_larger_than_the_data_is_not_reported_as_a_cut(tiny_model_dir, capsys):
    # It printed "Scored 60 texts of DATA (test split, 100000 texts)".
    data = tiny_model_dir.parent / "reviews.csv"
    assert main(["evaluate", str(tiny_model_dir), "--data", str(data), "--limit", "100000"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Scored ") and last.endswith("(test split)") and "100000" not in last
