"""What a registration gives: `Transform` (a similarity or affine map from a frame's pixels to the reference's), `RegistrationError`, `overlap_fraction`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ReduxError

MAD_TO_SIGMA = 1.4826


class RegistrationError(ReduxError):
    """A frame that can't be placed on the reference grid; the message says why."""


@dataclass
class Transform:
    """``q = matrix @ p + offset``: frame pixel (x, y) -> reference pixel (x, y), 0-based."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(2))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))
    method: str = "identity"
    n_stars: int = 0
    residual: float = 0.0          # rms distance of matched stars after the fit, pixels

    def apply(self, x, y):
        """Reference-grid positions of frame positions (x, y)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        m, t = self.matrix, self.offset
        return m[0, 0] * x + m[0, 1] * y + t[0], m[1, 0] * x + m[1, 1] * y + t[1]

    def inverse(self, x, y):
        """Frame positions of reference-grid positions (x, y)."""
        inv = np.linalg.inv(self.matrix)
        x, y = np.asarray(x, float) - self.offset[0], np.asarray(y, float) - self.offset[1]
        return inv[0, 0] * x + inv[0, 1] * y, inv[1, 0] * x + inv[1, 1] * y

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def flipped(self) -> bool:
        return bool(np.linalg.det(self.matrix) < 0)

    def summary(self) -> dict:
        """A table row: method, shift, rotation, scale, stars used, residual."""
        return {"method": self.method, "dx": float(self.offset[0]), "dy": float(self.offset[1]),
                "rotation_deg": self.rotation_deg, "scale": self.scale,
                "flipped": self.flipped, "n_stars": self.n_stars, "residual_px": self.residual}


def overlap_fraction(transform: Transform, shape, ref_shape) -> float:
    """Fraction of the reference grid that the transformed frame covers."""
    ny, nx = ref_shape
    yy, xx = np.mgrid[0:ny:32j, 0:nx:32j]
    fx, fy = transform.inverse(xx, yy)
    inside = (fx >= 0) & (fx <= shape[1] - 1) & (fy >= 0) & (fy <= shape[0] - 1)
    return float(inside.mean())


