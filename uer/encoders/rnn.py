"""Recurrent encoders: ``rnn``, ``lstm``, ``gru`` and their bidirectional ``bi*`` forms (UER's names).

Each layer is its own single-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``, so FastBERT can step through
them. Padding is packed away (``pack_padded_sequence``): a real token's output never depends on
the padding after it, and the backward direction starts at the last real token, not at the padding.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from uer.encoders.base import Encoder, EncoderContext
from uer.encoders.configs import BiRnnConfig, RnnConfig
from uer.encoders.registry import ENCODERS
from uer.layers.dropout import Dropout


def packed_rnn(rnn: nn.RNNBase, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, T, in), (B, T) real-token mask (real tokens first) -> (B, T, out), zeros at padding.

    The padding is packed away, so it never reaches the recurrence. ``pack_padded_sequence``
    wants CPU lengths >= 1: an all-padding row runs one step, whose output is ignored."""
    lengths = real.sum(1).clamp_min(1).cpu()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class RnnEncoder(Encoder):
    """Unidirectional Elman RNN (tanh); subclasses choose the cell and the directions."""

    cell: type[nn.RNNBase] = nn.RNN
    bidirectional: bool = False

    @property
    def causal(self) -> bool:  # one direction: position t has seen only positions <= t
        return not self.bidirectional

    def __init__(self, cfg: RnnConfig) -> None:
        super().__init__()
        if self.bidirectional and cfg.hidden_size % 2:
            raise ValueError(f"a bidirectional encoder needs an even hidden_size, got {cfg.hidden_size}")
        self.cfg = cfg
        self.layers_num = cfg.layers_num
        self.output_size = cfg.hidden_size
        directions = 2 if self.bidirectional else 1
        self.rnn = nn.ModuleList(
            self.cell(cfg.hidden_size, cfg.hidden_size // directions, batch_first=True, bidirectional=self.bidirectional)
            for _ in range(cfg.layers_num)
        )
        self.dropout = Dropout(cfg.dropout)

    def layer(self, i: int, hidden: torch.Tensor, ctx: EncoderContext) -> torch.Tensor:
        """(B, T, H) -> (B, T, H); padding positions come out as zeros."""
        if i > 0:
            hidden = self.dropout(hidden)
        return packed_rnn(self.rnn[i], hidden, ctx.real)


@ENCODERS.register("rnn", config=RnnConfig)
class ElmanEncoder(RnnEncoder):
    """Elman RNN (tanh), left to right."""

    cell = nn.RNN


@ENCODERS.register("lstm", config=RnnConfig)
class LstmEncoder(RnnEncoder):
    """LSTM, left to right."""

    cell = nn.LSTM


@ENCODERS.register("gru", config=RnnConfig)
class GruEncoder(RnnEncoder):
    """GRU, left to right."""

    cell = nn.GRU


@ENCODERS.register("birnn", config=BiRnnConfig)
class BiRnnEncoder(RnnEncoder):
    """Elman RNN, both directions (hidden_size // 2 each), concatenated."""

    cell = nn.RNN
    bidirectional = True


@ENCODERS.register("bilstm", config=BiRnnConfig)
class BiLstmEncoder(RnnEncoder):
    """LSTM, both directions (hidden_size // 2 each), concatenated (ELMo-style)."""

    cell = nn.LSTM
    bidirectional = True


@ENCODERS.register("bigru", config=BiRnnConfig)
class BiGruEncoder(RnnEncoder):
    """GRU, both directions (hidden_size // 2 each), concatenated."""

    cell = nn.GRU
    bidirectional = True
