"""`RUN --mount` specs: every option, every default, every error."""

from __future__ import annotations

import pytest

from minibuild.errors import BuildfileError
from minibuild.dockerfile.instructions import Location
from minibuild.dockerfile.runmount import (BindMount, CacheMount, SecretMount, TmpfsMount,
                                          mount_from_refs, parse_mount, parse_mounts, parse_size)

AT = Location("Buildfile", 7, 3)


def mount(text: str, **kwargs):
    return parse_mount(text, AT, **kwargs)


def refused(text: str, **kwargs) -> str:
    with pytest.raises(BuildfileError) as info:
        mount(text, **kwargs)
    assert (info.value.file, info.value.line, info.value.column) == ("Buildfile", 7, 3)
    return info.value.message


# -- bind ----------------------------------------------------------------------------------------


def test_bind_is_the_default_type_read_only_from_the_context_root():
    assert mount("target=/src") == BindMount("/src", "", None, False)


def test_bind_takes_every_alias_and_option():
    assert mount("type=bind,src=a/b,dst=/x,from=build,rw") == BindMount("/x", "a/b", "build", True)
    assert mount("type=bind,source=f,destination=/y,readwrite=true") == BindMount("/y", "f", None, True)
    assert mount("type=bind,target=/z,readwrite=false").readwrite is False
    assert mount("type=bind,target=/z,rw,ro").readwrite is False  # the last one written wins
    assert mount("type=bind,target=/z,ro,rw").readwrite is True
    assert mount("type=bind,target=/z,ro=false").readwrite is True


def test_keys_and_type_are_case_insensitive_and_later_fields_win():
    assert mount("TYPE=Tmpfs,Target=/a,target=/b") == TmpfsMount("/b")


def test_relative_targets_are_under_the_workdir_and_normalized():
    assert mount("target=src", workdir="/app").target == "/app/src"
    assert mount("target=../x/./y//", workdir="/app/sub").target == "/app/x/y"
    assert mount("target=/a/../../b", workdir="/w").target == "/b"


def test_values_are_expanded_but_keys_are_not():
    env = {"HOME": "/root", "ID": "pip"}
    got = mount("type=cache,target=$HOME/.cache,id=${ID}-cache",
                expand=lambda text: text.replace("$HOME", env["HOME"]).replace("${ID}", env["ID"]))
    assert (got.target, got.id) == ("/root/.cache", "pip-cache")


def test_every_value_is_expanded_type_and_flags_included():
    # BuildKit's parseMount runs every value through the expander, `type` first
    env = {"$T": "tmpfs", "$S": "64k", "$C": "cache", "$SH": "locked", "$RO": "true"}
    expand = lambda text: env.get(text, text)  # noqa: E731
    assert mount("type=$T,target=/t,size=$S", expand=expand) == TmpfsMount("/t", 65536)
    got = mount("type=$C,target=/c,sharing=$SH,ro=$RO", expand=expand)
    assert (got.sharing, got.readonly) == ("locked", True)
    assert mount_from_refs(["type=$B,from=$F,target=/x"],
                           expand={"$B": "bind", "$F": "build"}.get) == ["build"]
    assert mount_from_refs(["type=$T,from=$F,target=/x"], expand=expand) == []  # a tmpfs has none
    assert mount_from_refs(["type=$C,from=$F,target=/x"], expand=expand) == ["$F"]  # a cache's seeds it


# -- cache ---------------------------------------------------------------------------------------


def test_cache_defaults():
    assert mount("type=cache,target=/root/.cache") == CacheMount("/root/.cache", "/root/.cache")


def test_cache_id_defaults_to_the_target_as_written():
    assert mount("type=cache,target=.cache", workdir="/w") == CacheMount("/w/.cache", ".cache")


def test_cache_takes_every_option():
    got = mount("type=cache,target=/c,id=x,sharing=LOCKED,ro,mode=0700,uid=1000,gid=100")
    assert got == CacheMount("/c", "x", "locked", True, 0o700, 1000, 100)
    assert mount("type=cache,target=/c,sharing=private,mode=755").mode == 0o755
    assert mount("type=cache,target=/c,readonly").readonly is True


@pytest.mark.parametrize("text, message", [
    ("type=cache,target=/c,sharing=sometimes", "sharing=sometimes: want shared, private, locked"),
    ("type=cache,target=/c,mode=0999", "mode=0999: want an octal mode"),
    ("type=cache,target=/c,mode=17777", "mode=17777: want an octal mode"),
    ("type=cache,target=/c,uid=-1", "uid=-1: want a non-negative integer"),
    ("type=cache,target=/c,gid=staff", "gid=staff: want a non-negative integer"),
    ("type=cache,target=/c,ro=maybe", "ro=maybe: want true or false"),
    ("type=cache,target=/c,source=/x", "source= needs from= (the stage or image"),
    ("type=cache,target=/c,size=1m", "'size' does not apply to type=cache"),
])
def test_cache_errors(text, message):
    assert message in refused(text)


# -- tmpfs ---------------------------------------------------------------------------------------


def test_tmpfs_size():
    assert mount("type=tmpfs,target=/t") == TmpfsMount("/t", None)
    assert mount("type=tmpfs,target=/t,size=64m").size == 64 * 1024 ** 2
    assert mount("type=tmpfs,target=/t,size=4096").size == 4096


@pytest.mark.parametrize("text, size", [("1024", 1024), ("64k", 65536), ("64K", 65536),
                                        ("1.5g", 3 * 1024 ** 3 // 2), ("512MiB", 512 * 1024 ** 2),
                                        ("2mb", 2 * 1024 ** 2), ("1t", 1024 ** 4), ("10b", 10)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1", "12x", "1.2.3m", "64 kk"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_tmpfs_errors():
    assert "invalid size 'huge'" in refused("type=tmpfs,target=/t,size=huge")
    assert "'ro' does not apply to type=tmpfs" in refused("type=tmpfs,target=/t,ro")


# -- secret --------------------------------------------------------------------------------------


def test_secret_defaults_to_a_file_in_run_secrets():
    assert mount("type=secret,id=tok") == SecretMount("tok", "/run/secrets/tok")


def test_secret_id_defaults_to_the_targets_basename():
    assert mount("type=secret,target=/etc/app/key.pem") == SecretMount("key.pem", "/etc/app/key.pem")


def test_secret_as_env_only_or_both():
    assert mount("type=secret,id=tok,env=TOKEN") == SecretMount("tok", None, "TOKEN")
    both = mount("type=secret,id=tok,env=TOKEN,target=/t")
    assert (both.target, both.env) == ("/t", "TOKEN")


def test_secret_takes_every_option():
    got = mount("type=secret,id=a,dst=/s,required,mode=0440,uid=5,gid=6")
    assert got == SecretMount("a", "/s", None, True, 0o440, 5, 6)
    assert mount("type=secret,id=a,required=false").required is False
    assert mount("type=secret,id=a,required=TRUE").required is True


@pytest.mark.parametrize("text, message", [
    ("type=secret", "needs an id (id=NAME) or a target"),
    ("type=secret,id=a/..", "id=a/.. cannot name a file in /run/secrets"),
    ("type=secret,id=a,env=1BAD", "env=1BAD: not a valid environment variable name"),
    ("type=secret,id=a,required=yes", "required=yes: want true or false"),
    ("type=secret,id=a,rw", "'rw' does not apply to type=secret"),
    ("type=secret,id=a,from=x", "'from' does not apply to type=secret"),
])
def test_secret_errors(text, message):
    assert message in refused(text)


# -- errors of any type --------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("type=ssh", "type=ssh is not supported"),
    ("type=volume,target=/v", "unknown mount type 'volume' (want bind, cache, tmpfs, secret)"),
    ("type=cache", "type=cache: needs a target"),
    ("type=bind,source=x", "type=bind: needs a target"),
    ("type=tmpfs,target=", "type=tmpfs: needs a target"),
    ("type=cache,target=/c,colour=red", "unknown option 'colour'"),
    ("type=cache,target=/c,shiny", "unknown option 'shiny'"),
    ("type=cache,target", "option 'target' needs a value"),
    ("type=cache,,target=/c", "empty option"),
    ("", "needs a value"),
    ("type=cache,target=/", "cannot mount over /"),
    ("type=cache,target=/a/..", "cannot mount over /"),
    ("type=tmpfs,target=/proc/x", "cannot mount on /proc/x"),
    ("type=tmpfs,target=/dev", "cannot mount on /dev"),
    ("type=tmpfs,target=pts", "cannot mount on /dev/pts"),
    ("type=cache,target=/dev/shm", "cannot mount on /dev/shm"),  # a tmpfs only may replace it
])
def test_errors_are_located_at_the_run(text, message):
    assert message in refused(text, workdir="/dev" if text.endswith("pts") else "/")


def test_two_mounts_on_one_target_are_refused():
    with pytest.raises(BuildfileError, match="two mounts on one target: /c"):
        parse_mounts(["type=cache,target=/c", "type=tmpfs,target=c"], AT)
    two = parse_mounts(["type=secret,id=a,env=A", "type=secret,id=b,env=B"], AT)
    assert [m.env for m in two] == ["A", "B"]  # env-only secrets have no target


def test_quoted_fields():
    assert mount('type=bind,"source=a,b",target=/x').source == "a,b"


def test_mount_from_refs_finds_bind_and_cache_sources_only():
    values = ["type=bind,from=build,target=/a", "from=0,target=/b", "type=cache,from=c,target=/c",
              "target=/d", "type=bind,from=,target=/e", "type=tmpfs,from=t,target=/t", "garbage\"quote"]
    assert mount_from_refs(values) == ["build", "0", "c"]


def test_keys_never_hold_a_secret_value():
    key = mount("type=secret,id=tok,env=TOKEN").key()
    assert key == {"type": "secret", "id": "tok", "target": None, "env": "TOKEN", "required": False,
                   "mode": 0o400, "uid": 0, "gid": 0}


def test_a_tmpfs_may_replace_dev_shm():
    assert mount("type=tmpfs,target=/dev/shm,size=1g") == TmpfsMount("/dev/shm", 1 << 30)


def test_cache_from_a_stage_with_a_source_path():
    got = mount("type=cache,target=/c,from=build,source=/out/../cache/")
    assert (got.from_, got.source, got.id) == ("build", "cache", "/c")
    assert got.key()["from"] == "build" and got.key()["source"] == "cache"
    assert "from" not in mount("type=cache,target=/c").key()  # plain caches keep their keys


@pytest.mark.parametrize("target", ["/x/", "/x", "//x", "/y/../x"])
def test_the_default_cache_id_is_the_cleaned_target(target):
    """BuildKit: CacheID = path.Clean(Target): /x/ and /x are one cache."""
    assert mount(f"type=cache,target={target}").id == "/x"


def test_a_secret_id_with_slashes_is_a_file_named_by_its_last_part():
    """BuildKit: /run/secrets/ + path.Base(id)."""
    got = mount("type=secret,id=team/token")
    assert (got.id, got.target) == ("team/token", "/run/secrets/token")
