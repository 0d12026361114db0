"""The application API: load a tagger trained by ``run_ner.py``, get entities with character offsets.

    tagger = NerTagger.load("out/ner/model.pt")
    tagger.predict("江泽民在北京。", speed=0.3)       # a str is one text
    # [[Entity(type='PER', start=0, end=3, text='江泽民'), Entity(type='LOC', start=4, end=6, text='北京')]]

``start``/``end`` are character offsets into the text as given (end exclusive). Whitespace
characters are not tokens: they are never inside an entity's first or last character and are
tagged O. A text's entities do not depend on the other texts of the call.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from uer.checkpoint import CheckpointError, checkpoint_config, load_state, read_checkpoint
from uer.fastbert.data import length_sorted_batches
from uer.model_builder import build_model
from uer.tagging.data import assemble, collate, encode_sentences
from uer.tagging.inference import TokenExit
from uer.tagging.metrics import bio_spans


@dataclass(frozen=True)
class Entity:
    type: str
    start: int  # character offset, inclusive
    end: int  # exclusive
    text: str


class NerTagger:
    def __init__(self, model, vocab, id2label: Sequence[str], seq_length: int, runtime: str = "auto") -> None:
        self.runner = TokenExit(model, runtime=runtime)
        self.vocab = vocab
        self.id2label = list(id2label)
        self.seq_length = seq_length

    @classmethod
    def load(cls, path: str | Path, vocab_path: str | Path | None = None, device: str | torch.device = "cpu",
             runtime: str = "auto") -> "NerTagger":
        """A checkpoint written by ``run_ner.py``; its vocabulary lies beside it unless given.
        ``runtime``: the inference linears (:class:`uer.tagging.inference.TokenExit`)."""
        from uer.tokenizers import Vocab

        path = Path(path)
        state = read_checkpoint(path)
        extra = state["extra"]
        for key in ("id2label", "vocab_size", "seq_length", "vocab_file"):
            if key not in extra:
                raise CheckpointError(f"{path} was not written by run_ner.py (no {key!r} in it)")
        config = checkpoint_config(state, path)
        model = build_model(config, vocab_size=extra["vocab_size"], labels_num=len(extra["id2label"]))
        load_state(model, state["model"], str(path), config.source)
        model.to(device)
        vocab = Vocab.load(vocab_path or path.parent / extra["vocab_file"])
        if len(vocab) != extra["vocab_size"]:
            raise CheckpointError(f"vocabulary has {len(vocab)} tokens, the model {extra['vocab_size']}")
        return cls(model, vocab, extra["id2label"], extra["seq_length"], runtime=runtime)

    def tag(self, chars: Sequence[Sequence[str]], speed: float = 0.0, window: int = 0,
            batch_size: int = 32) -> tuple[list[list[str]], list[list[int]]]:
        """Characters per sentence -> (tags, exit layers) per sentence."""
        chunks = encode_sentences(self.vocab, chars, None, self.seq_length)
        tags: list[list[str]] = [[] for _ in range(len(chunks))]
        exits: list[list[int]] = [[] for _ in range(len(chunks))]
        pad_id = self.vocab.pad_id
        for index in length_sorted_batches(chunks.lengths(), batch_size):
            batch = collate(chunks, index, pad_id, self.runner.device)
            out = self.runner.predict(batch["src"], batch["seg"], speed, window)
            pred, layers = out.probs.argmax(-1).cpu(), out.exit_layer.cpu()
            for j, r in enumerate(index):
                n = len(chunks.ids[r])
                tags[r] = [self.id2label[k] for k in pred[j, 1:n].tolist()]
                exits[r] = layers[j, 1:n].tolist()
        return assemble(chunks, tags), assemble(chunks, exits)

    def predict(self, texts: str | Sequence[str], speed: float = 0.0, window: int = 0, batch_size: int = 32) -> list[list[Entity]]:
        """Entities of each text (a single ``str`` is one text: the result is still a list of one)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a str or a list of str")
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0.0 <= speed <= 1.0:
            raise ValueError(f"speed must be a number in [0, 1], got {speed!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 0:
            raise ValueError(f"window must be an integer >= 0, got {window!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        results: list[list[Entity]] = [[] for _ in texts]
        positions = [[i for i, ch in enumerate(t) if not ch.isspace()] for t in texts]
        todo = [k for k, pos in enumerate(positions) if pos]
        if not todo:
            return results
        tags, _ = self.tag([[texts[k][i] for i in positions[k]] for k in todo], speed, window, batch_size)
        for k, sentence_tags in zip(todo, tags):
            pos, text = positions[k], texts[k]
            for kind, s, e in bio_spans(sentence_tags):
                start, end = pos[s], pos[e - 1] + 1
                results[k].append(Entity(kind, start, end, text[start:end]))
        return results
