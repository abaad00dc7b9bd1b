"""A decoded route: the most probable legal chain from start to end under the model's path probabilities.

An inference mode beside the raw argmax, never in its place: it reads only the model's outputs and
the input (which cells the vehicle may enter), never the true costs' ranking of routes, so what it
finds is the model's route made into one connected chain. Running Dijkstra on the true costs would
be the oracle, not the model.

Beside it, a reference that reads no model at all: the *fewest-cell* route, the legal start->end chain
with the fewest cells (every cell weighed alike, so the costs play no part). A city's cheapest route is
often also its shortest, so that chain is already optimal in a share of tasks (63% of 10x10, 24% of
40x40 with the default task settings); a model's route shows it read the costs only where it beats it.
"""

from __future__ import annotations

import numpy as np
import torch

from oracle.chain import most_probable_chains
from oracle.vocab import PATH


def _as_route(mask: np.ndarray, data: dict[str, torch.Tensor]) -> torch.Tensor:
    mask_t = torch.from_numpy(mask).to(data["inputs"].device)
    return torch.where(mask_t, torch.full_like(data["inputs"], PATH), data["inputs"])


def decode_routes(logits: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens [B, N*N]: the input with the cells of the most probable legal start->end chain set to PATH."""
    p = torch.softmax(logits.float(), dim=-1)[..., PATH]
    legal = torch.isfinite(data["costs"])
    mask, _ = most_probable_chains(
        p.cpu().numpy(), legal.cpu().numpy(), data["start"].cpu().numpy(), data["end"].cpu().numpy()
    )
    return _as_route(mask, data)


def fewest_cell_routes(data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Tokens [B, N*N]: the input with the cells of a legal start->end chain with the fewest cells set to PATH.

    Costs are read only to know which cells are legal: the cost-blind reference a model's route must beat.
    """
    legal = torch.isfinite(data["costs"]).cpu().numpy()
    mask, _ = most_probable_chains(
        np.full(legal.shape, 0.5), legal, data["start"].cpu().numpy(), data["end"].cpu().numpy()
    )
    return _as_route(mask, data)
