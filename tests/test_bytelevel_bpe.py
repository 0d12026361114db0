"""The bytelevel_bpe tokenizer (a tokenizer.json through HuggingFace ``tokenizers``) against transformers'."""
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")

from uer.tokenizers import build_tokenizer  # noqa: E402
from uer.tokenizers.bytelevel_bpe import BytelevelBpeTokenizerConfig  # noqa: E402

TEXTS = ["the quick brown fox jumps over the lazy dog", "Hello world, héllo wörld!", "The new movie is awesome."] * 3
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def train_bytelevel(folder: Path, size: int = 300, specials=tuple(ROBERTA_SPECIALS)) -> Path:
    """A tiny byte-level BPE trained on our own sentences, saved as folder/tokenizer.json."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS, vocab_size=size, min_frequency=1, special_tokens=list(specials), show_progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def test_ids_and_roles_match_transformers_roberta(tmp_path):
    transformers = pytest.importorskip("transformers")
    path = train_bytelevel(tmp_path)
    tok = build_tokenizer(BytelevelBpeTokenizerConfig(vocab_path=str(path)))
    ref = transformers.RobertaTokenizerFast(tokenizer_file=str(path))
    for text in ("the quick brown fox", "Héllo, wörld!  twice  spaced", "unseen Zebra 123"):
        ids = [tok.vocab.cls_id] + tok.encode(text) + [tok.vocab.sep_id]
        assert ids == ref(text)["input_ids"]
        assert tok.tokenize(text) == ref.tokenize(text)
        assert tok.decode(tok.encode(text)) == text  # byte-level: lossless
    assert (tok.vocab.pad_id, tok.vocab.mask_id) == (ref.pad_token_id, ref.mask_token_id)


def test_gpt2_style_vocabulary_uses_endoftext_for_its_roles(tmp_path):
    path = train_bytelevel(tmp_path, specials=("<|endoftext|>",))
    tok = build_tokenizer(BytelevelBpeTokenizerConfig(vocab_path=str(path)))
    assert tok.vocab.cls_id == tok.vocab.sep_id == tok.vocab.pad_id == 0
    with pytest.raises(ValueError, match="<mask>"):
        tok.vocab.mask_id


def test_a_file_that_is_no_tokenizer_json_is_one_clear_error(tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\n[UNK]\n")
    with pytest.raises(ValueError, match="is not a tokenizer.json"):
        build_tokenizer(BytelevelBpeTokenizerConfig(vocab_path=str(bad)))
    with pytest.raises(ValueError, match="needs vocab_path"):
        build_tokenizer(BytelevelBpeTokenizerConfig())
