"""The classifier head."""

from __future__ import annotations

from torch import Tensor, nn


class ClassifierHead(nn.Module):
    """(B, D) -> (B, C) logits: dropout, an optional hidden ReLU layer, a linear layer."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0, hidden: int = 0):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, num_classes))
        self.net = nn.Sequential(*layers)

    @property
    def output(self) -> nn.Linear:
        """The last linear layer: (hidden or in_dim) -> C logits."""
        layer = self.net[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
