"""The transformer (transformer.py): a tree -> a typed instruction, arity and forms checked."""

from __future__ import annotations

import pytest

from minibuild.dockerfile import instructions as ins
from minibuild.dockerfile import syntax, transformer
from minibuild.dockerfile.prepass import LogicalLine
from minibuild.errors import BuildfileError

BODY = ins.Heredoc("EOF", "x\n", True, False)


def build(text: str, heredocs=()) -> ins.Instruction:
    """`text` at line 2, column 3 of `B`, through the grammar and the transformer."""
    line = LogicalLine(text, ((0, 2, 3),), "B", "\\")
    return transformer.instruction(syntax.recognise(line), line, heredocs)


def refused(text: str) -> str:
    with pytest.raises(BuildfileError) as info:
        build(text)
    return str(info.value)


def test_every_instruction_gets_location_flags_and_original():
    run = build("RUN --network=none --mount=type=cache,target=/c make")
    assert run == ins.Run(ins.Location("B", 2, 3), ("--network=none", "--mount=type=cache,target=/c"),
                          "RUN --network=none --mount=type=cache,target=/c make",
                          command=ins.ShellForm("make"))


def test_commands_in_exec_and_shell_form():
    assert build('CMD ["a", "b c"]').command == ins.ExecForm(("a", "b c"))
    assert build("ENTRYPOINT exec app").command == ins.ShellForm("exec app")
    assert build("RUN [not json").command == ins.ShellForm("[not json")
    assert build("RUN cat <<EOF", (BODY,)).heredocs == (BODY,)


def test_json_that_is_not_an_array_of_strings_is_refused():
    message = "B:2:3: when using JSON array syntax, arrays must be comprised of strings only"
    assert refused("RUN [1, 2]") == message
    assert refused("COPY [1,2]") == message


def test_shell_needs_the_json_form():
    assert build('SHELL ["/bin/bash", "-c"]').argv == ("/bin/bash", "-c")
    assert "SHELL requires the arguments to be in JSON form" in refused("SHELL /bin/bash")
    assert refused("SHELL []") == "B:2:3: SHELL requires at least one argument"


def test_copy_add_and_volume_arguments():
    copy = build("COPY --chown=1 a b /d/", (BODY,))
    assert (copy.sources, copy.dest, copy.flags) == (("a", "b"), "/d/", ("--chown=1",))
    assert copy.heredocs == (BODY,) and not copy.json_form
    add = build('ADD ["a b", "/d"]')
    assert isinstance(add, ins.Add) and (add.sources, add.json_form) == (("a b",), True)
    assert build("VOLUME /a /b").paths == ("/a", "/b")
    assert "COPY requires at least two arguments" in refused("COPY a")
    assert refused('VOLUME [""]') == "B:2:3: VOLUME specified can not be an empty string"


def test_env_label_and_arg_pairs_stay_raw():
    assert build('ENV a="x y" b=$c').pairs == (("a", '"x y"'), ("b", "$c"))
    assert build("ENV legacy form value").pairs == (("legacy", "form value"),)
    assert build('LABEL "k"=v').pairs == (('"k"', "v"),)
    assert build("ARG a b=1 c").pairs == (("a", None), ("b", "1"), ("c", None))  # source order
    assert refused("ENV a").startswith("B:2:3: ENV must have two arguments")
    assert refused("ARG").startswith("B:2:3: ARG requires at least one argument")


def test_single_argument_instructions():
    assert build("WORKDIR /my dir").path == "/my dir"
    assert build("USER app:app").user == "app:app"
    assert build("STOPSIGNAL SIGKILL").signal == "SIGKILL"
    assert build("MAINTAINER Me <me@x>").name == "Me <me@x>"
    assert build("EXPOSE 80 53/udp").ports == ("80", "53/udp")
    assert refused("USER") == "B:2:3: USER requires exactly one argument"


def test_from_names_its_stage():
    base = build("FROM --platform=linux/arm64 img AS Build")
    assert (base.image, base.stage_name, base.flags) == ("img", "Build", ("--platform=linux/arm64",))
    assert build("FROM img").stage_name is None


def test_healthcheck_forms():
    assert build("HEALTHCHECK NONE").command is None
    check = build("HEALTHCHECK --retries=3 CMD curl x")
    assert (check.flags, check.command) == (("--retries=3",), ins.ShellForm("curl x"))
    assert refused("HEALTHCHECK CMD") == "B:2:3: Missing command after HEALTHCHECK CMD"


def test_onbuild_trigger_keeps_its_own_text_and_the_outer_location():
    onbuild = build("ONBUILD RUN --network=none make")
    trigger = onbuild.trigger
    assert isinstance(trigger, ins.Run) and trigger.original == "RUN --network=none make"
    assert trigger.location == onbuild.location and trigger.flags == ("--network=none",)


@pytest.mark.parametrize("text, message", [
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM a", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
])
def test_onbuild_refuses(text, message):
    assert refused(text) == f"B:2:3: {message}"
