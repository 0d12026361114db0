"""Subencoders really read the characters of each token."""
from __future__ import annotations

import pytest
import torch

import uer
from uer.config import config_from_dict
from uer.subencoders import SUBENCODERS
from uer.subencoders.chars import char_vocabulary
from uer.subencoders.chars import token_symbols

EMB = 24
# "a", "u", "c", "t" come first, so "cat" -> "cut" at index 9 keeps every other char id the same.
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "a", "u", "c", "t", "ing", "##ing", "cat", "the", "<s>", "▁on", "##"]
CAT = TOKENS.index("cat")


def make(name: str, tokens=TOKENS, max_chars: int = 8):
    torch.manual_seed(0)
    return SUBENCODERS.build({"name": name, "max_chars": max_chars}, vocab_tokens=list(tokens), emb_size=EMB).eval()


def every_token() -> torch.Tensor:  # (2, V): all ids, in two rows with a repeat, to exercise the dedup
    ids = torch.arange(len(TOKENS))
    return torch.stack([ids, ids.flip(0)])


def test_token_symbols():
    assert token_symbols("##ing") == ["i", "n", "g"]
    assert token_symbols("ing") == ["i", "n", "g"]
    assert token_symbols("[CLS]") == ["[CLS]"]
    assert token_symbols("[unused7]") == ["[unused7]"]
    assert token_symbols("<s>") == ["<s>"]
    assert token_symbols("▁on") == ["▁", "o", "n"]  # SentencePiece's word mark is a char
    assert token_symbols("##") == ["#", "#"]  # a bare '##' is text, not a continuation mark
    assert token_symbols("[") == ["["]
    assert token_symbols("") == [""]


def test_char_vocabulary_reflects_the_tokens():
    symbols, ids = char_vocabulary(TOKENS, max_chars=4)
    assert ids.shape == (len(TOKENS), 4) and ids.dtype == torch.long
    assert len(set(symbols)) == len(symbols)

    def spelled(token: str) -> list[str]:
        return [symbols[i - 1] for i in ids[TOKENS.index(token)].tolist() if i != 0]

    assert spelled("##ing") == ["i", "n", "g"]
    assert torch.equal(ids[TOKENS.index("##ing")], ids[TOKENS.index("ing")])
    assert spelled("[CLS]") == ["[CLS]"] and spelled("[PAD]") == ["[PAD]"]
    assert spelled("cat") == ["c", "a", "t"]
    assert ids[CAT].tolist()[3] == 0  # char padding is id 0
    assert spelled("the") == ["t", "h", "e"]
    assert "[CLS]" in symbols and "C" not in symbols  # a special token's letters are not chars
    # Truncation keeps the first max_chars chars.
    _, short = char_vocabulary(["abcdef"], max_chars=3)
    assert short.tolist() == [[1, 2, 3]]


@pytest.mark.parametrize("name", SUBENCODERS.names())
def test_same_spelling_same_output_new_spelling_new_output(name):
    sub = make(name)
    assert sub.char_ids.shape == (len(TOKENS), 8)
    with torch.no_grad():
        out = sub(every_token())  # (2, V, E)
    assert out.shape == (2, len(TOKENS), EMB) and torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[1].flip(0), rtol=0, atol=0)  # a token's output does not depend on where it is
    torch.testing.assert_close(out[0, TOKENS.index("##ing")], out[0, TOKENS.index("ing")], rtol=0, atol=0)
    assert not torch.allclose(out[0, TOKENS.index("[PAD]")], out[0, TOKENS.index("[CLS]")])

    respelled = list(TOKENS)
    respelled[CAT] = "cut"
    other = make(name, respelled)
    assert other.symbols == sub.symbols  # same char ids: only the spelling of one token changed
    with torch.no_grad():
        out2 = other(every_token())
    assert (out2[0, CAT] - out[0, CAT]).abs().amax() > 1e-4
    keep = torch.arange(len(TOKENS)) != CAT
    torch.testing.assert_close(out2[0, keep], out[0, keep], rtol=0, atol=0)


@pytest.mark.parametrize("name", SUBENCODERS.names())
def test_char_padding_is_masked(name):
    """The same tokens with more room for chars (more char padding) give the same output."""
    with torch.no_grad():
        short, long = make(name, max_chars=5)(every_token()), make(name, max_chars=12)(every_token())
    torch.testing.assert_close(short, long, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", SUBENCODERS.names())
def test_order_of_chars_matters_except_for_avg(name):
    tokens = ["[PAD]", "ab", "ba"]
    with torch.no_grad():
        out = make(name, tokens)(torch.tensor([[1, 2]]))
    if name == "avg":
        torch.testing.assert_close(out[0, 0], out[0, 1])
    else:
        assert (out[0, 0] - out[0, 1]).abs().amax() > 1e-4


def test_checkpoint_carries_the_char_vocabulary():
    sub = make("lstm")
    assert "char_ids" in sub.state_dict()
    fresh = make("lstm")
    fresh.char_ids.zero_()
    fresh.load_state_dict(sub.state_dict(), strict=True)
    assert torch.equal(fresh.char_ids, sub.char_ids)


def test_builder_adds_the_subencoder_to_the_word_embedding():
    data = {
        "embedding": {"emb_size": EMB, "components": ["word"], "dropout": 0.0},
        "encoder": {"name": "transformer", "hidden_size": 32, "layers_num": 1, "heads_num": 4, "feedforward_size": 37},
        "target": {"components": ["mlm"]},
        "subencoder": {"name": "cnn", "max_chars": 6},
    }
    torch.manual_seed(0)
    model = uer.build_model(config_from_dict(data), vocab_tokens=TOKENS).eval()
    src, seg = every_token(), torch.ones(2, len(TOKENS), dtype=torch.long)
    with torch.no_grad():
        expected = model.embedding.projection(
            model.embedding.layer_norm(model.embedding.word(src) + model.subencoder(src))
        )
        torch.testing.assert_close(model.embed(src, seg), expected)
    with pytest.raises(ValueError, match="vocab_tokens"):
        uer.build_model(config_from_dict(data), vocab_size=len(TOKENS))
