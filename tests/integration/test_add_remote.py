"""Issue 15: ADD of remote sources (http(s) files, git repositories), each behaviour compared
with the Dockerfile reference's ADD section (moby/buildkit frontend/dockerfile/docs/reference.md)
and, where the reference is silent, with BuildKit (source/http, source/git, dockerfile2llb).

Everything is served on 127.0.0.1 by the test itself: a Python http.server (which also acts as
an http proxy) and a `git daemon` over a repository the test makes. Never the internet.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import zstandard

from tests.conftest import Minibuild, write_context

pytestmark = pytest.mark.integration

MODIFIED = 1_600_000_000  # 2020-09-13T12:26:40Z, the served files' Last-Modified


class _Handler(SimpleHTTPRequestHandler):
    """Serves a directory (with Last-Modified from the files' mtimes); an absolute request URL
    (a proxy request) is served by its path and noted."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("http://"):
            self.server.proxied.append(self.path)
            self.path = urlsplit(self.path).path
        super().do_GET()

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def web(tmp_path):
    """An http server on 127.0.0.1 serving tmp_path/www: (base URL, its dir, the server)."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    server.proxied = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, server
    server.shutdown()
    server.server_close()


def serve(root: Path, name: str, content: bytes, mtime: int = MODIFIED) -> str:
    """Put a file on the server; its sha256 digest."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))
    return "sha256:" + hashlib.sha256(content).hexdigest()


def tgz(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of some files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue())


def last_layer(mb: Minibuild, ref: str) -> dict[str, tarfile.TarInfo]:
    """The members of an image's top layer by name (no leading ./)."""
    index = json.loads((mb.root / "oci/index.json").read_text())
    digest = next(m["digest"] for m in index["manifests"]
                  if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
    manifest = json.loads(_blob(mb, digest))
    layer = manifest["layers"][-1]
    data = _blob(mb, layer["digest"])
    if layer["mediaType"].endswith("+zstd"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return {m.name.removeprefix("./").rstrip("/"): m for m in tar.getmembers()}


def _blob(mb: Minibuild, digest: str) -> bytes:
    return (mb.root / "oci/blobs/sha256" / digest.split(":")[1]).read_bytes()


def cat(mb: Minibuild, ref: str, path: str) -> str:
    return mb.run("run", "--rm", ref, "cat", path).stdout


# -- http(s) files -----------------------------------------------------------------------------


def test_a_url_to_a_dir_takes_the_url_name_mode_0600_and_last_modified(mb, tmp_path, web):
    """Reference: "the destination will have permissions of 600. If the HTTP response contains
    a Last-Modified header, the timestamp from that header will be used to set the mtime";
    "If the destination ends with a trailing slash, then the filename is inferred from the URL
    path"; without one "the destination path becomes the filename". Owner root:root."""
    base, root, _ = web
    serve(root, "dl/foobar", b"remote bytes\n")
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nADD {base}/dl/foobar /in/\n"
                                          f"ADD {base}/dl/foobar?x=1 /bar\n")
    mb.build(ctx, "-t", "u:1")
    assert cat(mb, "u:1", "/in/foobar") == "remote bytes\n" == cat(mb, "u:1", "/bar")
    member = last_layer(mb, "u:1")["bar"]
    assert (member.mode & 0o7777, member.uid, member.gid, int(member.mtime)) == (0o600, 0, 0, MODIFIED)
    hist = list(reversed(json.loads(mb.run("history", "--format", "json", "u:1").stdout)))
    assert hist[-2]["created_by"] == f"ADD {base}/dl/foobar /in/"


def test_checksum_verifies_the_content_and_a_mismatch_is_one_line_at_the_instruction(mb, tmp_path, web):
    """Reference (ADD --checksum): "For HTTP sources, the checksum is the SHA-256 content digest,
    formatted as sha256:<hash>". BuildKit fails the step on a mismatch; so do we, at the line."""
    base, root, _ = web
    digest = serve(root, "f.txt", b"checked\n")
    ok = write_context(tmp_path / "ok", f"FROM base:1.0\nADD --checksum={digest} {base}/f.txt /f\n")
    mb.build(ok, "-t", "c:1")
    assert cat(mb, "c:1", "/f") == "checked\n"
    bad = write_context(tmp_path / "bad", f"FROM base:1.0\nADD --checksum=sha256:{'0' * 64} {base}/f.txt /f\n")
    proc = mb.build(bad, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"Buildfile:2:1: ADD {base}/f.txt failed: digest mismatch {digest}: expected sha256:" in proc.stderr
    local = write_context(tmp_path / "local", f"FROM base:1.0\nADD --checksum={digest} f.txt /f\n",
                          {"f.txt": "x"})
    proc = mb.build(local, check=False)
    assert "ADD --checksum can't be specified for local sources" in proc.stderr


def test_a_404_and_a_refused_connection_are_one_clear_line(mb, tmp_path, web):
    """BuildKit: "invalid response status 404"; ours names the status and the line, no traceback."""
    base, _, _ = web
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for url, reason in ((f"{base}/missing", "404 File not found"),
                        (f"http://127.0.0.1:{closed}/x", "GET http://127.0.0.1")):
        ctx = write_context(tmp_path / str(len(reason)), f"FROM base:1.0\nADD {url} /x\n")
        proc = mb.build(ctx, check=False)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        line = next(l for l in proc.stderr.splitlines() if "Buildfile:2:1" in l)
        assert f"ADD {url} failed:" in line and reason in line


def test_a_remote_archive_is_kept_unless_unpack_true_and_a_local_one_with_unpack_false(mb, tmp_path, web):
    """Reference (ADD --unpack): "Local tar archives are unpacked by default, whereas remote tar
    archives (where src is a URL) are downloaded without unpacking"; its two examples."""
    base, root, _ = web
    data = tgz({"inner/a.txt": b"from the archive\n"})
    serve(root, "archive.tar.gz", data)
    ctx = write_context(tmp_path / "ctx", f"""FROM base:1.0
ADD {base}/archive.tar.gz /kept/
ADD --unpack=true {base}/archive.tar.gz /download
ADD --unpack=false my-archive.tar.gz /local/
ADD my-archive.tar.gz /unpacked/
""", {"my-archive.tar.gz": data})
    mb.build(ctx, "-t", "a:1")
    listing = mb.run("run", "--rm", "a:1", "find", "/kept", "/download", "/local", "/unpacked").stdout.split()
    assert sorted(listing) == sorted(["/kept", "/kept/archive.tar.gz", "/download", "/download/inner",
                                      "/download/inner/a.txt", "/local", "/local/my-archive.tar.gz",
                                      "/unpacked", "/unpacked/inner", "/unpacked/inner/a.txt"])
    assert cat(mb, "a:1", "/download/inner/a.txt") == "from the archive\n"


def test_chown_and_chmod_apply_to_a_downloaded_file(mb, tmp_path, web):
    """Reference: ADD --chown / --chmod "See COPY --chown"; they replace 0600 and root:root.
    The modes are BuildKit's testAddURLChmod (644, 755, 0413, and ${mode} from a build arg)."""
    base, root, _ = web
    serve(root, "tool", b"#!/bin/sh\necho tool\n")
    ctx = write_context(tmp_path / "ctx", f"""FROM base:1.0
ADD --chown=7:8 --chmod=0755 {base}/tool /usr/local/bin/
ADD --chmod=644 {base}/tool /tmp/foo1
ADD --chmod=755 {base}/tool /tmp/foo2
ADD --chmod=0413 {base}/tool /tmp/foo3
ARG mode
ADD --chmod=${{mode}} {base}/tool /tmp/foo4
RUN stat -c "%04a" /tmp/foo1 /tmp/foo2 /tmp/foo3 /tmp/foo4 > /dest
""")
    mb.build(ctx, "--build-arg", "mode=400", "-t", "t:1")
    assert cat(mb, "t:1", "/dest") == "0644\n0755\n0413\n0400\n"
    assert mb.run("run", "--rm", "t:1", "stat", "-c", "%04a %u:%g", "/usr/local/bin/tool").stdout \
        == "0755 7:8\n"
    assert mb.run("run", "--rm", "t:1", "tool").stdout == "tool\n"


def test_a_url_without_a_path_is_unnamed_and_the_checksum_may_come_from_env(mb, tmp_path, web):
    """BuildKit's testDockerfileADDFromURL (`ADD <server>/ /dest/` makes /dest/__unnamed__ with
    Last-Modified as mtime) and testAddChecksum's DigestFromEnv (`--checksum=${DIGEST} ${LINK}`)."""
    base, root, _ = web
    digest = serve(root, "index.html", b"content2")
    ctx = write_context(tmp_path / "ctx", f"""FROM base:1.0
ADD {base}/ /dest/
ENV DIGEST={digest}
ENV LINK={base}/index.html
ADD --checksum=${{DIGEST}} ${{LINK}} /tmp/foo
""")
    mb.build(ctx, "-t", "e:1")
    assert cat(mb, "e:1", "/dest/__unnamed__") == "content2" == cat(mb, "e:1", "/tmp/foo")
    assert mb.run("run", "--rm", "e:1", "stat", "-c", "%Y", "/dest/__unnamed__").stdout == f"{MODIFIED}\n"


def test_the_cache_key_is_the_content_so_a_changed_file_reruns_the_step(mb, tmp_path, web):
    """BuildKit re-downloads on every build and keys the step on the content digest (and
    Last-Modified); docker's classic builder asked with ETag/Last-Modified. We follow BuildKit:
    same content -> CACHED; new content -> the step runs again (no build memo answers either)."""
    base, root, _ = web
    serve(root, "v", b"one\n")
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nADD {base}/v /v\n")
    mb.build(ctx, "-t", "v:1")
    again = mb.build(ctx, "-t", "v:1")
    assert "CACHED" in [l for l in again.stderr.splitlines() if l.startswith("  done in")][-1]
    serve(root, "v", b"two\n")
    mb.build(ctx, "-t", "v:1")
    assert cat(mb, "v:1", "/v") == "two\n"


def test_network_none_still_lets_add_download(mb, tmp_path, web):
    """BuildKit: `--network none` is the RUN steps' network; ADD's download is done by the
    builder, outside the step's sandbox, so it still works. We do the same."""
    base, root, _ = web
    serve(root, "n", b"net\n")
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nADD {base}/n /n\n")
    mb.build(ctx, "--network", "none", "-t", "n:1")
    assert cat(mb, "n:1", "/n") == "net\n"


def test_the_http_proxy_build_arg_is_used_for_the_download(mb, tmp_path, web):
    """Reference (Predefined ARGs): HTTP_PROXY and friends are usable without an ARG line.
    BuildKit's http source uses buildkitd's own proxy environment; we also honour the build's
    proxy args, as a RUN step's wget would (a documented difference)."""
    base, root, server = web
    serve(root, "via-proxy", b"proxied\n")
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nADD http://example.invalid/via-proxy /p\n")
    mb.build(ctx, "--build-arg", f"HTTP_PROXY={base}", "-t", "p:1")
    assert cat(mb, "p:1", "/p") == "proxied\n"
    assert server.proxied == ["http://example.invalid/via-proxy"]


def test_copy_of_a_url_is_refused(mb, tmp_path, web):
    """BuildKit: "source can't be a URL for COPY"."""
    base, _, _ = web
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nCOPY {base}/x /x\n")
    proc = mb.build(ctx, check=False)
    assert "Buildfile:2:1: COPY failed: source can't be a URL for COPY" in proc.stderr


# -- git repositories --------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository (bare, under tmp_path/git/repo.git) with a tag v1 and a newer main:
    (first commit, second commit)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed (scripts/install-deps.sh)")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "a.txt").write_text("first\n")
    (work / "bin").mkdir()
    (work / "bin" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (work / "bin" / "run.sh").chmod(0o775)
    (work / "docs").mkdir()
    (work / "docs" / "guide.md").write_text("guide\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "one")
    first = _git(work, "rev-parse", "HEAD")
    _git(work, "tag", "-a", "v1", "-m", "v1")
    (work / "a.txt").write_text("second\n")
    _git(work, "commit", "-q", "-am", "two")
    second = _git(work, "rev-parse", "HEAD")
    (tmp_path / "git").mkdir()
    _git(tmp_path, "clone", "-q", "--bare", str(work), str(tmp_path / "git" / "repo.git"))
    return first, second


@pytest.fixture
def daemon(tmp_path, repo):
    """`git daemon` on 127.0.0.1 serving tmp_path/git: its git:// base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                             f"--port={port}", f"--base-path={tmp_path / 'git'}", str(tmp_path / "git")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"git://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def test_a_git_repository_is_cloned_without_git_dir_with_644_755_modes(mb, tmp_path, daemon, repo):
    """Reference: "the repository is cloned to the specified destination"; "the permissions bits
    for files are 644. If a file in the repository has the executable bit set, it will have
    permissions set to 755. Directories have permissions set to 755"; `.git` is excluded by
    default (ADD --keep-git-dir). The default ref is the remote's HEAD."""
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\nADD {daemon}/repo.git /src/\n")
    mb.build(ctx, "-t", "g:1")
    assert cat(mb, "g:1", "/src/a.txt") == "second\n"
    members = last_layer(mb, "g:1")
    assert not any(name.startswith("src/.git") for name in members)
    modes = {name: members[name].mode & 0o7777 for name in
             ("src/a.txt", "src/bin/run.sh", "src/bin", "src/docs/guide.md")}
    assert modes == {"src/a.txt": 0o644, "src/bin/run.sh": 0o755, "src/bin": 0o755,
                     "src/docs/guide.md": 0o644}
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


def test_fragments_pick_a_ref_and_a_subdir(mb, tmp_path, daemon, repo):
    """Reference: "URL fragments to specify a specific branch, tag, commit, or subdirectory",
    e.g. `ADD git@github.com:moby/buildkit.git#v0.14.1:docs /buildkit-docs`."""
    first, _ = repo
    ctx = write_context(tmp_path / "ctx", f"""FROM base:1.0
ADD {daemon}/repo.git#v1 /tag
ADD {daemon}/repo.git#main:docs /docs
ADD {daemon}/repo.git#{first} /commit
""")
    mb.build(ctx, "-t", "f:1")
    assert cat(mb, "f:1", "/tag/a.txt") == "first\n" == cat(mb, "f:1", "/commit/a.txt")
    assert mb.run("run", "--rm", "f:1", "ls", "/docs").stdout.split() == ["guide.md"]


def test_keep_git_dir_and_checksum(mb, tmp_path, daemon, repo):
    """Reference: "--keep-git-dir=true flag lets you preserve the .git directory"; "For Git
    sources, the checksum is the commit SHA. It can be the full commit SHA or match on the
    prefix"; a wrong one fails the step at its line."""
    first, second = repo
    ctx = write_context(tmp_path / "ctx", f"FROM base:1.0\n"
                                          f"ADD --keep-git-dir=true --checksum={second[:7]} {daemon}/repo.git /k\n")
    mb.build(ctx, "-t", "k:1")
    assert cat(mb, "k:1", "/k/.git/HEAD").strip() == second
    bad = write_context(tmp_path / "bad", f"FROM base:1.0\nADD --checksum={first[:10]} {daemon}/repo.git /k\n")
    proc = mb.build(bad, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"Buildfile:2:1: ADD {daemon}/repo.git failed: expected checksum to match {first[:10]}" in proc.stderr


def test_a_repository_over_dumb_http_and_a_missing_one(mb, tmp_path, web, repo):
    """Reference: "reference the repository's HTTP or SSH address"; an http(s) URL is a git
    source when its path ends in .git (BuildKit's ParseGitRef). A missing repository is one
    line at the instruction."""
    base, root, _ = web
    bare = tmp_path / "git" / "repo.git"
    _git(bare, "update-server-info")
    shutil.copytree(bare, root / "repo.git")
    first, _ = repo
    # BuildKit's testAddGit "complicated case": ARGs in the URL, --keep-git-dir, --chown, --checksum.
    ctx = write_context(tmp_path / "ctx", f"""FROM base:1.0
ADD {base}/repo.git#v1 /h
ARG REPO="{base}/repo.git"
ARG TAG="v1"
ADD --keep-git-dir=true --chown=4242:8484 --checksum={first} ${{REPO}}#${{TAG}} /buildkit-chowned
""")
    mb.build(ctx, "-t", "h:1")
    assert cat(mb, "h:1", "/h/a.txt") == "first\n" == cat(mb, "h:1", "/buildkit-chowned/a.txt")
    assert mb.run("run", "--rm", "h:1", "stat", "-c", "%u:%g", "/buildkit-chowned/a.txt",
                  "/buildkit-chowned/.git/HEAD").stdout == "4242:8484\n4242:8484\n"
    missing = write_context(tmp_path / "missing", f"FROM base:1.0\nADD {base}/nope.git /h\n")
    proc = mb.build(missing, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"Buildfile:2:1: ADD {base}/nope.git failed: git fetch failed:" in proc.stderr
