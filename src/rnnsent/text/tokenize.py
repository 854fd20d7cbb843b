"""Raw text to words, as Keras' Tokenizer: lower-case, ``<br />`` and Keras' punctuation filters to spaces, split on whitespace.

With ``punctuation="words"`` (the text setting of that name) each punctuation mark among the
filters is a word of its own instead of a separator: ``"Bad. Not good!"`` is ``bad . not good !``.
An n-gram then does not run across a sentence's end (``bad not``), and a mark such as ``!``
or ``?`` is evidence in itself. Tab and newline separate words either way.
"""

from __future__ import annotations

import re
from typing import Sequence

# Keras' Tokenizer default `filters`: these characters become word separators.
KERAS_FILTERS = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n"
# The HTML line break of aclImdb's reviews, a space once the text is lower-cased.
HTML_LINE_BREAK = "<br />"
# The filters are ASCII, and UTF-8 never uses an ASCII byte inside a longer character, so
# replacing their bytes in the UTF-8 form is replacing the characters (several times faster
# than str.translate on non-ASCII text). "surrogatepass" carries lone surrogates through.
_FILTER_BYTES = bytes.maketrans(KERAS_FILTERS.encode("ascii"), b" " * len(KERAS_FILTERS))
# The filters that punctuation "words" keeps, each as a word: all but the whitespace ones.
PUNCTUATION_MARKS = "".join(c for c in KERAS_FILTERS if not c.isspace())
# A mark, or a run of characters that are neither marks nor whitespace (re's \s is str.isspace,
# what str.split() splits on): finding these in one pass is faster than spacing the marks out
# and splitting.
_WORD_OR_MARK = re.compile(f"[{re.escape(PUNCTUATION_MARKS)}]|[^\\s{re.escape(PUNCTUATION_MARKS)}]+")
# Words that a cut through "<br />" can leave beside the cut with punctuation "words": "<" and
# "br" before the cut's space, "/" and ">" after it (dropped filters leave only "br", one word).
_CUT_FRAGMENT_WORDS = {"drop": 1, "words": 2}

# Marks where one text ends and the next begins in tokenize_joined. A control character is
# neither cased nor case-ignorable, so lower-casing beside it (Greek final sigma) is as at
# the ends of a string; it is neither whitespace nor a filter, so it stays a word of its own.
TEXT_BOUNDARY = "\x00"


def normalize(text: str) -> str:
    """Lower-case, turn HTML line breaks and Keras' filtered punctuation into spaces."""
    lowered = text.lower().replace(HTML_LINE_BREAK, " ")
    return lowered.encode("utf-8", "surrogatepass").translate(_FILTER_BYTES).decode("utf-8", "surrogatepass")


def tokenize(text: str, punctuation: str = "drop") -> list[str]:
    """Split normalised text into words (any run of whitespace separates words); with
    ``punctuation="words"`` each of Keras' punctuation marks is a word of its own."""
    if punctuation == "words":
        return _WORD_OR_MARK.findall(text.lower().replace(HTML_LINE_BREAK, " "))
    assert punctuation == "drop", f"punctuation is drop or words, not {punctuation!r}"
    return normalize(text).split()


def tokenize_joined(texts: Sequence[str], punctuation: str = "drop") -> list[str]:
    """The words of many texts in one list, each text's words preceded by a ``TEXT_BOUNDARY`` word.

    Equal to ``[TEXT_BOUNDARY, *tokenize(texts[0]), TEXT_BOUNDARY, *tokenize(texts[1]), ...]``
    (property tested), but the texts are normalised and split as one string, which saves the
    calls per text. No text may contain ``TEXT_BOUNDARY``: its words would not be its own.
    """
    if not texts:
        return []
    separator = f" {TEXT_BOUNDARY} "
    return tokenize(separator + separator.join(texts), punctuation)


def tokenize_tail(text: str, count: int, punctuation: str = "drop") -> list[str]:
    """``tokenize(text)[-count:]``, normalising only as much of the text's end as needed.

    The text is cut just after a whitespace character, where no word or lower-casing context
    (Greek final sigma) can straddle the cut; the pieces of a ``<br />`` cut through at its
    space are never among the words returned, so they are exactly the last words of the whole
    text. A 10 MB review thus costs no more than a short one.
    """
    return _tokenize_end(text, count, punctuation, from_end=True)


def tokenize_head(text: str, count: int, punctuation: str = "drop") -> list[str]:
    """``tokenize(text)[:count]``, normalising only as much of the text's start as needed."""
    return _tokenize_end(text, count, punctuation, from_end=False)


_WHITESPACE = re.compile(r"\s")  # the characters str.split() splits on
# The first window _tokenize_end normalises, in characters per word wanted; a text no longer
# than that is tokenized whole.
WINDOW_CHARACTERS_PER_WORD = 32


def _tokenize_end(text: str, count: int, punctuation: str, from_end: bool) -> list[str]:
    if count <= 0:
        return []
    window = WINDOW_CHARACTERS_PER_WORD * count  # characters; grows fourfold until the window holds enough words
    while window < len(text):
        if from_end:
            match = _WHITESPACE.search(text, len(text) - window)
            part = text[match.end():] if match else None
        else:
            match = _WHITESPACE.search(text, window)
            part = text[:match.start()] if match else None
        # The words a cut can leave beside it more than needed: they are never among those returned.
        words = tokenize(part, punctuation) if part is not None else []
        if len(words) >= count + _CUT_FRAGMENT_WORDS[punctuation]:
            return words[-count:] if from_end else words[:count]
        window *= 4
    words = tokenize(text, punctuation)
    return words[-count:] if from_end else words[:count]
