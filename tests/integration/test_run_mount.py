"""RUN --mount: cache, bind, tmpfs and secret mounts on real overlay mounts, and what must never
reach a layer, the history, the config or a cache key."""

from __future__ import annotations

import io
import secrets as tokens
import tarfile
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import write_context
from tests.integration.test_build import history, inspect, no_mounts_under, store_state
from tests.integration.test_cache import steps

pytestmark = pytest.mark.integration


def layer_tar(mb, descriptor: dict) -> tarfile.TarFile:
    """One layer blob as an open tar, whatever its compression."""
    data = (mb.root / "oci/blobs/sha256" / descriptor["digest"].split(":")[1]).read_bytes()
    if descriptor["mediaType"].endswith("+zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")


def added(mb, ref: str) -> tuple[list[list[str]], dict[str, str]]:
    """The layers the build added on base:1.0: each one's entry names, and the text of every
    regular file in them (the topmost layer's)."""
    base = len(inspect(mb, "base:1.0")["Manifest"]["layers"])
    names, files = [], {}
    for descriptor in inspect(mb, ref)["Manifest"]["layers"][base:]:
        with layer_tar(mb, descriptor) as tar:
            names.append(tar.getnames())
            files.update({m.name: tar.extractfile(m).read().decode() for m in tar if m.isfile()})
    return names, files


def ran(output: str, prefix: str) -> bool:
    """True when the step whose text starts with `prefix` ran (was not CACHED)."""
    (cached,) = [v for k, v in steps(output).items() if k.startswith(prefix)]
    return not cached


def test_a_cache_mount_keeps_its_files_across_builds_and_never_lands_in_a_layer(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --mount=type=cache,target=/root/.cache/tool sh -c "
                        "'echo run >> /root/.cache/tool/log; wc -l < /root/.cache/tool/log > /count'\n"
                        "RUN --mount=type=cache,target=/var/cache/only,id=only echo x > /var/cache/only/f\n")
    first = mb.build(ctx, "-t", "c:1")
    # wrote only into its cache: BuildKit's empty layer all the same (docker build's diff_ids)
    assert first.stderr.splitlines()[-3].endswith("no changes: an empty layer")
    names, files = added(mb, "c:1")
    assert names == [["count"], []] and files["count"].strip() == "1"  # no /root/.cache stub
    assert ran(mb.build(ctx, "--no-cache", "-t", "c:2").stderr, "RUN --mount=type=cache,target=/root")
    assert added(mb, "c:2")[1]["count"].strip() == "2"
    cache_dirs = [p for p in (mb.root / "cache/mounts").iterdir() if p.is_dir()]
    assert sorted(f.name for d in cache_dirs for f in d.iterdir()) == ["f", "log"]
    assert len(history(mb, "c:2")) == len(history(mb, "base:1.0")) + 2

    from minibuild.build.cachemounts import forget_cache_mounts  # what `prune --cache` calls

    assert forget_cache_mounts(mb.root) == 2 and not (mb.root / "cache/mounts").exists()
    mb.build(ctx, "--no-cache", "-t", "c:3")
    assert added(mb, "c:3")[1]["count"].strip() == "1"  # a fresh cache


def test_a_bind_of_the_context_is_read_only_and_rw_writes_are_thrown_away(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --mount=type=bind,target=/ctx sh -c 'cat /ctx/data.txt > /seen; "
                        "ls -A /ctx /ctx/sub > /listing; ! touch /ctx/new 2> /refused'\n"
                        "RUN --mount=type=bind,source=sub,target=/s,rw sh -c "
                        "'echo changed > /s/kept.txt && rm /s/gone.txt && touch /s/new && cat /s/kept.txt > /wrote'\n",
                        {"data.txt": "hello\n", "sub/kept.txt": "original\n", "sub/gone.txt": "here\n",
                         "sub/skip.log": "ignored\n", ".dockerignore": "**/*.log\n"})
    mb.build(ctx, "-t", "b:1")
    names, files = added(mb, "b:1")
    assert files["seen"] == "hello\n" and "Read-only file system" in files["refused"]
    assert "kept.txt" in files["listing"] and "skip.log" not in files["listing"]  # .dockerignore'd
    assert files["wrote"] == "changed\n"
    assert (ctx / "sub/kept.txt").read_text() == "original\n" and (ctx / "sub/gone.txt").exists()
    assert not (ctx / "sub/new").exists() and not (ctx / "new").exists()
    assert sorted(sum(names, [])) == ["listing", "refused", "seen", "wrote"]  # no /ctx, no /s


def test_a_bind_from_a_stage_by_name_or_index_and_from_an_image(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0 AS build\n"
                        "RUN mkdir -p /out && echo built > /out/app && ln -s app /out/link\n"
                        "FROM base:1.0 AS unused\nRUN exit 3\n"
                        "FROM base:1.0\n"
                        "RUN --mount=from=build,source=/out,target=/in sh -c "
                        "'cat /in/link > /got; ! touch /in/x 2> /dev/null'\n"
                        "RUN --mount=type=bind,from=0,source=/out/app,target=/one cp /one /got0\n"
                        "RUN --mount=from=base:1.0,src=/bin/busybox,dst=/bb,rw sh -c "
                        "'test -x /bb && echo >> /bb && echo ok > /img'\n")
    out = mb.build(ctx, "-t", "s:1")
    assert "[unused" not in out.stderr
    names, files = added(mb, "s:1")
    assert (files["got"], files["got0"], files["img"]) == ("built\n", "built\n", "ok\n")
    assert sorted(sum(names, [])) == ["got", "got0", "img"]
    again = mb.build(ctx, "-t", "s:1")  # the stage's key is in the step's key: all cached
    assert not any(ran(again.stderr, p) for p in ("RUN --mount=from=build", "RUN --mount=type=bind"))
    ctx.joinpath("Buildfile").write_text(ctx.joinpath("Buildfile").read_text().replace(
        "echo built", "echo rebuilt"))
    changed = mb.build(ctx, "-t", "s:2").stderr
    assert ran(changed, "RUN --mount=from=build") and ran(changed, "RUN --mount=type=bind,from=0")
    assert added(mb, "s:2")[1]["got"] == "rebuilt\n"


def test_an_edit_to_a_bound_file_reruns_the_step_and_an_unrelated_edit_does_not(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --mount=type=bind,source=bound.txt,target=/b.txt cp /b.txt /out\n",
                        {"bound.txt": "one\n", "other.txt": "x\n"})
    mb.build(ctx, "-t", "e:1")
    time.sleep(0.25)  # inputs newer than 100 ms are not memoized
    mb.build(ctx, "-t", "e:1")  # writes the build memo
    assert list((mb.root / "cache/memo").iterdir())
    ctx.joinpath("other.txt").write_text("y\n")
    assert not ran(mb.build(ctx, "-t", "e:1").stderr, "RUN --mount")
    ctx.joinpath("bound.txt").write_text("two\n")  # the memo must have traced it
    assert ran(mb.build(ctx, "-t", "e:1").stderr, "RUN --mount")
    assert added(mb, "e:1")[1]["out"] == "two\n"


def test_a_tmpfs_mount_and_a_target_through_a_symlink_that_stays_inside_the_image(mb, tmp_path):
    escape = f"/tmp/minibuild-escape-{tokens.token_hex(4)}"
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        f"RUN ln -s /../../..{escape} /esc\n"
                        "RUN --mount=type=tmpfs,target=/scratch/t,size=64k "
                        "--mount=type=tmpfs,target=/esc/t sh -c "
                        "'grep \" /scratch/t \" /proc/mounts > /mounted; echo x > /scratch/t/f; "
                        "grep -c \" /tmp/minibuild-escape-.*/t \" /proc/mounts > /inside'\n")
    mb.build(ctx, "-t", "t:1")
    names, files = added(mb, "t:1")
    line = files["mounted"]
    assert line.startswith("tmpfs /scratch/t tmpfs ") and "size=64k" in line and "nosuid" in line
    assert files["inside"] == "1\n"  # the link led to the image's /tmp...
    assert not Path(escape).exists()  # ... not the host's
    assert names[-1] == ["inside", "mounted"]  # no /scratch, no stub under the image's /tmp


def test_secrets_reach_the_run_and_nothing_else(mb, tmp_path):
    file_value, env_value = f"file-{tokens.token_hex(16)}", f"env-{tokens.token_hex(16)}"
    (tmp_path / "tok.txt").write_text(file_value)
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --mount=type=secret,id=tok --mount=type=secret,id=api,env=API_KEY "
                        "--mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=7 sh -c "
                        "'test \"$(cat /run/secrets/tok)\" = \"$(cat /etc/app/key)\" && "
                        "wc -c < /run/secrets/tok > /len && echo ${#API_KEY} > /envlen && "
                        "stat -c \"%a %u\" /run/secrets/tok /etc/app/key > /modes && "
                        "! touch /run/secrets/tok 2> /dev/null'\n"
                        "RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n")
    out = mb.run("build", "--progress", "plain", "--compression", "none",
                 "--secret", f"id=tok,src={tmp_path / 'tok.txt'}", "--secret", "id=api,env=MY_API",
                 "-t", "sec:1", str(ctx), env={"MY_API": env_value})
    names, files = added(mb, "sec:1")
    assert (files["len"].strip(), files["envlen"].strip()) == (str(len(file_value)), str(len(env_value)))
    assert files["modes"] == "400 0\n440 7\n"
    assert names == [["envlen", "len", "modes"], []]  # no /run/secrets, no /etc/app stub
    shown = [out.stdout, out.stderr, mb.run("history", "--no-trunc", "sec:1").stdout,
             mb.run("history", "--format", "json", "sec:1").stdout,
             mb.run("inspect", "sec:1").stdout]
    stored = [p.read_bytes() for p in mb.root.rglob("*") if p.is_file()]  # blobs (plain tars), cache
    for value in (file_value, env_value):
        assert not any(value in text for text in shown)
        assert not any(value.encode() in data for data in stored)
    (tmp_path / "tok.txt").write_text("another value")  # not in the step's cache key
    again = mb.run("build", "--progress", "plain", "--compression", "none",
                   "--secret", f"id=tok,src={tmp_path / 'tok.txt'}", "--secret", "id=api,env=MY_API",
                   "-t", "sec:1", str(ctx), env={"MY_API": "another"})
    assert not ran(again.stderr, "RUN --mount=type=secret,id=tok")
    # a build with --secret writes no memo (the context is old enough by now to be memoized)
    assert not (mb.root / "cache/memo").exists() or not list((mb.root / "cache/memo").iterdir())

    missing = write_context(tmp_path / "missing", "FROM base:1.0\nRUN true\n"
                            "RUN --mount=type=secret,id=tok,required true\n")
    proc = mb.build(missing, check=False)
    assert proc.returncode == 1
    assert "Buildfile:3:1: RUN --mount=type=secret,id=tok is required, but the build has no " \
           "--secret id=tok" in proc.stderr
    proc = mb.build(missing, "--secret", "id=tok,src=/nonexistent/tok", check=False)
    assert proc.returncode == 2 and "no such file: /nonexistent/tok" in proc.stderr


MISTAKES = [  # (RUN line, message); the parser's own errors are unit-tested (test_runmount.py)
    ("RUN --mount=type=cache,target=/c,colour=red true", "Buildfile:2:1: RUN --mount: unknown option 'colour'"),
    ("RUN --mount=from=nosuch,target=/x true", "Buildfile:2:1: RUN --mount from=nosuch: no stage or image"),
    ("RUN --mount=from=later,target=/x true\nFROM base:1.0 AS later",
     "Buildfile:2:1: RUN --mount from=later: a stage can only mount an earlier stage"),
    ("RUN --mount=from=base:1.0,source=/nope,target=/x true",
     "Buildfile:2:1: RUN --mount from=base:1.0: /nope does not exist in base:1.0"),
    ("RUN --mount=source=missing.txt,target=/x true", "Buildfile:2:1: RUN --mount failed: file not found"),
    ("RUN --mount=source=*.txt,target=/x true", "Buildfile:2:1: RUN --mount source=*.txt: a bind takes one"),
    ("RUN --mount=source=a.txt,target=/etc true", "Buildfile:2:1: cannot mount a file on /etc"),
    ("RUN --mount=type=tmpfs,target=/etc/passwd true", "Buildfile:2:1: cannot mount a directory on /etc/passwd"),
]


def test_mistakes_are_located_at_the_run_and_leave_the_store_as_it_was(mb, tmp_path):
    before = store_state(mb.root)
    for number, (run, message) in enumerate(MISTAKES):
        ctx = write_context(tmp_path / f"ctx{number}", f"FROM base:1.0\n{run}\n", {"a.txt": "a", "b.txt": "b"})
        proc = mb.build(ctx, "--target", "0", check=False)
        assert proc.returncode == 1 and message in proc.stderr, (run, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert store_state(mb.root) == before
        assert list((mb.root / "run").iterdir()) == [] and no_mounts_under(mb.root)
