"""The grammar step (syntax.py): a logical line -> a lark tree, and lark's errors -> one located
line naming the instruction, with its usage or a close keyword."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import syntax
from minibuild.dockerfile.prepass import LogicalLine
from minibuild.errors import BuildfileError


def line(text: str, escape: str = "\\") -> LogicalLine:
    """`text` as the logical line found at line 3, column 1 of `B`."""
    return LogicalLine(text, ((0, 3, 1),), "B", escape)


def error(text: str, escape: str = "\\") -> str:
    with pytest.raises(BuildfileError) as info:
        syntax.recognise(line(text, escape))
    return str(info.value)


def test_the_grammar_ships_with_the_package():
    assert "start: instruction" in syntax.grammar_text()


@pytest.mark.parametrize("text, rule", [
    ("FROM a AS b", "from_"), ("run make", "run"), ('CMD ["a"]', "cmd"), ("ENV a=b", "env"),
    ("ONBUILD COPY a b", "onbuild"), ("HEALTHCHECK NONE", "healthcheck"),
])
def test_recognise_gives_the_instruction_rule(text, rule):
    assert syntax.recognise(line(text)).data == rule


def test_argument_tokens_carry_their_blanks_and_token_text_drops_them():
    tree = syntax.recognise(line("WORKDIR \t /app"))
    rest = tree.children[-1]
    assert str(rest).startswith(" ") and syntax.token_text(rest) == "/app"


def test_an_unknown_instruction_suggests_the_closest_keyword():
    assert error("RUNN make") == 'B:3:1: unknown instruction "RUNN" (did you mean RUN?)'
    assert error("BOGUS x") == 'B:3:1: unknown instruction "BOGUS"'


def test_an_unknown_trigger_is_pointed_at_inside_onbuild():
    assert error("ONBUILD COPPY a b") == 'B:3:9: unknown instruction "COPPY" (did you mean COPY?)'


def test_an_unmatched_quote_names_the_instruction_and_its_usage():
    assert error('ENV a="b') == ('B:3:7: unmatched quote in ENV arguments '
                                 "(usage: ENV <key>=<value> ...)")


def test_a_syntax_error_points_at_the_word_with_the_usage():
    assert error("FROM a AS") == ('B:3:8: invalid FROM syntax near "AS" '
                                  "(usage: FROM [--platform=<platform>] <image> [AS <name>])")
    assert error("ARG =x") == ('B:3:5: invalid ARG syntax near "=x" '
                               "(usage: ARG <name>[=<default value>] ...)")


def test_arity_is_left_to_the_transformer():
    # Missing arguments parse; the transformer reports them with the instruction's words.
    assert syntax.recognise(line("LABEL")).data == "label"
    assert syntax.recognise(line("ONBUILD")).data == "onbuild"


def test_the_backtick_escape_has_its_own_parser():
    assert syntax.recognise(line("ENV a=`\"b", escape="`")).data == "env"
    assert "unmatched quote" in error('ENV a=\\"b', escape="`")
