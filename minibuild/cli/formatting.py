"""docker's `--format` for list commands (images, ps, history, volume ls) and inspect.

As the docker CLI does (cli/command/formatter): the literal two characters `\\t` and `\\n` in a
format become a tab and a newline; `table TEMPLATE` prints a header line (each field's column
name: `.ID` is `IMAGE ID` for images) and aligns the tab-separated cells as Go's tabwriter with
docker's settings (cells at least 10 wide, 3 spaces of padding); any other template prints
once per row with a newline after it; `json` is `{{json .}}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # the template engine is imported only when a --format asks for it
    from minibuild.cli import gotemplate

MIN_WIDTH = 10  # tabwriter.NewWriter(out, 10, 1, 3, ' ', 0), as docker's formatter
PADDING = 3
_HEADER_FUNCTIONS = ("json", "join", "split", "lower", "upper", "title", "pad", "truncate")


def prepare(fmt: str) -> tuple[bool, str]:
    """(is a table, the template text) of a --format value."""
    table = fmt.startswith("table")
    text = fmt[len("table"):] if table else fmt
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, "{{json .}}" if text == "json" else text


def render(fmt: str, rows: Iterable[Any], headers: Mapping[str, str]) -> str:
    """The rows through a --format value; the text to print (each line ends with a newline)."""
    table, text = prepare(fmt)
    from minibuild.cli import gotemplate

    template = gotemplate.compile(text)
    lines = [template.render(row) for row in rows]
    if not table:
        return "".join(line + "\n" for line in lines)
    header = _header_template(template).render(_Header(headers))
    return tabwrite([header, *lines])


def render_one(fmt: str, value: Any) -> str:
    """One object (inspect's) through a template, without a table: its text and a newline."""
    _, text = prepare(fmt)
    from minibuild.cli import gotemplate

    return gotemplate.compile(text).render(value) + "\n"


def tabwrite(lines: list[str]) -> str:
    """Align tab-terminated cells into columns (Go's tabwriter, docker's settings)."""
    rows = [line.split("\t") for line in "\n".join(lines).split("\n")]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):  # the text after the last tab is no column
            widths[i] = max(widths.get(i, MIN_WIDTH), len(cell) + PADDING)
    out = []
    for cells in rows:
        out.append("".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1])) + cells[-1])
    return "".join(line + "\n" for line in out)


def _header_template(template: gotemplate.Template) -> gotemplate.Template:
    """The same template with docker's header functions: each gives back its first argument."""
    from minibuild.cli import gotemplate

    functions = dict(template.functions)
    for name in _HEADER_FUNCTIONS:
        functions[name] = lambda value="", *_: gotemplate.FUNCTIONS["print"](value)
    return gotemplate.Template(template.nodes, functions)


class _HeaderText(str):
    """A column name that a method-style field (`.Label "x"`) may also call."""

    def __call__(self, *_: Any) -> str:
        return str(self)


class _Header:
    """The header row: every field answers with its column name."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> _HeaderText:
        if name.startswith("_"):
            raise AttributeError(name)
        return _HeaderText(self._headers.get(name, name.upper()))
