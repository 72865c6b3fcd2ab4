"""--cache-to/--cache-from values, in BuildKit's spelling."""

from __future__ import annotations

import pytest

from minibuild.transfer.registrycache import CacheSpec, CacheSpecError


@pytest.mark.parametrize("text,repository,mode", [
    ("type=registry,ref=127.0.0.1:5000/cache", "127.0.0.1:5000/cache", "min"),
    ("type=registry,ref=reg.example/team/cache,mode=max", "reg.example/team/cache", "max"),
    ("reg.example/cache", "reg.example/cache", "min"),  # buildah's bare repository
])
def test_cache_specs(text, repository, mode):
    assert CacheSpec.parse(text) == CacheSpec(repository, mode)


@pytest.mark.parametrize("text,message", [
    ("type=local,src=/tmp", "only type=registry"), ("type=registry,ref=reg.example/c,mode=all", "min or max"),
    ("type=registry,ref=reg.example/c:tag", "without a tag"), ("type=registry", "ref=HOST/REPO"),
])
def test_bad_cache_specs(text, message):
    with pytest.raises(CacheSpecError, match=message):
        CacheSpec.parse(text)
