"""Constant-velocity Kalman filter over boxes, batched over all tracks of a stream.

State per track: ``(cx, cy, w, h, vcx, vcy, vw, vh)`` in pixels and pixels per frame.
ByteTrack filters ``(cx, cy, aspect, h)`` with noise scaled by height only, which under-weights
width changes of wide objects (cars, buses seen side-on); filtering width and height directly,
each with noise proportional to itself (as BoT-SORT does), tracks both shapes well.
All tracks are predicted and updated together: means are (N, 8), covariances (N, 8, 8).
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoxKalman", "cxcywh_to_xyxy", "xyxy_to_cxcywh"]

_NDIM = 4
_F = np.eye(2 * _NDIM)
_F[:_NDIM, _NDIM:] = np.eye(_NDIM)
_MIN_SIZE = 1.0  # px floor on w/h in the noise model, so a degenerate box keeps some noise


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) from corners to centre/size, as float64."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2] + wh / 2, wh], axis=1)


def cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """Boxes (N, 4) from centre/size to corners."""
    b = np.asarray(cxcywh, np.float64).reshape(-1, 4)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


class BoxKalman:
    """Stateless batched filter: the caller keeps ``mean`` and ``cov`` arrays per track.

    Noise standard deviations are ``std_weight_position * size`` for positions and sizes and
    ``std_weight_velocity * size`` for velocities, so the filter behaves the same for a near
    and a far object.
    """

    def __init__(
        self, std_weight_position: float = 1.0 / 20, std_weight_velocity: float = 1.0 / 160
    ) -> None:
        self.std_pos = std_weight_position
        self.std_vel = std_weight_velocity

    @staticmethod
    def _sizes(boxes: np.ndarray) -> np.ndarray:
        """(N, 4) of (w, h, w, h), floored, to scale noise per coordinate."""
        wh = np.maximum(boxes[:, 2:4], _MIN_SIZE)
        return np.concatenate([wh, wh], axis=1)

    def initiate(self, cxcywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start tracks at measured boxes (N, 4) with zero velocity and a wide velocity prior."""
        z = np.asarray(cxcywh, np.float64).reshape(-1, 4)
        mean = np.concatenate([z, np.zeros_like(z)], axis=1)
        s = self._sizes(z)
        std = np.concatenate([2 * self.std_pos * s, 10 * self.std_vel * s], axis=1)
        cov = np.zeros((len(z), 2 * _NDIM, 2 * _NDIM))
        idx = np.arange(2 * _NDIM)
        cov[:, idx, idx] = std**2
        return mean, cov

    def predict(
        self, mean: np.ndarray, cov: np.ndarray, steps: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance every track ``steps`` frames (several after dropped frames)."""
        idx = np.arange(2 * _NDIM)
        for _ in range(max(int(steps), 0)):
            s = self._sizes(mean)
            q = np.concatenate([self.std_pos * s, self.std_vel * s], axis=1) ** 2
            mean = mean @ _F.T
            cov = _F @ cov @ _F.T
            cov[:, idx, idx] += q
        return mean, cov

    def update(
        self, mean: np.ndarray, cov: np.ndarray, cxcywh: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct tracks (N, 8) with their matched measurements (N, 4)."""
        z = np.asarray(cxcywh, np.float64).reshape(-1, 4)
        r = (self.std_pos * self._sizes(mean)) ** 2
        idx = np.arange(_NDIM)
        s_mat = cov[:, :_NDIM, :_NDIM].copy()
        s_mat[:, idx, idx] += r
        ph = cov[:, :, :_NDIM]  # P H^T, (N, 8, 4)
        gain_t = np.linalg.solve(s_mat, np.swapaxes(ph, 1, 2))  # K^T = S^-1 H P, (N, 4, 8)
        innovation = z - mean[:, :_NDIM]
        mean = mean + np.einsum("nij,ni->nj", gain_t, innovation)
        cov = cov - ph @ gain_t
        return mean, cov
