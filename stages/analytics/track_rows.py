"""Per-track state for analytics, kept as rows of named arrays keyed by tracker ID.

Lines and zones update every visible track each frame; looking rows up once per frame and then
working on whole columns keeps that a handful of numpy operations however many tracks there are.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TrackRows"]


class TrackRows:
    """Named columns, one row per tracker ID; unknown IDs get a row filled with defaults.

    ``columns`` maps a name to ``(shape after the row axis, dtype, fill value)``.
    """

    def __init__(self, columns: dict[str, tuple[tuple[int, ...], type, float]]) -> None:
        self._spec = columns
        self.ids = np.empty(0, np.int64)
        self.cols: dict[str, np.ndarray] = {
            k: np.empty((0, *shape), dt) for k, (shape, dt, _) in columns.items()
        }
        self._index: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def rows(self, track_ids: np.ndarray) -> np.ndarray:
        """Row of each ID in ``track_ids``, adding default rows for IDs not seen before."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        out = np.fromiter((self._index.get(i, -1) for i in ids.tolist()), np.intp, len(ids))
        new = np.flatnonzero(out < 0)
        if len(new):
            new_ids = np.unique(ids[new])
            start = len(self.ids)
            self.ids = np.concatenate([self.ids, new_ids])
            for name, (shape, dt, fill) in self._spec.items():
                pad: np.ndarray = np.full((len(new_ids), *shape), fill, dt)
                self.cols[name] = np.concatenate([self.cols[name], pad])
            self._index.update(zip(new_ids.tolist(), range(start, len(self.ids)), strict=True))
            out[new] = [self._index[i] for i in ids[new].tolist()]
        return out

    def drop(self, mask: np.ndarray) -> None:
        """Forget the rows where ``mask`` is True."""
        if not mask.any():
            return
        keep = ~mask
        self.ids = self.ids[keep]
        self.cols = {k: v[keep] for k, v in self.cols.items()}
        self._index = dict(zip(self.ids.tolist(), range(len(self.ids)), strict=True))
