"""The application API: load a tagger trained by ``run_ner.py``, get entities with character offsets.

    tagger = NerTagger.load("out/ner/model.pt")
    tagger.predict("江泽民在北京。", speed=0.3)       # a str is one text
    # [[Entity(type='PER', start=0, end=3, text='江泽民'), Entity(type='LOC', start=4, end=6, text='北京')]]

``start``/``end`` are character offsets into the text as given (end exclusive). Whitespace
characters are not tokens: they are never inside an entity's first or last character and are
tagged O. A text's entities do not depend on the other texts of the call.

A word-level tagger (trained on CoNLL-form data) tags the text's white-space separated words: each
word is split into sub-tokens by the model's tokenizer (WordPiece for ``bert``) and takes the tag
of its first one; an entity spans whole words.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from uer.data.loader import length_sorted_batches
from uer.exit.checks import check_int, check_text, check_texts
from uer.exit.loading import exit_settings, load_trained
from uer.exit.policies import DEFAULT, ExitPolicy, Policy
from uer.tagging.data import Chunks, assemble, collate, encode_sentences, pick, word_pieces
from uer.tagging.inference import TokenExit
from uer.tagging.metrics import bio_spans


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # character offset, inclusive
    end: int  # exclusive
    text: str


class NerTagger:
    def __init__(self, model, vocab, id2label: Sequence[str], seq_length: int, runtime: str = "auto",
                 extra: dict[str, Any] | None = None) -> None:
        self.runner = TokenExit(model, runtime=runtime)
        self.vocab = vocab
        self.id2label = list(id2label)
        self.seq_length = seq_length
        self.extra = dict(extra or {})  # what the run stored: its exit policy, chosen speed and window are the defaults
        # words (a CoNLL-trained tagger): split as in training; None: one character is one token
        tok = model.config.tokenizer
        self.pieces = word_pieces(vocab, tok.name, tok) if self.extra.get("data_format") == "conll" else None

    @classmethod
    def load(cls, path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
             device: str | torch.device = "cpu", runtime: str = "auto") -> "NerTagger":
        """A checkpoint written by ``run_ner.py``; its vocabulary lies beside it unless given
        (:func:`uer.exit.loading.load_trained` checks both).
        ``runtime``: the inference linears (:class:`uer.tagging.inference.TokenExit`)."""
        trained = load_trained(path, "run_ner.py", vocab_path=vocab_path, device=device)
        extra = trained.extra
        return cls(trained.model, trained.vocab, extra["id2label"], trained.seq_length, runtime=runtime, extra=extra)

    def tag(self, chars: Sequence[Sequence[str]], speed: float | None = None, window: int | None = None,
            batch_size: int = 32, policy: str | dict | ExitPolicy | None = None) -> tuple[list[list[str]], list[list[int]]]:
        """Units (characters; words for a word-level tagger) per sentence -> (tags, exit layers) per
        sentence (a word's exit layer: its first sub-token's); the arguments as :meth:`predict`'s."""
        speed, rule = exit_settings(self.extra, speed, policy)
        return self._tag(chars, speed, self._window(window), check_int(batch_size, "batch_size", 1), rule)

    def _window(self, window: object) -> int:
        return check_int(self.extra.get("window", 0) if window is None else window, "window", 0)

    def _tag(self, chars: Sequence[Sequence[str]], speed: float, window: int, batch_size: int,
             rule: ExitPolicy) -> tuple[list[list[str]], list[list[int]]]:
        chunks = encode_sentences(self.vocab, chars, None, self.seq_length, self.pieces)
        ids, exits = tag_chunks(self.runner, chunks, self.vocab.pad_id, speed, window, batch_size, rule)
        return (assemble(chunks, [[self.id2label[k] for k in row] for row in ids]),
                assemble(chunks, [pick(row, chunks.units(r)) for r, row in enumerate(exits)]))

    def predict(self, texts: str | Iterable[str], speed: float | None = None, window: int | None = None,
                batch_size: int = 32, policy: str | dict | ExitPolicy | None = None) -> list[list[Entity]]:
        """Entities of each text (a single ``str`` is one text: the result is still a list of one).

        ``speed`` in [0, 1] (0: the full model), ``window`` (a token leaves only when every token
        within ``window`` positions is sure enough too) and ``policy``: None = what the run stored
        (its chosen speed, else 0; its ``--window``; its exit policy, else entropy)."""
        return self.entities(texts, speed, window, batch_size, policy)[0]

    def entities(self, texts: str | Iterable[str], speed: float | None = None, window: int | None = None,
                 batch_size: int = 32, policy: str | dict | ExitPolicy | None = None
                 ) -> tuple[list[list[Entity]], list[list[int]]]:
        """:meth:`predict`'s entities and each text's exit layers (one a character, or a word for a
        word-level tagger; none for a text of white space)."""
        texts = [check_text(t, f"texts[{i}]") for i, t in enumerate(check_texts(texts))]
        speed, rule = exit_settings(self.extra, speed, policy)
        window, batch_size = self._window(window), check_int(batch_size, "batch_size", 1)
        entities: list[list[Entity]] = [[] for _ in texts]
        exits: list[list[int]] = [[] for _ in texts]
        if self.pieces is None:  # (start, end) of every unit: the characters, or the words
            spans = [[(i, i + 1) for i, ch in enumerate(t) if not ch.isspace()] for t in texts]
        else:
            spans = [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]
        todo = [k for k, pos in enumerate(spans) if pos]
        if not todo:
            return entities, exits
        tags, layers = self._tag([[texts[k][a:b] for a, b in spans[k]] for k in todo], speed, window, batch_size, rule)
        for k, sentence_tags, sentence_exits in zip(todo, tags, layers):
            pos, text, exits[k] = spans[k], texts[k], sentence_exits
            for kind, s, e in bio_spans(sentence_tags):
                start, end = pos[s][0], pos[e - 1][1]
                entities[k].append(Entity(kind, start, end, text[start:end]))
        return entities, exits


def tag_chunks(runner: TokenExit, chunks: Chunks, pad_id: int, speed: float | None, window: int,
               batch_size: int, policy: Policy = DEFAULT) -> tuple[list[list[int]], list[list[int]]]:
    """Per row: predicted tag ids of its units (characters, or words' first sub-tokens) and the exit
    layer of every real token ([CLS] included), as :meth:`NerTagger.predict` and the sweep run it.
    ``speed=None``: the full model (every token exits at the last layer)."""
    tags: list[list[int]] = [[] for _ in range(len(chunks))]
    exits: list[list[int]] = [[] for _ in range(len(chunks))]
    for index in length_sorted_batches(chunks.lengths(), batch_size):
        batch = collate(chunks, index, pad_id, runner.device)
        if speed is None:
            probs = runner.full_model(batch["src"], batch["seg"]).cpu()
            layers = torch.full(probs.shape[:2], runner.layers_num, dtype=torch.long)
        else:
            out = runner.predict(batch["src"], batch["seg"], speed, window, policy)
            probs, layers = out.probs.cpu(), out.exit_layer.cpu()
        pred = probs.argmax(-1)
        for j, r in enumerate(index):
            n = len(chunks.ids[r])
            tags[r] = pick(pred[j].tolist(), chunks.units(r))
            exits[r] = layers[j, :n].tolist()
    return tags, exits
