"""The UER TSV reader: labels, pairs, and malformed rows that are errors (file:line) or counted."""
import pytest

from uer.data.tsv import TsvError, read_tsv, write_tsv

DATA = "tests/data"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_our_samples():
    train = read_tsv(f"{DATA}/fastbert_train.tsv")
    assert train.labels == ("0", "1", "2") and not train.pair and len(train.examples) == 96
    assert train.examples[0].text_a == "today car is bad" and train.examples[0].label == "0"
    assert train.label_ids()[:3] == [0, 0, 1]
    pair = read_tsv(f"{DATA}/fastbert_pair.tsv")
    assert pair.pair and pair.examples[0].text_b == "my movie is okay"


def test_labels_sort_numerically(tmp_path):
    path = write(tmp_path, "t.tsv", "label\ttext_a\n10\ta\n2\tb\n0\tc\n")
    assert read_tsv(path).labels == ("0", "2", "10")


@pytest.mark.parametrize("row, reason", [
    ("1\ttoo\tmany", "3 columns, the header has 2"),
    ("1", "1 columns, the header has 2"),
    ("1\t  ", "empty text_a"),
    ("7\tunknown label", "label '7' is not one of 0, 1"),
])
def test_malformed_row_is_an_error_with_file_and_line(tmp_path, row, reason):
    path = write(tmp_path, "dev.tsv", f"label\ttext_a\n0\tfine\n{row}\n1\talso fine\n")
    with pytest.raises(TsvError, match=f"dev.tsv:3: {reason}"):
        read_tsv(path, labels=("0", "1"))
    data = read_tsv(path, labels=("0", "1"), skip_malformed=True)
    assert [e.text_a for e in data.examples] == ["fine", "also fine"]
    assert data.skipped == [(3, reason)]


def test_header_is_checked(tmp_path):
    with pytest.raises(TsvError, match=r"h.tsv:1: header"):
        read_tsv(write(tmp_path, "h.tsv", "text\tlabel\nx\t1\n"))
    texts = read_tsv(write(tmp_path, "u.tsv", "text_a\nhello\nworld\n"), labelled=False)
    assert [e.text_a for e in texts.examples] == ["hello", "world"] and texts.examples[0].label is None
    with pytest.raises(TsvError, match="header"):
        read_tsv(write(tmp_path, "u2.tsv", "text_a\nhello\n"))  # labelled by default


def test_crlf_and_round_trip(tmp_path):
    path = write(tmp_path, "w.tsv", "label\ttext_a\ttext_b\r\n1\ta\tb\r\n0\tc\td\r\n")
    assert read_tsv(path).examples[0].text_b == "b"
    write_tsv(tmp_path / "o.tsv", [("1", "x y", "z"), ("0", "u", "v")], header=("label", "text_a", "text_b"))
    assert read_tsv(tmp_path / "o.tsv").examples[0].text_a == "x y"
    with pytest.raises(TsvError, match="at least 2 labels"):
        read_tsv(write(tmp_path, "one.tsv", "label\ttext_a\n1\ta\n1\tb\n"))
    with pytest.raises(ValueError, match="tab or a newline"):
        write_tsv(tmp_path / "bad.tsv", [("1", "x\ty")], header=("label", "text_a"))
