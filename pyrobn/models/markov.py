"""Markov chains of order k over tokens: n-gram text models (notes 2.1.3.3, eq. 11).

Order k means p(x_t | x_1..x_{t-1}) = p(x_t | x_{t-k}..x_{t-1}): k = 0 is the unigram
(bag of words), k = 1 the bigram (eq. 11's first-order chain), k = 2 the trigram.  The
homogeneous transition kernel is estimated from counts with add-alpha smoothing,

    p(w | h) = (N(h, w) + alpha) / (N(h) + alpha |V|),

the posterior mean of p(. | h) under a Dirichlet(alpha) prior (and the posterior
predictive of the next token).  Counting is vectorised: every (k+1)-gram of token ids is
hashed to one integer h * |V| + w and counted with ``torch.unique``, so the table is
sparse (only the n-grams seen) and any order fits in memory.

Each sequence is padded with k start symbols ``<s>`` and one end symbol ``</s>``: the
start symbols give the initial distribution p(x_1..x_k) of eq. 11 as conditionals, and
the end symbol makes p a distribution over sequences of every length.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pyro
import pyro.distributions as dist
import torch

from pyrobn.device import device as default_device
from pyrobn.errors import ConfigurationError, OutOfSupportError, ShapeError
from pyrobn.models.base import PyrobnModule
from pyrobn.models.naive_bayes import DataSizedBuffers

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
        if level not in ("char", "word"):
            raise ConfigurationError(f"level must be 'char' or 'word', got {level!r}")
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
    """A homogeneous Markov chain of order k over a token vocabulary (notes eq. 11).

    Args:
        order: k >= 0, the number of previous tokens each token depends on.
        alpha: add-alpha smoothing (> 0): the Dirichlet(alpha) prior on every row.
        level: ``"char"`` or ``"word"`` for the built-in :class:`Tokenizer` (used when
            text is given as strings).
        lower: lower-case text before tokenising.
        unknown: ``"error"`` (a token outside the vocabulary raises
            :class:`~pyrobn.errors.OutOfSupportError`) or ``"unk"`` (it becomes ``<unk>``;
            training tokens seen fewer than ``min_count`` times become ``<unk>`` too, so
            that ``<unk>`` gets counts).
        min_count: see ``unknown="unk"``.

    Example:
        >>> mc = MarkovChain(order=2, alpha=0.1).fit(["the cat sat", "the dog sat"])
        >>> mc.perplexity(["the cat sat"])
        >>> mc.generate("the ", n=20, temperature=0.8, seed=0)
    """

    max_plate_nesting = 1

    def __init__(
        self,
        order: int = 1,
        alpha: float = 1.0,
        *,
        level: Literal["char", "word"] = "char",
        lower: bool = True,
        unknown: Literal["error", "unk"] = "error",
        min_count: int = 1,
    ) -> None:
        super().__init__(
            order=order, alpha=alpha, level=level, lower=lower, unknown=unknown, min_count=min_count
        )
        if not isinstance(order, int) or order < 0:
            raise ConfigurationError(f"order must be an integer >= 0, got {order!r}")
        if not math.isfinite(alpha) or alpha <= 0:
            raise ConfigurationError(f"alpha must be positive and finite, got {alpha}")
        if unknown not in ("error", "unk"):
            raise ConfigurationError(f"unknown must be 'error' or 'unk', got {unknown!r}")
        if min_count < 1:
            raise ConfigurationError(f"min_count must be >= 1, got {min_count}")
        self.order = order
        self.alpha = float(alpha)
        self.tokenizer = Tokenizer(level, lower)
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
        self._set_vocab(list(state["vocab"]))

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
        if isinstance(corpus, torch.Tensor) or not isinstance(corpus, Sequence):
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
        """Count every (k+1)-gram of the corpus (vectorised) and build the vocabulary.

        ``corpus``: a str, a list of str (sequences, tokenised by the tokenizer) or a list
        of token lists.
        """
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
        self._set_vocab(specials + kept)
        V, k = self.vocab_size, self.order
        if V ** (k + 1) >= 2**62:
            raise ConfigurationError(
                f"a vocabulary of {V} symbols and order {k} gives {V}^{k + 1} possible n-grams, "
                "too many to hash into int64: lower the order or the vocabulary"
            )
        dev = self.ngram_keys.device
        keys = self._ngram_keys(sequences, dev)
        self.ngram_keys, ngram_counts = torch.unique(keys, return_counts=True)
        self.ngram_counts = ngram_counts.double()
        self.context_keys, context_index = torch.unique(self.ngram_keys // V, return_inverse=True)
        self.context_counts = torch.zeros(
            self.context_keys.numel(), dtype=torch.float64, device=dev
        ).index_add_(0, context_index, self.ngram_counts)
        return self

    # --------------------------------------------------------------- queries
    def _lookup(self, sorted_keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor):  # type: ignore[no-untyped-def]
        """values[key] for each query key, 0 where the key was never counted."""
        if sorted_keys.numel() == 0:
            return torch.zeros(query.shape, dtype=values.dtype, device=query.device)
        pos = torch.searchsorted(sorted_keys, query).clamp_max(sorted_keys.numel() - 1)
        return torch.where(sorted_keys[pos] == query, values[pos], torch.zeros_like(values[pos]))

    def _log_prob_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """log p(w | h) = log (N(h, w) + alpha) - log (N(h) + alpha (|V| - 1)) per n-gram key."""
        n_hw = self._lookup(self.ngram_keys, self.ngram_counts, keys)
        n_h = self._lookup(self.context_keys, self.context_counts, keys // self.vocab_size)
        return (n_hw + self.alpha).log() - (n_h + self.alpha * self.n_outcomes).log()

    def log_prob(self, corpus: Corpus) -> torch.Tensor:
        """log p(x) per sequence = sum_t log p(x_t | x_{t-k}..x_{t-1}) (eq. 11), with the
        ``<s>`` padding and the final ``</s>``; one float64 entry per sequence."""
        self._require_fitted()
        sequences = self._sequences(corpus)
        dev = self.ngram_keys.device
        keys = self._ngram_keys(sequences, dev)
        lengths = torch.tensor([len(s) + 1 for s in sequences], device=dev)
        which = torch.repeat_interleave(torch.arange(len(sequences), device=dev), lengths)
        return torch.zeros(len(sequences), dtype=torch.float64, device=dev).index_add_(
            0, which, self._log_prob_keys(keys)
        )

    def perplexity(self, corpus: Corpus) -> float:
        """exp(- sum log p / number of predicted tokens), the tokens counting each ``</s>``."""
        sequences = self._sequences(corpus)
        n_tokens = sum(len(s) + 1 for s in sequences)
        return math.exp(-float(self.log_prob(sequences).sum()) / n_tokens)

    def next_token_log_probs(self, context: torch.Tensor) -> torch.Tensor:
        """log p(. | h) over the whole vocabulary for a batch of contexts, shape (B, |V|).

        ``context``: (B, k) token ids, oldest first. ``<s>`` gets probability 0.
        """
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
        if V ** (k + 1) > 10**7:
            raise ConfigurationError(f"the dense table would have {V ** (k + 1)} entries")
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

        ``temperature = 0`` picks the most probable token (greedy decoding).
        """
        self._require_fitted()
        if n < 1 or max_length < 0:
            raise ConfigurationError(f"need n >= 1 and max_length >= 0, got {n}, {max_length}")
        if not math.isfinite(temperature) or temperature < 0:
            raise ConfigurationError(f"temperature must be >= 0 and finite, got {temperature}")
        dev = self.ngram_keys.device
        prompt_tokens = self.tokenizer.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if isinstance(prompt, str) and self.tokenizer.level == "char" and prompt.endswith(" "):
            prompt_tokens.append(" ")  # keep a trailing space of a character prompt
        prompt_ids = self.encode(prompt_tokens, where=" of the prompt")
        history = [self.index[BOS]] * self.order + prompt_ids
        context = torch.tensor(history[len(history) - self.order :], dtype=torch.long, device=dev)
        context = context.expand(n, self.order).clone()
        generator = torch.Generator(device=dev)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        eos = self.index[EOS]
        out = torch.full((n, max_length), eos, dtype=torch.long, device=dev)
        done = torch.zeros(n, dtype=torch.bool, device=dev)
        for t in range(max_length):
            log_p = self.next_token_log_probs(context)
            if temperature == 0:
                nxt = log_p.argmax(-1)
            else:
                probs = torch.softmax(log_p / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
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
        """alpha + N(h, w) for every seen context h (rows) and outcome w: the exact
        posterior Dirichlet of each row of the transition kernel, shape (H, |V| - 1)."""
        self._require_fitted()
        V = self.vocab_size
        rows = torch.searchsorted(self.context_keys, self.ngram_keys // V)
        table = torch.full(
            (self.context_keys.numel(), V - 1), self.alpha, dtype=torch.float64,
            device=self.ngram_keys.device,
        )  # fmt: skip
        return table.index_put_((rows, self.ngram_keys % V - 1), self.ngram_counts, accumulate=True)

    def log_evidence(self) -> float:
        """log p(training n-grams) with the rows integrated out (Dirichlet-multinomial):
        sum_h [log G(V a) - log G(V a + N_h) + sum_w (log G(a + N_hw) - log G(a))]."""
        conc = self.posterior_concentration()
        a = torch.full_like(conc[0], self.alpha)
        return float(
            (torch.lgamma(a.sum()) - torch.lgamma(conc.sum(-1))).sum()
            + (torch.lgamma(conc) - torch.lgamma(a)).sum()
        )

    def model(self, rows: torch.Tensor, outcomes: torch.Tensor) -> None:
        """Each seen context's row p(. | h) ~ Dirichlet(alpha); each token ~ Cat(p(. | h)).

        The rows of contexts never seen keep their prior and do not touch the data.
        """
        H, V_out = self.context_keys.numel(), self.vocab_size - 1
        prior = torch.full((V_out,), self.alpha, dtype=torch.float64, device=rows.device)
        with pyro.plate("contexts", H):
            kernel = pyro.sample("kernel", dist.Dirichlet(prior))
        with pyro.plate("ngrams", rows.numel()):
            pyro.sample("token", dist.Categorical(kernel[rows]), obs=outcomes)

    def guide(self, rows: torch.Tensor, outcomes: torch.Tensor) -> None:
        """The exact (conjugate) posterior Dirichlet(alpha + counts), as a learnable param
        initialised there: the ELBO then equals :meth:`log_evidence` for every draw."""
        conc = pyro.param(
            f"{self._pyro_name}.concentration",
            self.posterior_concentration,
            constraint=dist.constraints.positive,
        )
        with pyro.plate("contexts", conc.shape[0]):
            pyro.sample("kernel", dist.Dirichlet(conc))
