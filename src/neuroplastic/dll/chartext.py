"""``chartext``: next-character prediction on a small public-domain text shipped with the package.

The text is ``neuroplastic/dll/data/corpus.txt`` (source and licence in ``data/SOURCE.md``). Inputs are
one-hot characters ``[N, T, V]`` (stored ``uint8`` 0/255, so the data pipeline's ``/255`` gives 0/1) and
targets the next character at every step ``[N, T]`` (``int64``). The first 90 % of the text gives the
training windows, the last 10 % the test windows (non-overlapping windows of ``SEQ_LEN`` characters).
The vocabulary is the sorted set of characters of the whole text.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import torch

from ..data.core import ArrayDataset, DatasetError, DatasetInfo, register_dataset

SEQ_LEN = 64
_FILE = "data/corpus.txt"


def read_text() -> str:
    """The shipped corpus as a string (clear error if it is missing)."""
    try:
        return resources.files("neuroplastic.dll").joinpath(_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"chartext: neuroplastic/dll/{_FILE} is missing; reinstall the package") from None


def vocabulary(text: str) -> list[str]:
    """Sorted distinct characters of ``text``."""
    return sorted(set(text))


def _windows(ids: torch.Tensor, n_vocab: int, seq_len: int, name: str, classes) -> ArrayDataset:
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise DatasetError(f"chartext: text too short for windows of {seq_len} characters")
    src = ids[: n * seq_len].reshape(n, seq_len)
    tgt = ids[1: n * seq_len + 1].reshape(n, seq_len)
    x = torch.zeros(n, seq_len, n_vocab, dtype=torch.uint8)
    x.scatter_(2, src.unsqueeze(-1), 255)
    return ArrayDataset(x, tgt.long(), name, classes)


def load_chartext(root=None, download: bool = False, seed: int = 0, seq_len: int = SEQ_LEN,
                  ) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)`` windows of the shipped text; ``root``/``download``/``seed`` are ignored."""
    text = read_text()
    vocab = vocabulary(text)
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    classes = tuple(vocab)
    return (_windows(ids[:cut], len(vocab), seq_len, "chartext", classes),
            _windows(ids[cut:], len(vocab), seq_len, "chartext", classes))


def _n_vocab() -> int:
    try:
        return len(vocabulary(read_text()))
    except DatasetError:
        return 0


def text_sha256() -> str:
    """SHA-256 of the shipped corpus (recorded with results)."""
    return hashlib.sha256(read_text().encode("utf-8")).hexdigest()


register_dataset(DatasetInfo("chartext", load_chartext, _n_vocab(),
                             "next-character prediction on a shipped public-domain text (one-hot [N, 64, V])",
                             embedded=True, task="sequence"))
