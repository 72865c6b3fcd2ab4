"""Issue 13, finding 2, as a local user would try it: the store holds setuid-root binaries (in
unpacked layers, in containers' upper dirs, in RUN cache mounts) and containers' `-e` secrets.
With the store 0755 all the way down, any user ran those binaries as root and read the secrets.
Now the root is 0700 and secret files 0600, and a store left open is tightened when opened.

The attack runs as `nobody` through setpriv with shell tools (the project's Python lives under
/root, which `nobody` cannot read). The store sits in a dir every user may traverse (as
/var/lib is), so only the store's own modes stand in the way.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Minibuild, write_context

pytestmark = pytest.mark.integration

# setpriv keeps root's capabilities (CAP_DAC_OVERRIDE too) up to its own execve, so the path it
# execs is looked up as root: `env`, execed in between, runs the target as a plain user would.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "env"]
ID = shutil.which("id")
BUILDFILE = """\
FROM base:1.0
COPY suid-id /bin/suid-id
RUN chmod 4755 /bin/suid-id
RUN --mount=type=cache,target=/cache cp /bin/suid-id /cache/suid-id && chmod 4755 /cache/suid-id
"""


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30)


def setuid_files(root: Path) -> dict[str, Path]:
    """The setuid-root files of the store, by where they are: layers, upper or cache."""
    found = {}
    for base, _dirs, files in os.walk(root):
        for name in files:
            path = Path(base, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID and st.st_uid == 0:
                rel = path.relative_to(root).parts
                kind = "upper" if "upper" in rel else rel[0] if rel[0] != "cache" else "cache"
                found.setdefault(kind, path)
    return found


@pytest.fixture
def attacked(base_store):
    """A store (in a world-traversable dir) holding setuid-root binaries in a layer, a
    container's upper dir and a cache mount, and a container whose -e holds a secret."""
    if shutil.which("setpriv") is None or ID is None:
        pytest.skip("needs setpriv and id")
    parent = Path(tempfile.mkdtemp(prefix="mb-perm-", dir="/tmp"))
    os.chmod(parent, 0o755)
    mb = Minibuild(parent / "store")
    subprocess.run(["cp", "-a", str(base_store), str(mb.root)], check=True)
    context = write_context(parent / "ctx", BUILDFILE, {"suid-id": Path(ID).read_bytes()})
    os.chmod(parent / "ctx", 0o700)
    mb.build(context, "-t", "suid:1")
    mb.run("run", "--name", "victim", "-e", "SECRET=hunter2", "suid:1",
           "sh", "-c", "cp /bin/suid-id /suid2 && chmod 4755 /suid2")
    yield mb
    mb.run("rm", "-f", "victim", check=False)
    shutil.rmtree(parent)


def record_of(mb: Minibuild) -> Path:
    [config] = list((mb.root / "containers").glob("*/config.json"))
    return config


def assert_out_of_reach(mb: Minibuild, targets: dict[str, Path]) -> None:
    """nobody can neither run the setuid binaries nor read the record, nor list the store."""
    for kind, path in targets.items():
        result = as_nobody(str(path), "-u")
        assert result.returncode != 0 and result.stdout.strip() != "0", (kind, result)
        assert "Permission denied" in result.stderr, (kind, result.stderr)
    result = as_nobody("cat", str(record_of(mb)))
    assert result.returncode != 0 and "hunter2" not in result.stdout
    assert as_nobody("ls", str(mb.root)).returncode != 0


def test_a_local_user_reaches_no_setuid_binary_and_no_secret(attacked):
    mb = attacked
    targets = setuid_files(mb.root)
    assert set(targets) >= {"layers", "upper", "cache"}, targets
    assert stat.S_IMODE(os.stat(mb.root).st_mode) == 0o700
    config = record_of(mb)
    assert "hunter2" in config.read_text() and stat.S_IMODE(os.stat(config).st_mode) == 0o600
    assert_out_of_reach(mb, targets)


def test_a_store_left_open_is_attackable_until_minibuild_opens_it(attacked):
    mb = attacked
    targets = setuid_files(mb.root)
    os.chmod(mb.root, 0o755)  # as minibuild made every store before
    os.chmod(record_of(mb), 0o644)
    escalated = as_nobody(str(targets["layers"]), "-u")
    assert escalated.stdout.strip() == "0", escalated  # the attack itself: euid 0 for nobody
    assert "hunter2" in as_nobody("cat", str(record_of(mb))).stdout
    mb.run("images")  # any command opens the store
    assert stat.S_IMODE(os.stat(mb.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(record_of(mb)).st_mode) == 0o600
    assert_out_of_reach(mb, targets)
