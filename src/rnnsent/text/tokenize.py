"""Raw text to words, as Keras' Tokenizer: lower-case, ``<br />`` and Keras' punctuation filters to spaces, split on whitespace."""

from __future__ import annotations

import re

# Keras' Tokenizer default `filters`: these characters become word separators.
KERAS_FILTERS = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"
_FILTER_TABLE = str.maketrans({character: " " for character in KERAS_FILTERS})
# The HTML line break of aclImdb's reviews, a space once the text is lower-cased.
HTML_LINE_BREAK = "<br />"


def normalize(text: str) -> str:
    """Lower-case, turn HTML line breaks and Keras' filtered punctuation into spaces."""
    return text.lower().replace(HTML_LINE_BREAK, " ").translate(_FILTER_TABLE)


def tokenize(text: str) -> list[str]:
    """Split normalised text into words (any run of whitespace separates words)."""
    return normalize(text).split()


def tokenize_tail(text: str, count: int) -> list[str]:
    """``tokenize(text)[-count:]``, normalising only as much of the text's end as needed.

    The text is cut just after a whitespace character, where no word, ``<br />`` or
    lower-casing context (Greek final sigma) can straddle the cut, so the words after it are
    exactly the last words of the whole text. A 10 MB review thus costs no more than a short one.
    """
    return _tokenize_end(text, count, from_end=True)


def tokenize_head(text: str, count: int) -> list[str]:
    """``tokenize(text)[:count]``, normalising only as much of the text's start as needed."""
    return _tokenize_end(text, count, from_end=False)


_WHITESPACE = re.compile(r"\s")  # the characters str.split() splits on


def _tokenize_end(text: str, count: int, from_end: bool) -> list[str]:
    if count <= 0:
        return []
    window = 32 * count  # characters; grows fourfold until the window holds enough words
    while window < len(text):
        if from_end:
            match = _WHITESPACE.search(text, len(text) - window)
            part = text[match.end():] if match else None
        else:
            match = _WHITESPACE.search(text, window)
            part = text[:match.start()] if match else None
        # One word more than needed: the word beside the cut is never one of those returned.
        words = tokenize(part) if part is not None else []
        if len(words) > count:
            return words[-count:] if from_end else words[:count]
        window *= 4
    words = tokenize(text)
    return words[-count:] if from_end else words[:count]
