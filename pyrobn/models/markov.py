"""Markov chains of order k over tokens: n-gram text models (notes 2.1.3.3, eq. 11).

Order k means p(x_t | x_1..x_{t-1}) = p(x_t | x_{t-k}..x_{t-1}): k = 0 is the unigram
(bag of words), k = 1 the bigram (eq. 11's first-order chain), k = 2 the trigram; the DAG
is Figura 4 (:meth:`MarkovChain.graph`). Each row p(. | h) of the homogeneous transition
kernel has a Dirichlet(α) prior, α = ``concentration`` (the one meaning of the word in
pyrobn: a MAP estimate would add α − 1 pseudo-counts). The chain reports the posterior
mean of each row, which is also the posterior predictive of the next token,

    p(w | h) = (N(h, w) + α) / (N(h) + α |V|)          (add-α smoothing),

with |V| the outcomes a token can take. It adds α pseudo-counts, not α − 1: it equals the
MAP row under the prior Dirichlet(α + 1). Counting is vectorised: every (k+1)-gram of token
ids is hashed to one integer h * |V| + w and counted with ``torch.unique``, so the table is
sparse (only the n-grams seen) and any order fits in memory.

Each sequence is padded with k start symbols ``<s>`` and one end symbol ``</s>``: the
start symbols give the initial distribution p(x_1..x_k) of eq. 11 as conditionals, and
the end symbol makes p a distribution over sequences of every length.
"""

from __future__ import annotations

import math
import numbers
import re
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch

from pyrobn.device import device as default_device
from pyrobn.errors import ConfigurationError, OutOfSupportError, ShapeError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.infer.result import FitResult
from pyrobn.models.base import DataSizedBuffers, PyrobnModule
from pyrobn.random import generator
from pyrobn.validation import (
    check_allocation,
    check_int,
    check_integers_in_range,
    check_positive,
    check_shape,
)

__all__ = ["BOS", "EOS", "UNK", "MarkovChain", "Tokenizer", "tokenize"]

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Tokenizer:
    """Split text into characters or words (words and single punctuation marks).

    >>> Tokenizer("word").tokenize("Hola, mundo.")
    ['hola', ',', 'mundo', '.']
    >>> Tokenizer("char").detokenize(["a", "b"])
    'ab'
    """

    def __init__(self, level: Literal["char", "word"] = "char", lower: bool = True) -> None:
        if not isinstance(level, str) or level not in ("char", "word"):
            raise ConfigurationError(f"level must be 'char' or 'word', got {level!r}")
        if not isinstance(lower, bool):
            raise ConfigurationError(f"lower must be True or False, got {lower!r}")
        self.level = level
        self.lower = lower

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (whitespace runs become one space at character level)."""
        if not isinstance(text, str):
            raise ConfigurationError(f"tokenize expects a str, got {type(text).__name__}")
        if self.lower:
            text = text.lower()
        if self.level == "char":
            return list(" ".join(text.split()))
        return _WORD.findall(text)

    def detokenize(self, tokens: Iterable[str]) -> str:
        """Join tokens back into text (words with spaces, none before punctuation)."""
        tokens = [t for t in tokens if t not in (BOS, EOS)]
        if self.level == "char":
            return "".join(tokens)
        text = re.sub(r" ([^\w\s¿¡(\[])", r"\1", " ".join(tokens))  # no space before , . ? )
        return re.sub(r"([¿¡(\[]) ", r"\1", text)  # nor after ¿ ¡ ( [

    def __repr__(self) -> str:
        return f"Tokenizer({self.level!r}, lower={self.lower})"


def tokenize(text: str, level: Literal["char", "word"] = "char", lower: bool = True) -> list[str]:
    """Shortcut for ``Tokenizer(level, lower).tokenize(text)``."""
    return Tokenizer(level, lower).tokenize(text)


Corpus = str | Sequence[str] | Sequence[Sequence[str]]


class MarkovChain(DataSizedBuffers, PyrobnModule):
    """A homogeneous Markov chain of order k over a token vocabulary (notes eq. 11, Figura 4).

    Args:
        order: k >= 0, the number of previous tokens each token depends on.
        concentration: α > 0 of the Dirichlet(α) prior on every row of the transition
            kernel. The chain predicts with the posterior mean (N(h, w) + α) / (N(h) + α|V|),
            add-α smoothing (see the module docstring: the MAP row under Dirichlet(α + 1)).
        alpha: the deprecated name of ``concentration``.
        level: ``"char"`` or ``"word"`` for the built-in :class:`Tokenizer` (used when
            text is given as strings).
        lower: lower-case text before tokenising.
        unknown: ``"error"`` (a token outside the vocabulary raises
            :class:`~pyrobn.errors.OutOfSupportError`) or ``"unk"`` (it becomes ``<unk>``;
            training tokens seen fewer than ``min_count`` times become ``<unk>`` too, so
            that ``<unk>`` gets counts).
        min_count: see ``unknown="unk"``.

    Example:
        >>> corpus = ["the cat sat", "the dog sat"]
        >>> mc = MarkovChain(order=2, concentration=0.1, level="word").fit(corpus)
        >>> round(mc.perplexity(["the cat sat"]), 4)
        1.4977
        >>> mc.fit_result_.method, mc.n_parameters       # 4 words: 4 * (1 + 4 + 16)
        ('counts', 84)
        >>> mc.generate("the", n=20, temperature=0.8, seed=0)
        'the cat sat'
    """

    max_plate_nesting = 1

    def __init__(
        self,
        order: int = 1,
        concentration: float = 1.0,
        *,
        level: Literal["char", "word"] = "char",
        lower: bool = True,
        unknown: Literal["error", "unk"] = "error",
        min_count: int = 1,
        alpha: float | None = None,
    ) -> None:
        if alpha is not None:
            warnings.warn(
                "MarkovChain(alpha=) is deprecated; use concentration= (the same Dirichlet α)",
                DeprecationWarning,
                stacklevel=2,
            )
            concentration = alpha
        order = check_int(order, "order", low=0)
        check_positive(concentration, "concentration")
        if not isinstance(unknown, str) or unknown not in ("error", "unk"):
            raise ConfigurationError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        min_count = check_int(min_count, "min_count")
        tokenizer = Tokenizer(level, lower)
        super().__init__(
            order=order,
            concentration=float(concentration),
            level=level,
            lower=lower,
            unknown=unknown,
            min_count=min_count,
        )
        self.order = order
        self.concentration = float(concentration)
        self.tokenizer = tokenizer
        self.unknown = unknown
        self.min_count = min_count
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        dev = default_device()
        # sorted hashed n-gram keys h * V + w and their counts; sorted contexts h and counts
        self.register_buffer("ngram_keys", torch.empty(0, dtype=torch.long, device=dev))
        self.register_buffer("ngram_counts", torch.empty(0, dtype=torch.float64, device=dev))
        self.register_buffer("context_keys", torch.empty(0, dtype=torch.long, device=dev))
        self.register_buffer("context_counts", torch.empty(0, dtype=torch.float64, device=dev))

    @property
    def alpha(self) -> float:
        """Deprecated: the ``concentration``."""
        warnings.warn(
            "MarkovChain.alpha is deprecated; use concentration", DeprecationWarning, stacklevel=2
        )
        return self.concentration

    # ------------------------------------------------------------- vocabulary
    @property
    def fitted(self) -> bool:
        return bool(self.vocab)

    @property
    def vocab_size(self) -> int:
        """|V|: every symbol, including ``<s>``, ``</s>`` (and ``<unk>``)."""
        return len(self.vocab)

    @property
    def n_outcomes(self) -> int:
        """Symbols a token can be: all but ``<s>`` (which only pads contexts)."""
        return len(self.vocab) - 1

    def get_extra_state(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        vocab = state.get("vocab") if isinstance(state, dict) else None
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ConfigurationError("the saved vocabulary is not a list of str")
        self._set_vocab(list(vocab))

    def _check_state(self) -> None:
        """A loaded chain is consistent: unique symbols with the special ones first, sorted
        n-gram and context keys within the vocabulary's range, positive counts that agree."""
        super()._check_state()
        V = self.vocab_size
        if not self.fitted:
            if any(b.numel() for b in self.buffers()):
                raise ConfigurationError("counts without a vocabulary")
            return
        specials = [BOS, EOS] + ([UNK] if self.unknown == "unk" else [])
        if self.vocab[: len(specials)] != specials or len(set(self.vocab)) != V:
            raise ConfigurationError("the vocabulary is not a pyrobn MarkovChain vocabulary")
        keys, counts = self.ngram_keys, self.ngram_counts
        contexts, context_counts = self.context_keys, self.context_counts
        if keys.shape != counts.shape or contexts.shape != context_counts.shape:
            raise ShapeError("n-gram keys and counts differ in length")
        for name, tensor in (("ngram_counts", counts), ("context_counts", context_counts)):
            if not bool(torch.isfinite(tensor).all()) or bool((tensor <= 0).any()):
                raise ConfigurationError(f"{name} must be positive and finite")
        if keys.numel():
            if bool((keys[1:] <= keys[:-1]).any()) or int(keys[0]) < 0:
                raise ConfigurationError("ngram_keys must be sorted, distinct and >= 0")
            if (self.order + 1) * math.log(V) < 62 * math.log(2) and int(keys[-1]) >= V ** (
                self.order + 1
            ):
                raise ConfigurationError("ngram_keys hold an n-gram outside the vocabulary")
        expected = torch.unique(keys // V) if keys.numel() else contexts
        if not torch.equal(expected, contexts):
            raise ConfigurationError("context_keys do not match the n-gram keys")
        totals = torch.zeros_like(context_counts).index_add_(
            0, torch.searchsorted(contexts, keys // V), counts
        )
        if not torch.allclose(totals, context_counts, rtol=1e-12, atol=0):
            raise ConfigurationError("context_counts are not the sums of the n-gram counts")

    def _set_vocab(self, vocab: list[str]) -> None:
        self.vocab = vocab
        self.index = {t: i for i, t in enumerate(vocab)}

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigurationError("this MarkovChain is not fitted yet: call fit(corpus) first")

    def _sequences(self, corpus: Corpus, name: str = "corpus") -> list[list[str]]:
        """A corpus as token lists: a str is one text, a list of str several, lists of tokens
        are taken as they are."""
        if isinstance(corpus, str):
            return [self.tokenizer.tokenize(corpus)]
        if isinstance(corpus, torch.Tensor | bytes) or not isinstance(corpus, Sequence):
            raise ConfigurationError(
                f"{name} must be a str, a list of str or a list of token lists, "
                f"got {type(corpus).__name__}"
            )
        out = []
        for i, item in enumerate(corpus):
            if isinstance(item, str):
                out.append(self.tokenizer.tokenize(item))
            elif isinstance(item, Sequence) and all(isinstance(t, str) for t in item):
                out.append(list(item))
            else:
                raise ConfigurationError(
                    f"{name}[{i}] must be a str or a list of str tokens, got {type(item).__name__}"
                )
        if not out:
            raise ShapeError(f"{name} is empty")
        return out

    def encode(self, tokens: Sequence[str], *, where: str = "") -> list[int]:
        """Token ids; unknown tokens raise (or map to ``<unk>`` when ``unknown="unk"``)."""
        self._require_fitted()
        unk = self.index.get(UNK)
        ids = []
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise ConfigurationError(
                    f"tokens must be str; position {position}{where} holds a {type(token).__name__}"
                )
            if token in (BOS, EOS):
                raise OutOfSupportError(
                    f"the reserved symbol {token!r} appears at position {position}{where}"
                )
            i = self.index.get(token, unk)
            if i is None:
                shown = token if len(token) < 40 else token[:37] + "..."
                raise OutOfSupportError(
                    f"symbol {shown!r} at position {position}{where} is not in the vocabulary "
                    f"of {self.vocab_size} symbols (use MarkovChain(unknown='unk') to map "
                    "unknown symbols to <unk>)"
                )
            ids.append(i)
        return ids

    def _padded_ids(self, sequences: list[list[str]], device: torch.device) -> torch.Tensor:
        """All sequences, each padded with k ``<s>`` and one ``</s>``, concatenated."""
        k, bos, eos = self.order, self.index[BOS], self.index[EOS]
        ids: list[int] = []
        for s, tokens in enumerate(sequences):
            ids.extend([bos] * k + self.encode(tokens, where=f" of sequence {s}") + [eos])
        return torch.tensor(ids, dtype=torch.long, device=device)

    def _ngram_keys(self, sequences: list[list[str]], device: torch.device) -> torch.Tensor:
        """Hash of every (k+1)-gram: h * V + w, h = sum_j x_{t-k+j} V^(k-1-j) (the context).

        Windows that would span two sequences are dropped; each predicted token is one
        row: the k padding symbols of each sequence are never predicted.
        """
        k, V = self.order, self.vocab_size
        ids = self._padded_ids(sequences, device)
        lengths = torch.tensor([len(s) + 1 for s in sequences], device=device)  # + </s>
        starts = torch.cumsum(lengths + k, 0) - lengths  # first predicted position
        # positions of predicted tokens: for each sequence, starts .. starts + length - 1
        seq_of = torch.repeat_interleave(torch.arange(len(sequences), device=device), lengths)
        offset = torch.arange(int(lengths.sum()), device=device) - torch.repeat_interleave(
            torch.cumsum(lengths, 0) - lengths, lengths
        )
        pos = starts[seq_of] + offset
        key = torch.zeros_like(pos)
        for j in range(k, 0, -1):  # the k context tokens, oldest first (a loop over k only)
            key = key * V + ids[pos - j]
        return key * V + ids[pos]

    # -------------------------------------------------------------- fitting
    def fit(self, corpus: Corpus) -> MarkovChain:
        """Count every (k+1)-gram of the corpus (vectorised) and build the vocabulary;
        returns the chain.

        ``corpus``: a str, a list of str (sequences, tokenised by the tokenizer) or a list
        of token lists. ``fit_result_`` (method ``"counts"``) records the training
        log-likelihood sum_{h, w} N(h, w) log p(w | h) under the fitted (posterior mean)
        table.
        """
        started = time.perf_counter()
        with self._fitting(None):
            self._count(corpus)
            value = float((self.ngram_counts * self._log_prob_keys(self.ngram_keys)).sum())
        result = FitResult("counts", [value], objective_name="log_likelihood")
        return self._set_result(result, started)

    def _count(self, corpus: Corpus) -> None:
        sequences = self._sequences(corpus)
        counts = Counter(t for seq in sequences for t in seq)
        for s, seq in enumerate(sequences):
            for reserved in (BOS, EOS):
                if reserved in counts and reserved in seq:
                    raise OutOfSupportError(
                        f"the reserved symbol {reserved!r} appears at position "
                        f"{seq.index(reserved)} of sequence {s}"
                    )
        specials = [BOS, EOS] + ([UNK] if self.unknown == "unk" else [])
        if self.unknown == "unk":
            rare = {t for t, c in counts.items() if c < self.min_count}
            if rare:
                sequences = [[UNK if t in rare else t for t in seq] for seq in sequences]
            kept = sorted(t for t, c in counts.items() if c >= self.min_count and t != UNK)
        else:
            kept = sorted(counts)
        V, k = len(specials) + len(kept), self.order
        if (k + 1) * math.log2(V) >= 62:
            raise ConfigurationError(
                f"a vocabulary of {V} symbols and order {k} gives {V}^{k + 1} possible n-grams, "
                "too many to hash into int64: lower the order or the vocabulary"
            )
        n_tokens = sum(len(s) + 1 + k for s in sequences)
        check_allocation(8 * n_tokens, torch.int64, f"counting the n-grams of {n_tokens} tokens")
        self._set_vocab(specials + kept)
        dev = self.ngram_keys.device
        keys = self._ngram_keys(sequences, dev)
        self.ngram_keys, ngram_counts = torch.unique(keys, return_counts=True)
        self.ngram_counts = ngram_counts.double()
        self.context_keys, context_index = torch.unique(self.ngram_keys // V, return_inverse=True)
        self.context_counts = torch.zeros(
            self.context_keys.numel(), dtype=torch.float64, device=dev
        ).index_add_(0, context_index, self.ngram_counts)

    # --------------------------------------------------------------- queries
    def _lookup(self, sorted_keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor):  # type: ignore[no-untyped-def]
        """values[key] for each query key, 0 where the key was never counted."""
        if sorted_keys.numel() == 0:
            return torch.zeros(query.shape, dtype=values.dtype, device=query.device)
        pos = torch.searchsorted(sorted_keys, query).clamp_max(sorted_keys.numel() - 1)
        return torch.where(sorted_keys[pos] == query, values[pos], torch.zeros_like(values[pos]))

    def _log_prob_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """log p(w | h) = log (N(h, w) + α) - log (N(h) + α (|V| - 1)) per n-gram key."""
        a = self.concentration
        n_hw = self._lookup(self.ngram_keys, self.ngram_counts, keys)
        n_h = self._lookup(self.context_keys, self.context_counts, keys // self.vocab_size)
        return (n_hw + a).log() - (n_h + a * self.n_outcomes).log()

    def log_prob(self, corpus: Corpus) -> torch.Tensor:
        """log p(x) per sequence = sum_t log p(x_t | x_{t-k}..x_{t-1}) (eq. 11), with the
        ``<s>`` padding and the final ``</s>``; one float64 entry per sequence."""
        self._require_fitted()
        sequences = self._sequences(corpus)
        dev = self.ngram_keys.device
        keys = self._ngram_keys(sequences, dev)
        lengths = torch.tensor([len(s) + 1 for s in sequences], device=dev)
        # each sequence's terms summed in order (index_add_ adds with atomics on CUDA: the
        # same corpus would score differently from call to call in the last bits)
        return torch.segment_reduce(self._log_prob_keys(keys), "sum", lengths=lengths)

    def perplexity(self, corpus: Corpus) -> float:
        """exp(- sum log p / number of predicted tokens), the tokens counting each ``</s>``."""
        sequences = self._sequences(corpus)
        n_tokens = sum(len(s) + 1 for s in sequences)
        return math.exp(-float(self.log_prob(sequences).sum()) / n_tokens)

    def next_token_log_probs(self, context: torch.Tensor) -> torch.Tensor:
        """log p(. | h) over the whole vocabulary for a batch of contexts, shape (B, |V|).

        ``context``: (B, k) token ids, oldest first. ``<s>`` gets probability 0.
        """
        self._require_fitted()
        if (
            not isinstance(context, torch.Tensor)
            or context.is_floating_point()
            or (context.dtype in (torch.bool, torch.complex64, torch.complex128))
        ):
            raise ConfigurationError("context must be an integer tensor of token ids (B, k)")
        check_shape(context, (None, self.order), "context")
        check_integers_in_range(context, 0, self.vocab_size, "context (token ids)")
        V = self.vocab_size
        h = torch.zeros(context.shape[0], dtype=torch.long, device=context.device)
        for j in range(self.order):
            h = h * V + context[:, j]
        keys = h.unsqueeze(1) * V + torch.arange(V, device=context.device)
        log_p = self._log_prob_keys(keys)
        log_p[:, self.index[BOS]] = -math.inf
        return log_p

    def transition_matrix(self) -> torch.Tensor:
        """The dense (|V|^k, |V|) table p(w | h) (rows: context hashes); small models only."""
        self._require_fitted()
        V, k = self.vocab_size, self.order
        check_allocation(
            4.0 * float(V) ** (k + 1), torch.float64, f"the dense ({V}^{k}, {V}) transition table"
        )
        contexts = torch.arange(V**k, device=self.ngram_keys.device)
        digits = [(contexts // V ** (k - 1 - j)) % V for j in range(k)]
        context = torch.stack(digits, 1) if k else contexts.new_zeros(1, 0)
        return self.next_token_log_probs(context).exp()

    def sample(
        self,
        n: int = 1,
        max_length: int = 100,
        *,
        temperature: float = 1.0,
        prompt: str | Sequence[str] = "",
        seed: int | None = None,
    ) -> list[list[str]]:
        """Ancestral sampling (notes 2.1.2): ``n`` sequences drawn token by token from
        p(x_t | x_{t-k}..x_{t-1})^(1/temperature) (renormalised) until ``</s>`` or
        ``max_length`` tokens; the batch is vectorised, the loop runs over time only.

        ``temperature = 0`` picks the most probable token (greedy decoding). ``seed`` seeds
        a generator of its own (the caller's random streams are untouched; None draws its
        seed from torch's global generator).
        """
        self._require_fitted()
        n = check_int(n, "n")
        max_length = check_int(max_length, "max_length", low=0)
        _check_temperature(temperature)
        check_allocation(
            float(n) * (max_length + 4 * self.vocab_size),
            torch.float64,
            f"sampling {n} sequences of up to {max_length} tokens",
        )
        dev = self.ngram_keys.device
        if not isinstance(prompt, str) and not (
            isinstance(prompt, Sequence) and all(isinstance(t, str) for t in prompt)
        ):
            raise ConfigurationError(
                f"prompt must be a str or a list of str tokens, got {type(prompt).__name__}"
            )
        prompt_tokens = self.tokenizer.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if isinstance(prompt, str) and self.tokenizer.level == "char" and prompt.endswith(" "):
            prompt_tokens.append(" ")  # keep a trailing space of a character prompt
        prompt_ids = self.encode(prompt_tokens, where=" of the prompt")
        history = [self.index[BOS]] * self.order + prompt_ids
        context = torch.tensor(history[len(history) - self.order :], dtype=torch.long, device=dev)
        context = context.expand(n, self.order).clone()
        draws = generator(seed, dev)
        eos = self.index[EOS]
        out = torch.full((n, max_length), eos, dtype=torch.long, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        for t in range(max_length):
            log_p = self.next_token_log_probs(context)
            if temperature == 0:
                nxt = log_p.argmax(-1)
            else:
                probs = torch.softmax(log_p / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=draws).squeeze(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            out[:, t] = nxt
            done |= nxt == eos
            if bool(done.all()):
                break
            if self.order:
                context = torch.cat([context[:, 1:], nxt.unsqueeze(1)], 1)
        result = []
        for row in out.tolist():
            tokens = [self.vocab[i] for i in row]
            end = tokens.index(EOS) if EOS in tokens else len(tokens)
            result.append(prompt_tokens + tokens[:end])
        return result

    def generate(
        self,
        prompt: str | Sequence[str] = "",
        n: int = 100,
        temperature: float = 1.0,
        *,
        seed: int | None = None,
    ) -> str:
        """Continue ``prompt`` by up to ``n`` tokens (stops at ``</s>``) and return the text."""
        n = check_int(n, "n", low=0)
        tokens = self.sample(1, n, temperature=temperature, prompt=prompt, seed=seed)[0]
        return self.tokenizer.detokenize(tokens)

    # ------------------------------------------------- Bayesian view: model/guide
    def ngram_data(self, corpus: Corpus) -> tuple[torch.Tensor, torch.Tensor]:
        """(context row, next outcome) of every predicted token of ``corpus``: the data of
        :meth:`model`. Rows index ``context_keys`` (contexts seen in training); outcomes are
        token ids minus one (``<s>`` is never an outcome)."""
        self._require_fitted()
        keys = self._ngram_keys(self._sequences(corpus), self.ngram_keys.device)
        contexts = keys // self.vocab_size
        row = torch.searchsorted(self.context_keys, contexts).clamp_max(
            self.context_keys.numel() - 1
        )
        if bool((self.context_keys[row] != contexts).any()):
            raise OutOfSupportError("the corpus has a context never seen in fit: no model row")
        return row, keys % self.vocab_size - 1

    def posterior_concentration(self) -> torch.Tensor:
        """α + N(h, w) for every seen context h (rows) and outcome w: the exact
        posterior Dirichlet of each row of the transition kernel, shape (H, |V| - 1)."""
        self._require_fitted()
        V = self.vocab_size
        rows = torch.searchsorted(self.context_keys, self.ngram_keys // V)
        table = torch.full(
            (self.context_keys.numel(), V - 1), self.concentration, dtype=torch.float64,
            device=self.ngram_keys.device,
        )  # fmt: skip
        return table.index_put_((rows, self.ngram_keys % V - 1), self.ngram_counts, accumulate=True)

    def log_evidence(self) -> float:
        """log p(training n-grams) with the rows integrated out (Dirichlet-multinomial):
        sum_h [log G(V a) - log G(V a + N_h) + sum_w (log G(a + N_hw) - log G(a))]."""
        conc = self.posterior_concentration()
        a = torch.full_like(conc[0], self.concentration)
        return float(
            (torch.lgamma(a.sum()) - torch.lgamma(conc.sum(-1))).sum()
            + (torch.lgamma(conc) - torch.lgamma(a)).sum()
        )

    def model(self, rows: torch.Tensor, outcomes: torch.Tensor) -> None:
        """Each seen context's row p(. | h) ~ Dirichlet(α); each token ~ Cat(p(. | h))
        (the tokens form the data plate ``"data"``).

        The rows of contexts never seen keep their prior and do not touch the data.
        """
        H, V_out = self.context_keys.numel(), self.vocab_size - 1
        prior = torch.full((V_out,), self.concentration, dtype=torch.float64, device=rows.device)
        with pyro.plate("contexts", H):
            kernel = pyro.sample("kernel", dist.Dirichlet(prior))
        with pyro.plate("data", rows.numel()):
            pyro.sample("token", dist.Categorical(kernel[rows]), obs=outcomes)

    def guide(self, rows: torch.Tensor, outcomes: torch.Tensor) -> None:
        """The exact (conjugate) posterior Dirichlet(α + counts), as a learnable param
        initialised there: the ELBO then equals :meth:`log_evidence` for every draw."""
        conc = pyro.param(
            f"{self._pyro_name}.concentration",
            self.posterior_concentration,
            constraint=dist.constraints.positive,
        )
        with pyro.plate("contexts", conc.shape[0]):
            pyro.sample("kernel", dist.Dirichlet(conc))

    # ------------------------------------------------- the Bayesian network
    @property
    def n_parameters(self) -> int:
        """Free parameters of the fitted chain: every context the chain can meet (k − j
        padding symbols ``<s>`` followed by j tokens, j = 0..k: sum_j M^j contexts for M
        token types) has one row over the M + 1 outcomes (the tokens and ``</s>``), with M
        free entries: M * sum_{j=0}^{k} M^j. For k = 1 that is the initial distribution and
        the transition matrix P of eq. 11; the joint table of T tokens would need
        (M + 1)^T − 1 (growing with T, where the chain's count does not)."""
        self._require_fitted()
        m = self.n_outcomes - 1
        return m * sum(m**j for j in range(self.order + 1))

    def graph(self, steps: int | None = None) -> ModelGraph:
        """Figura 4 of the notes, for order k: each x_t with parents x_{t-1}, ..., x_{t-k}
        (all observed, discrete), drawn for ``steps`` time steps (default max(4, k + 2)),
        time running left to right (x_t at (t, 0); the edges that skip steps are drawn as
        arcs over the chain).

        >>> g = MarkovChain(order=2).graph(4)
        >>> g.parents("x_4"), g.d_separated("x_1", "x_4", given=["x_2", "x_3"])
        (('x_2', 'x_3'), True)
        >>> g.positions["x_3"]
        (3.0, 0.0)
        """
        k = self.order
        steps = max(4, k + 2) if steps is None else check_int(steps, "steps")
        nodes = [
            GraphNode(f"x_{t}", "observed", discrete=True, label=f"$x_{t}$")
            for t in range(1, steps + 1)
        ]
        edges = [(f"x_{t - j}", f"x_{t}") for t in range(1, steps + 1) for j in range(k, 0, -1)]
        edges = [(a, b) for a, b in edges if int(a[2:]) >= 1]
        title = f"Markov chain of order {k} (eq. 11, Figura 4)"
        return ModelGraph(
            nodes,
            edges,
            plates={"data": ([n.name for n in nodes], "N")},
            title=title,
            positions={f"x_{t}": (t, 0) for t in range(1, steps + 1)},
        )


def _check_temperature(temperature: Any) -> None:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ConfigurationError(f"temperature must be a finite number >= 0, got {temperature!r}")
