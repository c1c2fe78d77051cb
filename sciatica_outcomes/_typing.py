"""Type aliases shared by the stages (static typing only; nothing here exists at run time beyond aliases)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray", "IntArray"]

FloatArray: TypeAlias = npt.NDArray[np.float64]
"""A float64 array (design matrices, parameter vectors, batches of small matrices)."""
IntArray: TypeAlias = npt.NDArray[np.int64]
"""An int64 array (group indices, positions)."""
BoolArray: TypeAlias = npt.NDArray[np.bool_]
"""A boolean mask."""
