"""An optional progress bar: tqdm when it is installed and wanted, nothing otherwise."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class Progress:
    """Counts iterations, showing a tqdm bar (with the loss, when known) if enabled."""

    def __init__(self, total: int, enabled: bool, description: str = "ials") -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=description)

    def update(self, loss: float | None = None) -> None:
        if self._bar is None:
            return
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.6g}", refresh=False)
        self._bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
