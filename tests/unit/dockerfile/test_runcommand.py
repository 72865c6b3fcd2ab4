"""runcommand.py: what a RUN executes (heredocs folded, `#!` scripts in /dev/pipes/) and the
history text `docker history` shows for it (BuildKit's `|N K=V` prefix)."""

from __future__ import annotations

from minibuild.dockerfile import metadata, parser, runcommand
from minibuild.oci.image import ContainerConfig

CONFIG = ContainerConfig()


def run(text: str):
    return parser.parse(f"FROM scratch\n{text}\n").instructions[1]


def prepare(text: str, scope: metadata.Scope = metadata.Scope(), config=CONFIG):
    return runcommand.prepare(run(text), scope, config)


def test_heredocs_fold_into_the_shell_script():
    only = prepare("RUN <<EOF\necho one\necho two\nEOF")
    assert only.argv == ("/bin/sh", "-c", "echo one\necho two\n") and only.pipes == ()
    assert only.created_by == "RUN /bin/sh -c echo one\necho two\n"
    with_command = prepare("RUN python3 <<EOF\nprint(1)\nEOF")
    assert with_command.argv[-1] == "python3 <<EOF\nprint(1)\nEOF\n"
    exec_form = prepare('RUN ["echo", "hi"]')
    assert exec_form.argv == ("echo", "hi") and exec_form.created_by == 'RUN ["echo", "hi"]'


def test_a_shebang_heredoc_runs_as_a_file_in_dev_pipes():
    # the reference's example, and BuildKit's way: /bin/sh -c /dev/pipes/EOT runs the script
    command = prepare("RUN <<EOT\n#!/usr/bin/env python\nprint(\"hello world\")\nEOT")
    assert command.argv == ("/bin/sh", "-c", "/dev/pipes/EOT")
    assert command.pipes == (("EOT", '#!/usr/bin/env python\nprint("hello world")\n'),)
    assert command.created_by == "RUN /bin/sh -c /dev/pipes/EOT"
    chomped = prepare("RUN <<-EOT\n\t#!/bin/sh\n\techo hi\nEOT")
    assert chomped.pipes == (("EOT", "#!/bin/sh\necho hi\n"),)


def test_only_a_lone_heredoc_is_a_script():
    assert prepare("RUN <<EOT bash\n#!/bin/sh\nEOT").pipes == ()  # the command is bash
    two = prepare("RUN <<A <<B\n#!/bin/sh\nA\n#!/bin/sh\nB")
    assert two.pipes == () and two.argv[-1] == "#!/bin/sh\n#!/bin/sh\n"  # README: both run
    assert prepare("RUN <<EOT\n echo '#!'\nEOT").pipes == ()  # not the first characters
    assert prepare('RUN <<"A/B"\n#!/bin/sh\nA/B').pipes == ()  # not a file name


def test_history_names_the_stage_args_as_buildkit_does():
    scope = metadata.Scope(args=(("A", "1"),), declared=("A", "B"))
    assert prepare("RUN make", scope).created_by == "RUN |2 A=1 B= /bin/sh -c make"
    assert prepare('RUN ["make"]', scope).created_by == 'RUN |2 A=1 B= ["make"]'
    env = ContainerConfig(env=("A=env",))
    assert prepare("RUN make", scope, env).created_by == "RUN |2 A=env B= /bin/sh -c make"


def test_key_extras_only_when_present():
    plain = prepare("RUN make")
    assert runcommand.key_extras(plain, metadata.Scope(), CONFIG) == {}
    scope = metadata.Scope(declared=("A",), hostname="box")
    script = prepare("RUN <<EOT\n#!/bin/sh\nEOT", scope)
    assert runcommand.key_extras(script, scope, CONFIG) == {
        "pipes": [["EOT", "#!/bin/sh\n"]], "hostname": "box", "history_args": "|1 A= "}
