"""Fuzzing parse + plan: random and mutated Buildfiles give a result or a located MinibuildError.

Never another exception (a traceback for the user), and never more than a second per input
(hypothesis' deadline; it re-runs a slow input before calling it a failure).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibuild.errors import MinibuildError
from minibuild.dockerfile.parser import parse
from minibuild.dockerfile.plan import make_plan

REPO = Path(__file__).resolve().parents[3]
SEEDS = sorted(p.read_text() for p in [*REPO.glob("sample_images/*/Buildfile"),
                                       *REPO.glob("tests/testdata/parser/**/*.Buildfile")])
SEEDS.append("""# escape=`
ARG BASE=base:1.0
FROM ${BASE} AS build
ARG V=1
ENV A=$V B="x y" C=${A:-z}
WORKDIR /src
COPY --chown=1:1 a b/ /dst/
RUN <<EOF
echo hi
EOF
FROM build
COPY --from=build /dst /x
ONBUILD RUN echo
HEALTHCHECK --interval=5s CMD ["true"]
SHELL ["/bin/sh", "-c"]
CMD ["sh"]
""")

FRAGMENTS = [
    "FROM ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "LABEL ", "ONBUILD ", "HEALTHCHECK ",
    "SHELL ", "CMD ", "ENTRYPOINT ", "WORKDIR ", "USER ", "EXPOSE ", "VOLUME ", "STOPSIGNAL ",
    "MAINTAINER ", "AS ", "scratch", "base:1.0", "a", "=", '"', "'", "\\", "`", "\n", "\\\n", " ",
    "\t", "#", "# escape=`\n", "# escape=\\\n", "# syntax=x\n", "<<EOF", "<<-'X'", "EOF\n", "[",
    "]", '["a", "b"]', "[1]", "--from=0", "--chown=", "--chmod=777", "--network=none",
    "--platform=$P", "$", "${", "}", "${a:-b}", "${a:+b}", "${a?err}", "\r", "\x00", "\u00e9",
    "--target", "0", "-1", ":", "@sha256:", "\ufeff",
]


@st.composite
def mutated(draw) -> str:
    """A seed Buildfile with a few random edits: delete, duplicate, insert, replace, swap lines."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "swap"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 12)))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.text(max_size=3)) + text[j:]
        else:
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


BUILDFILES = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    mutated(),
)
BUILD_ARGS = st.dictionaries(st.sampled_from(["BASE", "V", "P", "a", "A"]),
                             st.sampled_from(["", "x", "base:1.0", "${a}", "$", "a b"]), max_size=3)
TARGETS = st.one_of(st.none(), st.sampled_from(["build", "0", "1", "nope", "BUILD", ""]))


def plan_or_error(text: str, build_args: dict[str, str], target: str | None) -> None:
    """What `build` does before touching the store: parse, then plan."""
    try:
        make_plan(parse(text, file="fuzz.Buildfile"), build_args, target)
    except MinibuildError as exc:
        assert exc.file == "fuzz.Buildfile", f"error without its file: {exc!r}"
        assert exc.message.strip() and "\n" not in str(exc), f"not one line: {exc!r}"


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(BUILDFILES, BUILD_ARGS, TARGETS)
def test_parse_and_plan_give_a_result_or_a_located_error(text, build_args, target):
    plan_or_error(text, build_args, target)


@settings(max_examples=200, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_buildfiles_with_a_line_number_on_every_syntax_error(text):
    try:
        parse(text, file="fuzz.Buildfile")
    except MinibuildError as exc:
        assert exc.line is not None and exc.line >= 1, f"no line: {exc!r}"
        assert exc.line <= text.count("\n") + 2, f"line {exc.line} past the end: {exc!r}"


def test_the_seeds_are_valid_buildfiles():
    # The mutations start from valid files, so a failure there is the mutation's doing.
    for seed in SEEDS[-1:] + [s for s in SEEDS if "FROM base" in s]:
        make_plan(parse(seed), {}, None)
