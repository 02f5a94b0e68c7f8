"""Cut streamed text at the first stop sequence, holding back only what could still match."""

from __future__ import annotations


class StopScanner:
    """Feed text pieces; get back what is safe to emit.

    The CLI has no stop-sequence option, so claude-tray applies stop sequences to the
    output itself. Text is held back only while it could be the start of a stop
    sequence, and the cut is the same however the text was split into pieces: a match
    counts only once no stop sequence that starts earlier can still complete.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._buffer = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if self.matched is not None:
            return ""
        if not self._stops:
            return text
        buf = self._buffer + text
        hits = [(buf.find(s), -len(s), s) for s in self._stops if s in buf]
        at, _, stop = min(hits) if hits else (len(buf), 0, "")
        pending = self._partial_start(buf, at)
        if hits and pending is None:
            self.matched, self._buffer = stop, ""
            return buf[:at]
        cut = at if pending is None else pending
        out, self._buffer = buf[:cut], buf[cut:]
        return out

    def _partial_start(self, buf: str, before: int) -> int | None:
        """The first position before `before` where the rest of `buf` could still grow
        into a stop sequence."""
        for start in range(max(0, len(buf) - max(map(len, self._stops)) + 1), before):
            tail = buf[start:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self._stops):
                return start
        return None

    def flush(self) -> str:
        out, self._buffer = ("" if self.matched is not None else self._buffer), ""
        return out
