"""Pure parts of the sandbox: overlay option strings, environment, exec failures (no root)."""

from __future__ import annotations

import errno
import os
import signal

from minibuild.sandbox.channel import Messages as _Messages
from minibuild.sandbox.channel import report as _report
from minibuild.sandbox.sandbox import (
    DEFAULT_PATH,
    OverlayOptions,
    exec_failure,
    exit_status,
    overlay_extra_options,
    process_environment,
)
from minibuild.errors import BuildError, LayerError

EXTRA = (("redirect_dir", "off"), ("metacopy", "off"))


def test_extra_options_only_where_the_kernel_has_them():
    assert overlay_extra_options([]) == ()
    assert overlay_extra_options(["metacopy", "redirect_dir", "nfs_export"]) == EXTRA
    assert overlay_extra_options(["xino_auto", "index", "redirect_dir", "metacopy"]) == (
        ("redirect_dir", "off"), ("metacopy", "off"), ("index", "off"), ("xino", "off"))


def test_fsconfig_pairs_one_lowerdir_plus_per_layer_top_first():
    options = OverlayOptions(("/l/top", "/l/mid:x", "/l/base"), "/s/up", "/s/work", EXTRA)
    assert options.fsconfig_pairs() == (
        ("lowerdir+", "/l/top"), ("lowerdir+", "/l/mid:x"), ("lowerdir+", "/l/base"),
        ("upperdir", "/s/up"), ("workdir", "/s/work"), ("redirect_dir", "off"), ("metacopy", "off"))


def test_mount_data_relative_lowers_and_escaping():
    options = OverlayOptions(("/store/layers/a", "/store/layers/b,c", "/store/x:y"),
                             "/store/run/up", "/store/run/work", EXTRA)
    base, relative = options.relative_lowers()
    assert (base, relative) == ("/store", ("layers/a", "layers/b,c", "x:y"))
    assert options.mount_data(relative) == ("lowerdir=layers/a:layers/b\\,c:x\\:y,"
                                            "upperdir=/store/run/up,workdir=/store/run/work,"
                                            "redirect_dir=off,metacopy=off")


def test_single_lower_is_relative_to_itself():
    options = OverlayOptions(("/a/b",), "/u", "/w")
    assert options.relative_lowers() == ("/a/b", (".",))


def test_describe_shortens_long_lowerdir_lists():
    lowers = tuple(f"/layers/{i:03d}" for i in range(300))
    text = OverlayOptions(lowers, "/up", "/work", EXTRA).describe()
    assert text.startswith("lowerdir=/layers/000:...(298 more):/layers/299,upperdir=/up,workdir=/work")
    assert len(text) <= 300
    assert len(OverlayOptions(("/x" * 400,), "/u", "/w").describe(limit=100)) == 100


def test_environment_is_exact_plus_defaults():
    assert process_environment([], "/root") == {"PATH": DEFAULT_PATH, "HOME": "/root"}
    env = process_environment([("PATH", "/bin"), ("A", "1"), ("A", "2"), ("HOME", "/h")], "/root")
    assert env == {"PATH": "/bin", "A": "2", "HOME": "/h"}


def test_exec_failure_messages_and_codes():
    assert exec_failure("foo", errno.ENOENT) == (
        b'minibuild: exec: "foo": executable file not found in $PATH\n', 127)
    assert exec_failure("/bin/foo", errno.ENOENT)[0] == b'minibuild: exec: "/bin/foo": executable file not found\n'
    assert exec_failure("x", errno.EACCES) == (b'minibuild: exec: "x": Permission denied\n', 126)


def test_exit_status_maps_signals_to_128_plus():
    assert exit_status(3 << 8) == 3
    assert exit_status(signal.SIGKILL) == 137


def test_reported_errors_round_trip_through_a_pipe():
    read, write = os.pipe()
    try:
        _report(write, LayerError("bad layer", step="RUN x"))
        _report(write, ValueError("plain"))
        messages = _Messages()
        data = os.read(read, 65536)
        for i in range(len(data)):  # arbitrary chunking must not matter
            messages.feed(data[i:i + 1])
    finally:
        os.close(read)
        os.close(write)
    first, second = messages.errors
    assert isinstance(first, LayerError) and first.step == "RUN x" and first.message == "bad layer"
    assert type(second) is BuildError and str(second) == "plain"  # JSON: no foreign classes
