"""Parser tests: golden dumps, negative cases, typed instructions, robustness."""

from __future__ import annotations

import ast
import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibuild.dockerfile import instructions as ins
from minibuild.errors import BuildfileError
from minibuild.cli.dump import dump
from minibuild.dockerfile.parser import Buildfile, default_buildfile, parse, parse_file

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = REPO / "tests" / "testdata" / "parser"
GOLDEN = sorted(DATA.glob("*.Buildfile"))
NEGATIVE = sorted((DATA / "errors").glob("*.Buildfile"))


def one(text: str) -> ins.Instruction:
    """The instruction after a leading `FROM scratch`."""
    return parse("FROM scratch\n" + text).instructions[1]


# ---------------------------------------------------------------- golden files


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_dump(path: pathlib.Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text())
    assert dump(parse_file(path)) == expected


@pytest.mark.parametrize("path", NEGATIVE, ids=lambda p: p.stem)
def test_negative_case(path: pathlib.Path) -> None:
    expected = path.with_suffix(".err").read_text().strip()
    with pytest.raises(BuildfileError) as info:
        parse(path.read_text(), "Buildfile")
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


def test_golden_sets_are_not_empty() -> None:
    assert len(GOLDEN) >= 2 and len(NEGATIVE) >= 20


def test_dump_is_json_serialisable() -> None:
    text = json.dumps(dump(parse_file(DATA / "rich.Buildfile")))
    assert '"instruction": "ONBUILD"' in text


# ---------------------------------------------------------------- directives


def test_directives_at_top() -> None:
    bf = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n")
    assert (bf.escape, bf.syntax, bf.file) == ("`", "docker/dockerfile:1", "Buildfile")


@pytest.mark.parametrize("prefix", ["\n", "# a comment\n", "FROM a\n"])
def test_directive_after_anything_is_a_comment(prefix: str) -> None:
    bf = parse(prefix + "# escape=`\nFROM a\nRUN echo \\\n  b\n")
    assert bf.escape == "\\"
    assert bf.instructions[-1].command == ins.ShellForm("echo   b")


def test_backtick_escape_keeps_backslashes() -> None:
    bf = parse("# escape=`\nFROM a\nRUN dir c:\\\nCOPY x c:\\dir\\\n")
    assert bf.instructions[1].command == ins.ShellForm("dir c:\\")
    assert bf.instructions[2].dest == "c:\\dir\\"


def test_bom_and_crlf() -> None:
    bf = parse("\ufeffFROM a\r\nRUN a \\\r\n  b\r\n")
    assert bf.instructions[1].command == ins.ShellForm("a   b")


# ---------------------------------------------------------------- lines and locations


def test_location_and_original_of_continued_instruction() -> None:
    bf = parse("FROM a\n\n  RUN one \\\n# dropped\n\n    two\nUSER x\n", "dir/Buildfile")
    run, user = bf.instructions[1], bf.instructions[2]
    assert run.location == ins.Location("dir/Buildfile", 3, 3, end_line=6)
    assert run.original == "RUN one     two"
    assert user.location == ins.Location("dir/Buildfile", 7, 1)


def test_an_instruction_over_several_lines_is_located_by_its_whole_range() -> None:
    # BuildKit shows every line of such an instruction; here the location names the range
    bf = parse("FROM a\nRUN <<EOF\necho\nEOF\nCOPY a \\\n  b\nUSER x\n")
    run, copy, user = bf.instructions[1:]
    assert (str(run.location), str(copy.location), str(user.location)) == \
        ("Buildfile:2-4", "Buildfile:5-6", "Buildfile:7:1")
    assert str(BuildfileError.at(run, "RUN failed")) == "Buildfile:2-4: RUN failed"
    assert str(BuildfileError.at(user, "bad user")) == "Buildfile:7:1: bad user"
    onbuild = parse("FROM a\nONBUILD RUN \\\n  true\n").instructions[1]
    assert onbuild.trigger.location == onbuild.location == ins.Location("Buildfile", 2, 1, 3)


def test_continuation_with_trailing_blanks_after_escape() -> None:
    assert one("RUN a \\   \n b").command == ins.ShellForm("a  b")


def test_continuation_at_end_of_file() -> None:
    assert one("RUN a \\").command == ins.ShellForm("a")


def test_keywords_are_case_insensitive() -> None:
    bf = parse("from a As b\nRuN x\nworkDIR /w\n")
    assert bf.instructions[0] == ins.From(ins.Location("Buildfile", 1), (), "from a As b", "a", "b")
    assert [i.keyword for i in bf.instructions] == ["FROM", "RUN", "WORKDIR"]


def test_error_column_points_into_a_continuation_line() -> None:
    with pytest.raises(BuildfileError) as info:
        parse("FROM a\nLABEL a=1 \\\n      b=2 \\\n      c\n")
    assert (info.value.line, info.value.column) == (4, 7)


# ---------------------------------------------------------------- instruction shapes


def test_exec_vs_shell_form() -> None:
    assert one('CMD ["a", "b c"]').command == ins.ExecForm(("a", "b c"))
    assert one("CMD [ 'a' ]").command == ins.ShellForm("[ 'a' ]")
    assert one('CMD ["a"] && b').command == ins.ShellForm('["a"] && b')
    assert one('ENTRYPOINT ["\\u00e9\\t"]').command == ins.ExecForm(("\u00e9\t",))
    assert one("ENTRYPOINT []").command == ins.ExecForm(())


def test_flags_are_raw_and_queryable() -> None:
    copy = one("COPY --from=build --chown='1 000':1 --link a b /d/")
    assert copy.flags == ("--from=build", "--chown='1 000':1", "--link")
    assert ins.flag_value(copy, "from") == "build"
    assert ins.flag_value(copy, "chown") == "1 000:1"
    assert ins.flag_value(copy, "link") == ""
    assert ins.flag_value(copy, "chmod") is None
    assert (copy.sources, copy.dest) == (("a", "b"), "/d/")


def test_repeated_flags() -> None:
    run = one("RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b make")
    assert ins.flag_values(run, "mount") == ("type=cache,target=/a", "type=tmpfs,target=/b")
    assert run.command == ins.ShellForm("make")


def test_a_double_dash_ends_the_flags() -> None:
    # BuildKit's BFlags: `--` ends the options (POSIX), and is not an argument itself
    copy = one("COPY -- foo /tmp/")
    assert (copy.flags, copy.sources, copy.dest) == ((), ("foo",), "/tmp/")
    copy = one("COPY --chown=1 -- --link /tmp/")
    assert (copy.flags, copy.sources) == (("--chown=1",), ("--link",))
    assert one("RUN -- echo --x").command == ins.ShellForm("echo --x")
    assert one("RUN --network=none -- true").flags == ("--network=none",)


def test_flag_on_instruction_that_takes_none_is_kept() -> None:
    assert one("WORKDIR --weird=1 /x").flags == ("--weird=1",)


def test_env_values_stay_raw() -> None:
    env = one("ENV a=1 b=\"x y\" c=z\\ w d='$a' e=")
    assert env.pairs == (("a", "1"), ("b", '"x y"'), ("c", "z\\ w"), ("d", "'$a'"), ("e", ""))
    assert one("ENV k v  w").pairs == (("k", "v  w"),)


def test_arg_and_label() -> None:
    assert one("ARG a b=2 c=").pairs == (("a", None), ("b", "2"), ("c", ""))
    assert one('LABEL "k.x"="v w"').pairs == (('"k.x"', '"v w"'),)


def test_from_and_rest_instructions() -> None:
    bf = parse("FROM --platform=linux/arm64 img:1 AS base\n")
    src = bf.instructions[0]
    assert (src.image, src.stage_name, src.flags) == ("img:1", "base", ("--platform=linux/arm64",))
    assert one("WORKDIR /a b").path == "/a b"
    assert one("USER app:app").user == "app:app"
    assert one("STOPSIGNAL 9").signal == "9"
    assert one("EXPOSE 80  53/udp").ports == ("80", "53/udp")
    assert one("VOLUME [\"/a b\"]") == ins.Volume(ins.Location("Buildfile", 2), (),
                                                  'VOLUME ["/a b"]', ("/a b",), True)


def test_healthcheck_and_shell() -> None:
    hc = one("HEALTHCHECK --retries=3 CMD [\"true\"]")
    assert (hc.command, ins.flag_value(hc, "retries")) == (ins.ExecForm(("true",)), "3")
    assert one("healthcheck none").command is None
    assert one('SHELL ["pwsh", "-c"]').argv == ("pwsh", "-c")


def test_onbuild_trigger() -> None:
    trig = one("ONBUILD ADD --chown=1 a /b").trigger
    assert isinstance(trig, ins.Add)
    assert (trig.original, trig.flags, trig.sources) == ("ADD --chown=1 a /b", ("--chown=1",), ("a",))


# ---------------------------------------------------------------- heredocs


def test_heredoc_flags() -> None:
    run = one("RUN <<EOF bash\n  $x\nEOF")
    assert run.command == ins.ShellForm("<<EOF bash")
    assert run.heredocs == (ins.Heredoc("EOF", "  $x\n", expand=True, chomp_tabs=False),)
    quoted = one("RUN python3 <<'PY'\nprint(1)\nPY").heredocs[0]
    assert (quoted.delimiter, quoted.expand) == ("PY", False)
    chomped = one("RUN <<-X\n\t\ta\n\tb\n\tX").heredocs[0]
    assert (chomped.content, chomped.chomp_tabs) == ("a\nb\n", True)


def test_heredoc_body_is_not_parsed_as_instructions() -> None:
    bf = parse("FROM a\nRUN <<EOF\nRUNN # not an instruction \\\nEOF\nUSER x\n")
    assert bf.instructions[1].heredocs[0].content == "RUNN # not an instruction \\\n"
    assert bf.instructions[2] == ins.User(ins.Location("Buildfile", 5), (), "USER x", "x")


def test_copy_heredoc_sources() -> None:
    copy = one("COPY <<A <<\"B\" /dir/\na\nA\nb\nB")
    assert copy.sources == ("<<A", '<<"B"') and copy.paths == ()
    assert [(h.delimiter, h.content, h.expand) for h in copy.heredocs] == [
        ("A", "a\n", True), ("B", "b\n", False)]


def test_no_heredoc_in_exec_form_or_quotes() -> None:
    assert one('RUN ["cat", "<<EOF"]').heredocs == ()
    assert one('RUN echo "<<EOF"').heredocs == ()


def test_onbuild_heredoc() -> None:
    trig = one("ONBUILD RUN <<EOF\necho hi\nEOF").trigger
    assert trig.heredocs[0].content == "echo hi\n"
    # the trigger's text keeps the body (BuildKit's parseOnBuild): a child build parses it again
    assert trig.original == "RUN <<EOF\necho hi\nEOF"
    again = one(trig.original)
    assert (again.command, again.heredocs) == (trig.command, trig.heredocs)
    two = one("ONBUILD COPY <<-A <<B /d/\n\ta\nA\nb\nB").trigger
    assert two.original == "COPY <<-A <<B /d/\na\nA\nb\nB"
    assert one(two.original).heredocs == two.heredocs


# ---------------------------------------------------------------- files and robustness


def test_parse_file_missing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(BuildfileError, match="no such Buildfile") as info:
        parse_file(tmp_path / "nope")
    assert info.value.file == str(tmp_path / "nope")


def test_parse_file_reads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "Buildfile"
    path.write_text("FROM a\n")
    bf = parse_file(path)
    assert isinstance(bf, Buildfile) and bf.file == str(path)


def test_default_buildfile_tries_every_usual_name_in_order(tmp_path: pathlib.Path) -> None:
    with pytest.raises(BuildfileError) as info:
        default_buildfile(tmp_path)
    assert str(info.value) == (f"{tmp_path}: no Buildfile in {str(tmp_path)!r} (tried Buildfile, "
                               "Dockerfile, dockerfile, Containerfile); name one with -f")
    for name in ("Containerfile", "dockerfile", "Dockerfile", "Buildfile"):
        (tmp_path / name).write_text("FROM a\n")
        assert default_buildfile(tmp_path) == str(tmp_path / name)
    (tmp_path / "Buildfile").unlink()
    (tmp_path / "Dockerfile").unlink()
    (tmp_path / "Buildfile").mkdir()  # a dir of that name is not a Buildfile
    assert default_buildfile(tmp_path) == str(tmp_path / "dockerfile")


LARK_MODULES = {"syntax.py", "heredoc.py", "transformer.py"}


def _imports(node: ast.AST, at_import_time: bool = True):
    """(module name, runs when the module is imported) for every import under `node`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from ((alias.name, at_import_time) for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            yield child.module or "", at_import_time
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _imports(child, False)
        elif isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
            yield from _imports(child, False)
        else:
            yield from _imports(child, at_import_time)


def test_only_the_grammar_modules_import_lark_and_only_when_parsing() -> None:
    for path in (REPO / "minibuild").rglob("*.py"):
        lark = [now for name, now in _imports(ast.parse(path.read_text()))
                if name.split(".")[0] == "lark"]
        if path.parent.name != "dockerfile" or path.name not in LARK_MODULES:
            assert not lark, path
        else:
            assert lark and not any(lark), path  # inside functions (or for type checkers) only


def test_importing_the_whole_frontend_does_not_import_lark() -> None:
    import subprocess
    import sys

    modules = ", ".join(f"minibuild.dockerfile.{p.stem}"
                        for p in (REPO / "minibuild" / "dockerfile").glob("[a-z]*.py"))
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.startswith('lark')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]" and "transformer" in modules


def test_hundred_line_buildfile_parses() -> None:
    # Not a timing assertion (benchmarks live in bench/); just a realistic size end to end.
    text = "FROM a\n" + "RUN --mount=type=cache,target=/c echo $x && make \\\n  install\n" * 50
    assert len(parse(text).instructions) == 51


_fragments = st.sampled_from([
    "FROM ", "RUN ", "COPY ", "ENV ", "ARG ", "LABEL ", "ONBUILD ", "HEALTHCHECK ", "SHELL ",
    "CMD ", "a", "=", '"', "'", "\\", "`", "\n", " ", "\t", "#", "# escape=`\n", "<<EOF",
    "<<-'X'", "EOF\n", "[", "]", '["a"]', "--flag=", "$", "${a:-b}", "AS ", "NONE", "\r",
])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_fragments, max_size=30).map("".join)))
def test_parse_never_raises_anything_but_buildfile_error(text: str) -> None:
    try:
        result = parse(text)
    except BuildfileError as exc:
        assert exc.file == "Buildfile" and exc.line is not None
    else:
        assert isinstance(result, Buildfile)
        json.dumps(dump(result))
