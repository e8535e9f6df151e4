"""Tokenising for BM25 (French and English) and telling the user's language."""

from __future__ import annotations

import re
import unicodedata

_WORD_RE = re.compile(r"\w+", re.UNICODE)

STOPWORDS_FR = frozenset(
    """a au aux avec ce ces dans de des du elle en et eux il ils je la le les leur lui ma mais me meme
    mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu
    un une vos votre vous c d j l m n s t y ete etre avoir est sont suis es etes etait ont a as avez
    quel quelle quels quelles quoi comment pourquoi quand combien dont ou cela ceci cet cette tout tous
    toute toutes plus moins tres sans sous entre selon si donc alors ainsi aussi peut peuvent doit
    doivent fait faire dit dire""".split()
)
STOPWORDS_EN = frozenset(
    """a an the and or of to in on at by for with from is are was were be been being it its this that
    these those what which who whom whose how why when where do does did can could should would may
    might must shall will has have had not no yes as if than then so such into about over under i you
    he she we they me him her us them my your our their tell please""".split()
)
STOPWORDS = STOPWORDS_FR | STOPWORDS_EN
# a word matches another with the same first letters ("photocopier" / "photocopie"): the
# assistant's coverage and answer checks
STEM_LETTERS = 5


def fold(text: str) -> str:
    """Lower case without accents: 'Liberté' -> 'liberte'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Content words, accent-folded, with a light plural strip ('droits' -> 'droit')."""
    out = []
    for word in _WORD_RE.findall(fold(text)):
        if word in STOPWORDS or len(word) < 2:
            continue
        if len(word) > 3 and word[-1] in "sx" and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def language_of(text: str) -> str:
    """'fr' or 'en', by counting function words (defaults to French: the ministry's language)."""
    words = _WORD_RE.findall(fold(text))
    fr = sum(w in STOPWORDS_FR for w in words) + sum(ch in "éèêàùçôî" for ch in text.lower())
    en = sum(w in STOPWORDS_EN and w not in STOPWORDS_FR for w in words)
    return "en" if en > fr else "fr"
