"""StopScanner: text pieces in, the text safe to show out, cut at the first stop sequence."""

from __future__ import annotations

import pytest

from tray_app.protocol.stops import StopScanner


def scan(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, str, str | None]:
    """What the feeds released, what flush released, and the stop that matched.

    How much each single feed holds back is checked separately, below.
    """
    scanner = StopScanner(stops)
    fed = "".join(scanner.feed(piece) for piece in pieces)
    return fed, scanner.flush(), scanner.matched


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        pytest.param((), ["Hel", "lo"], ("Hello", "", None), id="no-stops-pass-through"),
        pytest.param(("",), ["Hel", "lo"], ("Hello", "", None), id="empty-stop-ignored"),
        pytest.param(
            ("world",), ["Hello, world!"], ("Hello, ", "", "world"), id="match-in-one-piece"
        ),
        pytest.param(("Hel",), ["Hello"], ("", "", "Hel"), id="match-at-the-start"),
        pytest.param(
            ("lo, w",),
            ["Hel", "lo, ", "world", "!"],
            ("Hel", "", "lo, w"),
            id="match-across-pieces",
        ),
        pytest.param(("abc",), ["a", "b", "c", "d"], ("", "", "abc"), id="one-char-pieces"),
        pytest.param(
            ("world", "lo"),
            ["Hello, world"],
            ("Hel", "", "lo"),
            id="earliest-of-two-in-one-piece",
        ),
        pytest.param(
            ("o, w", "llo"),
            ["He", "llo, world"],
            ("He", "", "llo"),
            id="earliest-of-two-across-pieces",
        ),
        pytest.param(
            ("abcd", "bc"),
            ["abcde"],
            ("", "", "abcd"),
            id="overlapping-earliest-start-wins",
        ),
        pytest.param(
            ("xyz",), ["Hello, xy"], ("Hello, ", "xy", None), id="flush-releases-held-text"
        ),
        pytest.param(("xyz",), ["xy", "zz", "more"], ("", "", "xyz"), id="held-match"),
        pytest.param(
            ("END",),
            ["one END", " two", " three"],
            ("one ", "", "END"),
            id="nothing-after-a-match",
        ),
    ],
)
def test_scan(
    stops: tuple[str, ...], pieces: list[str], expected: tuple[str, str, str | None]
) -> None:
    assert scan(stops, pieces) == expected


@pytest.mark.parametrize(
    ("stops", "pieces"),
    [
        pytest.param(("lo, w",), ["Hel", "lo, ", "world", "!"], id="one"),
        pytest.param(("world", "o"), ["He", "l", "lo, wor", "ld"], id="two"),
        pytest.param(("xyz",), ["abc", "xy", "q"], id="near-miss"),
        pytest.param(("ab", "b"), ["a", "a", "b"], id="repeated-prefix"),
    ],
)
def test_shown_text_is_the_whole_text_cut_at_the_first_stop(
    stops: tuple[str, ...], pieces: list[str]
) -> None:
    whole = "".join(pieces)
    hits = [whole.find(s) for s in stops if s in whole]
    expected = whole[: min(hits)] if hits else whole
    fed, flushed, _ = scan(stops, pieces)
    assert fed + flushed == expected


@pytest.mark.parametrize(
    ("stops", "pieces"),
    [
        pytest.param(("lo, w",), ["Hel", "lo, ", "world", "!"], id="simple"),
        pytest.param(("abcd", "bc"), ["ab", "c", "d"], id="inner-stop-completes-first"),
        pytest.param(("abcd", "bc"), ["a", "bcd"], id="inner-stop-same-piece"),
    ],
)
def test_result_does_not_depend_on_how_the_text_was_split(
    stops: tuple[str, ...], pieces: list[str]
) -> None:
    fed, flushed, matched = scan(stops, pieces)
    whole_fed, whole_flushed, whole_matched = scan(stops, ["".join(pieces)])
    assert (fed + flushed, matched) == (whole_fed + whole_flushed, whole_matched)


def test_flush_after_a_match_releases_nothing() -> None:
    scanner = StopScanner(("lo",))
    assert scanner.feed("Hello") == "Hel"
    assert scanner.flush() == ""
    assert scanner.feed("more") == ""
    assert scanner.matched == "lo"


def test_feeding_after_flush_keeps_scanning() -> None:
    # A text block ended (flush) and a later one starts: the stops still apply.
    scanner = StopScanner(("END",))
    assert scanner.feed("ab") + scanner.flush() == "ab"
    assert scanner.feed("c EN") + scanner.feed("D d") + scanner.flush() == "c "
    assert scanner.matched == "END"


@pytest.mark.parametrize(
    ("stops", "piece", "released"),
    [
        pytest.param(("xyz",), "Hello", "Hello", id="no-stop-can-begin"),
        pytest.param(("xyz",), "Hellox", "Hello", id="hold-only-a-possible-start"),
        pytest.param(("lo, w",), "Hel", "He", id="hold-l"),
    ],
)
def test_feed_releases_text_that_cannot_begin_a_stop(
    stops: tuple[str, ...], piece: str, released: str
) -> None:
    # The module's contract: "holding back only what could still match".
    assert StopScanner(stops).feed(piece) == released
