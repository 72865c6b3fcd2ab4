"""passwd/group parsing and docker-compatible USER resolution (pure, no root)."""

from __future__ import annotations

import pytest

from minibuild.errors import BuildError
from minibuild.fs.users import ResolvedUser, parse_group, parse_passwd, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
broken:x:abc:1:bad uid:/x:/bin/sh
short:x:7
app:x:1000:1000::/home/app
+nisuser::::::
"""

GROUP = """\
root:x:0:
daemon:x:1:app
wheel:x:10:root,app
nogroup:x:65534:
app:x:1000:
staff:x:50: app , other
"""


def test_parse_passwd_skips_comments_malformed_and_nis():
    names = [e.name for e in parse_passwd(PASSWD)]
    assert names == ["root", "daemon", "nobody", "app"]
    app = parse_passwd(PASSWD)[-1]
    assert (app.uid, app.gid, app.home, app.shell) == (1000, 1000, "/home/app", "")


def test_parse_group_members():
    groups = {g.name: g for g in parse_group(GROUP)}
    assert groups["wheel"].members == ("root", "app")
    assert groups["staff"].members == ("app", "other")
    assert groups["root"].members == ()


def test_name_gets_primary_gid_home_and_supplementary_groups():
    user = resolve_user("app", PASSWD, GROUP)
    assert user == ResolvedUser(1000, 1000, (1, 10, 50), "/home/app", "app")


def test_process_groups_put_the_primary_gid_first_once():
    assert resolve_user("app", PASSWD, GROUP).process_groups() == (1000, 1, 10, 50)
    assert resolve_user("app:wheel", PASSWD, GROUP).process_groups() == (10,)
    assert ResolvedUser(5, 10, (10, 20)).process_groups() == (10, 20)


def test_numeric_uid_in_passwd_resolves_to_its_entry():
    assert resolve_user("65534", PASSWD, GROUP).name == "nobody"
    assert resolve_user("65534", PASSWD, GROUP).gid == 65534


def test_numeric_uid_absent_from_passwd_is_allowed_with_gid_0():
    user = resolve_user("4242", PASSWD, GROUP)
    assert (user.uid, user.gid, user.groups, user.home) == (4242, 0, (), None)
    assert user.default_home() == "/"


def test_unknown_name_is_a_docker_style_error():
    with pytest.raises(BuildError, match="unable to find user ghost: no matching entries in passwd file"):
        resolve_user("ghost", PASSWD, GROUP)


def test_unknown_name_without_passwd_file():
    with pytest.raises(BuildError, match="unable to find user app"):
        resolve_user("app", None, None)


def test_explicit_group_replaces_gid_and_drops_supplementary():
    assert resolve_user("app:wheel", PASSWD, GROUP) == ResolvedUser(1000, 10, (), "/home/app", "app")
    assert resolve_user("app:77", PASSWD, GROUP).gid == 77
    assert resolve_user("1234:5678", None, None) == ResolvedUser(1234, 5678)


def test_unknown_group_name_is_an_error():
    with pytest.raises(BuildError, match="unable to find group nope: no matching entries in group file"):
        resolve_user("app:nope", PASSWD, GROUP)


def test_empty_spec_is_root():
    root = resolve_user("", PASSWD, GROUP)
    assert (root.uid, root.gid, root.home, root.groups) == (0, 0, "/root", (10,))
    assert resolve_user("", None, None).default_home() == "/root"


@pytest.mark.parametrize("spec", [":0", "root:", "app:"])
def test_empty_parts_are_refused(spec):
    with pytest.raises(BuildError, match="invalid user spec"):
        resolve_user(spec, PASSWD, GROUP)


def test_out_of_range_uid_is_not_numeric():
    with pytest.raises(BuildError, match="unable to find user 99999999999"):
        resolve_user("99999999999", PASSWD, GROUP)
