"""Terminal rendering of an explanation: words coloured by influence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnsent.inference.explain import Explanation
from rnnsent.labels import SENTIMENT

if TYPE_CHECKING:
    pass


# ----------------------------------------------------------------------------- terminal text

# ANSI styles by strength: bold bright, normal, dim. Green pushes towards the class explained, red away from it.
_TOWARD_STYLES = ("1;92", "32", "2;32")
_AWAY_STYLES = ("1;91", "31", "2;31")


def _style(value: float | None, largest: float) -> str:
    """The ANSI style of a word whose influence is ``value``; "" for a neutral word."""
    if value is None or largest <= 0 or abs(value) < 0.01:
        return ""
    share = abs(value) / largest
    strength = 0 if share >= 0.5 else 1 if share >= 0.2 else 2
    return (_TOWARD_STYLES if value > 0 else _AWAY_STYLES)[strength]


def _verdict(e: Explanation) -> str:
    """The prediction as ``rnnsent predict`` prints it: the label (multi-label: those over their
    thresholds, ``-`` for none) and a probability (binary: of the class the logit scores; else
    of the most probable label)."""
    if e.task == "binary":
        scored = e.probability if e.default_target else 1.0 - e.probability
        return f"{e.label}  {scored:.4f}"
    shown = (",".join(e.labels or []) or "-") if e.task == "multilabel" else e.label
    return f"{shown}  {e.probabilities[e.label]:.4f}"


def render_text(explanation: Explanation, color: bool) -> str:
    """A human-readable explanation: verdict, the review coloured by influence, a per-token table.

    Influence and the trajectory are about one class, the explanation's target, named in the
    text; with ``color`` false (output not a terminal) the same content comes without escape codes.
    """
    e = explanation
    # IMDB's sentiment models read reviews; any other model, texts.
    noun = "review" if tuple(e.names) == SENTIMENT else "text"
    words = sum(1 for is_start in e.special if not is_start)
    more = "1 more word was" if e.dropped_words == 1 else f"{e.dropped_words} more words were"
    cut = f"; {more} cut by maxlen" if e.truncated else ""
    lines = [f"{_verdict(e)}  ({words} words read{cut})"]
    largest = max((abs(v) for v in e.influence if v is not None), default=0.0)
    pieces = []
    for token, value, oov, is_start in zip(e.tokens, e.influence, e.oov, e.special):
        if is_start:
            continue
        style = _style(value, largest) if color else ""
        if color and oov:
            style = f"{style};4" if style else "4"
        pieces.append(f"\x1b[{style}m{token}\x1b[0m" if style else token)
    lines.append(f"{noun}: " + (" ".join(pieces) if pieces else "(no words)"))
    if not e.default_target:
        lines.append(f"explaining: {e.target} (probability {e.probability:.4f})")
    if e.probabilities is not None:
        lines.append("probabilities: " + ", ".join(f"{name} {value:.4f}" for name, value in e.probabilities.items()))
    if color:
        if e.task == "binary":
            away = "towards " + next(name for name in e.names if name != e.target)
        else:
            away = f"away from {e.target}"
        lines.append(f"(green: pushes towards {e.target}, red: {away}, brighter: stronger; "
                     "underlined: not in the vocabulary)")
    header = f"{'#':>4}  {'token':<18}{'p after':>8}{'influence':>11}"
    if e.integrated_gradients is not None:
        header += f"{'int. grad':>11}"
    lines += ["", header]
    for index, token in enumerate(e.tokens):
        value = e.influence[index]
        shown = token if len(token) <= 17 else token[:16] + "…"
        if e.oov[index]:
            shown = (shown + " (oov)") if len(shown) <= 11 else shown[:10] + "… (oov)"
        influence_text = "" if value is None else f"{value:+.4f}"
        style = _style(value, largest) if color else ""
        if style:
            influence_text = f"\x1b[{style}m{influence_text:>11}\x1b[0m"
        else:
            influence_text = f"{influence_text:>11}"
        line = f"{index:>4}  {shown:<18}{e.trajectory[index]:>8.4f}{influence_text}"
        if e.integrated_gradients is not None:
            line += "" if e.special[index] else f"{e.integrated_gradients[index]:>+11.4f}"
        lines.append(line)
    lines.append(f"p after: probability of {e.target} after reading the token; influence: "
                 f"p({noun}) - p({noun} without the word)")
    return "\n".join(lines)
