"""COPY/ADD as root: ownership, and the production path (fork, chdir(context), chroot)."""

from __future__ import annotations

import io
import os
import tarfile
import traceback
from pathlib import Path

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.copier import CopyPlan, apply_copy
from minibuild.errors import BuildError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown to other ids and chroot"),
]


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "lib").mkdir(parents=True)
    (root / "app.py").write_text("print(1)\n")
    (root / "lib" / "a.py").write_text("a\n")
    (root / "lib" / "link").symlink_to("a.py")
    os.lchown(root / "app.py", 1111, 2222)  # context ownership must not leak into the image
    return root


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "app:x:1001:1002:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1002:\nstaff:x:50:app\n")
    return root


def plan(bc: BuildContext, sources: list[str], dest: str, **kw) -> CopyPlan:
    selected = bc.select_sources(sources).sources
    return CopyPlan(selected, kw.get("inline", ()), dest, kw.get("workdir", "/"),
                    kw.get("chown"), kw.get("chmod"), kw.get("add", False), bc.ignore)


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_default_owner_is_root(ctx, image) -> None:
    apply_copy(plan(BuildContext(ctx), ["app.py", "lib"], "/a/b/"), root=str(image),
               context=str(ctx))
    for rel in ("a", "a/b", "a/b/app.py", "a/b/a.py", "a/b/link"):
        assert owner(image / rel) == (0, 0), rel


@pytest.mark.parametrize(("spec", "expected"), [
    ("4321", (4321, 4321)),  # uid alone: gid = uid (BuildKit's COPY rule)
    ("4321:99", (4321, 99)),
    ("app", (1001, 1002)),  # primary group from the image's passwd
    ("app:staff", (1001, 50)),
    ("1001:staff", (1001, 50)),
])
def test_chown(ctx, image, spec, expected) -> None:
    apply_copy(plan(BuildContext(ctx), ["lib"], "/p/q/", chown=spec), root=str(image),
               context=str(ctx))
    # Every dir the copy creates gets the --chown owner (BuildKit: fsutil's MkdirAll chowns).
    for rel in ("p", "p/q", "p/q/a.py", "p/q/link"):
        assert owner(image / rel) == expected, rel


def test_chown_name_read_through_image_symlink(ctx, image) -> None:
    (image / "etc" / "passwd").rename(image / "etc" / "passwd.real")
    (image / "etc" / "passwd").symlink_to("/etc/passwd.real")  # absolute: inside the image
    apply_copy(plan(BuildContext(ctx), ["app.py"], "/x", chown="app"), root=str(image),
               context=str(ctx))
    assert owner(image / "x") == (1001, 1002)


def test_setuid_bit_survives_chown(ctx, image) -> None:
    os.chmod(ctx / "app.py", 0o4755)
    apply_copy(plan(BuildContext(ctx), ["app.py"], "/x", chown="app"), root=str(image),
               context=str(ctx))
    assert os.stat(image / "x").st_mode & 0o7777 == 0o4755


def _tar(uid: int, gid: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size, info.uid, info.gid = 2, uid, gid
        tf.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


def test_add_keeps_tar_ownership_unless_chown(ctx, image) -> None:
    (ctx / "a.tar").write_bytes(_tar(777, 888))
    bc = BuildContext(ctx)
    apply_copy(plan(bc, ["a.tar"], "/t1", add=True), root=str(image), context=str(ctx))
    assert owner(image / "t1" / "f") == (777, 888)
    apply_copy(plan(bc, ["a.tar"], "/t2", add=True, chown="5:6"), root=str(image),
               context=str(ctx))
    assert owner(image / "t2" / "f") == (5, 6)


def _in_chroot(image: Path, ctx: Path, copy_plan: CopyPlan) -> str:
    """Run apply_copy as the engine does: forked child, chdir(context), chroot(image)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = ""
        try:
            os.close(read)
            os.chdir(ctx)
            os.chroot(image)
            apply_copy(copy_plan)
        except BuildError as exc:
            status = f"BuildError: {exc.message}"
        except BaseException:
            status = traceback.format_exc()
        os.write(write, status.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_production_path_in_chroot(ctx, image, tmp_path) -> None:
    (image / "opt" / "app").mkdir(parents=True)
    (image / "app").symlink_to("/opt/app")  # absolute link: the image's /opt/app
    bc = BuildContext(ctx)
    assert _in_chroot(image, ctx, plan(bc, ["app.py", "lib"], "/app/", chown="app")) == ""
    assert (image / "opt" / "app" / "app.py").read_text() == "print(1)\n"
    assert os.readlink(image / "opt" / "app" / "link") == "a.py"
    assert owner(image / "opt" / "app" / "a.py") == (1001, 1002)
    assert not Path("/opt/app/app.py").exists() or Path("/opt/app/app.py").read_text() != "print(1)\n"


def test_production_path_reports_build_errors(ctx, image) -> None:
    out = _in_chroot(image, ctx, plan(BuildContext(ctx), ["app.py", "lib/a.py"], "/x"))
    assert out.startswith("BuildError: When using COPY with more than one source file")
