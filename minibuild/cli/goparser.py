"""The parser of gotemplate: `{{ }}` actions with their trim markers and comments, tokens,
pipelines, and the if/range/with/else/end block tree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from minibuild.cli.gofuncs import FUNCTIONS, TemplateError

_ACTION = re.compile(r"""\{\{(-\s)?((?:"(?:[^"\\]|\\.)*"|`[^`]*`|[^"`}]|\}(?!\}))*?)(\s-)?\}\}""", re.S)
_TOKEN = re.compile(r"""\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*") | (?P<raw>`[^`]*`) | (?P<chr>'(?:[^'\\]|\\.)')
  | (?P<decl>:=) | (?P<punct>[()|,=])
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+) | (?P<dot>\.)
  | (?P<num>[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
)""", re.X)
_KEYWORDS = {"if", "range", "with", "else", "end", "break", "continue", "define", "template",
             "block"}


# -- nodes -----------------------------------------------------------------------------------------

@dataclass
class Operand:
    """One argument: kind is field, var, dot, lit, func or pipe; `chain` are fields after it."""

    kind: str
    value: Any = None
    chain: tuple[str, ...] = ()


@dataclass
class Pipeline:
    """`$x := cmd arg | cmd …`: commands (each a list of operands), declared variables."""

    commands: list[list[Operand]]
    variables: tuple[str, ...] = ()
    assign: bool = False  # `=` rather than `:=`


@dataclass
class Block:
    """if, range or with: the pipeline, the body, the else body (an `else if` is a nested if)."""

    kind: str
    pipe: Pipeline
    body: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)


# -- parsing ---------------------------------------------------------------------------------------

def pieces(text: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) in order, with the trim markers applied."""
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(text):
        before = text[pos:match.start()]
        if match.group(1):
            before = before.rstrip()
        out.append(("text", before))
        out.append(("action", match.group(2)))
        pos = match.end()
        if match.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    if "{{" in text[pos:]:
        raise TemplateError(f"unclosed action: {text[pos:][text[pos:].index('{{'):][:30]!r}")
    out.append(("text", text[pos:]))
    return [(k, s) for k, s in out if k == "action" or s]


def _tokens(action: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while action[pos:].strip():
        match = _TOKEN.match(action, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"unexpected {action[pos:].strip()[:20]!r} in {{{{{action}}}}}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _literal(kind: str, text: str) -> Any:
    import ast

    if kind == "raw":
        return text[1:-1]
    if kind == "chr":
        return ord(ast.literal_eval(text))
    if kind == "str":
        return ast.literal_eval(text)
    return int(text, 0) if re.fullmatch(r"[-+]?(0x[0-9a-fA-F]+|\d+)", text) else float(text)


class _Parser:
    """Tokens of one action into a Pipeline (recursive for parentheses)."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def pipeline(self, closing: str | None = None) -> Pipeline:
        variables, assign = self._declaration()
        commands: list[list[Operand]] = [[]]
        while (token := self.peek()) is not None and token != ("punct", ")"):
            self.pos += 1
            if token == ("punct", "|"):
                commands.append([])
            else:
                commands[-1].append(self._operand(token))
        if closing and self.peek() != ("punct", closing):
            raise TemplateError("unclosed left paren")
        if not all(commands) :
            raise TemplateError("missing value for command")
        return Pipeline(commands, variables, assign)

    def _declaration(self) -> tuple[tuple[str, ...], bool]:
        """`$x :=`, `$k, $v :=` or `$x =` at the start, if there."""
        names, pos = [], self.pos
        while pos < len(self.tokens) and self.tokens[pos][0] == "var":
            names.append(self.tokens[pos][1])
            pos += 1
            if pos < len(self.tokens) and self.tokens[pos] == ("punct", ","):
                pos += 1
                continue
            break
        if names and pos < len(self.tokens) and self.tokens[pos] in (("decl", ":="), ("punct", "=")):
            self.pos = pos + 1
            return tuple(names), self.tokens[pos][1] == "="
        return (), False

    def _operand(self, token: tuple[str, str]) -> Operand:
        kind, text = token
        if kind == "field":
            return Operand("field", None, tuple(text.split(".")[1:]))
        if kind == "var":
            name, *chain = text.split(".")
            return Operand("var", name, tuple(chain))
        if kind == "dot":
            return Operand("dot")
        if kind == "punct" and text == "(":
            inner = self.pipeline(")")
            self.pos += 1
            chain = ()
            if (nxt := self.peek()) is not None and nxt[0] == "field":
                self.pos += 1
                chain = tuple(nxt[1].split(".")[1:])
            return Operand("pipe", inner, chain)
        if kind in ("str", "raw", "chr", "num"):
            return Operand("lit", _literal(kind, text))
        if kind == "ident":
            if text in ("true", "false"):
                return Operand("lit", text == "true")
            if text == "nil":
                return Operand("lit", None)
            if text not in FUNCTIONS:
                raise TemplateError(f'function "{text}" not defined')
            return Operand("func", text)
        raise TemplateError(f"unexpected {text!r}")


def parse(pieces: list[tuple[str, str]]) -> list:
    """The node tree: text strings, Pipelines, Blocks, and "break"/"continue"."""
    root: list = []
    stack: list[tuple[list, Block | None]] = [(root, None)]
    for kind, text in pieces:
        body = stack[-1][0]
        if kind == "text":
            body.append(text)
            continue
        words = text.split(None, 1)
        word = words[0] if words else ""
        if word.startswith("/*"):
            continue
        rest = words[1] if len(words) > 1 else ""
        if word in ("if", "range", "with"):
            block = Block(word, _pipeline(rest, word))
            body.append(block)
            stack.append((block.body, block))
        elif word == "else":
            _else(stack, rest)
        elif word == "end":
            _end(stack)
        elif word in ("break", "continue"):
            if not any(b is not None and b.kind == "range" for _, b in stack):
                raise TemplateError(f"{{{{{word}}}}} outside {{{{range}}}}")
            body.append(word)
        elif word in _KEYWORDS:
            raise TemplateError(f"{{{{{word}}}}} is not supported")
        else:
            body.append(_pipeline(text, "command"))
    if len(stack) > 1:
        raise TemplateError(f"unexpected EOF: {{{{{stack[-1][1].kind}}}}} has no {{{{end}}}}")
    return root


def _pipeline(text: str, where: str) -> Pipeline:
    parser = _Parser(_tokens(text))
    pipe = parser.pipeline()
    if parser.peek() is not None:
        raise TemplateError("unexpected \")\"")
    if not pipe.commands[0] and where != "command":
        raise TemplateError(f"missing value for {where}")
    return pipe


def _else(stack: list, rest: str) -> None:
    """`{{else}}` switches the open block to its else body; `{{else if …}}` nests an if there
    that the block's `{{end}}` closes too."""
    if stack[-1][1] is None:
        raise TemplateError("unexpected {{else}}")
    block = stack.pop()[1]
    if rest.split(None, 1)[:1] in (["if"], ["with"]):
        word, _, cond = rest.partition(" ")
        inner = Block(word, _pipeline(cond, word))
        inner.chained = True  # type: ignore[attr-defined]
        block.otherwise.append(inner)
        stack.append((block.otherwise, block))
        stack.append((inner.body, inner))
        return
    stack.append((block.otherwise, block))


def _end(stack: list) -> None:
    if stack[-1][1] is None:
        raise TemplateError("unexpected {{end}}")
    block = stack.pop()[1]
    while getattr(block, "chained", False):  # `else if` chains end with the outer block
        block = stack.pop()[1]
