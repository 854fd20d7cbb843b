"""Probes of ideas for ``best`` that were measured and not adopted (docs/accuracy.md, "Measured, not adopted").

    python -m benchmarks.accuracy_probes ngram-inputs                 # the regression's words and punctuation
    python -m benchmarks.accuracy_probes cotrain RUN                  # the regression refitted on GRU-labelled reviews
    python -m benchmarks.accuracy_probes averaging RUN                # the kept and the last epoch, averaged
    python -m benchmarks.accuracy_probes refine RUN --teacher blend   # one more epoch, distilled from the blend
    python -m benchmarks.accuracy_probes third-part RUN               # a third regression in the blend
    python -m benchmarks.accuracy_probes punctuation RUN              # punctuation marks kept as words
    python -m benchmarks.accuracy_probes rating-third-part RATING_RUN # star ratings: TF-IDF regression as a third part

``RUN`` is a model directory of ``rnnsent train --preset best --seed 0 --out RUN`` with its
``checkpoint/`` (which holds the last epoch's weights). Every probe reads the same training
reviews as ``best`` and the same validation split (whole films held out); the figures that would
decide are the validation ones, the test accuracy is printed for the record. The n-gram
regressions here are scikit-learn's liblinear fit of the same NB-weighted 1-3-gram features
(on ``best``'s inputs it scores 0.9065 on validation against rnnsent's 0.9053), so that other
inputs and soft labels are quick to try. Needs the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import collections
import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Reviews:
    """aclImdb's training reviews split as ``best`` splits them, the test reviews and the unlabelled ones."""

    texts: list[str]
    labels: np.ndarray  # (25000,) 0/1
    kept: np.ndarray  # indices of the training reviews a run trains on
    held: np.ndarray  # indices of the validation reviews (whole films)
    test_texts: list[str]
    test_labels: np.ndarray
    unlabelled: list[str]


def read_reviews(data: str) -> Reviews:
    from rnnsent.data.sources import read_corpus
    from rnnsent.data.splits import grouped_held_out_split
    from rnnsent.labels import BINARY_SENTIMENT

    corpus = read_corpus(Path(data), include_unlabelled=True)
    groups = np.unique(corpus.train.groups, return_inverse=True)[1]  # as the encoded cache numbers the films
    kept, held = grouped_held_out_split(groups, 0.1)
    labels = BINARY_SENTIMENT.encode(corpus.train.labels).astype(np.int64)
    test_labels = BINARY_SENTIMENT.encode(corpus.test.labels).astype(np.int64)
    return Reviews(corpus.train.texts, labels, kept, held, corpus.test.texts, test_labels, corpus.unlabelled)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((logits > 0) == (labels == 1)))


def word_ngrams(tokens: list[str]) -> list[str]:
    """The 1-, 2- and 3-grams of ``tokens`` (as ``best``'s regression reads them, without hashing)."""
    pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]
    triples = [f"{a} {b} {c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:])]
    return tokens + pairs + triples


def best_words(tokens, kept: np.ndarray) -> set[str]:
    """The words ``best`` keeps: the 20,000 - 3 (ids reserved) most frequent in the training
    reviews ``kept``, whose words are ``tokens[i]``."""
    counts = collections.Counter(word for i in kept for word in tokens[i])
    return {word for word, _ in counts.most_common(20_000 - 3)}


def nb_logistic_regression(train_rows, targets: np.ndarray, weights: np.ndarray, inverse_l2: float = 1.0):
    """NBSVM's logistic-regression variant on binary n-gram rows ``(n, features)`` with soft
    ``targets`` in [0, 1] (each row enters twice, as a positive of weight ``t * w`` and a negative
    of weight ``(1 - t) * w``). Returns a function of rows to logits."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rows = sparse.vstack([train_rows, train_rows]).tocsr()
    y = np.r_[np.ones(train_rows.shape[0]), np.zeros(train_rows.shape[0])]
    w = np.r_[targets * weights, (1 - targets) * weights]
    used = w > 0
    rows, y, w = rows[used], y[used], w[used]
    p = np.asarray(rows[y == 1].multiply(w[y == 1][:, None]).sum(0)).ravel() + 1
    q = np.asarray(rows[y == 0].multiply(w[y == 0][:, None]).sum(0)).ravel() + 1
    ratios = sparse.diags(np.log(p / p.sum()) - np.log(q / q.sum()))
    fit = LogisticRegression(C=inverse_l2, solver="liblinear", max_iter=1000).fit(rows @ ratios, y, sample_weight=w)
    return lambda other: fit.decision_function(other @ ratios)


def blend_report(name: str, recurrent: tuple[np.ndarray, np.ndarray], ngrams: tuple[np.ndarray, np.ndarray],
                 reviews: Reviews) -> None:
    """Print a part's validation and test accuracy and the blend's: its validation accuracy by 10-fold
    cross-validation on the validation split (not the split it was fitted on), its test accuracy
    fitted on the whole validation split as ``best`` fits it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    validation_labels = reviews.labels[reviews.held]
    inputs = np.stack([recurrent[0], ngrams[0]], 1)
    folds = cross_val_predict(LogisticRegression(C=1e4), inputs, validation_labels, cv=10, method="decision_function")
    fitted = LogisticRegression(C=1e4).fit(inputs, validation_labels)
    blended = fitted.decision_function(np.stack([recurrent[1], ngrams[1]], 1))
    loss = float(np.mean(np.logaddexp(0, -np.where(validation_labels == 1, recurrent[0], -recurrent[0]))))
    print(f"{name}: GRU validation {accuracy(recurrent[0], validation_labels):.4f} (loss {loss:.4f}), "
          f"test {accuracy(recurrent[1], reviews.test_labels):.4f} | n-grams validation "
          f"{accuracy(ngrams[0], validation_labels):.4f}, test {accuracy(ngrams[1], reviews.test_labels):.4f} | "
          f"blend validation {accuracy(folds, validation_labels):.4f}, test {accuracy(blended, reviews.test_labels):.4f}",
          flush=True)


def blend_of_parts(name: str, parts: dict[str, tuple[np.ndarray, np.ndarray]], reviews: Reviews) -> None:
    """Print each part's validation and test accuracy and the accuracy of their blend, as
    :func:`blend_report` does for two parts, for any number of them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    validation_labels = reviews.labels[reviews.held]
    inputs = np.stack([logits[0] for logits in parts.values()], 1)
    folds = cross_val_predict(LogisticRegression(C=1e4), inputs, validation_labels, cv=10, method="decision_function")
    fitted = LogisticRegression(C=1e4).fit(inputs, validation_labels)
    blended = fitted.decision_function(np.stack([logits[1] for logits in parts.values()], 1))
    each = ", ".join(f"{part} {accuracy(logits[0], validation_labels):.4f} / {accuracy(logits[1], reviews.test_labels):.4f}"
                     for part, logits in parts.items())
    print(f"{name}: (validation / test) {each} | blend validation {accuracy(folds, validation_labels):.4f}, "
          f"test {accuracy(blended, reviews.test_labels):.4f}, weights {np.round(fitted.coef_.ravel(), 3)}", flush=True)


def part_logits(run: Path, reviews: Reviews) -> dict[str, np.ndarray]:
    """The saved model's part logits on the validation, unlabelled and test reviews (cached in RUN/probe-parts.npz)."""
    from rnnsent.artifact.directory import load_artifact
    from rnnsent.model.scoring import predict_part_logits

    cache = run / "probe-parts.npz"
    if cache.exists():
        return dict(np.load(cache))
    artifact = load_artifact(run)
    parts = {}
    for split, texts in (("validation", [reviews.texts[i] for i in reviews.held]), ("unlabelled", reviews.unlabelled),
                         ("test", reviews.test_texts)):
        for name, logits in predict_part_logits(artifact.model, *artifact.encoder.encode_batch(texts)).items():
            parts[f"{split}_{name}"] = logits
    np.savez(cache, **parts)
    return parts


def probe_ngram_inputs(reviews: Reviews) -> None:
    """The regression over rnnsent's words (Keras' filters, the 20,000 most frequent, the rest one
    out-of-vocabulary word), over every word, and over words with ``!`` and ``?`` kept as words."""
    import re

    from sklearn.feature_extraction.text import CountVectorizer

    from rnnsent.text.tokenize import tokenize

    tokens = [tokenize(text) for text in reviews.texts]
    frequent = best_words(tokens, reviews.kept)
    punctuated = re.compile(r"[a-z0-9']+|[!?]")
    variants = {
        "rnnsent's 20,000 words": [[w if w in frequent else "<oov>" for w in words] for words in tokens],
        "every word": tokens,
        "every word, ! and ? as words": [punctuated.findall(t.lower().replace("<br />", " ")) for t in reviews.texts],
    }
    labels = reviews.labels
    for name, documents in variants.items():
        vectorizer = CountVectorizer(analyzer=word_ngrams, binary=True)
        train = vectorizer.fit_transform([documents[i] for i in reviews.kept])
        validation = vectorizer.transform([documents[i] for i in reviews.held])
        for inverse_l2 in (0.3, 1.0, 3.0):
            logits = nb_logistic_regression(train, labels[reviews.kept].astype(float), np.ones(len(reviews.kept)),
                                            inverse_l2)(validation)
            print(f"{name}, C {inverse_l2:g}: {train.shape[1]:,} n-grams, validation "
                  f"{accuracy(logits, labels[reviews.held]):.4f}", flush=True)


def probe_cotrain(run: Path, reviews: Reviews) -> None:
    """The regression refitted on the training reviews and the 50,000 unlabelled ones labelled by
    the run's GRU (hard or soft labels, the unlabelled rows at half weight), blended again."""
    from sklearn.feature_extraction.text import CountVectorizer

    from rnnsent.text.tokenize import tokenize

    parts = part_logits(run, reviews)
    frequent = best_words({i: tokenize(reviews.texts[i]) for i in reviews.kept}, reviews.kept)

    def grams(text: str) -> list[str]:
        return word_ngrams([w if w in frequent else "<oov>" for w in tokenize(text)][-1000:])  # maxlen 1000, truncating pre

    vectorizer = CountVectorizer(analyzer=grams, binary=True)
    rows = vectorizer.fit_transform([reviews.texts[i] for i in reviews.kept] + reviews.unlabelled)
    validation = vectorizer.transform([reviews.texts[i] for i in reviews.held])
    test = vectorizer.transform(reviews.test_texts)
    recurrent = (parts["validation_recurrent"], parts["test_recurrent"])
    blend_report("the run as saved", recurrent, (parts["validation_ngrams"], parts["test_ngrams"]), reviews)
    labelled = len(reviews.kept)
    known = reviews.labels[reviews.kept].astype(float)
    score = nb_logistic_regression(rows[:labelled], known, np.ones(labelled))
    blend_report("regression refitted here, training reviews only", recurrent, (score(validation), score(test)), reviews)
    teacher = 1 / (1 + np.exp(-parts["unlabelled_recurrent"]))
    weights = np.r_[np.ones(labelled), np.full(len(teacher), 0.5)]  # an unlabelled review counts half
    for soft in (False, True):
        targets = np.r_[known, teacher if soft else (teacher > 0.5).astype(float)]
        score = nb_logistic_regression(rows, targets, weights)
        blend_report(f"+ unlabelled, {'soft' if soft else 'hard'} GRU labels at weight 0.5", recurrent,
                     (score(validation), score(test)), reviews)


def _network_logits(model, encoded) -> tuple[np.ndarray, np.ndarray]:
    from rnnsent.model.scoring import predict_part_logits

    return tuple(predict_part_logits(model, *split)["recurrent"] for split in encoded)


def _last_epoch_state(run: Path) -> dict:
    """The network's weights at the end of the run's last epoch, from its checkpoint."""
    from safetensors import safe_open

    file = next((run / "checkpoint").glob("state-*.safetensors"))
    with safe_open(str(file), "pt") as tensors:
        return {key[len("model."):]: tensors.get_tensor(key) for key in tensors.keys() if key.startswith("model.network.")}


def probe_averaging(run: Path, reviews: Reviews) -> None:
    """The kept epoch, the last epoch, the mean of their logits and the mean of their weights."""
    from rnnsent.artifact.directory import load_artifact

    parts = part_logits(run, reviews)
    artifact = load_artifact(run)
    encoded = [artifact.encoder.encode_batch([reviews.texts[i] for i in reviews.held]),
               artifact.encoder.encode_batch(reviews.test_texts)]
    ngrams = (parts["validation_ngrams"], parts["test_ngrams"])
    kept = {k: v.clone() for k, v in artifact.model.state_dict().items() if k.startswith("network.")}
    last = _last_epoch_state(run)
    kept_logits = (parts["validation_recurrent"], parts["test_recurrent"])
    blend_report("the kept epoch", kept_logits, ngrams, reviews)
    artifact.model.load_state_dict(last, strict=False)
    last_logits = _network_logits(artifact.model, encoded)
    blend_report("the last epoch", last_logits, ngrams, reviews)
    blend_report("their logits averaged", tuple((a + b) / 2 for a, b in zip(kept_logits, last_logits)), ngrams, reviews)
    artifact.model.load_state_dict({k: (kept[k] + last[k]) / 2 for k in kept}, strict=False)
    blend_report("their weights averaged", _network_logits(artifact.model, encoded), ngrams, reviews)


def probe_refine(run: Path, reviews: Reviews, teacher_name: str, epochs: int, peak: float) -> None:
    """More epochs of the kept network, at a cosine rate from ``peak`` (the encoder at 3 times it, as
    ``best``), each step 128 training reviews and 128 unlabelled ones of similar length on which it
    learns the frozen ``teacher``'s prediction: the fitted blend, or the regression (the control)."""
    import torch

    from rnnsent.artifact.directory import load_artifact
    from rnnsent.model.loss import classification_loss
    from rnnsent.training.objectives import prediction_divergence

    torch.manual_seed(0)
    parts = part_logits(run, reviews)
    artifact = load_artifact(run)
    model, network = artifact.model, artifact.model.network
    encode = artifact.encoder.encode_batch
    ids, lengths = map(torch.as_tensor, encode([reviews.texts[i] for i in reviews.kept]))
    targets = torch.tensor(reviews.labels[reviews.kept], dtype=torch.float32)
    unlabelled_ids, unlabelled_lengths = map(torch.as_tensor, encode(reviews.unlabelled))
    by_length = np.argsort(unlabelled_lengths.numpy(), kind="stable")
    encoded = [encode([reviews.texts[i] for i in reviews.held]), encode(reviews.test_texts)]
    teacher = copy.deepcopy(model).eval()
    if teacher_name == "ngrams":
        teacher.blend.copy_(torch.tensor([0.0, 1.0, 0.0]))
    model.blend.copy_(torch.tensor([1.0, 0.0, 0.0]))  # the student is the network alone
    encoder = {id(p) for module in (network.embedding, network.rnn) for p in module.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": [p for p in trainable if id(p) in encoder], "scale": 3.0},
                                  {"params": [p for p in trainable if id(p) not in encoder], "scale": 1.0}])
    batch, rng = 128, np.random.default_rng(0)
    total, step = epochs * math.ceil(len(ids) / batch), 0
    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        # Batches of similar length, as --bucket-by-length draws them: shuffled, sorted within runs of 50 batches.
        order = rng.permutation(len(ids))
        batches = []
        for start in range(0, len(order), 50 * batch):
            run_of = order[start:start + 50 * batch]
            run_of = run_of[np.argsort(lengths[run_of].numpy(), kind="stable")]
            batches += [run_of[i:i + batch] for i in range(0, len(run_of), batch)]
        for rows in (batches[i] for i in rng.permutation(len(batches))):
            for group in optimizer.param_groups:
                group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * step / total)) * group["scale"]
            first = int(rng.integers(0, len(by_length) - batch))
            unlabelled = by_length[first:first + batch]
            width, unlabelled_width = int(lengths[rows].max()), int(unlabelled_lengths[unlabelled].max())
            loss = classification_loss(model(ids[rows, :width], lengths[rows])[0], targets[rows], "binary", None)
            with torch.no_grad():
                taught = teacher(unlabelled_ids[unlabelled, :unlabelled_width], unlabelled_lengths[unlabelled])[0]
            student = model(unlabelled_ids[unlabelled, :unlabelled_width], unlabelled_lengths[unlabelled])[0]
            loss = loss + prediction_divergence(taught, student, "binary").mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
        model.eval()
        blend_report(f"teacher {teacher_name}, peak rate {peak:g}, epoch {epoch + 1} ({time.perf_counter() - started:.0f} s)",
                     _network_logits(model, encoded), (parts["validation_ngrams"], parts["test_ngrams"]),
                     reviews)


def probe_third_part(run: Path, reviews: Reviews) -> None:
    """A third NB-weighted regression beside the GRU and the n-grams, over other inputs: character
    2-5-grams within words, or word 1-3-grams with every punctuation mark kept as a word."""
    import re

    from sklearn.feature_extraction.text import CountVectorizer

    parts = part_logits(run, reviews)
    base = {"GRU": (parts["validation_recurrent"], parts["test_recurrent"]),
            "n-grams": (parts["validation_ngrams"], parts["test_ngrams"])}
    blend_of_parts("the run as saved", base, reviews)
    marks = re.compile(r"[a-z0-9']+|[^a-z0-9'\s]")
    views = {
        "characters 2-5": CountVectorizer(analyzer="char_wb", ngram_range=(2, 5), binary=True, lowercase=True,
                                          preprocessor=lambda text: text.lower().replace("<br />", " ")),
        "words 1-3 with punctuation": CountVectorizer(
            analyzer=lambda text: word_ngrams(marks.findall(text.lower().replace("<br />", " "))), binary=True),
    }
    known = reviews.labels[reviews.kept].astype(float)
    for view, vectorizer in views.items():
        started = time.perf_counter()
        train = vectorizer.fit_transform([reviews.texts[i] for i in reviews.kept])
        validation = vectorizer.transform([reviews.texts[i] for i in reviews.held])
        test = vectorizer.transform(reviews.test_texts)
        for inverse_l2 in (0.3, 1.0):
            score = nb_logistic_regression(train, known, np.ones(len(known)), inverse_l2)
            third = (score(validation), score(test))
            blend_of_parts(f"{view} ({train.shape[1]:,} features, C {inverse_l2:g}, "
                           f"{time.perf_counter() - started:.0f} s)", {**base, view: third}, reviews)


def probe_punctuation(run: Path, reviews: Reviews) -> None:
    """The regression over words with Keras' punctuation characters kept as words of their own
    (each character one word; tab and newline still separate), as a text setting would give
    it: the 20,000 most frequent words, the rest one out-of-vocabulary word, the last 1,000;
    alone and in place of the run's regression in the blend."""
    from sklearn.feature_extraction.text import CountVectorizer

    from rnnsent.text.tokenize import HTML_LINE_BREAK, KERAS_FILTERS

    parts = part_logits(run, reviews)
    marks = "".join(c for c in KERAS_FILTERS if not c.isspace())
    spaced = str.maketrans({c: f" {c} " for c in marks})

    def words(text: str) -> list[str]:
        return text.lower().replace(HTML_LINE_BREAK, " ").translate(spaced).split()

    tokens = {i: words(reviews.texts[i]) for i in reviews.kept}
    frequent = best_words(tokens, reviews.kept)

    def grams(text: str) -> list[str]:
        return word_ngrams([w if w in frequent else "<oov>" for w in words(text)][-1000:])

    vectorizer = CountVectorizer(analyzer=grams, binary=True)
    train = vectorizer.fit_transform([reviews.texts[i] for i in reviews.kept])
    validation = vectorizer.transform([reviews.texts[i] for i in reviews.held])
    test = vectorizer.transform(reviews.test_texts)
    recurrent = (parts["validation_recurrent"], parts["test_recurrent"])
    for inverse_l2 in (0.3, 1.0):
        score = nb_logistic_regression(train, reviews.labels[reviews.kept].astype(float), np.ones(len(reviews.kept)),
                                       inverse_l2)
        blend_report(f"punctuation as words, 20,000 words, C {inverse_l2:g} ({train.shape[1]:,} n-grams)", recurrent,
                     (score(validation), score(test)), reviews)


def probe_refit_all(run: Path, reviews: Reviews) -> None:
    """The regression refitted on all 25,000 training reviews (validation ones too) after the blend
    is fitted: the blend's weights from the regression of the kept reviews, applied to the refitted
    one's test logits. Only test can judge it (validation is then in the fit)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from rnnsent.text.tokenize import tokenize

    parts = part_logits(run, reviews)
    frequent = best_words({i: tokenize(reviews.texts[i]) for i in reviews.kept}, reviews.kept)

    def grams(text: str) -> list[str]:
        return word_ngrams([w if w in frequent else "<oov>" for w in tokenize(text)][-1000:])

    validation_labels = reviews.labels[reviews.held]
    for rows, name in ((reviews.kept, "the kept reviews"), (np.arange(len(reviews.texts)), "all 25,000")):
        vectorizer = CountVectorizer(analyzer=grams, binary=True)
        train = vectorizer.fit_transform([reviews.texts[i] for i in rows])
        score = nb_logistic_regression(train, reviews.labels[rows].astype(float), np.ones(len(rows)))
        test = score(vectorizer.transform(reviews.test_texts))
        if name == "the kept reviews":
            validation = score(vectorizer.transform([reviews.texts[i] for i in reviews.held]))
            blend = LogisticRegression(C=1e4).fit(np.stack([parts["validation_recurrent"], validation], 1),
                                                  validation_labels)
        blended = blend.decision_function(np.stack([parts["test_recurrent"], test], 1))
        print(f"regression on {name}: n-grams test {accuracy(test, reviews.test_labels):.4f}, "
              f"blend test {accuracy(blended, reviews.test_labels):.4f}", flush=True)


def probe_rating_third_part(run: Path, data: str) -> None:
    """Star ratings (``RUN`` from ``rnnsent train --labels rating --preset best``): the run's two
    parts blended by a multinomial regression over their log-probabilities, then with a third
    part, TF-IDF 1-2-grams and a multinomial logistic regression (the peer of benchmarks/ratings.py)
    fitted on the same training reviews. Validation by 10-fold cross-validation within the
    validation split; test fitted on the whole validation split."""
    import json

    from scipy.special import log_softmax
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from rnnsent.artifact.directory import load_artifact
    from rnnsent.config import DataConfig
    from rnnsent.data.sources import read_corpus
    from rnnsent.data.splits import grouped_held_out_split
    from rnnsent.model.scoring import predict_part_logits
    from rnnsent.text.tokenize import tokenize

    corpus = read_corpus(Path(data), data=DataConfig(labels="rating"))
    names = json.loads((run / "labels.json").read_text())["names"]
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[str(label)] for label in corpus.train.labels])
    test_labels = np.array([index[str(label)] for label in corpus.test.labels])
    stars = np.array([int(name) for name in names])
    groups = np.unique(corpus.train.groups, return_inverse=True)[1]
    kept, held = grouped_held_out_split(groups, 0.1)
    cache = run / "probe-parts.npz"
    if cache.exists():
        parts = dict(np.load(cache))
    else:
        artifact = load_artifact(run)
        parts = {}
        for split, texts in (("validation", [corpus.train.texts[i] for i in held]), ("test", corpus.test.texts)):
            for name, logits in predict_part_logits(artifact.model, *artifact.encoder.encode_batch(texts)).items():
                parts[f"{split}_{name}"] = logits
        np.savez(cache, **parts)

    def report(name: str, chosen: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        inputs = [np.concatenate([log_softmax(v[i], axis=1) for v in chosen.values()], 1) for i in (0, 1)]
        for c in (0.1, 1.0):
            blend = LogisticRegression(C=c, max_iter=2000)
            folds = cross_val_predict(blend, inputs[0], labels[held], cv=10, method="predict_proba")
            predicted = blend.fit(inputs[0], labels[held]).predict_proba(inputs[1]).argmax(1)
            each = ", ".join(f"{part} {np.mean(v[0].argmax(1) == labels[held]):.4f} / {np.mean(v[1].argmax(1) == test_labels):.4f}"
                             for part, v in chosen.items())
            print(f"{name}, blend C {c:g}: (validation / test) {each} | blend validation "
                  f"{np.mean(folds.argmax(1) == labels[held]):.4f} (MAE {np.mean(abs(stars[folds.argmax(1)] - stars[labels[held]])):.3f}), "
                  f"test {np.mean(predicted == test_labels):.4f} (MAE {np.mean(abs(stars[predicted] - stars[test_labels])):.3f})",
                  flush=True)

    print(f"the run as saved: validation {np.mean(parts['validation_model'].argmax(1) == labels[held]):.4f}, "
          f"test {np.mean(parts['test_model'].argmax(1) == test_labels):.4f}", flush=True)
    base = {"GRU": (parts["validation_recurrent"], parts["test_recurrent"]),
            "n-grams": (parts["validation_ngrams"], parts["test_ngrams"])}
    report("two parts", base)
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None, ngram_range=(1, 2),
                                 sublinear_tf=True, min_df=2)
    train = vectorizer.fit_transform([corpus.train.texts[i] for i in kept])
    validation = vectorizer.transform([corpus.train.texts[i] for i in held])
    test = vectorizer.transform(corpus.test.texts)
    for c in (3.0, 10.0):
        regression = LogisticRegression(C=c, max_iter=1000).fit(train, labels[kept])
        third = (regression.decision_function(validation), regression.decision_function(test))
        report(f"+ TF-IDF regression C {c:g} ({time.perf_counter() - started:.0f} s)", {**base, "TF-IDF": third})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["ngram-inputs", "cotrain", "averaging", "refine", "third-part", "refit-all", "rating-third-part",
                                          "punctuation"])
    parser.add_argument("run", nargs="?", type=Path, help="a best model directory with its checkpoint/")
    parser.add_argument("--data", default=os.environ.get("RNNSENT_DATA", "../shared/data/aclImdb.tar.gz"))
    parser.add_argument("--teacher", choices=["blend", "ngrams"], default="blend")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.probe != "ngram-inputs" and args.run is None:
        parser.error(f"{args.probe} needs a best model directory: rnnsent train --preset best --out RUN")
    import torch

    torch.set_num_threads(args.threads)
    if args.probe == "rating-third-part":
        probe_rating_third_part(args.run, args.data)
        return
    reviews = read_reviews(args.data)
    if args.probe == "ngram-inputs":
        probe_ngram_inputs(reviews)
    elif args.probe == "cotrain":
        probe_cotrain(args.run, reviews)
    elif args.probe == "averaging":
        probe_averaging(args.run, reviews)
    elif args.probe == "third-part":
        probe_third_part(args.run, reviews)
    elif args.probe == "punctuation":
        probe_punctuation(args.run, reviews)
    elif args.probe == "refit-all":
        probe_refit_all(args.run, reviews)
    else:
        probe_refine(args.run, reviews, args.teacher, args.epochs, args.lr)


if __name__ == "__main__":
    main()
