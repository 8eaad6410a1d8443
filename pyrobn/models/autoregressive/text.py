"""A character-level autoregressive model of text: eq. 15 over characters (notes 2.2.2.1).

    p(x_1..x_T, </s>) = Π_t p(x_t | x_<t) · p(</s> | x_≤T)

An order-k Markov chain (notes 2.1.3.3, :class:`pyrobn.MarkovChain`) is this model with
a window: p(x_t | x_<t) = p(x_t | x_{t-k}..x_{t-1}), estimated by counting. Here the
window is ``window`` characters and the conditional is a network (dilated causal
convolutions or a causal transformer) that shares strength across contexts instead
of counting each one: contexts never seen in training still get sensible predictions,
which is where the n-gram tables fail (their perplexity rises past order 3).

The model is an :class:`~pyrobn.models.autoregressive.AutoregressiveModel` over windows
of ``window`` characters (categorical, one-hot inputs), trained by the same
:func:`~pyrobn.infer.fit_svi` loop; this class adds the tokenizer and vocabulary of
:class:`~pyrobn.MarkovChain` (so both read the same symbols), the paragraph framing
(``<s>`` before, ``</s>`` after each paragraph, as the Markov chain pads) and
evaluation of sequences longer than the window: each character is predicted from the
previous characters of its paragraph, at least ``window // 2`` of them once the
paragraph is that long (blocks of ``window`` advancing by ``window // 2``): a valid
autoregressive factorisation, so ``perplexity`` is exact and comparable with
:meth:`MarkovChain.perplexity` (the same tokens, each ``</s>`` counted).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.autoregressive.model import AutoregressiveModel, check_temperature
from pyrobn.models.base import PyrobnModule
from pyrobn.models.markov import BOS, EOS, UNK, Corpus, Tokenizer
from pyrobn.random import generator, seeded
from pyrobn.validation import check_int


class TextAutoregressiveModel(PyrobnModule):
    """A character-level (or word-level) neural autoregressive language model.

    Args:
        window: the context length W: each token is predicted from at most W - 1 previous
            tokens (training windows have W tokens).
        network: ``"conv"`` (dilated causal convolutions; receptive field
            ``receptive_field``) or ``"transformer"``.
        hidden, layers, kernel_size, heads, dropout: the network's size (see
            :class:`AutoregressiveModel`).
        level, lower, min_count: the tokenizer and vocabulary (as :class:`MarkovChain` with
            ``unknown="unk"``: tokens seen fewer than ``min_count`` times become ``<unk>``).
        vocab: the vocabulary (set by :meth:`fit`; given when loading).

    Example:
        >>> train, test = pyrobn.datasets.text_corpus("apuntes")
        >>> lm = pyrobn.TextAutoregressiveModel(window=16, hidden=16, layers=2)
        >>> lm = lm.fit(train[:20], steps=5, seed=0, progress=False)
        >>> lm.perplexity(test) > 1
        True
        >>> lm.generate("la red ", n=20, temperature=0.8, seed=0).startswith("la red ")
        True
    """

    max_plate_nesting = 1

    def __init__(
        self,
        window: int = 64,
        *,
        network: str = "conv",
        hidden: int = 128,
        layers: int = 6,
        kernel_size: int = 3,
        heads: int = 4,
        dropout: float = 0.1,
        level: str = "char",
        lower: bool = True,
        min_count: int = 2,
        vocab: Sequence[str] | None = None,
    ) -> None:
        window = check_int(window, "window", low=2)
        if network not in ("conv", "transformer"):
            raise ConfigurationError(
                f"a text model takes network='conv' or 'transformer' (any length), got {network!r}"
            )
        super().__init__(
            window=window, network=network, hidden=hidden, layers=layers,
            kernel_size=kernel_size, heads=heads, dropout=dropout, level=level, lower=lower,
            min_count=min_count, vocab=list(vocab) if vocab is not None else None,
        )  # fmt: skip
        self.window = window
        self.tokenizer = Tokenizer(level, lower)  # type: ignore[arg-type]
        self.min_count = check_int(min_count, "min_count")
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}
        self.ar: AutoregressiveModel | None = None
        if vocab is not None:
            self._build(list(vocab))

    # ---------------------------------------------------------------- vocabulary
    def _build(self, vocab: list[str]) -> None:
        if vocab[:3] != [BOS, EOS, UNK] or len(set(vocab)) != len(vocab):
            raise ConfigurationError(
                f"vocab must start with {[BOS, EOS, UNK]} and have no repeats, got {vocab[:5]}..."
            )
        self.vocab = vocab
        self.index = {t: i for i, t in enumerate(vocab)}
        self.config["vocab"] = list(vocab)
        c = self.config
        self.ar = AutoregressiveModel(
            self.window, "categorical", len(vocab), network=c["network"], hidden=c["hidden"],
            layers=c["layers"], kernel_size=c["kernel_size"], heads=c["heads"],
            dropout=c["dropout"], one_hot=True,
        )  # fmt: skip

    @property
    def fitted(self) -> bool:
        return self.ar is not None

    @property
    def receptive_field(self) -> int:
        """How many previous tokens can influence a prediction (capped by the window)."""
        self._require_fitted()
        net = self.ar.net  # type: ignore[union-attr]
        return min(getattr(net, "receptive_field", self.window) - 1, self.window - 1)

    def _require_fitted(self) -> None:
        if self.ar is None:
            raise ConfigurationError("this model has no vocabulary yet: call fit(corpus) first")

    def _paragraphs(self, corpus: Corpus, name: str) -> list[list[str]]:
        if isinstance(corpus, str):
            return [self.tokenizer.tokenize(corpus)]
        if isinstance(corpus, torch.Tensor) or not isinstance(corpus, Sequence) or not corpus:
            raise ConfigurationError(f"{name} must be a str or a non-empty list of str")
        out = []
        for i, item in enumerate(corpus):
            if not isinstance(item, str):
                raise ConfigurationError(f"{name}[{i}] must be a str, got {type(item).__name__}")
            out.append(self.tokenizer.tokenize(item))
        return out

    def _ids(self, tokens: list[str]) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(t, unk) for t in tokens]

    def _framed(self, paragraphs: list[list[str]]) -> list[list[int]]:
        """<s> x_1 .. x_T </s> per paragraph, as ids."""
        bos, eos = self.index[BOS], self.index[EOS]
        return [[bos, *self._ids(p), eos] for p in paragraphs]

    def _windows(self, framed: list[list[int]], stride: int) -> torch.Tensor:
        stream = torch.tensor([i for seq in framed for i in seq], dtype=torch.float32)
        W = self.window
        if stream.numel() < W:
            stream = torch.cat([stream, stream.new_full((W - stream.numel(),), self.index[EOS])])
        starts = torch.arange(0, stream.numel() - W + 1, stride)
        return stream[starts[:, None] + torch.arange(W)]

    # ---------------------------------------------------------------- fit
    def fit(
        self,
        corpus: Corpus,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        stride: int | None = None,
        validation: Corpus | None = None,
        patience: int | None = None,
        **kwargs: Any,
    ) -> TextAutoregressiveModel:
        """Build the vocabulary (first fit) and train on windows of the paragraph stream.

        Windows of ``window`` tokens start every ``stride`` tokens (default window / 4)
        of the training paragraphs framed by ``<s>``/``</s>`` and concatenated; with
        ``validation`` paragraphs, early stopping keeps the best validation state.
        Other keywords go to :meth:`AutoregressiveModel.fit` (``batch_size``, ``lr``,
        ``seed``, ``progress``...).
        """
        paragraphs = self._paragraphs(corpus, "corpus")
        if self.ar is None:
            counts = Counter(t for p in paragraphs for t in p)
            for reserved in (BOS, EOS, UNK):
                counts.pop(reserved, None)
            kept = sorted(t for t, c in counts.items() if c >= self.min_count)
            with seeded(kwargs.get("seed")):  # the network's initialisation is part of the fit
                self._build([BOS, EOS, UNK, *kept])
        assert self.ar is not None
        stride = check_int(stride, "stride") if stride is not None else max(1, self.window // 4)
        x = self._windows(self._framed(paragraphs), stride).to(self.ar.device)
        x_val = None
        if validation is not None:
            framed = self._framed(self._paragraphs(validation, "validation"))
            x_val = self._windows(framed, self.window // 2).to(self.ar.device)
        self.ar.fit(x, epochs=epochs, steps=steps, x_val=x_val, patience=patience, **kwargs)
        self.fit_result_ = self.ar.fit_result_
        return self

    # ---------------------------------------------------------------- structure
    def graph(self, max_nodes: int = 5) -> ModelGraph:
        """Figura 8 over tokens: x_t <- x_{t-W+1} .. x_{t-1} (eq. 15 cut to the window W),
        drawn over the first ``max_nodes`` tokens; one plate over the N windows.

        >>> TextAutoregressiveModel(window=4).graph(3).edges
        [('x1', 'x2'), ('x1', 'x3'), ('x2', 'x3')]
        """
        k = check_int(max_nodes, "max_nodes")
        names = [f"x{t + 1}" for t in range(k)]
        nodes = [GraphNode(name, "observed", True) for name in names]
        edges = [(names[s], names[t]) for t in range(k) for s in range(t) if t - s < self.window]
        title = f"text autoregressive model (eq. 15): window of {self.window} tokens"
        return ModelGraph(nodes, edges, {"data": (names, "N")}, title)

    # ---------------------------------------------------------------- likelihood
    @torch.no_grad()
    def _token_log_probs(self, framed: list[list[int]]) -> list[torch.Tensor]:
        """log p(x_t | previous tokens of the paragraph) for x_1 .. </s> of each paragraph."""
        ar = self.ar
        assert ar is not None
        W, S = self.window, max(1, self.window // 2)
        out = []
        for seq in framed:
            ids = torch.tensor(seq, dtype=ar.dtype, device=ar.device)
            N = ids.numel()
            parts = []
            start = 0
            while True:
                block = ids[start : start + W]
                keep_from = 1 if start == 0 else W - S
                if block.numel() < W:
                    pad = block.new_full((W - block.numel(),), self.index[EOS])
                    block_full = torch.cat([block, pad])
                else:
                    block_full = block
                theta = ar._params(block_full.unsqueeze(0), None)[0]
                log_p = ar.conditional.log_prob(theta, block_full)
                parts.append(log_p[keep_from : block.numel()])
                if start + W >= N:
                    break
                start += S
            out.append(torch.cat(parts))
        return out

    def log_prob(self, corpus: Corpus) -> torch.Tensor:
        """log p(paragraph) per paragraph (float64): Σ over its tokens and the final </s>."""
        self._require_fitted()
        framed = self._framed(self._paragraphs(corpus, "corpus"))
        return torch.stack([lp.double().sum() for lp in self._token_log_probs(framed)])

    def perplexity(self, corpus: Corpus) -> float:
        """exp(-Σ log p / number of predicted tokens), each </s> counted (as MarkovChain)."""
        self._require_fitted()
        framed = self._framed(self._paragraphs(corpus, "corpus"))
        log_ps = self._token_log_probs(framed)
        total = sum(float(lp.double().sum()) for lp in log_ps)
        return math.exp(-total / sum(lp.numel() for lp in log_ps))

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        prompt: str = "",
        n: int = 100,
        temperature: float = 1.0,
        *,
        seed: int | None = None,
    ) -> str:
        """Continue ``prompt`` by up to ``n`` tokens drawn from p(x_t | x_<t)^(1/T) (stops
        at ``</s>``); the text is returned. Local generator: the global RNG is untouched."""
        self._require_fitted()
        ar = self.ar
        assert ar is not None
        if not isinstance(prompt, str):
            raise ConfigurationError(f"prompt must be a str, got {type(prompt).__name__}")
        n = check_int(n, "n", low=0)
        temperature = check_temperature(temperature)
        tokens = self.tokenizer.tokenize(prompt)
        if self.tokenizer.level == "char" and prompt.endswith(" ") and tokens[-1:] != [" "]:
            tokens.append(" ")
        history = [self.index[BOS], *self._ids(tokens)]
        gen = generator(seed, ar.device)
        new: list[str] = []
        for _ in range(n):
            context = history[-(self.window - 1) :]
            block = torch.tensor([*context, 0], dtype=ar.dtype, device=ar.device)
            theta = ar._params(block.unsqueeze(0), None)[0, len(context)]
            nxt = int(ar.conditional.sample(theta.unsqueeze(0), temperature, gen)[0])
            if nxt == self.index[EOS]:
                break
            history.append(nxt)
            new.append(self.vocab[nxt])
        new = [t for t in new if t != BOS]
        return self.tokenizer.detokenize(tokens + new)

    def get_extra_state(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if list(state.get("vocab", [])) != self.vocab:
            raise ShapeError("the saved vocabulary differs from this model's")


__all__ = ["TextAutoregressiveModel"]
