"""A decoded route: the most probable legal chain from start to end under the model's path probabilities.

An inference mode beside the raw argmax, never in its place: it reads only the model's outputs and
the input (which cells the vehicle may enter), never the true costs' ranking of routes, so what it
finds is the model's route made into one connected chain. Running Dijkstra on the true costs would
be the oracle, not the model.
"""

from __future__ import annotations

import torch

from oracle.chain import most_probable_chains
from oracle.vocab import PATH


def decode_routes(logits: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens [B, N*N]: the input with the cells of the most probable legal start->end chain set to PATH."""
    p = torch.softmax(logits.float(), dim=-1)[..., PATH]
    legal = torch.isfinite(data["costs"])
    mask, _ = most_probable_chains(
        p.cpu().numpy(), legal.cpu().numpy(), data["start"].cpu().numpy(), data["end"].cpu().numpy()
    )
    mask = torch.from_numpy(mask).to(logits.device)
    return torch.where(mask, torch.full_like(data["inputs"], PATH), data["inputs"])
