"""A small synthetic part-of-speech-tagged corpus (notes 2.1.3.4: HMMs for POS tagging).

Sentences come from a seeded HMM-like grammar over Spanish words: a Markov chain over tags
(DET, NOUN, ADJ, VERB, ...) that ends at the full stop, each tag emitting a word from its
own lexicon with Zipf-like frequencies. Several words belong to more than one tag
(``vino``: NOUN "wine" / VERB "came"; ``canto``, ``bajo``, ``como``, ``sobre``, ``para``,
``cocina``, ``nada``), so tagging needs the context a Viterbi path brings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyrobn.device import device as default_device
from pyrobn.errors import ConfigurationError, UnknownVariableError
from pyrobn.validation import check_allocation, check_int

__all__ = ["TAGS", "TaggedCorpus", "tag_grammar", "tagged_corpus"]

#: tags of the grammar, in index order
TAGS = ["DET", "NOUN", "ADJ", "VERB", "ADV", "PREP", "PRON", "CONJ", "PUNCT"]

#: p(first tag)
_START = {"DET": 0.55, "PRON": 0.25, "NOUN": 0.1, "ADV": 0.1}

#: p(next tag | tag); PUNCT ends the sentence
_TRANSITIONS = {
    "DET": {"NOUN": 0.8, "ADJ": 0.2},
    "NOUN": {"ADJ": 0.25, "VERB": 0.35, "PREP": 0.15, "CONJ": 0.1, "PUNCT": 0.15},
    "ADJ": {"NOUN": 0.3, "VERB": 0.25, "CONJ": 0.15, "PUNCT": 0.3},
    "VERB": {"DET": 0.35, "ADV": 0.2, "PREP": 0.2, "PRON": 0.05, "PUNCT": 0.2},
    "ADV": {"VERB": 0.4, "ADJ": 0.3, "PUNCT": 0.3},
    "PREP": {"DET": 0.7, "NOUN": 0.2, "PRON": 0.1},
    "PRON": {"VERB": 0.85, "ADV": 0.15},
    "CONJ": {"DET": 0.5, "PRON": 0.3, "VERB": 0.2},
}

#: each tag's lexicon, most frequent first (ambiguous words appear under several tags)
_LEXICON = {
    "DET": ["el", "la", "un", "una", "los", "las", "este", "esa"],
    "NOUN": [
        "perro",
        "gato",
        "casa",
        "vino",
        "libro",
        "canto",
        "niña",
        "camino",
        "ciudad",
        "cocina",
        "río",
        "luz",
        "mesa",
        "sobre",
        "árbol",
        "pan",
        "nada",
    ],
    "ADJ": ["grande", "pequeño", "rojo", "bajo", "viejo", "nuevo", "claro", "feliz"],
    "VERB": [
        "come",
        "ve",
        "vino",
        "canto",
        "lee",
        "corre",
        "cocina",
        "bajo",
        "quiere",
        "tiene",
        "como",
        "nada",
        "para",
        "escribe",
    ],
    "ADV": ["muy", "siempre", "bajo", "nunca", "hoy", "como", "bien"],
    "PREP": ["de", "en", "con", "sobre", "para", "bajo", "sin"],
    "PRON": ["ella", "él", "yo", "nosotros", "nada"],
    "CONJ": ["y", "pero", "como", "o"],
    "PUNCT": ["."],
}


@dataclass
class TaggedCorpus:
    """Tagged sentences split into train and held-out parts, as strings and as tensors.

    ``train_x``/``test_x`` (N, T) hold word indices (0 on padding), ``train_y``/``test_y``
    (N, T) tag indices (-1 on padding), ``*_lengths`` (N,) the sentence lengths.
    """

    train_words: list[list[str]]
    train_tags: list[list[str]]
    test_words: list[list[str]]
    test_tags: list[list[str]]
    vocabulary: list[str]
    tagset: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    train_lengths: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_lengths: torch.Tensor

    def encode(self, sentences: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word indices (N, T) padded with 0, and the lengths (N,); unknown words raise."""
        if (
            isinstance(sentences, str)
            or not isinstance(sentences, list | tuple)
            or not sentences
            or not all(
                isinstance(s, list | tuple) and s and all(isinstance(w, str) for w in s)
                for s in sentences
            )
        ):
            raise ConfigurationError("sentences must be a non-empty list of non-empty lists of str")
        index = {w: i for i, w in enumerate(self.vocabulary)}
        return _pad(sentences, index, 0, self.train_x.device, "word")

    def decode_tags(self, tags: torch.Tensor, lengths: torch.Tensor) -> list[list[str]]:
        """Tag indices (N, T) back to lists of tag names (padding dropped)."""
        return [
            [self.tagset[int(t)] for t in row[: int(n)]]
            for row, n in zip(tags.cpu(), lengths.cpu())
        ]


def _pad(
    sentences: list[list[str]],
    index: dict[str, int],
    fill: int,
    device: torch.device,
    what: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
    out = torch.full((len(sentences), int(lengths.max())), fill, dtype=torch.long)
    for i, sentence in enumerate(sentences):
        for t, token in enumerate(sentence):
            if token not in index:
                raise UnknownVariableError(
                    f"sentence {i}, position {t}: the {what} {token!r} is not in the vocabulary"
                )
            out[i, t] = index[token]
    return out.to(device), lengths.to(device)


def tag_grammar() -> tuple[list[str], list[str], dict[str, torch.Tensor]]:
    """The generating HMM as tables: (tags, vocabulary, {"init", "trans", "emission"}).

    The emission rows are Zipf-like over each tag's lexicon: p(word_r | tag) ∝ 1 / (r + 1).
    """
    vocabulary = sorted({w for words in _LEXICON.values() for w in words})
    word_index = {w: i for i, w in enumerate(vocabulary)}
    k = len(TAGS)
    init = torch.zeros(k, dtype=torch.float64)
    for tag, p in _START.items():
        init[TAGS.index(tag)] = p
    trans = torch.zeros(k, k, dtype=torch.float64)
    for tag, row in _TRANSITIONS.items():
        for nxt, p in row.items():
            trans[TAGS.index(tag), TAGS.index(nxt)] = p
    trans[TAGS.index("PUNCT"), TAGS.index("PUNCT")] = 1.0  # absorbing end
    emission = torch.zeros(k, len(vocabulary), dtype=torch.float64)
    for tag, words in _LEXICON.items():
        weights = torch.tensor([1.0 / (r + 1) for r in range(len(words))], dtype=torch.float64)
        emission[TAGS.index(tag), [word_index[w] for w in words]] = weights / weights.sum()
    return list(TAGS), vocabulary, {"init": init, "trans": trans, "emission": emission}


def tagged_corpus(
    n_sentences: int = 2000,
    seed: int = 0,
    *,
    held_out: float = 0.2,
    max_length: int = 40,
    device: torch.device | str | None = None,
) -> TaggedCorpus:
    """Sample ``n_sentences`` tagged sentences from the grammar and split them.

    Each sentence: tag_1 ~ start, tag_{t+1} ~ p(. | tag_t) until PUNCT (or ``max_length``
    words, then a full stop), word_t ~ p(. | tag_t). The last ``held_out`` fraction is the
    held-out part. Seeded: one ``seed`` gives one corpus.

    >>> corpus = tagged_corpus(500, seed=0)
    >>> corpus.train_words[0][:4], corpus.train_tags[0][:4]
    (['nosotros', 'canto', 'muy', 'grande'], ['PRON', 'VERB', 'ADV', 'ADJ'])
    """
    n_sentences = check_int(n_sentences, "n_sentences", low=2)
    seed = check_int(seed, "seed", low=0)
    max_length = check_int(max_length, "max_length", low=2)
    _check_fraction(held_out, "held_out", low_open=True)
    check_allocation(
        2.0 * n_sentences * max_length, torch.int64, f"a corpus of {n_sentences} sentences"
    )
    tags, vocabulary, tables = tag_grammar()
    g = torch.Generator().manual_seed(int(seed))
    punct = tags.index("PUNCT")
    words_out: list[list[str]] = []
    tags_out: list[list[str]] = []
    for _ in range(n_sentences):
        tag = int(torch.multinomial(tables["init"], 1, generator=g))
        sentence_tags = [tag]
        while tag != punct:
            tag = int(torch.multinomial(tables["trans"][tag], 1, generator=g))
            if len(sentence_tags) == max_length - 1:
                tag = punct
            sentence_tags.append(tag)
        emitted = torch.multinomial(tables["emission"][sentence_tags], 1, generator=g)
        words_out.append([vocabulary[int(w)] for w in emitted[:, 0]])
        tags_out.append([tags[t] for t in sentence_tags])
    n_test = max(1, round(held_out * n_sentences))
    n_train = n_sentences - n_test
    target = torch.device(device) if device is not None else default_device()
    word_index = {w: i for i, w in enumerate(vocabulary)}
    tag_index = {t: i for i, t in enumerate(tags)}
    train_x, train_lengths = _pad(words_out[:n_train], word_index, 0, target, "word")
    test_x, test_lengths = _pad(words_out[n_train:], word_index, 0, target, "word")
    train_y, _ = _pad(tags_out[:n_train], tag_index, -1, target, "tag")
    test_y, _ = _pad(tags_out[n_train:], tag_index, -1, target, "tag")
    return TaggedCorpus(
        train_words=words_out[:n_train],
        train_tags=tags_out[:n_train],
        test_words=words_out[n_train:],
        test_tags=tags_out[n_train:],
        vocabulary=vocabulary,
        tagset=tags,
        train_x=train_x,
        train_y=train_y,
        train_lengths=train_lengths,
        test_x=test_x,
        test_y=test_y,
        test_lengths=test_lengths,
    )


def _check_fraction(value: object, name: str, *, low_open: bool) -> float:
    """``value`` as a float in (0, 1) (``low_open``) or [0, 1), else ConfigurationError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not ok:
        bounds = "(0, 1)" if low_open else "[0, 1)"
        raise ConfigurationError(f"{name} must lie in {bounds}, got {value!r}")
    return float(value)
