"""Cut streamed text at the first stop sequence, holding back only what could still match."""

from __future__ import annotations


class StopScanner:
    """Feed text pieces; get back what is safe to emit.

    The CLI has no stop-sequence option, so claude-tray applies stop sequences to the
    output itself: text is released as soon as no stop sequence can begin in it.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""
        if not self._stops:
            return text
        self._buffer += text
        hits = [(self._buffer.find(s), s) for s in self._stops]
        hits = [(at, s) for at, s in hits if at >= 0]
        if hits:
            at, stop = min(hits)
            self.matched = stop
            out, self._buffer = self._buffer[:at], ""
            return out
        cut = len(self._buffer) - self._hold
        if cut <= 0:
            return ""
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out

    def flush(self) -> str:
        out, self._buffer = ("" if self.matched is not None else self._buffer), ""
        return out
