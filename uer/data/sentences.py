"""Text clean-up used to build corpora: POS tags off, sentences apart, documents found.

Rules, not models: they are fast, deterministic and good enough to give sentence-pair targets
real neighbouring sentences.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

_TAGGED = re.compile(r"(\S+?)/[A-Za-z]+\d*$")
# a Chinese sentence ends at 。！？ (possibly doubled, e.g. ！？) plus any closing quotes/brackets
_ZH_END = re.compile(r"([。！？!?；]+[”’」』）)\]]*)")
# an English sentence ends at . ! ? followed by a space and an upper-case letter or a quote
_EN_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_EN_ABBREV = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Gen|Gov|Sen|Rep|Hon|No|Co|Inc|U\.S|vs|etc|i\.e|e\.g)\.$")
_ZH_FINAL = ("。", "！", "？", "”", "」", "…", "!", "?", "：", "；")


def strip_pos_tags(line: str) -> str:
    """People's Daily 1998 ``迈向/v  充满/v ... [中国/ns 政府/n]nt`` -> ``迈向充满...中国政府``."""
    words = []
    for item in line.split():
        item = item.lstrip("[")
        item = re.sub(r"\][a-z]+$", "", item)
        m = _TAGGED.match(item)
        words.append(m.group(1) if m else item)
    return "".join(words)


def split_zh(text: str) -> list[str]:
    """Chinese text -> sentences (punctuation kept with its sentence)."""
    parts = _ZH_END.split(text.strip())
    out, cur = [], ""
    for i, part in enumerate(parts):
        cur += part
        if i % 2 == 1:  # a terminator group closes the sentence
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def split_en(text: str) -> list[str]:
    """English text -> sentences, not splitting after common abbreviations (Mr., U.S.)."""
    out: list[str] = []
    for piece in _EN_END.split(" ".join(text.split())):
        if out and _EN_ABBREV.search(out[-1]):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out


def news_documents(paragraphs: Iterable[str]) -> Iterator[list[str]]:
    """Paragraphs of a newspaper (one per line, no article markers) -> articles as sentence lists.

    A paragraph without sentence-final punctuation (a headline, a byline, a dateline) that follows
    a finished paragraph starts a new article; headlines and bylines stay with the article below.
    """
    doc: list[str] = []
    body_seen = False
    for para in paragraphs:
        para = para.strip()
        if not para:
            continue
        heading = not re.sub(r"（[^（）]*）$", "", para).endswith(_ZH_FINAL)  # "谢谢！（新华社电）" is body
        if heading and body_seen:
            yield doc
            doc, body_seen = [], False
        if heading:
            doc.append(para)
        else:
            doc.extend(split_zh(para))
            body_seen = True
    if doc:
        yield doc
