"""Reading a walkthrough's examples out of Markdown, so a test can run them as written.

An example is a fenced ``console`` block. In it:

- ``$ COMMAND`` is a command (a trailing ``\\`` continues it on the next line); every
  other line, up to the next command, is the output a reader sees (stdout and
  stderr as a terminal interleaves them).
- ``# exit N`` at the end of a command says it ends with status N (else 0).
- In expected output, ``...`` inside a line matches any text, a line that is only
  ``...`` matches any number of lines, and ``<NAME>`` (capitals, digits, ``_``)
  stands for a value the reader gets back (an image id, say). Its first appearance
  captures it; later ones must equal it.
- In a command, ``<NAME>`` is replaced by the captured value and ``<NAME:8>`` by
  its first eight characters, as a reader would copy them.

An HTML comment right before a block changes how it runs:
``<!-- walkthrough: background -->``: its one command keeps running (a server started
in another terminal); its output is awaited, not its exit.
``<!-- walkthrough: retry -->``: its commands show a state that work in the background
reaches (a backup done); each is run again until its output reads as shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"^```console\s*$")
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)(?::(\d+))?>")
_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\s*$")
_BACKGROUND = "<!-- walkthrough: background -->"
_RETRY = "<!-- walkthrough: retry -->"
ANY_LINES = "..."


@dataclass
class Example:
    command: str
    expected: list[str]
    exit_code: int = 0
    background: bool = False
    retry: bool = False
    line: int = 0  # where the command is in the Markdown, for failure messages

    def __str__(self) -> str:
        return f"line {self.line}: $ {self.command}"


@dataclass
class Captures:
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, command: str) -> str:
        """The command with each ``<NAME>`` / ``<NAME:N>`` replaced by its value."""

        def value(match: re.Match[str]) -> str:
            name, length = match.group(1), match.group(2)
            if name not in self.values:
                raise KeyError(f"{match.group(0)} is used before any output gave it a value")
            captured = self.values[name]
            return captured[: int(length)] if length else captured

        return _PLACEHOLDER.sub(value, command)


def examples(markdown: str) -> list[Example]:
    """Every command of every ``console`` block, in document order."""
    found: list[Example] = []
    lines = markdown.splitlines()
    index = 0
    background_next = retry_next = False
    while index < len(lines):
        line = lines[index]
        if line.strip() == _BACKGROUND:
            background_next = True
        if line.strip() == _RETRY:
            retry_next = True
        if not _FENCE.match(line):
            index += 1
            continue
        block: list[Example] = []
        index += 1
        pending = ""
        while index < len(lines) and lines[index].strip() != "```":
            text = lines[index]
            if pending or text.startswith("$ "):
                body = pending + (text[2:] if not pending else text.strip())
                if body.endswith("\\"):
                    pending = body[:-1].rstrip() + " "
                else:
                    pending = ""
                    block.append(_command(body, line=index + 1))
            elif block:
                block[-1].expected.append(text.rstrip())
            else:
                raise ValueError(f"line {index + 1}: output before any command")
            index += 1
        if background_next:
            if len(block) != 1:
                raise ValueError(f"line {index}: a background block holds exactly one command")
            block[0].background = True
            background_next = False
        for example in block:
            example.retry = retry_next
        retry_next = False
        found.extend(block)
        index += 1
    return found


def _command(body: str, *, line: int) -> Example:
    exit_code = 0
    if match := _EXIT.search(body):
        exit_code = int(match.group(1))
        body = body[: match.start()]
    return Example(command=body.strip(), expected=[], exit_code=exit_code, line=line)


def _line_pattern(expected: str, captures: Captures, new: set[str]) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    tokens = re.compile(r"\.\.\.|<([A-Z][A-Z0-9_]*)>")
    for match in tokens.finditer(expected):
        parts.append(re.escape(expected[position : match.start()]))
        name = match.group(1)
        if name is None:
            parts.append(".*?")
        elif name in captures.values:
            parts.append(re.escape(captures.values[name]))
        elif name in new:
            parts.append(f"(?P={name})")
        else:
            new.add(name)
            parts.append(f"(?P<{name}>[^\\s,;()\"']+?)")
        position = match.end()
    parts.append(re.escape(expected[position:]))
    return re.compile("".join(parts) + r"\s*")


def match_output(expected: list[str], actual: list[str], captures: Captures) -> str | None:
    """None when ``actual`` reads as ``expected`` (and the new captures are stored);
    otherwise why not, in a line or two."""
    trimmed = list(expected)
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    found = _match(trimmed, [line.rstrip() for line in actual], captures, 0, 0)
    if found is None:
        return "expected:\n  " + "\n  ".join(trimmed) + "\ngot:\n  " + "\n  ".join(actual)
    captures.values.update(found)
    return None


def _match(
    expected: list[str], actual: list[str], captures: Captures, i: int, j: int
) -> dict[str, str] | None:
    # Bounded: each ``...`` line tries each remaining position once per path.
    if i == len(expected):
        return {} if j == len(actual) else None
    if expected[i] == ANY_LINES:
        for start in range(j, len(actual) + 1):
            rest = _match(expected, actual, captures, i + 1, start)
            if rest is not None:
                return rest
        return None
    if j == len(actual):
        return None
    new: set[str] = set()
    matched = _line_pattern(expected[i], captures, new).fullmatch(actual[j])
    if matched is None:
        return None
    values = {name: matched.group(name) for name in new}
    if values:
        captures = Captures({**captures.values, **values})
    rest = _match(expected, actual, captures, i + 1, j + 1)
    return None if rest is None else {**values, **rest}
