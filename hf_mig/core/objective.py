"""The concave information function phi of MIG's dataset information E(S) = sum_k phi(x_k)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PHI_KINDS = ("pow", "exp")


@dataclass(frozen=True)
class Objective:
    """phi and its derivative.

    * ``phi="pow"``: ``phi(x) = (x + a) ** b``; concave and increasing for ``0 < b <= 1``.
    * ``phi="exp"``: ``phi(x) = 1 - exp(-alpha * x)``; concave and increasing for ``alpha > 0``.

    ``is_concave`` says whether per-sample gains can only fall as the selection grows, which is
    what makes lazy greedy exact.
    """

    phi: str = "pow"
    a: float = 1e-6
    b: float = 0.8
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.phi not in PHI_KINDS:
            raise ValueError(f"phi must be one of {PHI_KINDS}, got {self.phi!r}")
        for name in ("a", "b", "alpha"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"phi_{name} must be a finite number, got {value!r}")
        if self.phi == "pow":
            if self.a <= 0:
                raise ValueError(
                    f"phi_a must be > 0 for phi='pow' (phi'(0) is infinite), got {self.a}"
                )
            if self.b <= 0:
                raise ValueError(f"phi_b must be > 0 for phi='pow', got {self.b}")
        if self.phi == "exp" and self.alpha <= 0:
            raise ValueError(f"phi_alpha must be > 0 for phi='exp', got {self.alpha}")

    @property
    def code(self) -> int:
        """Integer tag of phi used by the compiled kernels (0 = pow, 1 = exp)."""
        return PHI_KINDS.index(self.phi)

    @property
    def is_concave(self) -> bool:
        return self.phi == "exp" or self.b <= 1.0

    @property
    def kernel_args(self) -> tuple[int, float, float, float]:
        """``(code, a, b, alpha)``: phi as the compiled kernels take it."""
        return (self.code, float(self.a), float(self.b), float(self.alpha))

    def value(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.phi == "pow":
            return (x + self.a) ** self.b
        return 1.0 - np.exp(-self.alpha * x)

    def derivative(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.phi == "pow":
            return self.b * (x + self.a) ** (self.b - 1.0)
        return self.alpha * np.exp(-self.alpha * x)

    def to_dict(self) -> dict:
        return {"phi": self.phi, "phi_a": self.a, "phi_b": self.b, "phi_alpha": self.alpha}
