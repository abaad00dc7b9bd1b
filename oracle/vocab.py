"""The routing task's fixed semantics: terrain, traffic, vehicles, costs, access, token ids.

Every cell is one token. A token names the cell's road type and traffic state, so a jam never
hides the road beneath it; the start token also names the vehicle, so the input alone decides
the label. Labels are the input with every cell of the canonical optimal path set to ``PATH``.

Token ids (``VOCAB`` is the name -> id mapping written to ``dataset.json``):

====  ===========================  ==========================================
id    name                         meaning
====  ===========================  ==========================================
0     PAD                          padding (HRM convention: ``pad_id = 0``)
1     PATH                         a cell of the route (labels only)
2     OBSTACLE                     building block or park
3-11  ROAD_<road>_<traffic>        road in {SMALL, LARGE, DIAGONAL} x traffic in {FREE, JAM, CLOSED}
12-17 END_<road>_<traffic>         the destination: road x {FREE, JAM}
18-41 START_<vehicle>_<road>_<tr>  the origin: vehicle x road x {FREE, JAM}
====  ===========================  ==========================================
"""

from __future__ import annotations

import numpy as np

# Terrain codes (per cell).
OBSTACLE, SMALL, LARGE, DIAGONAL = 0, 1, 2, 3
ROADS = (SMALL, LARGE, DIAGONAL)
TERRAIN_NAMES = ("OBSTACLE", "SMALL", "LARGE", "DIAGONAL")

# Traffic codes (per cell; obstacles are always FREE).
FREE, JAM, CLOSED = 0, 1, 2
TRAFFIC_NAMES = ("FREE", "JAM", "CLOSED")

# Vehicles.
BIKE, CAR, VAN, TRUCK = 0, 1, 2, 3
VEHICLE_NAMES = ("BIKE", "CAR", "VAN", "TRUCK")
NUM_VEHICLES = 4

# Cost of entering a cell, indexed by terrain (obstacle is never entered).
BASE_COST = np.array([0, 3, 1, 2], dtype=np.int32)
# A jam multiplies the entry cost: bikes weave through traffic, motor vehicles crawl.
JAM_MULTIPLIER = np.array([1, 4, 4, 4], dtype=np.int32)
# ACCESS[vehicle, terrain]: may the vehicle use that terrain at all?
ACCESS = np.array(
    [
        [False, True, True, True],  # bike: small, large, diagonal
        [False, True, True, True],  # car: small, large, diagonal
        [False, False, True, True],  # van: large, diagonal
        [False, False, True, False],  # truck: large only
    ],
    dtype=np.bool_,
)
MAX_CELL_COST = int(BASE_COST.max() * JAM_MULTIPLIER.max())

# Token ids.
PAD, PATH, OBSTACLE_TOKEN = 0, 1, 2
ROAD_TOKEN_BASE = 3  # + 3 * road_index + traffic
END_TOKEN_BASE = 12  # + 2 * road_index + traffic (FREE or JAM)
START_TOKEN_BASE = 18  # + 6 * vehicle + 2 * road_index + traffic (FREE or JAM)
VOCAB_SIZE = 42


def road_index(terrain: int) -> int:
    """Position of a road terrain in ``ROADS`` (SMALL 0, LARGE 1, DIAGONAL 2)."""
    return terrain - 1


def _build_vocab() -> dict[str, int]:
    vocab = {"PAD": PAD, "PATH": PATH, "OBSTACLE": OBSTACLE_TOKEN}
    for road in ROADS:
        r = road_index(road)
        for traffic in (FREE, JAM, CLOSED):
            vocab[f"ROAD_{TERRAIN_NAMES[road]}_{TRAFFIC_NAMES[traffic]}"] = ROAD_TOKEN_BASE + 3 * r + traffic
        for traffic in (FREE, JAM):
            vocab[f"END_{TERRAIN_NAMES[road]}_{TRAFFIC_NAMES[traffic]}"] = END_TOKEN_BASE + 2 * r + traffic
    for vehicle in range(NUM_VEHICLES):
        for road in ROADS:
            r = road_index(road)
            for traffic in (FREE, JAM):
                name = f"START_{VEHICLE_NAMES[vehicle]}_{TERRAIN_NAMES[road]}_{TRAFFIC_NAMES[traffic]}"
                vocab[name] = START_TOKEN_BASE + 6 * vehicle + 2 * r + traffic
    assert sorted(vocab.values()) == list(range(VOCAB_SIZE))
    return vocab


VOCAB: dict[str, int] = _build_vocab()


def _build_decode_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token id: terrain, traffic and marker (0 none, 1 start, 2 end); -1 for PAD/PATH."""
    terrain = np.full(VOCAB_SIZE, -1, dtype=np.int8)
    traffic = np.full(VOCAB_SIZE, -1, dtype=np.int8)
    marker = np.zeros(VOCAB_SIZE, dtype=np.int8)
    terrain[OBSTACLE_TOKEN], traffic[OBSTACLE_TOKEN] = OBSTACLE, FREE
    for name, token in VOCAB.items():
        parts = name.split("_")
        if parts[0] in ("ROAD", "END", "START"):
            terrain[token] = TERRAIN_NAMES.index(parts[-2])
            traffic[token] = TRAFFIC_NAMES.index(parts[-1])
            marker[token] = {"ROAD": 0, "START": 1, "END": 2}[parts[0]]
    return terrain, traffic, marker


TOKEN_TERRAIN, TOKEN_TRAFFIC, TOKEN_MARKER = _build_decode_tables()


def vehicle_of_start_token(token):
    """The vehicle named by a START token (an int, or an integer array of START tokens)."""
    return (np.asarray(token).astype(np.int64) - START_TOKEN_BASE) // 6


def entry_costs(terrain: np.ndarray, traffic: np.ndarray, vehicle: int) -> np.ndarray:
    """Cost of entering each cell for ``vehicle`` as float32, +inf where it may not go.

    Pure reference implementation of the documented table (the Numba generator has its own
    inner-loop copy); tests and ``verify_paths`` users recompute costs with it.
    """
    terrain = np.asarray(terrain)
    traffic = np.asarray(traffic)
    allowed = ACCESS[vehicle][terrain] & (traffic != CLOSED)
    cost = BASE_COST[terrain] * np.where(traffic == JAM, JAM_MULTIPLIER[vehicle], 1)
    return np.where(allowed, cost.astype(np.float32), np.float32(np.inf)).astype(np.float32)


def decode_inputs(inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token grid(s) -> (terrain, traffic, marker) arrays of the same shape."""
    inputs = np.asarray(inputs)
    return TOKEN_TERRAIN[inputs], TOKEN_TRAFFIC[inputs], TOKEN_MARKER[inputs]


def costs_from_inputs(inputs: np.ndarray) -> np.ndarray:
    """Recompute per-cell entry costs [n, N*N] from input tokens alone (vehicle read from START)."""
    inputs = np.atleast_2d(np.asarray(inputs))
    terrain, traffic, marker = decode_inputs(inputs)
    starts = np.argmax(marker == 1, axis=1)
    vehicles = vehicle_of_start_token(inputs[np.arange(len(inputs)), starts])
    out = np.empty(inputs.shape, dtype=np.float32)
    for i, vehicle in enumerate(vehicles):
        out[i] = entry_costs(terrain[i], traffic[i], int(vehicle))
    return out


def describe() -> dict:
    """The task's semantics as plain JSON-serialisable data (for ``dataset.json``)."""
    return {
        "vocab": VOCAB,
        "terrain": list(TERRAIN_NAMES),
        "traffic": list(TRAFFIC_NAMES),
        "vehicles": [v.lower() for v in VEHICLE_NAMES],
        "base_cost": {TERRAIN_NAMES[t].lower(): int(BASE_COST[t]) for t in ROADS},
        "jam_multiplier": {VEHICLE_NAMES[v].lower(): int(JAM_MULTIPLIER[v]) for v in range(NUM_VEHICLES)},
        "access": {
            VEHICLE_NAMES[v].lower(): [TERRAIN_NAMES[t].lower() for t in ROADS if ACCESS[v, t]]
            for v in range(NUM_VEHICLES)
        },
        "impassable": ["obstacle", "closed"],
        "route_cost": "sum of entry costs over the route's cells, the start cell excluded",
    }
