"""git checkouts for ADD: what an untrusted repository may not do (findings of the review)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from minibuild.dockerfile.remotesource import url_filename
from minibuild.errors import BuildError
from minibuild.transfer import gitcheckout
from minibuild.transfer.gitcheckout import redact


@pytest.mark.parametrize("url,want", [
    ("http://user:s3cr3t@127.0.0.1:18778/repo1.git", "http://127.0.0.1:18778/repo1.git"),
    ("https://TOKEN@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://h/r.git", "https://h/r.git"),
    ("git@h:r.git", "git@h:r.git"),
    ("ssh://git@h/r.git", "ssh://git@h/r.git"),  # an ssh user is no secret
])
def test_a_kept_git_dir_names_its_remote_without_credentials(url, want):
    assert redact(url) == want


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_submodules_over_file_and_ext_transports_are_refused(tmp_path, monkeypatch):
    """Whatever the user's git config allows, the environment config we pass wins."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[protocol]\n\tallow = always\n")
    monkeypatch.setenv("HOME", str(home))
    env = {**__import__("os").environ, **gitcheckout._TRANSPORTS}
    for key in ("protocol.file.allow", "protocol.ext.allow"):
        got = subprocess.run(["git", "config", "--get", key], env=env, capture_output=True,
                             text=True, cwd=tmp_path).stdout.strip()
        assert got == "never", key


@pytest.mark.parametrize("url", ["http://h/a%00b", "http://h/" + "A" * 300])
def test_a_url_whose_last_part_is_no_file_name_is_a_clear_error(url):
    with pytest.raises(BuildError, match="no file name"):
        url_filename(url)
