"""A pickle that leaves a trace when unpickled: if any read path ever unpickles it, the marker file appears."""

from __future__ import annotations

import pickle
from pathlib import Path


class TouchOnUnpickle:
    """Unpickling this object calls `Path(marker).touch()`: harmless, but visible on disk."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def planted_payload(marker: Path, *, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    """Pickle bytes whose unpickling creates `marker`."""
    return pickle.dumps(TouchOnUnpickle(marker), protocol=protocol)
