"""Which ADD sources are remote and what their URLs say (remotesource.py), against BuildKit's
dfgitutil.ParseGitRef / gitutil.ParseURL tests and the Dockerfile reference's ADD examples."""

from __future__ import annotations

import pytest

from minibuild.dockerfile.remotesource import (UNNAMED, GitSource, git_checksum, git_source,
                                               http_checksum, is_http_source, is_remote,
                                               parse_bool, url_filename)
from minibuild.errors import BuildError


@pytest.mark.parametrize("text, expected", [
    # The reference's forms: `git@github.com:user/repo.git`, `https://github.com/user/repo.git`,
    # and `git@github.com:moby/buildkit.git#v0.14.1:docs`.
    ("git@github.com:user/repo.git", GitSource("git@github.com:user/repo.git")),
    ("https://github.com/user/repo.git", GitSource("https://github.com/user/repo.git")),
    ("git@github.com:moby/buildkit.git#v0.14.1:docs",
     GitSource("git@github.com:moby/buildkit.git", "v0.14.1", "docs")),
    ("https://github.com/moby/buildkit.git#v0.10.1", GitSource("https://github.com/moby/buildkit.git", "v0.10.1")),
    # BuildKit's GitRef doc example: fragment ref with a slash and a nested subdir.
    ("https://github.com/foo/bar.git#baz/qux:quux/quuz", GitSource("https://github.com/foo/bar.git", "baz/qux", "quux/quuz")),
    ("git://127.0.0.1:9418/repo.git#main", GitSource("git://127.0.0.1:9418/repo.git", "main")),
    ("ssh://git@host/repo.git", GitSource("ssh://git@host/repo.git")),
    # A subdir is made relative and can never climb out (gitutil.parseOpts: path.Join("/", ...)).
    ("https://h/r.git#:../../etc", GitSource("https://h/r.git", "", "etc")),
    # The query form of newer BuildKit.
    ("https://h/r.git?tag=v1&subdir=docs&keep-git-dir=true",
     GitSource("https://h/r.git", "refs/tags/v1", "docs", True)),
    ("https://h/r.git?branch=dev&checksum=abc", GitSource("https://h/r.git", "refs/heads/dev", checksum="abc")),
])
def test_git_sources_parse_as_buildkit(text, expected):
    assert git_source(text) == expected and is_remote(text) and not is_http_source(text)


@pytest.mark.parametrize("text", ["https://example.com/archive.zip", "http://example.com/foobar",
                                  "https://h/r.git.tar.gz", "http://example.com"])
def test_http_urls_without_dot_git_are_files(text):
    """BuildKit: "An HTTP(S) URL is considered to be a valid git ref only when it has the
    .git suffix"."""
    assert git_source(text) is None and is_http_source(text) and is_remote(text)


@pytest.mark.parametrize("text", ["file.txt", "dir/x:y", "./a@b:c", "ftp://h/f", "C:/x", "*.tar"])
def test_local_paths_are_not_remote(text):
    assert not is_remote(text)


def test_query_conflicts_and_unknown_keys_are_refused():
    with pytest.raises(BuildError, match="ref conflicts"):
        git_source("https://h/r.git?ref=a#b")
    with pytest.raises(BuildError, match="unexpected query 'bogus'"):
        git_source("https://h/r.git?bogus=1")
    with pytest.raises(BuildError, match="invalid git ref"):  # never an option of git fetch
        git_source("https://h/r.git#--upload-pack=touch /tmp/x")


def test_full_commit_refs_are_fetched_by_commit():
    assert git_source("https://h/r.git#" + "a" * 40).by_commit
    assert not git_source("https://h/r.git#abc123").by_commit


@pytest.mark.parametrize("url, name", [
    ("http://example.com/foobar", "foobar"),              # the reference's example
    ("https://h/dl/a%20b.tar.gz?token=1#frag", "a b.tar.gz"),  # decoded path, no query
    ("https://h/dir/", "dir"),
    ("http://example.com", UNNAMED),                       # "doesn't work" in docker: BuildKit's name
    ("http://example.com/", UNNAMED),
])
def test_the_file_name_is_the_url_path_last_part(url, name):
    assert url_filename(url) == name


def test_checksums():
    """Reference: http "SHA-256 content digest, formatted as sha256:<hash>"; git "the full
    commit SHA or ... the prefix (1 or more characters)"."""
    digest = "sha256:" + "ab" * 32
    assert http_checksum(digest) == digest
    for bad in ("sha512:" + "ab" * 64, "ab" * 32, "sha256:ABC"):
        with pytest.raises(BuildError, match="want sha256:"):
            http_checksum(bad)
    assert git_checksum("be1f38e") == "be1f38e"
    with pytest.raises(BuildError, match="commit id"):
        git_checksum("v1.0")


def test_booleans_read_as_go_parsebool():
    assert parse_bool("true", "x") and parse_bool("1", "x") and not parse_bool("False", "x")
    with pytest.raises(BuildError, match="not a boolean"):
        parse_bool("yes", "ADD --unpack")
