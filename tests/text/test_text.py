"""Tokenizer, vocabulary, encoding and padding against hand-derived answers and Keras' rules."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnsent.config import TextConfig
from rnnsent.text.encoder import TextEncoder, encode_corpus, pad_sequences
from rnnsent.text.tokenize import normalize, tokenize
from rnnsent.text.vocabulary import OOV_ID, PAD_ID, START_ID, Vocabulary

# Keras' Tokenizer default filters, typed out here independently of the package's constant.
KERAS_DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


# ----------------------------------------------------------------------------- normalise / tokenize


def test_tokenize_known_answer():
    assert tokenize("Hello, World!<br />It's GREAT...") == ["hello", "world", "it's", "great"]


def test_normalize_keeps_positions():
    # Each filtered character becomes exactly one space; <br /> (6 characters) becomes one space.
    assert normalize("A-b<br />C") == "a b c"


@pytest.mark.parametrize("character", list(KERAS_DEFAULT_FILTERS))
def test_every_keras_filter_separates_words(character):
    assert tokenize(f"left{character}right") == ["left", "right"]


@pytest.mark.parametrize("text, expected", [
    ("don't", ["don't"]),  # the apostrophe is not one of Keras' filters
    ("Café NAÏVE Ünïcödé", ["café", "naïve", "ünïcödé"]),
    ("wow… “quoted” — dash", ["wow…", "“quoted”", "—", "dash"]),  # only ASCII punctuation is filtered
    ("a\r\nb\tc  d", ["a", "b", "c", "d"]),
    ("first<BR />second<br /><br />third", ["first", "second", "third"]),
    ("", []),
    ("   \t\n ", []),
    ("!!! ... ???", []),
])
def test_tokenize_cases(text, expected):
    assert tokenize(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Bad. Not good!<br />It's GREAT...", ["bad", ".", "not", "good", "!", "it's", "great", ".", ".", "."]),
    ("first<BR />second<br /><br />third", ["first", "second", "third"]),  # a line break is no mark
    ("a(b)c, \"d\"", ["a", "(", "b", ")", "c", ",", '"', "d", '"']),
    ("wow… “quoted” — dash", ["wow…", "“quoted”", "—", "dash"]),  # only ASCII marks are words
    ("a\tb\nc", ["a", "b", "c"]),  # tab and newline still separate
    ("", []),
    ("!?", ["!", "?"]),
])
def test_punctuation_as_words(text, expected):
    assert tokenize(text, "words") == expected


@pytest.mark.parametrize("character", [c for c in KERAS_DEFAULT_FILTERS if not c.isspace()])
def test_with_punctuation_as_words_every_mark_is_a_word_between_its_neighbours(character):
    assert tokenize(f"left{character}right", "words") == ["left", character, "right"]
    assert tokenize(f"left{character}right") == ["left", "right"]


def test_br_tag_leaves_no_br_token():
    # Were <br /> filtered as punctuation instead of replaced, "br" would remain as a word.
    assert "br" not in tokenize("one<br />two<br /><br />three")


# ----------------------------------------------------------------------------- vocabulary


TOKEN_LISTS = [["b", "a", "c", "a"], ["c", "d", "a"]]  # counts: a 3, c 2, b 1, d 1


def test_vocabulary_ranks_by_frequency_then_alphabetically():
    vocabulary = Vocabulary.build(TOKEN_LISTS, num_words=100)
    assert vocabulary.words == ("a", "c", "b", "d")
    assert [vocabulary.id(word) for word in "acbd"] == [3, 4, 5, 6]
    assert vocabulary.size == 7


def test_vocabulary_ties_do_not_depend_on_input_order():
    rng = random.Random(1)
    tokens = [rng.choice("abcdefgh") for _ in range(200)]
    reference = Vocabulary.build([tokens], num_words=100)
    for _ in range(5):
        rng.shuffle(tokens)
        assert Vocabulary.build([tokens[:77], tokens[77:]], num_words=100).words == reference.words


def test_reserved_ids():
    vocabulary = Vocabulary.build(TOKEN_LISTS, num_words=100)
    assert (PAD_ID, START_ID, OOV_ID) == (0, 1, 2)
    assert [vocabulary.word(i) for i in (0, 1, 2)] == ["<pad>", "<start>", "<oov>"]
    assert vocabulary.id("never-seen") == OOV_ID
    assert vocabulary.word(10_000) == "<oov>"


def test_num_words_cut_keeps_ids_below_num_words():
    # num_words 6 with index_from 3 leaves room for three words: a, c, b; d becomes OOV.
    vocabulary = Vocabulary.build(TOKEN_LISTS, num_words=6)
    assert vocabulary.words == ("a", "c", "b")
    assert vocabulary.ids(["a", "c", "b", "d"]) == [3, 4, 5, OOV_ID]
    assert vocabulary.size == 6


def test_num_words_cut_on_real_text_ids_are_below_num_words():
    texts = [" ".join(random.Random(seed).choice("abcdefghijklmnopqrstuvwxyz") * (seed % 3 + 1) for _ in range(30))
             for seed in range(40)]
    vocabulary = Vocabulary.build((tokenize(text) for text in texts), num_words=10)
    flat, _ = encode_corpus(texts, vocabulary)
    assert flat.max() < 10
    assert (flat == OOV_ID).any()


def test_index_from():
    vocabulary = Vocabulary.build(TOKEN_LISTS, num_words=8, index_from=5)
    assert vocabulary.ids(["a", "c", "b", "d"]) == [5, 6, 7, OOV_ID]
    # Ids between the reserved three and index_from are unused: they decode as out-of-vocabulary.
    assert vocabulary.word(3) == vocabulary.word(4) == "<oov>"
    assert vocabulary.word(5) == "a"


# ----------------------------------------------------------------------------- encode / decode


def encoder(maxlen=5, padding="pre", truncating="pre", num_words=100, punctuation="drop") -> TextEncoder:
    vocabulary = Vocabulary.build([tokenize("the cat sat on the mat, the end!", punctuation)], num_words=num_words)
    return TextEncoder(vocabulary, TextConfig(num_words=num_words, maxlen=maxlen, padding=padding, truncating=truncating,
                                              punctuation=punctuation))


def test_encode_known_answer():
    # Counts: the 3; cat, end, mat, on, sat 1 each (alphabetical): the=3 cat=4 end=5 mat=6 on=7 sat=8.
    assert encoder().encode("The cat, the DOG!") == [START_ID, 3, 4, 3, OOV_ID]


def test_encode_known_answer_with_punctuation_as_words():
    # Counts: the 3; then "!", ",", cat, end, mat, on, sat 1 each, in code-point order ("!" 33 and
    # "," 44 before letters): the=3 !=4 ,=5 cat=6 end=7 mat=8 on=9 sat=10.
    assert encoder(punctuation="words").encode("The cat, the DOG!") == [START_ID, 3, 6, 5, 3, OOV_ID, 4]


def test_decode_round_trip():
    text_encoder = encoder()
    text = "The mat sat on the cat. The end!"
    assert text_encoder.decode(text_encoder.encode(text)) == ["<start>", *tokenize(text)]
    assert text_encoder.decode([0, 0, 1, 3]) == ["<start>", "the"]
    assert text_encoder.decode([0, 1], skip_padding=False) == ["<pad>", "<start>"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["the", "cat", "sat", "on", "mat", "end", "dog", ",", "!", "<br />"]), max_size=20))
def test_decode_round_trip_property(pieces):
    text_encoder = encoder()
    text = " ".join(pieces)
    known = set(text_encoder.vocabulary.words)
    expected = ["<start>", *[word if word in known else "<oov>" for word in tokenize(text)]]
    assert text_encoder.decode(text_encoder.encode(text)) == expected


def test_encode_corpus_matches_encode():
    text_encoder = encoder()
    texts = ["the cat", "", "dog dog the end", "mat"]
    flat, offsets = encode_corpus(texts, text_encoder.vocabulary)
    assert offsets.tolist() == [0, 3, 4, 9, 11]
    for index, text in enumerate(texts):
        assert flat[offsets[index]:offsets[index + 1]].tolist() == text_encoder.encode(text)


# ----------------------------------------------------------------------------- padding


ROWS = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]


def flatten(rows):
    flat = np.asarray([token for row in rows for token in row], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64)
    return flat, offsets


@pytest.mark.parametrize("padding, truncating, expected", [
    ("pre", "pre", [[0, 1, 2, 3], [5, 6, 7, 8], [0, 0, 0, 9]]),
    ("post", "pre", [[1, 2, 3, 0], [5, 6, 7, 8], [9, 0, 0, 0]]),
    ("pre", "post", [[0, 1, 2, 3], [4, 5, 6, 7], [0, 0, 0, 9]]),
    ("post", "post", [[1, 2, 3, 0], [4, 5, 6, 7], [9, 0, 0, 0]]),
])
def test_pad_sequences_known_answers(padding, truncating, expected):
    ids, lengths = pad_sequences(*flatten(ROWS), maxlen=4, padding=padding, truncating=truncating)
    assert ids.tolist() == expected
    assert lengths.tolist() == [3, 4, 1]
    assert ids.dtype == np.int64


def test_pad_sequences_empty_rows_and_no_rows():
    ids, lengths = pad_sequences(*flatten([[], [7]]), maxlen=3)
    assert ids.tolist() == [[0, 0, 0], [0, 0, 7]]
    assert lengths.tolist() == [0, 1]
    ids, lengths = pad_sequences(*flatten([]), maxlen=3)
    assert ids.shape == (0, 3) and lengths.shape == (0,)


def keras_pad_sequences(rows, maxlen, padding, truncating):
    """A row-by-row transcription of Keras' pad_sequences (value 0, dtype int)."""
    out = np.zeros((len(rows), maxlen), dtype=np.int64)
    for index, row in enumerate(rows):
        if not row:
            continue
        kept = row[-maxlen:] if truncating == "pre" else row[:maxlen]
        if padding == "post":
            out[index, :len(kept)] = kept
        else:
            out[index, -len(kept):] = kept
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.integers(1, 50), max_size=12), max_size=8),
    st.integers(1, 10),
    st.sampled_from(["pre", "post"]),
    st.sampled_from(["pre", "post"]),
)
def test_pad_sequences_equals_keras(rows, maxlen, padding, truncating):
    ids, lengths = pad_sequences(*flatten(rows), maxlen=maxlen, padding=padding, truncating=truncating)
    assert np.array_equal(ids, keras_pad_sequences(rows, maxlen, padding, truncating))
    assert lengths.tolist() == [min(len(row), maxlen) for row in rows]


WORDS = st.sampled_from(["the", "cat", "sat", "on", "mat", "end", "dog", "zebra"])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(WORDS, max_size=12).map(" ".join), max_size=6),
    st.integers(1, 8),
    st.sampled_from(["pre", "post"]),
    st.sampled_from(["pre", "post"]),
)
def test_encode_batch_equals_encode_then_pad(texts, maxlen, padding, truncating):
    text_encoder = encoder(maxlen=maxlen, padding=padding, truncating=truncating)
    ids, lengths = text_encoder.encode_batch(texts)
    expected_ids, expected_lengths = pad_sequences(
        *flatten([text_encoder.encode(text) for text in texts]), maxlen=maxlen, padding=padding, truncating=truncating)
    assert np.array_equal(ids, expected_ids)
    assert np.array_equal(lengths, expected_lengths)


@pytest.mark.parametrize("truncating, expected", [
    ("pre", ["sat", "on", "the", "mat"]),
    ("post", ["<start>", "the", "cat", "sat"]),
])
def test_kept_tokens(truncating, expected):
    text_encoder = encoder(maxlen=4, truncating=truncating)
    assert text_encoder.kept_tokens("The cat sat on the mat") == (expected, True)
    assert text_encoder.kept_tokens("the cat") == (["<start>", "the", "cat"], False)


# ----------------------------------------------------------------------------- windowed tokenization

# Pieces that stress a cut: <br /> (which holds a space), Keras filters, every kind of whitespace
# str.split() knows, letters whose lower case depends on context (final sigma) or grows (dotted I).
PIECES = st.sampled_from([
    "word", "Word", "ΣΑΣ", "σ", "İ", "a", "<br />", "<br", "/>", "<BR />", ",", "!", "'", "x" * 40, " ", "  ",
    "\t", "\n", "\r\n", "\x0b", "\x1c", "\u00a0", "\u2028", "\u3000", "…", "-", "don't",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=120).map("".join), st.integers(0, 6), st.sampled_from(["drop", "words"]))
def test_tokenize_tail_and_head_equal_full_tokenization(text, count, punctuation):
    from rnnsent.text.tokenize import tokenize_head, tokenize_tail

    words = tokenize(text, punctuation)
    assert tokenize_tail(text, count, punctuation) == (words[-count:] if count else [])
    assert tokenize_head(text, count, punctuation) == words[:count]


@pytest.mark.parametrize("window", [1, 2, 3])
@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_a_cut_through_a_line_break_leaves_no_piece_of_it(window, count, monkeypatch):
    # Small first windows cut this text at the space inside a "<br />", among other places:
    # with punctuation as words its pieces would be the words "/" and ">" (or "<" and "br").
    from rnnsent.text import tokenize as module

    text = "one two <br /> three four <br /> five six"
    monkeypatch.setattr(module, "WINDOW_CHARACTERS_PER_WORD", window)
    words = tokenize(text, "words")
    assert module.tokenize_tail(text, count, "words") == words[-count:]
    assert module.tokenize_head(text, count, "words") == words[:count]


@settings(max_examples=100, deadline=None)
@given(st.lists(PIECES, max_size=120).map("".join), st.integers(1, 6), st.sampled_from(["pre", "post"]))
def test_encode_batch_and_kept_tokens_on_long_texts(text, maxlen, truncating):
    text_encoder = encoder(maxlen=maxlen, truncating=truncating)
    ids, _ = text_encoder.encode_batch([text])
    expected, _ = pad_sequences(*flatten([text_encoder.encode(text)]), maxlen=maxlen, truncating=truncating)
    assert np.array_equal(ids, expected)
    tokens = ["<start>", *tokenize(text)]
    kept = tokens[-maxlen:] if truncating == "pre" else tokens[:maxlen]
    assert text_encoder.kept_tokens(text) == (kept, len(tokens) > maxlen)


def naive_kept_ids(text, vocabulary, maxlen, truncating, punctuation="drop"):
    """The definition of what the model reads: tokenize everything, prepend the start token, then cut."""
    tokens = ["<start>", *tokenize(text, punctuation)]
    kept = tokens[-maxlen:] if truncating == "pre" else tokens[:maxlen]
    # Keras' filters remove "<" and ">", so "<start>" in first place can only be the start token.
    ids = [START_ID if position == 0 and token == "<start>" else vocabulary.id(token)
           for position, token in enumerate(kept)]
    return kept, ids, len(tokens) > maxlen


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=120).map("".join), st.integers(1, 6), st.sampled_from(["pre", "post"]),
       st.sampled_from(["pre", "post"]), st.sampled_from(["drop", "words"]))
def test_every_encoding_is_the_naive_tokenize_then_cut(text, maxlen, truncating, padding, punctuation):
    from rnnsent.text.encoder import kept_ids

    text_encoder = encoder(maxlen=maxlen, padding=padding, truncating=truncating, punctuation=punctuation)
    vocabulary = text_encoder.vocabulary
    tokens, ids, truncated = naive_kept_ids(text, vocabulary, maxlen, truncating, punctuation)
    assert kept_ids(text, vocabulary, maxlen, truncating, punctuation) == (ids, truncated)
    assert text_encoder.kept_ids(text) == (ids, truncated)
    assert text_encoder.kept_tokens(text) == (tokens, truncated)
    padded, lengths = text_encoder.encode_batch([text])
    row = padded[0].tolist()
    assert lengths.tolist() == [len(ids)]
    assert row == ([0] * (maxlen - len(ids)) + ids if padding == "pre" else ids + [0] * (maxlen - len(ids)))
    whole = [START_ID, *[vocabulary.id(word) for word in tokenize(text, punctuation)]]
    assert text_encoder.encode(text) == whole == kept_ids(text, vocabulary, punctuation=punctuation)[0]
    flat, offsets = encode_corpus([text], vocabulary, punctuation)
    assert flat.dtype == np.int32 and offsets.tolist() == [0, len(whole)] and flat.tolist() == whole


def test_kept_words_says_what_survives_the_cut():
    from rnnsent.text.encoder import KeptWords, kept_words

    assert kept_words("The cat sat", 3, "pre") == KeptWords(["the", "cat", "sat"], False, True)
    assert kept_words("The cat sat", 3, "post") == KeptWords(["the", "cat"], True, True)
    assert kept_words("The cat", 3, "pre") == KeptWords(["the", "cat"], True, False)
    assert kept_words("The cat sat " * 1000) == KeptWords(["the", "cat", "sat"] * 1000, True, False)
    assert encode_corpus([], Vocabulary(("a",)))[1].tolist() == [0]
