"""Text helpers shared by the readers: repairing released text, tokens, contractions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from datamodules.utterances import SPECIAL_TOKENS, Word

# Typographic quotes and dashes folded to ASCII so "don’t" and "don't" are one token.
_ASCII = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)
_C1 = re.compile("[\u0080-\u009f]")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def repair(text: str) -> str:
    """Replace C1 control characters (cp1252 bytes decoded as latin-1, e.g. "\\x92") by their cp1252 meaning."""

    def fix(m: re.Match[str]) -> str:
        try:
            return m.group(0).encode("latin-1").decode("cp1252")
        except UnicodeDecodeError:
            return " "

    return _C1.sub(fix, text)


def to_ascii(text: str) -> str:
    """Curly quotes, dashes and ellipses as ASCII."""
    return repair(text).translate(_ASCII)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of a transcript; punctuation dropped, apostrophes kept inside words."""
    return _TOKEN.findall(to_ascii(text).lower())


def expand_contractions(words: Sequence[Word]) -> list[Word]:
    """`i'm` -> `i`, `am`; each expanded word keeps the span of the token it came from."""
    import contractions

    out: list[Word] = []
    for w in words:
        if "'" not in w.text or w.text in SPECIAL_TOKENS:
            out.append(w)
            continue
        expanded = contractions.fix(w.text, slang=False).lower().split()
        out.extend(Word(t, w.start, w.end) for t in expanded or [w.text])
    return out


def words_without_spans(text: str, expand: bool = True) -> list[Word]:
    """Transcript tokens as words with unknown (None) spans."""
    words = [Word(t) for t in tokenize(text)]
    return expand_contractions(words) if expand else words
