"""Word expansion tests: a table in the spirit of BuildKit's shell/envVarTest and wordsTest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibuild.errors import BuildfileError
from minibuild.dockerfile.instructions import Location
from minibuild.dockerfile.shell import expand, expand_heredoc, expand_words, split_raw, unquote

ENV = {"a": "1", "empty": "", "sp": "x  y", "lead": "  ab c", "path": "/usr/bin"}

EXPAND = [
    # plain variables
    ("$a", "1"), ("${a}", "1"), ("x$a-y", "x1-y"), ("${a}b", "1b"), ("$ab", ""),
    ("$unset", ""), ("${unset}", ""), ("$", "$"), ("a$ b", "a$ b"), ("$1x", "x"),
    ("${path}:/bin", "/usr/bin:/bin"),
    # :- and -
    ("${a:-d}", "1"), ("${empty:-d}", "d"), ("${unset:-d}", "d"),
    ("${a-d}", "1"), ("${empty-d}", ""), ("${unset-d}", "d"),
    # :+ and +
    ("${a:+w}", "w"), ("${empty:+w}", ""), ("${unset:+w}", ""),
    ("${a+w}", "w"), ("${empty+w}", "w"), ("${unset+w}", ""),
    # ? and :? when set
    ("${a:?oops}", "1"), ("${a?oops}", "1"), ("${empty?oops}", ""),
    # nested and quoted operands
    ("${unset:-$a}", "1"), ("${unset:-${a}x}", "1x"), ('${unset:-"q  r"}', "q  r"),
    ("${unset:-'$a'}", "$a"), ("${unset:-a\\}b}", "a}b"),
    # single quotes are literal
    ("'$a'", "$a"), ("'\\n'", "\\n"), ("a'b c'd", "ab cd"),
    # double quotes allow $ and escape only \" \$ \\
    ('"$a"', "1"), ('"${a} b"', "1 b"), ('"\\$a"', "$a"), ('"\\""', '"'), ('"\\\\"', "\\"),
    ('"a\\b"', "a\\b"), ('"it\'s"', "it's"), ('""', ""),
    # escapes outside quotes
    ("\\$a", "$a"), ("\\${a}", "${a}"), ("a\\ b", "a b"), ("\\\\", "\\"), ("\\'x", "'x"),
    ("a\\", "a"),
    # blanks are kept by expand (one word)
    ("a  b", "a  b"), ("$sp", "x  y"),
]

# The reference's "Environment replacement" examples, then BuildKit's lex_test edge cases.
PATTERNS = {"str": "foobarbaz", "path": "/usr/local/bin/app.tar.gz", "star": "a*b?c", "e": ""}
EXPAND_PATTERNS = [
    ("${str#f*b}", "arbaz"), ("${str##f*b}", "az"), ("${str%b*}", "foobar"),
    ("${str%%b*}", "foo"), ("${str/ba/fo}", "fooforbaz"), ("${str//ba/fo}", "fooforfoz"),
    ("${path##*/}", "app.tar.gz"), ("${path%.*}", "/usr/local/bin/app.tar"),
    ("${path%%.*}", "/usr/local/bin/app"), ("${path#/usr}", "/local/bin/app.tar.gz"),
    ("${str#o*}", "foobarbaz"),           # anchored at the start: no match, unchanged
    ("${str#?}", "oobarbaz"), ("${str%??}", "foobarb"), ("${str#}", "foobarbaz"),
    ("${str##*}", ""), ("${str/*/X}", "X"), ("${str//o/}", "fbarbaz"),
    ("${star#*\\*}", "b?c"), ("${star%\\?*}", "a*b"),  # \* and \? are literal
    ("${path//\\//-}", "-usr-local-bin-app.tar.gz"),     # \/ is a literal slash
    ("${str/a/${e:-Z}}", "foobZrbaz"),                    # the replacement expands
    ("${str/o/\\$x}", "f$xobarbaz"),                     # ... and is otherwise literal
    ("${str/o/\\$1}", "f$1obarbaz"),                     # (BuildKit: Go's $1, a group)
    ("${unset#x}", ""), ("${unset/x/y}", ""), ("${str/zz/y}", "foobarbaz"),
    ("${str#${e}f}", "oobarbaz"),                         # the pattern expands too
]


@pytest.mark.parametrize("word,expected", EXPAND_PATTERNS)
def test_expand_pattern_modifiers(word: str, expected: str) -> None:
    assert expand(word, PATTERNS) == expected


@pytest.mark.parametrize("word,expected", EXPAND)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


BACKTICK = [
    ("C:\\dir\\$a", "C:\\dir\\1"), ("`$a", "$a"), ('"C:\\x\\"', "C:\\x\\"), ('"a`"b"', 'a"b'),
    ("a` b", "a b"), ('"`$a"', "$a"), ("${unset:-C:\\}", "C:\\"),
]


@pytest.mark.parametrize("word,expected", BACKTICK)
def test_expand_with_backtick_escape(word: str, expected: str) -> None:
    assert expand(word, ENV, escape="`") == expected


WORDS = [
    ("a b  c", ["a", "b", "c"]),
    ('"a b" c', ["a b", "c"]),
    ("a\\ b c", ["a b", "c"]),
    ("'x y'z", ["x yz"]),
    ("hello${sp}bye", ["hellox", "ybye"]),   # lex.go: an unquoted expansion is split again
    ('hello"${sp}"bye', ["hellox  ybye"]),
    ("hello${lead}def", ["hello", "ab", "cdef"]),
    ('"" a', ["a"]),
    ("   ", []),
    ("$unset x", ["x"]),
    ("80/tcp $a", ["80/tcp", "1"]),
    ('hello\\" there', ['hello"', "there"]),
]


@pytest.mark.parametrize("text,expected", WORDS)
def test_expand_words(text: str, expected: list[str]) -> None:
    assert expand_words(text, ENV) == expected


UNQUOTE = [
    ('"x y"', "x y"), ("z\\ w", "z w"), ("'$a'", "$a"), ("$a", "$a"), ('"${a:-"q"}"', '${a:-"q"}'),
    ("${unset:?boom}", "${unset:?boom}"), ("\\$a", "$a"), ("plain", "plain"),
    ("${a##*/}", "${a##*/}"), ("${a//x/y}", "${a//x/y}"),
]


@pytest.mark.parametrize("word,expected", UNQUOTE)
def test_unquote_does_not_expand(word: str, expected: str) -> None:
    assert unquote(word) == expected


ERRORS = [
    ("${unset:?must be set}", "unset: must be set"),
    ("${empty:?}", "empty: is not allowed to be empty"),
    ("${unset?}", "unset: is not allowed to be unset"),
    ('"abc', "matching double-quote"),
    ("'abc", "matching single-quote"),
    ("${a", "missing '}'"),
    ("${", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${a:=x}", "unsupported modifier (:=)"),
    ("${a:#x}", "unsupported modifier (:#)"),
    ("${a:%x}", "unsupported modifier (:%)"),
    ("${a/x}", "missing '/' in ${}"),
    ("${a#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
]


@pytest.mark.parametrize("word,fragment", ERRORS)
def test_expand_errors_carry_location(word: str, fragment: str) -> None:
    where = Location("Buildfile", 12, 3)
    with pytest.raises(BuildfileError) as info:
        expand(word, ENV, location=where)
    assert fragment in info.value.message
    assert (info.value.file, info.value.line, info.value.column) == ("Buildfile", 12, 3)
    assert str(info.value).startswith("Buildfile:12:3: ")


def test_error_without_location() -> None:
    with pytest.raises(BuildfileError) as info:
        expand_words("${x:?no}", {})
    assert info.value.file is None and "x: no" in str(info.value)


def test_split_raw_keeps_quotes() -> None:
    assert split_raw("cat <<'E O' \"a b\" c\\ d") == ["cat", "<<'E O'", '"a b"', "c\\ d"]


@given(st.text(alphabet=st.characters(blacklist_characters="\"'\\`$"), max_size=40))
def test_plain_text_is_unchanged(text: str) -> None:
    assert expand(text, ENV) == text
    assert expand_words(text, ENV) == text.split()


@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True),
                       st.text(max_size=10), max_size=4))
def test_single_quoted_values_never_expand(env: dict[str, str]) -> None:
    word = "'" + "".join(f"${name}" for name in env) + "'"
    assert expand(word, env) == word[1:-1]


# A heredoc body follows the reference's "regular here-doc" (POSIX) rules. BuildKit differs:
# its lexer drops every backslash (`a\nb` -> `anb`); the reference wins, and `\n` stays.
HEREDOC = [
    ("Hello ${name}!\n", "Hello world!\n"),                      # the example
    ('  echo "hello ${FOO}"\n', '  echo "hello bar"\n'),        # the reference's: quotes are text
    ("'$FOO' \"$FOO\"\n", "'bar' \"bar\"\n"),
    ("printf 'a\\nb'\n", "printf 'a\\nb'\n"),                  # \n is not an escape here
    ("\\$FOO \\\\ \\`x\\`\n", "$FOO \\ `x`\n"),                 # these four are
    ("one \\\ntwo\n", "one two\n"),                              # an escaped newline joins
    ("$(date) `id` $ ${FOO##b}\n", "$(date) `id` $ ar\n"),      # nothing runs; modifiers work
    ("${unset:-dflt} $unset.\n", "dflt .\n"),
]


@pytest.mark.parametrize("body,expected", HEREDOC)
def test_expand_heredoc(body: str, expected: str) -> None:
    assert expand_heredoc(body, {"name": "world", "FOO": "bar"}) == expected


def test_expand_heredoc_errors_are_located() -> None:
    with pytest.raises(BuildfileError, match=r"^B:3:1: x: is not allowed to be unset \(in a heredoc\)"):
        expand_heredoc("${x?}\n", {}, location=Location("B", 3))
