"""How a container's command and environment come from the image and the run flags (docker's rules)."""

from __future__ import annotations

import pytest

from minibuild.containers.commit import committed_config
from minibuild.containers.records import Container, ContainerError, process_start_time
from minibuild.oci.digest import Digest
from minibuild.oci.image import ContainerConfig, Descriptor
from minibuild.containers.runtime import command_line, container_env
from minibuild.containers.signals import stop_signal

IMAGE = ContainerConfig(entrypoint=("/entry", "-x"), cmd=("serve",), env=("PATH=/bin", "A=1"))


@pytest.mark.parametrize("entrypoint, cmd, expected", [
    (None, (), ("/entry", "-x", "serve")),             # ENTRYPOINT + CMD
    (None, ("run", "it"), ("/entry", "-x", "run", "it")),  # args replace CMD only
    ("sh", (), ("sh",)),                                # --entrypoint drops the image's CMD
    ("sh", ("-c", "id"), ("sh", "-c", "id")),
    ("", ("ls",), ("ls",)),                             # --entrypoint "" clears it
])
def test_entrypoint_and_cmd(entrypoint, cmd, expected):
    assert command_line(IMAGE, entrypoint, cmd) == expected


def test_cmd_alone_and_nothing_at_all():
    assert command_line(ContainerConfig(cmd=("sh",)), None, ()) == ("sh",)
    with pytest.raises(ContainerError, match="no command"):
        command_line(ContainerConfig(), None, ())


def test_env_flags_override_and_bare_names_come_from_the_host():
    env = dict(container_env(IMAGE, ["A=2", "B=x=y", "HOME_SET", "UNSET"], {"HOME_SET": "h"}))
    assert env == {"PATH": "/bin", "A": "2", "B": "x=y", "HOME_SET": "h"}
    with pytest.raises(ContainerError):
        container_env(IMAGE, ["=v"], {})


def _container(**overrides) -> Container:
    digest = Digest.of(b"m")
    return Container(id="0" * 64, name="n", image="base:1.0",
                     manifest=Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 1),
                     diff_ids=(digest,), argv=("sh",), env=(("A", "2"),), cwd="/", user="",
                     network="host", created="2024-01-01T00:00:00Z", overrides=overrides)


def test_record_round_trips_through_json():
    c = _container(cmd=["sh"])
    assert Container.from_json(c.to_json()) == c
    assert c.short_id == "0" * 12


def test_commit_keeps_what_run_changed():
    c = _container(entrypoint="sh", cmd=["-c", "x"], env=["A=2"], workdir="/w", user="1")
    config = committed_config(IMAGE, c)
    assert config.entrypoint == ("sh",) and config.cmd == ("-c", "x")
    assert config.env == ("A=2",) and config.working_dir == "/w" and config.user == "1"
    assert committed_config(IMAGE, _container()) == IMAGE


def test_start_time_of_ourselves_and_of_no_process():
    import os

    assert process_start_time(os.getpid()) > 0
    assert process_start_time(2 ** 22 + 12345) is None


def test_stop_signal_names():
    import signal

    assert stop_signal("") == signal.SIGTERM
    assert stop_signal("SIGUSR1") == stop_signal("usr1") == signal.SIGUSR1
    assert stop_signal("9") == 9
    with pytest.raises(ContainerError):
        stop_signal("SIGNOPE")
