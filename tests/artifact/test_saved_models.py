"""Model directories written by rnnsent 0.1.0 must keep loading and predicting the same.

``tests/fixtures/models/{simple,bigru,stacked}/`` were saved by ``rnnsent train`` of rnnsent
0.1.0 (see that folder's README.md), and ``expected.json`` holds what 0.1.0's
``rnnsent.load(dir)`` returned for a fixed list of texts. Loading goes through the public
``rnnsent.load`` only, and the directories are used exactly as saved: a change that breaks
them breaks every model people have already trained.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from pathlib import Path

import pytest

import rnnsent

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "models"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
TEXTS = EXPECTED["texts"]
MODELS = sorted(EXPECTED["models"])
PROBABILITY_TOLERANCE = 1e-6
EXPLANATION_TOLERANCE = 1e-5


def test_fixture_set_is_complete():
    assert MODELS == ["bigru", "simple", "stacked"]
    for name in MODELS:
        assert (FIXTURES / name / "manifest.json").is_file()


@pytest.mark.parametrize("name", MODELS)
def test_fixture_files_match_their_manifest(name):
    """The files are byte for byte as saved (no re-encoding, no line-ending changes)."""
    directory = FIXTURES / name
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    hashes = _tree_hashes(directory)
    assert set(hashes) == set(manifest["files"]) | {"manifest.json"}
    for file_name, sha256 in manifest["files"].items():
        assert hashes[file_name] == sha256, f"{name}/{file_name} differs from the saved file"


@pytest.mark.parametrize("name", MODELS)
def test_predictions_are_unchanged(name):
    expected = EXPECTED["models"][name]["predictions"]
    predictions = rnnsent.load(FIXTURES / name).predict(TEXTS)
    assert len(predictions) == len(expected) == len(TEXTS)
    for index, (got, want) in enumerate(zip(predictions, expected)):
        where = f"{name}: text {index} {TEXTS[index][:40]!r}"
        assert got.label == want["label"], where
        assert bool(got.empty) is want["empty"], where
        assert float(got.probability) == pytest.approx(want["probability"], abs=PROBABILITY_TOLERANCE), where


@pytest.mark.parametrize("name", MODELS)
def test_probabilities_are_unchanged(name):
    expected = EXPECTED["models"][name]["probabilities"]
    probabilities = [float(p) for p in rnnsent.load(FIXTURES / name).probabilities(TEXTS)]
    assert probabilities == pytest.approx(expected, abs=PROBABILITY_TOLERANCE)


@pytest.mark.parametrize("name", MODELS)
def test_explanations_are_unchanged(name):
    predictor = rnnsent.load(FIXTURES / name)
    for index, want in zip(EXPECTED["explained"], EXPECTED["models"][name]["explanations"]):
        got = predictor.explain(TEXTS[index]).to_dict()
        for key, value in want.items():
            assert key in got, f"{name}: explanation of text {index} lacks {key!r}"
            _assert_close(got[key], value, f"{name}: explanation of text {index}, {key}")


@pytest.mark.parametrize("name", MODELS)
def test_loading_leaves_the_directory_unchanged(name):
    directory = FIXTURES / name
    before = _tree_hashes(directory)
    predictor = rnnsent.load(directory)
    predictor.predict(TEXTS[:3])
    predictor.explain(TEXTS[3])
    assert _tree_hashes(directory) == before


def _tree_hashes(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def _assert_close(got, want, where: str) -> None:
    """Equal, except that floats (also inside lists) may differ by EXPLANATION_TOLERANCE."""
    if want is None or isinstance(want, str):
        assert got == want and type(got) is type(want), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, bool):
        assert got in (True, False) and bool(got) is want, f"{where}: {got!r} != {want!r}"
    elif isinstance(want, int):
        assert isinstance(got, numbers.Integral) and not isinstance(got, bool) and got == want, f"{where}: {got!r} != {want!r}"
    elif isinstance(want, float):
        assert isinstance(got, numbers.Real) and not isinstance(got, bool), f"{where}: {got!r} is not a number"
        assert math.isclose(float(got), want, rel_tol=0.0, abs_tol=EXPLANATION_TOLERANCE), f"{where}: {got!r} != {want!r}"
    elif isinstance(want, list):
        got = list(got)
        assert len(got) == len(want), f"{where}: {len(got)} items, expected {len(want)}"
        for position, (item, expected_item) in enumerate(zip(got, want)):
            _assert_close(item, expected_item, f"{where}[{position}]")
    elif isinstance(want, dict):
        assert set(got) >= set(want), f"{where}: missing {sorted(set(want) - set(got))}"
        for key, value in want.items():
            _assert_close(got[key], value, f"{where}.{key}")
    else:  # pragma: no cover - JSON has no other types
        raise TypeError(f"{where}: unexpected expected value {want!r}")
