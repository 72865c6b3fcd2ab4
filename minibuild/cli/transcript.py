"""A step's output as a terminal would show it: `\\r` returns to the start of the line (what
follows overwrites it, as wget, curl, apt and pip redraw their progress lines), `\\n` ends a
line, cursor and erase escapes are applied or dropped. Plain and TTY progress both read it.
Pure Python: no rich, so the plain reporter stays light."""

from __future__ import annotations

import codecs
import re
from collections import deque

# CSI sequences (ESC [ params letter): colours, cursor moves, erases. Tools print them on a
# terminal only, but some force colours; `K` (erase to the end of the line) is applied.
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*([A-Za-z])|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Transcript:
    """The finished lines of a step (the last `keep`, or all) and the line being written."""

    def __init__(self, keep: int | None = None) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.current = ""      # the line being written, as it looks now
        self.redrawn = False   # the current line was overwritten (`\r`): not yet worth printing
        self.count = 0         # finished lines so far (kept or not)
        self._column = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> list[str]:
        """Take more output; the lines it finished (in their final state)."""
        return self._take(self._decoder.decode(data))

    def flush(self) -> list[str]:
        """The step ended: a cut UTF-8 sequence at the end becomes U+FFFD (the line stays open)."""
        return self._take(self._decoder.decode(b"", final=True))

    @property
    def tail(self) -> list[str]:
        """The kept lines and the current one, if it holds anything."""
        return [*self.lines, *([self.current] if self.current.strip() else [])]

    def _take(self, text: str) -> list[str]:
        finished = []
        first, *rest = text.split("\n")
        self._write(first)
        for part in rest:
            finished.append(self._end_line())
            self._write(part)
        return finished

    def _end_line(self) -> str:
        line = self.current.rstrip() if self.redrawn else self.current  # blanks that cleared it
        self.lines.append(line)
        self.count += 1
        self.current, self._column, self.redrawn = "", 0, False
        return line

    def _write(self, text: str) -> None:
        """Text of one line, with `\\r` and escapes applied where they fall."""
        position = 0
        for match in re.finditer(r"\r|" + _ESCAPE.pattern, text):
            self._put(text[position:match.start()])
            if match.group(0) == "\r":
                self._column, self.redrawn = 0, True
            elif match.group(1) == "K":
                self.current = self.current[:self._column]
            position = match.end()
        self._put(text[position:])

    def _put(self, text: str) -> None:
        """Overwrite from the cursor on, as a terminal does."""
        text = _CONTROL.sub("", text)  # a tab stays a tab: plain logs keep the step's bytes
        if not text:
            return
        end = self._column + len(text)
        self.current = self.current[:self._column] + text + self.current[end:]
        self._column = end
