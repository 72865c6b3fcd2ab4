"""Reuse for a rebuilt COPY, on plain dirs (no overlay, no root): what is linked, what the copier
then leaves alone, and the check that a reused file was not written to."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from minibuild.build.context import BuildContext
from minibuild.build.copier import CopyPlan, apply_copy
from minibuild.build.rootwriter import Reused, ReuseMismatch
from minibuild.build.reuse import ReuseCorrupted, check_untouched, copy_targets, link_unchanged

OWNER = f"{os.getuid()}:{os.getgid()}"  # a --chown every user can give, so no root is needed


def plan_for(ctx: Path, sources: list[str], dest: str, **kw) -> CopyPlan:
    bc = BuildContext(ctx)
    return CopyPlan(bc.select_sources(sources).sources, kw.get("inline", ()), dest, "/",
                    kw.get("chown", OWNER), kw.get("chmod"), kw.get("add", False), bc.ignore)


def tree(root: Path) -> dict[str, tuple]:
    """Entries with kind, mode, owner, bytes and (but for dirs made "now") mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, data, st.st_mtime_ns)
    return out


@pytest.fixture
def setup(tmp_path: Path):
    """A context, the image below (one lower dir holding /srv) and the layer a copy made."""
    ctx = tmp_path / "ctx"
    for d in range(3):
        for f in range(4):
            p = ctx / "src" / f"d{d}" / f"f{f}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"{d}/{f}\n" * (f + 1))
    lower = tmp_path / "lower"
    (lower / "srv/app").mkdir(parents=True)
    os.chmod(lower / "srv", 0o750)
    os.utime(lower / "srv", ns=(5_000_000_000, 5_000_000_000))
    previous = tmp_path / "previous"
    (previous / "srv/app").mkdir(parents=True)
    apply_copy(plan_for(ctx, ["src/"], "/srv/app/"), root=str(previous), context=str(ctx))
    return ctx, lower, previous


def upper_dir(tmp_path: Path, name: str = "upper") -> Path:
    upper = tmp_path / name
    upper.mkdir()
    return upper


def test_copy_targets_lists_every_write_and_refuses_what_depends_on_the_image(setup):
    ctx, _, _ = setup
    writes = copy_targets(plan_for(ctx, ["src/"], "/srv/app/"), str(ctx))
    assert writes["/srv/app"][0][0] == "dir"
    assert writes["/srv/app/d1/f2.txt"][0][:2] == ("file", "src/d1/f2.txt")
    assert len(writes) == 1 + 3 + 12
    assert copy_targets(plan_for(ctx, ["src/d0/f0.txt"], "/x"), str(ctx)) is None  # file or into dir?
    assert copy_targets(plan_for(ctx, ["src/"], "/x/", add=True), str(ctx)) is None
    assert copy_targets(plan_for(ctx, ["src/"], "/x/", inline=(("h", b"x"),)), str(ctx)) is None
    both = copy_targets(plan_for(ctx, ["src/d0/", "src/d1/"], "/x/"), str(ctx))
    assert len(both["/x/f0.txt"]) == 2  # written twice: never reused


def test_only_identical_files_are_linked_and_the_copy_gives_the_fresh_result(setup, tmp_path):
    ctx, lower, previous = setup
    (ctx / "src/d0/f0.txt").write_text("new content\n")
    os.chmod(ctx / "src/d0/f1.txt", 0o600)
    (ctx / "src/d1/f2.txt").unlink()
    os.utime(ctx / "src/d2/f3.txt", ns=(1, 1))
    plan = plan_for(ctx, ["src/"], "/srv/app/")
    upper = upper_dir(tmp_path)
    linked = link_unchanged(plan, ctx, previous, [lower], upper)
    assert linked is not None
    expected = {f"/srv/app/d{d}/f{f}.txt" for d in range(3) for f in range(4)}
    expected -= {"/srv/app/d0/f0.txt", "/srv/app/d0/f1.txt", "/srv/app/d1/f2.txt", "/srv/app/d2/f3.txt"}
    assert set(linked.reused.files) == expected
    assert linked.reused.files["/srv/app/d2/f0.txt"] == "src/d2/f0.txt"
    assert linked.reused.premade == {"/srv/app/d0", "/srv/app/d1", "/srv/app/d2"}
    for image in expected:
        assert (upper / image[1:]).samefile(previous / image[1:])
    srv = (upper / "srv").stat()  # as overlay's copy-up of the image's /srv: no new entry in it
    assert stat.S_IMODE(srv.st_mode) == 0o750 and srv.st_mtime_ns == 5_000_000_000
    assert not (upper / "srv/app/d0/f0.txt").exists()

    apply_copy(replace(plan, reuse=linked.reused), root=str(upper), context=str(ctx))
    check_untouched(linked, upper, ctx)
    fresh = upper_dir(tmp_path, "fresh")
    (fresh / "srv/app").mkdir(parents=True)
    os.chmod(fresh / "srv", 0o750)
    os.utime(fresh / "srv", ns=(5_000_000_000, 5_000_000_000))
    apply_copy(plan, root=str(fresh), context=str(ctx))
    ours, theirs = tree(upper), tree(fresh)
    for name in ("srv/app",):  # a dir whose mtime is "now" in both
        ours[name], theirs[name] = ours[name][:4], theirs[name][:4]
    assert ours == theirs
    for image in expected:  # nothing was written through a link
        assert (previous / image[1:]).read_bytes() == (ctx / linked.reused.files[image]).read_bytes()


def test_nothing_is_reused_from_a_layer_that_holds_something_else(setup, tmp_path):
    ctx, lower, previous = setup
    plan = plan_for(ctx, ["src/"], "/srv/app/")
    (previous / "srv/app/d0").rename(previous / "srv/app/moved")
    (previous / "srv/app/d0").symlink_to("moved")  # a link where the copy makes a dir
    os.chmod(previous / "srv/app/d1/f0.txt", 0o700)
    linked = link_unchanged(plan, ctx, previous, [lower], upper_dir(tmp_path))
    assert not any(i.startswith(("/srv/app/d0/", "/srv/app/d1/f0")) for i in linked.reused.files)
    assert len(linked.reused.files) == 7
    other = plan_for(ctx, ["src/"], "/srv/app/", chown="1:1")  # other owner: nothing matches
    assert link_unchanged(other, ctx, previous, [lower], upper_dir(tmp_path, "u2")) is None


def test_an_image_that_has_a_file_above_the_destination_gets_no_reuse(setup, tmp_path):
    ctx, lower, previous = setup
    (lower / "srv/app").rmdir()
    (lower / "srv/app").write_text("a file in the image\n")
    linked = link_unchanged(plan_for(ctx, ["src/"], "/srv/app/"), ctx, previous, [lower], upper_dir(tmp_path))
    assert linked is None


def test_the_check_catches_a_write_to_a_reused_file_and_not_a_new_link(setup, tmp_path):
    ctx, lower, previous = setup
    upper = upper_dir(tmp_path)
    linked = link_unchanged(plan_for(ctx, ["src/"], "/srv/app/"), ctx, previous, [lower], upper)
    target = upper / "srv/app/d1/f1.txt"
    os.link(target, tmp_path / "another-name")  # ctime moves, nothing else: fine
    check_untouched(linked, upper, ctx)
    data = target.read_bytes()
    st = target.stat()
    target.write_bytes(data[::-1])  # same size, mtime put back: only the bytes differ
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ReuseCorrupted, match="d1/f1.txt"):
        check_untouched(linked, upper, ctx)
    target.write_bytes(data)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chmod(target, 0o777)
    with pytest.raises(ReuseCorrupted):
        check_untouched(linked, upper, ctx)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    target.unlink()
    target.write_bytes(data)  # another inode under the name
    with pytest.raises(ReuseCorrupted):
        check_untouched(linked, upper, ctx)


def test_the_copier_refuses_a_reuse_that_does_not_fit(setup, tmp_path):
    ctx, lower, previous = setup
    plan = plan_for(ctx, ["src/"], "/srv/app/")
    upper = upper_dir(tmp_path)
    linked = link_unchanged(plan, ctx, previous, [lower], upper)
    files = dict(linked.reused.files)
    cases = [
        {**files, "/srv/app/d9/none.txt": "src/d9/none.txt"},  # never reached
        {**files, "/srv/app/d0/f0.txt": "src/d0/f1.txt"},  # another source lands there
    ]
    for wrong in cases:
        with pytest.raises(ReuseMismatch):
            apply_copy(replace(plan, reuse=Reused(wrong, linked.reused.attrs, linked.reused.premade)),
                       root=str(upper), context=str(ctx))
    os.utime(ctx / "src/d0/f0.txt", ns=(7, 7))  # the copy now wants another mtime there
    with pytest.raises(ReuseMismatch, match="differs"):
        apply_copy(replace(plan, reuse=linked.reused), root=str(upper), context=str(ctx))
    check_untouched(linked, upper, ctx)  # refused before anything was written


def test_a_layer_on_another_filesystem_gives_no_reuse_and_an_empty_upper(setup, tmp_path):
    ctx, lower, previous = setup
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem")
    upper = Path(tempfile.mkdtemp(dir=shm))
    try:
        assert link_unchanged(plan_for(ctx, ["src/"], "/srv/app/"), ctx, previous, [lower], upper) is None
        assert list(upper.iterdir()) == []
    finally:
        shutil.rmtree(upper)


class _PlainSandbox:
    """Runs a copy straight into the upper dir (no overlay, no chroot): enough for steps.py."""

    def call(self, rootfs, fn, *, cwd=None, **_):
        apply_copy(fn.args[0], root=str(rootfs.upper), context=str(cwd))


def test_a_copy_that_does_not_fit_its_reuse_is_redone_without_it(setup, tmp_path, monkeypatch):
    from minibuild.dockerfile import parser
    from minibuild.build import reuse, steps
    from minibuild.oci.image import ContainerConfig
    from minibuild.dockerfile.metadata import Scope
    from minibuild.sandbox.sandbox import RootFS

    ctx, lower, previous = setup
    real = reuse.link_unchanged

    def wrong(*args):  # one reused file no source lands on: the copier refuses at its end
        linked = real(*args)
        files = {**linked.reused.files, "/srv/app/d9.txt": "src/d9.txt"}
        return replace(linked, reused=replace(linked.reused, files=files))

    monkeypatch.setattr(reuse, "link_unchanged", wrong)
    factory = steps.StepFactory(_PlainSandbox(), BuildContext(ctx), lambda data: None,
                                lambda prefix: tmp_path / prefix, "host")
    copy = parser.parse(f"FROM scratch\nCOPY --chown={OWNER} src/ /srv/app/\n").instructions[1]
    step = factory.copy(copy, ContainerConfig(), Scope(), None)
    dirs = [upper_dir(tmp_path, name) for name in ("upper", "work", "merged")]
    assert step.reuse.execute(RootFS((lower,), *dirs), previous) == 0  # 0: none reused in the end
    fresh = upper_dir(tmp_path, "fresh")
    (fresh / "srv/app").mkdir(parents=True)
    apply_copy(plan_for(ctx, ["src/"], "/srv/app/"), root=str(fresh), context=str(ctx))
    assert tree(dirs[0] / "srv/app") == tree(fresh / "srv/app")
