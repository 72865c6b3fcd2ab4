"""`run`'s -v, --mount, --tmpfs, --env-file and -h parsed as docker reads them."""

from __future__ import annotations

import pytest

from minibuild.containers.mountspec import MountSpec, RunFlagError, check_targets, \
    with_image_volumes
from minibuild.containers.runflags import check_hostname, parse_env_file, parse_mount, \
    parse_tmpfs, parse_volume

CWD = "/home/me/app"


# -- -v --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("/srv:/data", MountSpec("bind", "/data", "/srv", create_source=True)),
    ("/srv/:/data/:ro", MountSpec("bind", "/data", "/srv", True, create_source=True)),
    ("/srv:/data:rw,z", MountSpec("bind", "/data", "/srv", create_source=True)),
    ("./conf:/etc/app", MountSpec("bind", "/etc/app", "/home/me/app/conf", create_source=True)),
    ("..:/up", MountSpec("bind", "/up", "/home/me", create_source=True)),
    ("data:/var/lib/db", MountSpec("volume", "/var/lib/db", "data")),
    ("my_vol.2-x:/v:ro,Z", MountSpec("volume", "/v", "my_vol.2-x", True)),
    ("cache:/c:nocopy", MountSpec("volume", "/c", "cache", nocopy=True)),
    ("/scratch", MountSpec("volume", "/scratch", anonymous=True)),
    ("/scratch:ro", MountSpec("volume", "/scratch", readonly=True, anonymous=True)),
    ("/a/../b/./c", MountSpec("volume", "/b/c", anonymous=True)),
])
def test_volume_flag(text, expected):
    assert parse_volume(text, CWD) == expected


@pytest.mark.parametrize("text, message", [
    ("data:relative", "'relative' is not an absolute path"),
    ("relative", "'relative' is not an absolute path"),
    ("/srv:/data:shared", "unknown option 'shared'"),
    ("/srv:/data:ro,rw", "contradict"),
    ("/srv:/data:nocopy", "nocopy is for volumes"),
    ("bad/name:/data", "not a valid volume name"),
    ("x:/data", "not a valid volume name"),  # docker wants two characters or more
    ("-x:/data", "not a valid volume name"),
    ("a:b:c:d", "want SRC:DST"),
    (":/data", "want SRC:DST"),
    ("/srv:/", "cannot mount over /"),
    ("/srv:/a/..", "cannot mount over /"),
    ("/srv:/proc/sys", "own /proc and /dev"),
    ("v1:/dev", "own /proc and /dev"),
])
def test_volume_flag_mistakes(text, message):
    with pytest.raises(RunFlagError, match=message) as caught:
        parse_volume(text, CWD)
    assert caught.value.exit_code == 2 and text in str(caught.value)


# -- --mount ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("type=bind,source=/srv,target=/data", MountSpec("bind", "/data", "/srv")),
    ("type=bind,src=rel,dst=/data,readonly", MountSpec("bind", "/data", "/home/me/app/rel", True)),
    ("type=bind,src=/s,destination=/d,ro=true", MountSpec("bind", "/d", "/s", True)),
    ("type=bind,src=/s,target=/d,readonly=false", MountSpec("bind", "/d", "/s")),
    ("source=data,target=/d", MountSpec("volume", "/d", "data")),  # volume is the default type
    ("type=volume,target=/d,volume-nocopy", MountSpec("volume", "/d", anonymous=True, nocopy=True)),
    ("Type=Volume,Source=v1,Target=/d,volume-driver=local", MountSpec("volume", "/d", "v1")),
    ("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770",
     MountSpec("tmpfs", "/t", size=64 << 20, mode=0o1770)),
    ('type=bind,"src=/with,comma",target=/d', MountSpec("bind", "/d", "/with,comma")),
])
def test_mount_flag(text, expected):
    assert parse_mount(text, CWD) == expected


@pytest.mark.parametrize("text, message", [
    ("type=nfs,target=/d", "unknown type 'nfs'"),
    ("type=bind,target=/d", "needs a source"),
    ("type=bind,src=/s,target=/d,bind-propagation=shared", "unknown option 'bind-propagation'"),
    ("type=tmpfs,src=/s,target=/d", "unknown option 'src'"),
    ("type=volume,src=v1", "no destination"),
    ("type=volume,src=v1,target=d", "not an absolute path"),
    ("type=volume,src=v1,target=/d,readonly=maybe", "want true or false"),
    ("type=volume,src=v1,target=/d,volume-driver=nfs", "only the local driver"),
    ("type=tmpfs,target=/t,tmpfs-size=lots", "invalid size"),
    ("type=tmpfs,target=/t,tmpfs-mode=999", "octal mode"),
    ("type=bind,src=/a,src=/b,target=/d", "given twice"),
])
def test_mount_flag_mistakes(text, message):
    with pytest.raises(RunFlagError, match=message):
        parse_mount(text, CWD)


# -- --tmpfs ---------------------------------------------------------------------------------------


def test_tmpfs_flag():
    assert parse_tmpfs("/run") == MountSpec("tmpfs", "/run", noexec=True)
    assert parse_tmpfs("/run:size=65536k,mode=755,exec,nosuid,nodev,ro") == MountSpec(
        "tmpfs", "/run", readonly=True, size=65536 << 10, mode=0o755)
    for text, message in (("/run:suid", "unknown option 'suid'"), ("/run:size=x", "invalid size"),
                          ("run", "not an absolute path"), ("/run:mode=8", "octal mode")):
        with pytest.raises(RunFlagError, match=message):
            parse_tmpfs(text)


# -- the set ---------------------------------------------------------------------------------------


def test_image_volumes_become_anonymous_unless_a_flag_covers_them():
    asked = [parse_volume("data:/var/db", CWD)]
    specs = with_image_volumes(asked, ["/var/db", "/srv/logs/", "cache", "/srv/logs"])
    assert specs == [asked[0], MountSpec("volume", "/srv/logs", anonymous=True),
                     MountSpec("volume", "/cache", anonymous=True)]


def test_two_mounts_on_one_target_are_refused():
    check_targets([parse_volume("/a:/x", CWD), parse_tmpfs("/y")])
    with pytest.raises(RunFlagError, match="duplicate mount point: /x"):
        check_targets([parse_volume("/a:/x", CWD), parse_mount("type=tmpfs,dst=/x/", CWD)])


def test_specs_round_trip_through_json():
    for spec in (parse_volume("/srv:/d:ro", CWD), parse_tmpfs("/t:size=1k,mode=700"),
                 parse_mount("type=volume,src=v1,dst=/v,volume-nocopy", CWD)):
        assert MountSpec.from_json(spec.to_json()) == spec
    assert parse_volume("v1:/v", CWD).to_json() == {"type": "volume", "target": "/v",
                                                     "source": "v1"}


# -- --env-file, -h ------------------------------------------------------------------------------


def test_env_file_is_read_as_docker_reads_it():
    text = ("\ufeff# a comment\nA=1\n\n   B= spaced value  \nC=x=y\nQ=\"quoted\"\n"
            "  # indented comment\nBARE\nEMPTY=\n").encode()
    assert parse_env_file(text, "f.env") == ["A=1", "B= spaced value  ", "C=x=y",
                                             'Q="quoted"', "BARE", "EMPTY="]


def test_env_file_lines_end_only_at_newlines():
    # docker splits at "\n" (dropping a "\r" before it); other line breaks stay in the value
    text = "A=form\x0cfeed\r\nB=lone\rcr\nC=line\u2028sep\x85nel\r\n".encode()
    assert parse_env_file(text, "f.env") == ["A=form\x0cfeed", "B=lone\rcr",
                                             "C=line\u2028sep\x85nel"]


@pytest.mark.parametrize("text, message", [
    (b"OK=1\n=value\n", "f.env:2: no variable name"),
    (b"MY VAR=1\n", "f.env:1: variable 'MY VAR' contains whitespace"),
    (b"KEY =1\n", "f.env:1: variable 'KEY ' contains whitespace"),
    (b"A=\xff\n", "not UTF-8"),
    (b"A=x\0y\n", "NUL"),
])
def test_env_file_mistakes_name_the_line(text, message):
    with pytest.raises(RunFlagError, match=message):
        parse_env_file(text, "f.env")


def test_hostname():
    assert check_hostname("web-1.example") == "web-1.example"
    for bad in ("", "-web", "web-", "a b", "x" * 65, "under_score"):
        with pytest.raises(RunFlagError):
            check_hostname(bad)
