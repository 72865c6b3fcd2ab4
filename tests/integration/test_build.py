"""End to end: `minibuild build` on real overlay mounts, checked with tools nobody here wrote."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.conftest import REPO, Minibuild, make_base_context, write_context

pytestmark = pytest.mark.integration
# moby layer/empty.go DigestSHA256EmptyTar: the layer BuildKit gives a step that changed nothing
EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def history(mb: Minibuild, ref: str) -> list[dict]:
    return json.loads(mb.run("history", "--format", "json", ref).stdout)


def inspect(mb: Minibuild, ref: str) -> dict:
    return json.loads(mb.run("inspect", ref).stdout)[0]


def umoci_unpack(mb: Minibuild, ref: str, tmp_path: Path) -> Path:
    """Unpack with umoci (checks diff_ids, media types, whiteouts); return the rootfs.

    Our layers are gzip by default and go to umoci as they are. Debian's umoci 0.4.7 predates
    zstd layers: an image built with `--compression zstd` goes through `skopeo copy` to gzip
    first, so a third-party zstd decoder reads our blobs and umoci checks the DiffIDs of the result.
    """
    if not shutil.which("umoci") or not shutil.which("skopeo"):
        pytest.skip("umoci and skopeo are needed")
    layout = f"{mb.root}/oci"
    tag = ref.replace(":", "-").replace("/", "-")
    if any(l["mediaType"].endswith("+zstd") for l in inspect(mb, ref)["Manifest"]["layers"]):
        layout = str(tmp_path / f"gzip-{tag}")
        subprocess.run(["skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "gzip",
                        f"oci:{mb.root}/oci:{ref}", f"oci:{layout}:{ref}"], check=True, capture_output=True)
    bundle = tmp_path / f"bundle-{tag}"
    proc = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return bundle / "rootfs"


def single_image_layout(mb: Minibuild, ref: str, tmp_path: Path) -> Path:
    """Our layout with index.json narrowed to one tag (oci-image-tool wants a unique ref);
    the blobs are ours, hard-linked, byte for byte."""
    layout = tmp_path / f"single-{ref.replace(':', '-')}"
    subprocess.run(["cp", "-al", f"{mb.root}/oci", str(layout)], check=True)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = [m for m in index["manifests"]
                          if m["annotations"]["org.opencontainers.image.ref.name"] == ref]
    (layout / "index.json").unlink()
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def layer_names(mb: Minibuild, descriptor: dict) -> list[str]:
    """Entry names of one layer blob, whatever its compression."""
    data = (mb.root / "oci/blobs/sha256" / descriptor["digest"].split(":")[1]).read_bytes()
    if descriptor["mediaType"].endswith("+zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    mode = "r:gz" if descriptor["mediaType"].endswith("+gzip") else "r:"
    with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tar:
        return tar.getnames()


def store_state(root: Path) -> tuple:
    """What a failed build must not change: tags and the set of blobs and layers."""
    return ((root / "oci/index.json").read_bytes(),
            sorted(p.name for p in (root / "oci/blobs/sha256").iterdir()),
            sorted(p.name for p in (root / "layers").iterdir()))


def no_mounts_under(root: Path) -> bool:
    return str(root) not in Path("/proc/mounts").read_text()


# -- the samples ----------------------------------------------------------------------------

def test_hello_sample_config_and_content(mb, tmp_path):
    mb.build(REPO / "sample_images/hello", "-t", "hello:1.0")
    shown = inspect(mb, "hello:1.0")
    cc = shown["Config"]
    assert cc["WorkingDir"] == "/app"
    assert cc["User"] == "nobody"
    assert cc["Cmd"] == ["/app/hello.sh"]
    assert cc["ExposedPorts"] == {"8080/tcp": {}}
    assert "GREETING=hello" in cc["Env"] and "APP_HOME=/app" in cc["Env"]
    assert cc["Labels"]["org.opencontainers.image.title"] == "hello"
    assert len(shown["RootFS"]["Layers"]) == sum(1 for h in shown["History"] if not h.get("empty_layer"))
    rootfs = umoci_unpack(mb, "hello:1.0", tmp_path)
    assert (rootfs / "app/hello.sh").stat().st_mode & 0o777 == 0o755
    assert (rootfs / "app/greeting.txt").read_text() == "the hello sample image\n"
    assert (rootfs / "app/build-info.txt").read_text().startswith("built by minibuild on ")
    assert not (rootfs / "etc/resolv.conf").exists()  # usable during RUN, not left in a layer


def test_rm_demo_history_shows_the_wasted_bytes(mb, tmp_path):
    mb.build(REPO / "sample_images/rm-demo", "-t", "rmdemo:1.0")
    rows = history(mb, "rmdemo:1.0")  # newest first
    rm_row = next(r for r in rows if r["created_by"].startswith("RUN") and "rm /opt/sdk/sdk.tar" in r["created_by"])
    dd_row = next(r for r in rows if "dd if=/dev/urandom" in r["created_by"])
    assert not rm_row["empty_layer"] and rm_row["size"] < 1000
    assert dd_row["size"] >= 50 * 1024 * 1024
    assert dd_row["wasted"] == 50 * 1024 * 1024
    assert dd_row["wasted_paths"] == [{"path": "/opt/sdk/sdk.tar", "size": 52428800, "how": "deleted"}]
    table = mb.run("history", "rmdemo:1.0").stdout
    assert "52.4MB hidden by later layers" in table
    assert "/opt/sdk/sdk.tar" in table and "wasted" in table
    rootfs = umoci_unpack(mb, "rmdemo:1.0", tmp_path)
    assert not (rootfs / "opt/sdk/sdk.tar").exists()
    assert (rootfs / "opt/sdk/VERSION").read_text() == "sdk 1.0\n"


def test_external_validators_accept_the_image(empty_mb, tmp_path):
    # Default (gzip) layers: Debian's oci-image-tool and umoci read them as they are.
    mb = empty_mb
    mb.build(make_base_context(tmp_path / "base"), "-t", "base:1.0")
    mb.build(REPO / "sample_images/hello", "-t", "hello:1.0")
    layers = inspect(mb, "hello:1.0")["Manifest"]["layers"]
    assert {l["mediaType"] for l in layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", f"oci:{mb.root}/oci:hello:1.0"],
                             check=True, capture_output=True, text=True).stdout
        info = json.loads(out)
        assert len(info["Layers"]) == len(inspect(mb, "hello:1.0")["Manifest"]["layers"])
        assert info["Architecture"] and info["Os"] == "linux"
    if shutil.which("oci-image-tool"):
        layout = single_image_layout(mb, "hello:1.0", tmp_path)
        proc = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref",
                               "name=hello:1.0", str(layout)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    if shutil.which("umoci"):
        bundle = tmp_path / "bundle-direct"
        proc = subprocess.run(["umoci", "unpack", "--image", f"{mb.root}/oci:hello:1.0", str(bundle)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert (bundle / "rootfs/app/greeting.txt").read_text() == "the hello sample image\n"


# -- layers: whiteouts, opaque dirs, empty layers, compression ------------------------------

def test_whiteouts_and_opaque_dirs_round_trip_through_umoci(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && echo keep > /k && echo gone > /g
RUN rm -rf /d && mkdir /d && echo new > /d/new && rm /g
RUN true
""")
    mb.build(ctx, "-t", "wh:1")
    manifest = inspect(mb, "wh:1")["Manifest"]
    names = layer_names(mb, manifest["layers"][-2])
    assert "d/.wh..wh..opq" in names and ".wh.g" in names
    assert not any("trusted.overlay" in n for n in names)
    rows = history(mb, "wh:1")
    # RUN true changed nothing: BuildKit's empty layer (docker build's diff_ids), no entries
    assert rows[0]["created_by"] == "RUN /bin/sh -c true" and not rows[0]["empty_layer"]
    assert layer_names(mb, manifest["layers"][-1]) == [] and \
        inspect(mb, "wh:1")["RootFS"]["Layers"][-1] == EMPTY_TAR_DIFF_ID
    rootfs = umoci_unpack(mb, "wh:1", tmp_path)
    assert sorted(p.name for p in (rootfs / "d").iterdir()) == ["new"]
    assert not (rootfs / "g").exists() and (rootfs / "k").read_text() == "keep\n"


@pytest.mark.parametrize("compression,suffix", [("gzip", "+gzip"), ("none", ".tar")])
def test_compression_choices(mb, tmp_path, compression, suffix):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY f /f\n", {"f": "data\n"})
    mb.build(ctx, "--compression", compression, "-t", "c:1")
    layer = inspect(mb, "c:1")["Manifest"]["layers"][-1]
    assert layer["mediaType"].endswith(suffix)
    assert layer_names(mb, layer) == ["f"]
    assert (umoci_unpack(mb, "c:1", tmp_path) / "f").read_text() == "data\n"


def test_identical_builds_share_layers(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY a /a\nRUN true\n", {"a": "x" * 1000})
    first = mb.build(ctx, "-q", "-t", "one:1").stdout.strip()
    second = mb.build(ctx, "-q", "--no-cache", "-t", "two:1").stdout.strip()
    assert first.startswith("sha256:") and first != second  # `created` differs without SOURCE_DATE_EPOCH
    layers = [inspect(mb, ref)["Manifest"]["layers"] for ref in ("one:1", "two:1")]
    assert layers[0] == layers[1]
    assert len(list((mb.root / "layers").iterdir())) == len(layers[0])  # stored once, shared


# -- RUN --------------------------------------------------------------------------------------

def test_run_environment_user_workdir_and_isolation(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", """ARG BASE=base:1.0
FROM $BASE
ARG WHO=world
ENV GREETING=hi
WORKDIR /srv
WORKDIR app
RUN echo "$GREETING $WHO $(pwd)" > /out.txt
RUN echo "pid=$$ procs=$(ls /proc | grep -c '^[0-9]')" > /pid.txt; hostname > /host.txt
RUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /net.txt
USER nobody
RUN id -u > /tmp/uid.txt
USER root
RUN <<EOF
echo heredoc-$WHO > /heredoc.txt
EOF
RUN ["/bin/sh", "-c", "echo exec-form > /exec.txt"]
SHELL ["/bin/sh", "-ec"]
RUN echo "$0" > /shell.txt
""")
    out = mb.build(ctx, "--build-arg", "WHO=tests", "--network", "none", "-t", "env:1")
    assert "env:1" in out.stderr
    root = umoci_unpack(mb, "env:1", tmp_path)
    assert (root / "out.txt").read_text() == "hi tests /srv/app\n"
    assert (root / "pid.txt").read_text().startswith("pid=")
    assert (root / "host.txt").read_text() == "minibuild\n"
    assert (root / "net.txt").read_text().split() == ["lo"]
    assert (root / "tmp/uid.txt").read_text() == "65534\n"
    assert (root / "heredoc.txt").read_text() == "heredoc-tests\n"
    assert (root / "exec.txt").read_text() == "exec-form\n"
    assert (root / "shell.txt").read_text() == "/bin/sh\n"
    config = inspect(mb, "env:1")["Config"]
    assert config["WorkingDir"] == "/srv/app"
    assert not any(e.startswith("WHO=") for e in config["Env"])  # ARGs stay out


def test_pid_namespace_hides_host_processes(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN ls /proc | grep -c '^[0-9]*$' > /n\n")
    mb.build(ctx, "-t", "pid:1")
    count = int((umoci_unpack(mb, "pid:1", tmp_path) / "n").read_text())
    assert count <= 5  # init, sh, ls, grep: not the host's hundreds


def test_failing_run_reports_step_and_exit_code_and_writes_no_tag(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nRUN echo before > /x\nRUN echo oops; exit 3\n")
    before = store_state(mb.root)
    proc = mb.build(ctx, "-t", "bad:1", check=False)
    assert proc.returncode == 1
    assert "Buildfile:3:1" in proc.stderr and "exit code 3" in proc.stderr
    assert "oops" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "bad:1" not in (mb.root / "oci/index.json").read_text()
    assert store_state(mb.root)[0] == before[0]
    assert no_mounts_under(mb.root)
    assert list((mb.root / "run").iterdir()) == []


# -- COPY / ADD ------------------------------------------------------------------------------

def test_copy_and_add_semantics(mb, tmp_path):
    inner = tmp_path / "payload"
    (inner / "pkg").mkdir(parents=True)
    (inner / "pkg/data.txt").write_text("in tar\n")
    tgz = tmp_path / "payload.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(inner / "pkg", arcname="pkg")
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
WORKDIR /app
COPY src/ ./src/
COPY *.txt conf/
COPY --chown=nobody:nogroup --chmod=0640 secret.txt /etc/secret
ADD payload.tar.gz /opt/
COPY <<EOF /etc/motd
welcome
EOF
""", {"src/a.py": "print(1)\n", "src/lib/b.py": "x = 2\n", "one.txt": "1\n", "two.txt": "2\n",
      "secret.txt": "s\n", "ignored.txt": "no\n", ".dockerignore": "ignored.txt\n"})
    shutil.copy(tgz, ctx / "payload.tar.gz")
    mb.build(ctx, "-t", "copy:1")
    root = umoci_unpack(mb, "copy:1", tmp_path)
    assert (root / "app/src/lib/b.py").read_text() == "x = 2\n"
    assert sorted(p.name for p in (root / "app/conf").iterdir()) == ["one.txt", "secret.txt", "two.txt"]
    secret = (root / "etc/secret").stat()
    assert (secret.st_mode & 0o777, secret.st_uid, secret.st_gid) == (0o640, 65534, 65534)
    assert (root / "opt/pkg/data.txt").read_text() == "in tar\n"
    assert (root / "etc/motd").read_text() == "welcome\n"


@pytest.mark.parametrize("buildfile,files,message", [
    ("FROM base:1.0\nCOPY missing.txt /x\n", {}, "missing.txt"),
    ("FROM base:1.0\nCOPY ../outside /x\n", {}, "outside the build context"),
    ("FROM nosuch:1.0\nRUN true\n", {}, "Buildfile:1:1: FROM nosuch:1.0: image not found"),
    ("FROM base:1.0\nRUNN true\n", {}, 'Buildfile:2:1: unknown instruction "RUNN" (did you mean RUN?)'),
    ("FROM base:1.0\nONBUILD FROM x\n", {}, "Buildfile:2:1: FROM isn't allowed as an ONBUILD trigger"),
    ("FROM base:1.0\nCOPY --from=x a /a\n", {"a": "1"}, "Buildfile:2:1"),
    ("FROM base:1.0\nCOPY --chmod=64a a /a\n", {"a": "1"}, "Buildfile:2:1: invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"),
    ("FROM base:1.0\nRUN --mount=type=ssh true\n", {}, "Buildfile:2:1: RUN --mount=type=ssh is not supported"),
    ("FROM base:1.0\nCOPY --bogus a /a\n", {"a": "1"}, "Buildfile:2:1: unknown flag --bogus for COPY"),
    ("FROM base:1.0\nWORKDIR /bin/sh/x\n", {}, "Buildfile:2:1: WORKDIR /bin/sh/x: a part of the path is a file, not a directory"),
    ("FROM base:1.0\nWORKDIR /etc/passwd\n", {}, "Buildfile:2:1: WORKDIR /etc/passwd: it exists and is not a directory"),
])
def test_bad_inputs_give_one_clear_line_and_leave_the_store_unchanged(mb, tmp_path, buildfile, files, message):
    ctx = write_context(tmp_path / "ctx", buildfile, files)
    before = store_state(mb.root)
    proc = mb.build(ctx, "-t", "x:1", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert store_state(mb.root) == before
    assert list((mb.root / "run").iterdir()) == []


def test_missing_buildfile_and_bad_tag(mb, tmp_path):
    proc = mb.run("build", "-f", str(tmp_path / "nope"), str(tmp_path), check=False)
    assert proc.returncode != 0 and "no such Buildfile" in proc.stderr
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n")
    proc = mb.build(ctx, "-t", "Bad:Tag!", check=False)
    assert proc.returncode != 0 and "Bad:Tag!" in proc.stderr and "Traceback" not in proc.stderr


def test_reproducible_with_source_date_epoch(base_store, tmp_path):
    digests = []
    for i in range(2):
        root = tmp_path / f"store{i}"
        subprocess.run(["cp", "-a", str(base_store), str(root)], check=True)
        ctx = write_context(tmp_path / f"ctx{i}", "FROM base:1.0\nCOPY a /a\nRUN echo x > /b\n", {"a": "a\n"})
        out = Minibuild(root).run("build", "-q", str(ctx), env={"SOURCE_DATE_EPOCH": "1700000000"})
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1]


def test_onbuild_triggers_run_in_the_child_build_only(mb, tmp_path):
    parent = write_context(tmp_path / "parent", "FROM base:1.0\nONBUILD COPY marker /marker\n"
                                                "ONBUILD RUN echo triggered > /triggered\n")
    mb.build(parent, "-t", "parent:1")
    assert inspect(mb, "parent:1")["Config"]["OnBuild"] == [
        "COPY marker /marker", "RUN echo triggered > /triggered"]
    child = write_context(tmp_path / "child", "FROM parent:1\nRUN cat /triggered /marker > /both\n",
                          {"marker": "from the child's context\n"})
    out = mb.build(child, "-t", "child:1")
    assert "ONBUILD RUN echo triggered > /triggered" in out.stderr
    assert "OnBuild" not in inspect(mb, "child:1")["Config"]
    root = umoci_unpack(mb, "child:1", tmp_path)
    assert (root / "both").read_text() == "triggered\nfrom the child's context\n"


def test_the_callers_umask_does_not_reach_the_image(mb, tmp_path):
    import os
    import sys

    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nWORKDIR /opt/deep/dir\nRUN touch /opt/f\n")
    subprocess.run(["sh", "-c", f'umask 077; exec "{sys.executable}" -m minibuild build -q -t um:1 {ctx}'],
                   cwd=REPO, env={**os.environ, "MINIBUILD_ROOT": str(mb.root)}, check=True,
                   capture_output=True)
    root = umoci_unpack(mb, "um:1", tmp_path)
    assert (root / "opt/deep").stat().st_mode & 0o777 == 0o755
    assert (root / "opt/deep/dir").stat().st_mode & 0o777 == 0o755
    assert (root / "opt/f").stat().st_mode & 0o777 == 0o644


def test_buildfile_from_stdin(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM scratch\n", {"f": "from the context\n"})
    out = mb.run("build", "-q", "-f", "-", "-t", "stdin:1", str(ctx),
                 input=b"FROM base:1.0\nCOPY f /f\n")
    assert out.stdout.startswith("sha256:")
    assert (umoci_unpack(mb, "stdin:1", tmp_path) / "f").read_text() == "from the context\n"
    bad = mb.run("build", "-f", "-", str(ctx), input=b"FROM base:1.0\nRUNN x\n", check=False)
    assert 'Buildfile (stdin):2:1: unknown instruction "RUNN"' in bad.stderr


def test_an_image_holding_one_layer_twice_still_mounts(mb, tmp_path):
    """Two COPYs of identical content give one DiffID twice; overlay refuses a dir twice."""
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY a/ /x/\nRUN echo between > /between\n"
                        "COPY b/ /x/\nRUN cat /x/f /between > /out\n", {"a/f": "same\n", "b/f": "same\n"})
    mb.build(ctx, "-t", "twice:1", "--source-date-epoch", "1000")  # equal clamped mtimes
    diff_ids = json.loads(mb.run("inspect", "twice:1").stdout)[0]["RootFS"]["Layers"]
    assert diff_ids[-4] == diff_ids[-2]  # the two COPY layers
    assert mb.run("run", "--rm", "twice:1", "cat", "/out").stdout == "same\nbetween\n"


def test_a_file_name_that_is_not_utf8_is_copied(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY src/ /src/\n")
    (ctx / "src").mkdir()
    (ctx / "src" / os.fsdecode(b"bad\xff")).write_text("x")
    mb.build(ctx, "-t", "u8:1")
    assert mb.run("run", "--rm", "u8:1", "sh", "-c", "cat /src/bad*").stdout == "x"
    assert "COPY src/ /src/" in mb.run("history", "u8:1").stdout
    assert mb.run("fsck").returncode == 0
