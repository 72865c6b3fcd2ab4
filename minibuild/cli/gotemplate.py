"""Go's text/template, the part docker users type in `--format`: `{{.ID}}`, `{{json .Config}}`,
`{{range .RepoTags}}{{println .}}{{end}}`, `{{if eq .State "running"}}…{{else}}…{{end}}`,
`{{index .Config.Labels "k"}}`, `{{with}}`, variables (`$x := …`, `range $k, $v := …`),
pipelines (`{{.Name | upper}}`), `{{- trim -}}` markers and `{{/* comments */}}`.

`compile(text)` gives a `Template`; `Template.render(data)` walks it. Data are dicts (inspect's
JSON: a missing key prints `<no value>`, as for a Go map) or objects (list rows: a missing
attribute is an error, as for a Go struct; a method takes arguments, like ps's `.Label "k"`).
Values print as Go's `%v` prints them (`[a b]`, `map[k:v]`, `true`, `<nil>`). The functions are
Go's builtins plus docker's (`json join split lower upper title pad truncate`), in `FUNCTIONS`.
PyPI holds no maintained Go template engine (one CGo wrapper at 0.0.2), hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from minibuild.cli.gofuncs import FUNCTIONS, MISSING, TemplateError, truth
from minibuild.cli.goparser import Block, Operand, Pipeline, parse, pieces

__all__ = ["FUNCTIONS", "MISSING", "Template", "TemplateError", "compile"]

# -- evaluation ------------------------------------------------------------------------------------

@dataclass
class Template:
    """A compiled template; `render(data)` gives its text."""

    nodes: list
    functions: dict[str, Callable] = field(default_factory=lambda: dict(FUNCTIONS))

    def render(self, data: Any) -> str:
        """Execute the template with `data` as dot (and `$`)."""
        out: list[str] = []
        self._run(self.nodes, data, {"$": data}, out)
        return "".join(out)

    def _run(self, nodes: list, dot: Any, scope: dict, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                if node in ("break", "continue") and not isinstance(node, _Text):
                    raise _Flow(node)
                out.append(node)
            elif isinstance(node, Pipeline):
                value = self._pipe(node, dot, scope)
                if not node.variables:
                    out.append(FUNCTIONS["print"](value))
            else:
                self._block(node, dot, scope, out)

    def _block(self, block: Block, dot: Any, scope: dict, out: list[str]) -> None:
        inner = dict(scope)
        value = self._pipe(block.pipe, dot, inner, declare_loop=block.kind == "range")
        if block.kind == "range":
            self._range(block, value, dot, inner, out)
        elif truth(value):
            self._run(block.body, value if block.kind == "with" else dot, inner, out)
        else:
            self._run(block.otherwise, dot, inner, out)

    def _range(self, block: Block, value: Any, dot: Any, scope: dict, out: list[str]) -> None:
        if isinstance(value, dict):
            items = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is MISSING:
            items = []
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        else:
            raise TemplateError(f"range can't iterate over {FUNCTIONS['print'](value)}")
        if not items:
            self._run(block.otherwise, dot, scope, out)
            return
        names = block.pipe.variables
        for key, item in items:
            if len(names) == 1:
                scope[names[0]] = item
            elif len(names) == 2:
                scope[names[0]], scope[names[1]] = key, item
            try:
                self._run(block.body, item, scope, out)
            except _Flow as flow:
                if str(flow) == "break":
                    break

    def _pipe(self, pipe: Pipeline, dot: Any, scope: dict, *, declare_loop: bool = False) -> Any:
        value: Any = _NOARG
        for command in pipe.commands:
            value = self._command(command, dot, scope, value)
        if pipe.variables and not declare_loop:
            for name in pipe.variables:
                if pipe.assign and name not in scope:
                    raise TemplateError(f"undefined variable: {name}")
                scope[name] = value
        return value

    def _command(self, command: list[Operand], dot: Any, scope: dict, final: Any) -> Any:
        head, args = command[0], command[1:]
        extra = [] if final is _NOARG else [final]
        if head.kind == "func":
            values = [self._operand(a, dot, scope) for a in args] + extra
            try:
                return self.functions[head.value](*values)
            except TemplateError:
                raise
            except TypeError as exc:
                raise TemplateError(f"wrong arguments for {head.value}: {exc}") from None
        if head.kind in ("field", "var", "pipe") and head.chain and (args or extra):
            receiver = self._operand(Operand(head.kind, head.value, head.chain[:-1]), dot, scope)
            method = _lookup(receiver, head.chain[-1])
            if not callable(method):
                raise TemplateError(f"{head.chain[-1]} has arguments but cannot be called")
            return method(*[self._operand(a, dot, scope) for a in args], *extra)
        if args or extra:
            raise TemplateError("can't give argument to non-function")
        return self._operand(head, dot, scope)

    def _operand(self, operand: Operand, dot: Any, scope: dict) -> Any:
        if operand.kind == "lit":
            return operand.value
        if operand.kind == "func":
            return self.functions[operand.value]()
        if operand.kind == "var":
            if operand.value not in scope:
                raise TemplateError(f"undefined variable: {operand.value}")
            value = scope[operand.value]
        elif operand.kind == "pipe":
            value = self._pipe(operand.value, dot, dict(scope))
        else:
            value = dot
        for name in operand.chain:
            value = _lookup(value, name)
            if callable(value) and not isinstance(value, type):
                value = value()
        return value


class _Flow(Exception):
    """`{{break}}` or `{{continue}}` inside a range."""


class _Text(str):
    """Literal text that happens to read "break" or "continue"."""


_NOARG = object()


def _lookup(value: Any, name: str) -> Any:
    """`.name` of a map (missing: <no value>) or of an object (missing: an error)."""
    if value is None or value is MISSING:
        return MISSING
    if isinstance(value, dict):
        return value.get(name, MISSING)
    if name.startswith("_") or not hasattr(value, name):
        raise TemplateError(f"can't evaluate field {name} in type {type(value).__name__}")
    return getattr(value, name)


def compile(text: str) -> Template:  # noqa: A001 - the name Go's users know (template.Parse)
    """Parse a template; TemplateError says what is wrong with it."""
    found = [(k, _Text(s) if k == "text" else s) for k, s in pieces(text)]
    return Template(parse(found))
