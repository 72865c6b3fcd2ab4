"""A docker credential helper for tests: `docker-credential-<name>` written into a directory the
test puts on PATH, keeping its secrets in a JSON file and logging each call (action and server
only, never a secret), as the docker/docker-credential-helpers protocol describes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = '''#!{python}
import json, sys
from pathlib import Path
db, log = Path({db!r}), Path({log!r})
data = json.loads(db.read_text()) if db.exists() else {{}}
action, body = sys.argv[1], sys.stdin.read()
server = json.loads(body)["ServerURL"] if action == "store" else body
with open(log, "a") as out:
    out.write(f"{{action}} {{server}}\\n")
if action == "store":
    entry = json.loads(body)
    data[server] = {{"Username": entry["Username"], "Secret": entry["Secret"]}}
    db.write_text(json.dumps(data))
elif server not in data:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    print(json.dumps({{"ServerURL": server, **data[server]}}))
elif action == "erase":
    del data[server]
    db.write_text(json.dumps(data))
'''


def install(bin_dir: Path, name: str) -> tuple[Path, Path]:
    """Write `docker-credential-<name>` into bin_dir; its (secrets file, call log)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    db, log = bin_dir / f"{name}-secrets.json", bin_dir / f"{name}-calls.log"
    helper = bin_dir / f"docker-credential-{name}"
    helper.write_text(SCRIPT.format(python=sys.executable, db=str(db), log=str(log)))
    helper.chmod(0o755)
    return db, log


def calls(log: Path) -> list[str]:
    """The calls the helper saw, as `action server` lines."""
    return log.read_text().splitlines() if log.exists() else []


def held(db: Path) -> dict:
    """What the helper holds, by server."""
    return json.loads(db.read_text()) if db.exists() else {}
