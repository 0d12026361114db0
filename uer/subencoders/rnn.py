import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from uer.layers.pooling import pool
from uer.subencoders.chars import Subencoder
from uer.subencoders.configs import RnnSubencoderConfig
from uer.subencoders.registry import SUBENCODERS


class RnnSubencoder(Subencoder):
    """Chars -> LSTM/GRU (hidden = emb_size) -> pooled over the token's real chars."""

    cell: type[nn.RNNBase]

    def __init__(self, cfg: RnnSubencoderConfig, *, vocab_tokens: list[str], emb_size: int) -> None:
        super().__init__(vocab_tokens, cfg.max_chars, cfg.char_emb_size)
        self.cfg = cfg
        self.rnn = self.cell(cfg.char_emb_size, emb_size, num_layers=cfg.layers_num, batch_first=True)

    def encode(self, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (N, C) -> (N, E)
        lengths = mask.sum(1).cpu()  # >= 1 for every token (see chars.token_symbols)
        packed = pack_padded_sequence(self.char_embedding(chars), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=chars.shape[1])  # (N, C, E)
        return pool(out, mask, self.cfg.pooling)


@SUBENCODERS.register("lstm", config=RnnSubencoderConfig)
class LstmSubencoder(RnnSubencoder):
    """Chars -> LSTM -> pooled over the real chars."""

    cell = nn.LSTM


@SUBENCODERS.register("gru", config=RnnSubencoderConfig)
class GruSubencoder(RnnSubencoder):
    """Chars -> GRU -> pooled over the real chars."""

    cell = nn.GRU
