"""Sequence encoders: a BLSTM over acoustic frames or word vectors that never reads padding."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BLSTMEncoder(nn.Module):
    """(B, T, F) sequence, (B, T) bool mask (real steps first) -> (B, T, 2H), zeros on padding.

    Packed sequences keep padded steps out of both directions. Items of length 0 (an utterance
    without words) are run over one step and then zeroed, so they cost nothing and never NaN.
    """

    def __init__(
        self, input_dim: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.out_dim = 2 * hidden_size
        self.lstm = nn.LSTM(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        total = x.shape[1]
        # Zero padding first: a length-0 item is run over its (padded) step 0.
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        lengths = mask.sum(1).clamp(min=1).cpu()  # pack needs CPU int64 lengths >= 1
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)  # (B, T, 2H)
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.dropout(out)
