"""The host side of RUN --mount: cache dirs and their flocks, secret values, what a context bind hides."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from minibuild.dockerfile.dockerignore import IgnoreRules
from minibuild.fs import dirstack
from tests.deeptree import DEEP, fast_tmp, make_deep  # noqa: F401 - fast_tmp is a fixture
from minibuild.build.context import BuildContext
from minibuild.errors import BuildError
from minibuild.dockerfile.instructions import Location
from minibuild.build.cachemounts import cache_mount_dir, forget_cache_mounts
from minibuild.build.mountsetup import MountHost, Prepared, _excluded
from minibuild.dockerfile.runmount import parse_mount
from minibuild.dockerfile.secretsource import SecretSource
from minibuild.sandbox.stepmounts import Bind, SecretFile

ME = f"uid={os.getuid()},gid={os.getgid()}"


def prepared(text: str) -> Prepared:
    return Prepared(parse_mount(text, Location("Buildfile", 1)))


@pytest.fixture
def host(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    counter = iter(range(1000))

    def make(prefix: str) -> Path:
        path = scratch / f"{prefix}-{next(counter)}"
        path.mkdir()
        return path

    (tmp_path / "ctx").mkdir()
    (tmp_path / "secret.txt").write_bytes(b"from-a-file")
    secrets = {"file": SecretSource("file", path=str(tmp_path / "secret.txt")),
               "env": SecretSource("env", env="MY_TOKEN"),
               "gone": SecretSource("gone", path=str(tmp_path / "missing.txt")),
               "unset": SecretSource("unset", env="NOT_SET_ANYWHERE")}
    return MountHost(cache_mount_dir(tmp_path / "store"), secrets, BuildContext(tmp_path / "ctx"),
                     make, environ={"MY_TOKEN": "from-env"})


def try_lock(path: Path, how: int) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def lock_file(host: MountHost) -> Path:
    return next(host.cache_root.glob("*.lock"))


def test_a_cache_dir_is_made_once_with_its_mode_and_kept(host):
    spec = prepared(f"type=cache,target=/c,id=pip,mode=0710,{ME}")
    with host.setup([spec]) as (mounts, env):
        (bind,) = mounts
        assert isinstance(bind, Bind) and bind.view is None and not bind.readonly
        assert stat.S_IMODE(os.stat(bind.source).st_mode) == 0o710
        Path(bind.source, "kept").write_text("x")
    with host.setup([prepared("type=cache,target=/other,id=pip,mode=0700,ro")]) as (mounts, _):
        assert mounts[0].source == bind.source and mounts[0].readonly
        assert Path(bind.source, "kept").exists()
        assert stat.S_IMODE(os.stat(bind.source).st_mode) == 0o710  # made once
    assert env == ()
    assert forget_cache_mounts(host.cache_root.parent.parent) == 1
    assert not host.cache_root.exists()


def test_sharing_locked_holds_the_cache_exclusively_until_the_step_ends(host):
    with host.setup([prepared(f"type=cache,target=/c,sharing=locked,{ME}")]):
        assert not try_lock(lock_file(host), fcntl.LOCK_SH)
    assert try_lock(lock_file(host), fcntl.LOCK_EX)


def test_sharing_shared_lets_others_share_but_not_lock(host):
    with host.setup([prepared(f"type=cache,target=/c,{ME}")]):
        assert try_lock(lock_file(host), fcntl.LOCK_SH)
        assert not try_lock(lock_file(host), fcntl.LOCK_EX)


def test_sharing_private_gets_a_fresh_dir_while_the_cache_is_in_use(host):
    with host.setup([prepared(f"type=cache,target=/c,{ME}")]) as (shared, _):
        Path(shared[0].source, "f").write_text("x")
        with host.setup([prepared(f"type=cache,target=/c,sharing=private,{ME}")]) as (private, _):
            assert private[0].source != shared[0].source
            assert not any(Path(private[0].source).iterdir())
        assert not Path(private[0].source).exists()  # thrown away with the step
    with host.setup([prepared(f"type=cache,target=/c,sharing=private,{ME}")]) as (private, _):
        assert private[0].source == shared[0].source  # free again: the cache itself


def test_one_id_mounted_twice_in_one_step_is_locked_once(host):
    specs = [prepared(f"type=cache,target=/a,id=x,sharing=locked,{ME}"),
             prepared(f"type=cache,target=/b,id=x,{ME}")]
    with host.setup(specs) as (mounts, _):  # a second flock would wait for the first forever
        assert mounts[0].source == mounts[1].source


def test_secrets_from_a_file_and_from_the_environment(host):
    specs = [prepared("type=secret,id=file,mode=0440"), prepared("type=secret,id=env,env=TOKEN"),
             prepared("type=secret,id=env,env=BOTH,target=/b")]
    with host.setup(specs) as (mounts, env):
        assert [type(m) for m in mounts] == [SecretFile, SecretFile]
        assert (mounts[0].target, mounts[0].value, mounts[0].mode) == ("/run/secrets/file", b"from-a-file", 0o440)
        assert (mounts[1].target, mounts[1].value) == ("/b", b"from-env")
        assert env == (("TOKEN", "from-env"), ("BOTH", "from-env"))
        assert "from-env" not in repr(mounts)


def test_a_missing_secret_is_skipped_unless_required(host):
    specs = [prepared("type=secret,id=nosuch"), prepared("type=secret,id=unset,env=X")]
    with host.setup(specs) as (mounts, env):
        assert (mounts, env) == ((), ())
    with pytest.raises(BuildError, match="id=nosuch is required, but the build has no --secret id=nosuch"):
        with host.setup([prepared("type=secret,id=nosuch,required")]):
            pass
    with pytest.raises(BuildError, match="is required, but it is not in environment variable NOT_SET"):
        with host.setup([prepared("type=secret,id=unset,required")]):
            pass
    with pytest.raises(BuildError, match="secret gone: cannot read .*missing.txt"):
        with host.setup([prepared("type=secret,id=gone")]):
            pass


def test_a_context_bind_hides_what_dockerignore_excludes(tmp_path):
    root = tmp_path / "ctx"
    for path in ("src/a.py", "src/build/out.o", "src/build/keep.txt", "src/cache/x", "src/y.log",
                 "other.log"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)
    os.mkfifo(root / "src/pipe")
    ctx = BuildContext(root)
    from minibuild.dockerfile.dockerignore import IgnoreRules
    rules = IgnoreRules.parse("*.log\nsrc/*.log\nsrc/build\n!src/build/keep.txt\nsrc/cache\n")
    assert _excluded(str(root), "src", rules) == ["build/out.o", "cache", "pipe", "y.log"]
    assert _excluded(str(root), ".", rules) == ["other.log", "src/build/out.o", "src/cache",
                                                "src/pipe", "src/y.log"]
    no_exceptions = IgnoreRules.parse("src/build\n")
    assert _excluded(str(root), "src", no_exceptions) == ["build", "pipe"]
    assert ctx.ignore.patterns == ()


def test_a_10000_deep_fifo_is_found_and_whited_out(fast_tmp):
    from minibuild.build.mountsetup import _white_out

    make_deep(fast_tmp / "ctx" / "deep", bottom=None)
    with dirstack.shortened(f"{fast_tmp}/ctx/deep/" + "d/" * DEEP) as bottom:
        os.mkfifo(os.path.join(bottom, "fifo"))  # never part of a context: always hidden
    hidden = _excluded(str(fast_tmp / "ctx"), ".", IgnoreRules.parse("nothing-here\n"))
    assert hidden == ["deep/" + "d/" * DEEP + "fifo"]
    if os.geteuid() != 0:
        pytest.skip("mknod of a whiteout needs root")
    (fast_tmp / "upper").mkdir()
    _white_out(fast_tmp / "ctx", fast_tmp / "upper", hidden)
    with dirstack.shortened(f"{fast_tmp}/upper/{hidden[0]}") as whiteout:
        st = os.lstat(whiteout)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.stat(fast_tmp / "upper" / "deep").st_mtime_ns == os.stat(fast_tmp / "ctx" / "deep").st_mtime_ns
