"""`images`, `rmi`, `inspect`, `history`, `tag`: output shapes next to docker's documented
examples, on stores made by hand (tests/unit/cli/storefixture.py)."""

from __future__ import annotations

import json

import pytest

from tests.unit.cli.storefixture import hand, run_cli  # noqa: F401 - the fixture

OLD, NEW = "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"


@pytest.fixture
def cli(monkeypatch, capsys, hand):  # noqa: F811
    return lambda *args: run_cli(monkeypatch, capsys, hand.root, *args)


@pytest.fixture
def three(hand):  # noqa: F811
    """base:1.0 (old), app:1 and app:latest (new, one image), and an untagged image."""
    base = hand.image(hand.layer("base"), tags=("base:1.0",), created=OLD)
    app = hand.image(hand.layer("app"), tags=("app:1", "app:latest"), created=NEW,
                     labels={"team": "web"})
    loose = hand.image(hand.layer("loose"), created="2024-02-01T00:00:00Z")
    return base, app, loose


def test_images_table_has_dockers_columns_newest_first_and_none_rows(cli, hand, three):  # noqa: F811
    code, out, _ = cli("images")
    lines = out.splitlines()
    # docker: "REPOSITORY   TAG       IMAGE ID       CREATED        SIZE" (tabwriter 10/3)
    assert lines[0].startswith("REPOSITORY   TAG       IMAGE ID       CREATED")
    rows = [line.split() for line in lines[1:]]
    assert [r[:2] for r in rows] == [["app", "1"], ["app", "latest"], ["<none>", "<none>"],
                                     ["base", "1.0"]]
    ids = {r[0] + ":" + r[1]: r[2] for r in rows}
    assert ids["app:1"] == ids["app:latest"] == hand.image_id(three[1][0])[7:19]
    assert all(len(r[2]) == 12 for r in rows) and rows[0][-1] == "1kB"


def test_images_quiet_digests_no_trunc(cli, hand, three):  # noqa: F811
    base, app, loose = three
    out = cli("images", "-q")[1].split()
    assert out == [hand.image_id(d)[7:19] for d, _ in (app, app, loose, base)]
    out = cli("images", "-q", "--no-trunc")[1].split()
    assert out[0] == hand.image_id(app[0]) and out[0].startswith("sha256:")
    table = cli("images", "--digests")[1].splitlines()
    assert "DIGEST" in table[0] and str(base[0].digest) in table[-1]


@pytest.mark.parametrize("fmt,first", [
    ("{{.Repository}}:{{.Tag}}", "app:1"),
    ("{{.ID}}", None),
    ("{{.Repository}}\\t{{.Size}}", "app\t1kB"),
    ("{{.Digest}}", None),
    ("{{.CreatedAt}}", "2024-03-01 00:00:00 +0000 UTC"),
])
def test_images_go_templates(cli, hand, three, fmt, first):  # noqa: F811
    code, out, _ = cli("images", "--format", fmt)
    assert code == 0 and len(out.splitlines()) == 4
    if first is not None:
        assert out.splitlines()[0] == first


def test_images_table_template_and_json_object(cli, hand, three):  # noqa: F811
    out = cli("images", "--format", "table {{.ID}}\\t{{.Size}}")[1].splitlines()
    assert out[0] == "IMAGE ID       SIZE" and out[1] == hand.image_id(three[1][0])[7:19] + "   1kB"
    row = json.loads(cli("images", "--format", "{{json .}}")[1].splitlines()[0])
    assert sorted(row) == ["Containers", "CreatedAt", "CreatedSince", "Digest", "ID",
                           "Repository", "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize"]
    legacy = json.loads(cli("images", "--format", "json")[1])
    assert {(i["repository"], i["tag"]) for i in legacy} >= {("<none>", "<none>"), ("app", "1")}


@pytest.mark.parametrize("filters,shown", [
    (("dangling=true",), ["<none>:<none>"]),
    (("dangling=false",), ["app:1", "app:latest", "base:1.0"]),
    (("reference=app",), ["app:1", "app:latest"]),
    (("reference=app:l*",), ["app:latest"]),
    (("reference=b*",), ["base:1.0"]),
    (("label=team",), ["app:1", "app:latest"]),
    (("label=team=db",), []),
    (("before=app:1",), ["<none>:<none>", "base:1.0"]),
    (("since=base:1.0",), ["app:1", "app:latest", "<none>:<none>"]),
    (("since=base:1.0", "dangling=false"), ["app:1", "app:latest"]),
])
def test_images_filters(cli, three, filters, shown):  # noqa: F811
    args = [a for f in filters for a in ("--filter", f)]
    out = cli("images", *args, "--format", "{{.Repository}}:{{.Tag}}")[1]
    assert out.splitlines() == shown


def test_images_reference_argument_and_a_bad_filter(cli, three):  # noqa: F811
    assert cli("images", "base", "--format", "{{.Tag}}")[1] == "1.0\n"
    code, _, err = cli("images", "--filter", "colour=red")
    assert code == 2 and "dangling, reference" in err


def test_intermediate_images_show_only_with_all(cli, hand):  # noqa: F811
    base_layer = hand.layer("base")
    parent, parent_image = hand.image(base_layer)  # untagged, and the top image is built on it
    hand.image(hand.layer("top"), tags=("top:1",), base=parent_image)
    assert cli("images", "-q")[1].split() == [hand.image_id(hand.store.find("top:1").descriptor)[7:19]]
    assert len(cli("images", "-a", "-q")[1].split()) == 2
    assert hand.image_id(parent)[7:19] in cli("images", "-f", "dangling=true", "-q")[1]


# -- rmi ---------------------------------------------------------------------------------------

def test_rmi_of_a_tag_leaves_an_untagged_build_alone(cli, hand, three):  # noqa: F811
    """The issue's reproduction: `d=$(build -q .)` then `rmi myrepo/app:2` must not delete $d."""
    _, _, (loose, _) = three
    mine = hand.image(hand.layer("two"), tags=("myrepo/app:2",))[0]
    mine_id, loose_id = hand.image_id(mine), hand.image_id(loose)
    hand.close()  # so that rmi collects the blobs too
    code, out, _ = cli("rmi", "myrepo/app:2")
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["Untagged: myrepo/app:2", f"Deleted: {mine_id}"]
    assert len(lines) == 3 and lines[2].startswith("Deleted: sha256:")  # its one layer
    assert all(loose_id not in line and str(loose.digest) not in line for line in lines)
    assert not any(mine.digest.hex in line for line in lines)
    from minibuild.store.layout import Store
    with Store.open(hand.root) as store:
        assert store.find(str(store.image_id(loose))).descriptor.digest == loose.digest
        assert store.has_blob(loose.digest) and not store.has_blob(mine.digest)


def test_rmi_of_one_of_two_tags_only_untags(cli, hand, three):  # noqa: F811
    assert cli("rmi", "app:1")[1] == "Untagged: app:1\n"
    assert cli("images", "app", "--format", "{{.Tag}}")[1] == "latest\n"


def test_rmi_by_id_of_a_twice_tagged_image_needs_force(cli, hand, three):  # noqa: F811
    short = hand.image_id(three[1][0])[7:19]
    code, _, err = cli("rmi", short)
    assert code == 1 and f"conflict: unable to delete {short} (must be forced) - image is " \
                          "referenced in multiple repositories" in err
    code, out, _ = cli("rmi", "-f", short)
    assert code == 0 and out.splitlines()[:3] == ["Untagged: app:1", "Untagged: app:latest",
                                                  f"Deleted: {hand.image_id(three[1][0])}"]


def test_rmi_of_everything_images_q_lists(cli, hand, three):  # noqa: F811
    """`rmi $(images -q)`: the twice-tagged image's ID is refused (twice), the others go."""
    ids = cli("images", "-q")[1].split()
    code, out, err = cli("rmi", *ids)
    assert code == 1 and err.count("referenced in multiple repositories") == 2
    assert out.count("Deleted: sha256:") >= 2
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}")[1].split() == ["app:1", "app:latest"]
    code, _, _ = cli("rmi", "-f", *cli("images", "-q")[1].split())
    assert cli("images", "-q")[1] == ""


def test_rmi_of_an_untagged_commit_survives_rmi_of_a_tag_of_its_container_image(cli, hand):  # noqa: F811
    """The issue's second reproduction: an untagged `commit` result must survive `rmi myapp`
    while myapp still has another tag."""
    desc, image = hand.image(hand.layer("app"), tags=("myapp:latest", "myapp:2"))
    committed, _ = hand.image(hand.layer("commit"), base=image)
    cli("rmi", "myapp")
    assert hand.store.find(hand.image_id(committed)).descriptor.digest == committed.digest
    assert hand.store.has_blob(committed.digest)


def test_prune_drops_dangling_images(cli, hand, three):  # noqa: F811
    loose = three[2][0]
    image_id = hand.image_id(loose)
    hand.close()  # prune needs the store to itself
    out = cli("prune")[1]
    assert out.startswith(f"Deleted Images:\ndeleted: {image_id}\n")
    assert "<none>" not in cli("images")[1]


# -- inspect, history ------------------------------------------------------------------------------

def test_inspect_has_dockers_shape(cli, hand, three):  # noqa: F811
    desc, image = three[1]
    shown = json.loads(cli("inspect", "app:1")[1])[0]
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Config",
                "Architecture", "Os", "Size", "RootFS", "Metadata", "History"):
        assert key in shown
    assert shown["Id"] == hand.image_id(desc)
    assert shown["RepoTags"] == ["app:1", "app:latest"]
    assert shown["RepoDigests"] == [f"app@{desc.digest}"]
    assert shown["RootFS"] == {"Type": "layers", "Layers": [str(d) for d in image.config.diff_ids]}
    assert shown["Config"]["Labels"] == {"team": "web"} and shown["Size"] == 1000
    assert shown["Descriptor"]["digest"] == str(desc.digest)
    untagged = json.loads(cli("inspect", hand.image_id(three[2][0])[7:19])[1])[0]
    assert (untagged["RepoTags"], untagged["RepoDigests"]) == ([], [])


@pytest.mark.parametrize("fmt,expected", [
    ("{{.Id}}", None),
    ("{{json .Config.Labels}}", '{"team":"web"}'),
    ("{{range .RepoTags}}{{println .}}{{end}}", "app:1\napp:latest\n"),
    ('{{index .Config.Labels "team"}}', "web"),
    ("{{if .RepoDigests}}pushed{{else}}local{{end}}", "pushed"),
    ("{{.Os}}/{{.Architecture}}", None),
])
def test_inspect_format(cli, hand, three, fmt, expected):  # noqa: F811
    code, out, _ = cli("inspect", "-f", fmt, "app:1")
    assert code == 0
    if expected is not None:
        assert out == expected + "\n"
    elif fmt == "{{.Id}}":
        assert out == hand.image_id(three[1][0]) + "\n"


def test_inspect_a_container_and_the_type_flag(cli, hand, three):  # noqa: F811
    desc, image = three[0]
    container = hand.container(desc, image, name="web")
    shown = json.loads(cli("inspect", "web")[1])[0]
    assert shown["Id"] == container.id and shown["Name"] == "/web"
    assert shown["State"]["Status"] == "exited" and shown["Image"] == hand.image_id(desc)
    assert cli("inspect", "-f", "{{.State.Status}} {{.Config.Image}}", "web")[1] == "exited web\n"
    code, _, err = cli("inspect", "--type", "image", "web")
    assert code == 1 and "image not found: web" in err
    code, out, err = cli("inspect", "nothing-here")
    assert code == 1 and "no such object: nothing-here" in err and json.loads(out) == []


def test_history_says_one_layer_and_quiet_gives_dockers_ids(cli, hand, three):  # noqa: F811
    out = cli("history", "base:1.0")[1]
    assert "in 1 layer;" in out
    assert cli("history", "-q", "base:1.0")[1] == hand.image_id(three[0][0])[7:19] + "\n"
    rows = cli("history", "--format", "{{.CreatedBy}}|{{.Size}}", "base:1.0")[1]
    assert rows.startswith("COPY ") and rows.rstrip().endswith("|1kB")


def test_negative_source_date_epoch_and_commit_help(cli, tmp_path):
    code, _, err = cli("build", "--source-date-epoch", "-5", str(tmp_path))
    assert code == 2 and "-5" in err
    assert "--pause / --no-pause" in cli("commit", "--help")[1]


def test_load_over_an_existing_tag_says_so_as_docker(cli, hand, tmp_path):  # noqa: F811
    old, _ = hand.image(hand.layer("old"), tags=("base:1.0",), created=OLD)
    hand.close()
    archive = tmp_path / "old.tar"
    assert cli("save", "-o", str(archive), "base:1.0")[0] == 0
    from minibuild.store.layout import Store
    with Store.open(hand.root) as store:
        from tests.unit.cli.storefixture import Hand
        newer = Hand.__new__(Hand)
        newer.root, newer.store = hand.root, store
        new, _ = newer.image(newer.layer("new"), tags=("base:1.0",), created=NEW)
        new_id = str(store.image_id(new))
    code, out, _ = cli("load", "-i", str(archive))
    assert code == 0 and out.splitlines() == [
        f"The image base:1.0 already exists, renaming the old one with ID {new_id} to empty string",
        "Loaded image: base:1.0"]
    assert cli("images", "--format", "{{.Repository}}:{{.Tag}}")[1].split() == [
        "<none>:<none>", "base:1.0"]


def test_save_by_id_writes_no_tag_and_load_keeps_it_untagged(cli, hand, tmp_path, monkeypatch, capsys):  # noqa: F811
    desc, _ = hand.image(hand.layer("x"), tags=("x:1",))
    image_id = hand.image_id(desc)
    hand.close()
    for fmt in ("oci", "docker"):
        archive = tmp_path / f"{fmt}.tar"
        assert cli("save", "--format", fmt, "-o", str(archive), image_id[7:19])[0] == 0
        other = tmp_path / f"other-{fmt}"
        code, out, _ = run_cli(monkeypatch, capsys, other, "load", "-i", str(archive))
        assert (code, out) == (0, f"Loaded image ID: {image_id}\n")
        shown = run_cli(monkeypatch, capsys, other, "images", "--format", "{{.Repository}} {{.ID}}")
        assert shown[1] == f"<none> {image_id[7:19]}\n"
