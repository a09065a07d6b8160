"""The reader of docs/local-stack.md's examples: what it takes as a command, as output,
and when actual output reads as the expected."""

from __future__ import annotations

import pytest

from tests.support.walkthrough import Captures, examples, match_output

DOC = """\
Some prose.

<!-- walkthrough: background -->
```console
$ pixflare local up
...
ready: http://127.0.0.1:4566
```

```sh
$ not a console block
```

<!-- walkthrough: retry -->
```console
$ pixflare upload photo.jpg \\
    --owner me
photo.jpg -> <ID>
$ pixflare status <ID:8>   # exit 1
pixflare: no image <ID>
```
"""


def test_commands_output_exit_codes_and_background_are_read_in_order() -> None:
    found = examples(DOC)
    assert [e.command for e in found] == [
        "pixflare local up",
        "pixflare upload photo.jpg --owner me",
        "pixflare status <ID:8>",
    ]
    assert [e.background for e in found] == [True, False, False]
    assert [e.retry for e in found] == [False, True, True]
    assert [e.exit_code for e in found] == [0, 0, 1]
    assert found[1].expected == ["photo.jpg -> <ID>"]
    assert found[2].line == 19


def test_output_before_a_command_is_refused() -> None:
    with pytest.raises(ValueError, match="output before any command"):
        examples("```console\nhello\n```\n")


def test_a_placeholder_captures_once_and_must_match_after() -> None:
    captures = Captures()
    assert match_output(["photo.jpg -> <ID>"], ["photo.jpg -> 0123abcd"], captures) is None
    assert captures.fill("pixflare status <ID:4> <ID>") == "pixflare status 0123 0123abcd"
    problem = match_output(["no image <ID>"], ["no image ffff"], captures)
    assert problem is not None and "ffff" in problem


def test_an_unfilled_placeholder_in_a_command_is_an_error() -> None:
    with pytest.raises(KeyError, match="<ID>"):
        Captures().fill("pixflare status <ID>")


@pytest.mark.parametrize(
    ("expected", "actual", "reads"),
    [
        (["a ... c"], ["a b b c"], True),
        (["a ... c"], ["a b b d"], False),
        (["...", "last"], ["x", "y", "last"], True),
        (["first", "..."], ["first"], True),
        (["first", "second"], ["first"], False),
        (["first"], ["first", "extra"], False),
        (["x <N> y <N>"], ["x 1 y 1"], True),
        (["x <N> y <N>"], ["x 1 y 2"], False),
        (["a.b"], ["axb"], False),
        ([], [], True),
        (["only", ""], ["only"], True),
    ],
)
def test_lines_and_wildcards(expected: list[str], actual: list[str], reads: bool) -> None:
    assert (match_output(expected, actual, Captures()) is None) is reads
