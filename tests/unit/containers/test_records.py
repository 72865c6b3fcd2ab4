"""Container records on disk (no root): create, find, remove, leftovers, and liveness by lock."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import datetime

import pytest

from minibuild.containers.mountspec import MountSpec
from minibuild.containers.records import Container, ContainerError, Containers, now, \
    process_start_time, scrub_scaffolds
from minibuild.oci.digest import Digest
from minibuild.oci.image import Descriptor

MANIFEST = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"manifest"), 10)
OTHER = Descriptor("application/vnd.oci.image.manifest.v1+json", Digest.of(b"other"), 10)


def template(**fields) -> Container:
    base = Container(id="", name="", image="base:1", manifest=MANIFEST,
                     diff_ids=(Digest.of(b"layer"),), argv=("sh", "-c", "true"),
                     env=(("PATH", "/bin"),), cwd="/", user="", network="host",
                     created="2024-01-01T00:00:00.000000Z")
    return replace(base, **fields)


@pytest.fixture
def records(tmp_path) -> Containers:
    return Containers(tmp_path)


def test_now_is_rfc3339_utc_with_microseconds():
    text = now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None


def test_a_full_record_round_trips_through_json():
    container = template(id="a" * 64, name="web", mounts=(
        MountSpec("volume", "/data", "vol", readonly=True),
        MountSpec("tmpfs", "/tmp", size=1024, mode=0o1777)), state="exited", exit_code=3,
        pid=12, pid_start=34, started="s", finished="f", hostname="box", auto_remove=True,
        stop_signal="SIGINT", overrides={"cmd": ["x"]})
    data = json.loads(json.dumps(container.to_json()))
    assert Container.from_json(data) == container


def test_a_record_without_the_newer_fields_loads_with_their_defaults():
    data = template(id="b" * 64, name="old").to_json()
    for key in ("overrides", "auto_remove", "stop_signal", "mounts", "hostname", "exit_code",
                "pid", "pid_start", "started", "finished"):
        del data[key]
    loaded = Container.from_json(data)
    assert loaded.mounts == () and loaded.hostname == "" and loaded.overrides == {}
    assert loaded.pid is None and not loaded.auto_remove and loaded.stop_signal == ""


def test_create_gives_an_id_a_name_and_the_overlay_dirs(records):
    made = records.create(template())
    assert re.fullmatch(r"[0-9a-f]{64}", made.id) and made.short_id == made.id[:12]
    assert re.fullmatch(r"[a-z]+_[a-z]+", made.name)
    assert [p.name for p in records.dirs(made.id)] == ["upper", "work", "merged"]
    assert all(p.is_dir() for p in records.dirs(made.id))
    assert records.load(made.id) == made
    assert records.log_path(made.id) == records.path(made.id) / "log"


def test_a_name_in_use_is_refused(records):
    records.create(template(name="web"))
    with pytest.raises(ContainerError, match="already in use") as caught:
        records.create(template(name="web"))
    assert "minibuild rm web" in caught.value.hint
    assert len(records.all()) == 1


def test_save_replaces_the_record(records):
    made = records.create(template(name="web"))
    records.save(replace(made, state="exited", exit_code=1))
    assert records.load(made.id).exit_code == 1


def test_an_unreadable_record_is_an_error_to_load_and_skipped_by_all(records):
    good = records.create(template(name="good"))
    bad = records.create(template(name="bad"))
    (records.path(bad.id) / "config.json").write_text("{not json")
    with pytest.raises(ContainerError, match="unreadable record"):
        records.load(bad.id)
    assert [c.name for c in records.all()] == [good.name]


def test_all_is_oldest_first_and_ignores_hidden_dirs(records, tmp_path):
    assert Containers(tmp_path / "nowhere").all() == []
    late = records.create(template(name="late", created="2024-02-01T00:00:00.000000Z"))
    early = records.create(template(name="early", created="2024-01-01T00:00:00.000000Z"))
    half = records.dir / ".new-half"  # a create cut short: its record is complete already
    half.mkdir()
    (half / "config.json").write_bytes((records.path(early.id) / "config.json").read_bytes())
    assert [c.id for c in records.all()] == [early.id, late.id]
    assert [c.id for c in records] == [early.id, late.id]


def test_find_by_name_full_id_or_unique_prefix(records):
    made = records.create(template(name="web"))
    assert records.find("web") == made
    assert records.find(made.id) == made
    assert records.find(made.id[:3]) == made
    with pytest.raises(ContainerError, match="no such container"):
        records.find(made.id[:2])  # two characters are never a prefix
    with pytest.raises(ContainerError, match="no such container"):
        records.find("db")


def test_an_ambiguous_prefix_is_refused(records):
    first = records.create(template(name="one"))
    second = records.create(template(name="two"))
    for c, new_id in ((first, "abc" + "0" * 61), (second, "abc" + "1" * 61)):
        os.rename(records.path(c.id), records.path(new_id))
        records.save(replace(c, id=new_id))
    with pytest.raises(ContainerError, match="ambiguous"):
        records.find("abc")
    assert records.find("abc0").name == "one"


def test_remove_deletes_the_dir_and_tolerates_a_missing_one(records):
    made = records.create(template())
    (records.dirs(made.id)[0] / "written").write_text("x")
    records.remove(made.id)
    assert not records.path(made.id).exists()
    assert list(records.dir.iterdir()) == [records.dir / ".names.lock"]
    records.remove(made.id)  # already gone: nothing to do


def test_clean_leftovers_removes_half_made_and_half_removed_dirs(records, tmp_path):
    Containers(tmp_path / "nowhere").clean_leftovers()  # no containers dir yet: nothing to do
    kept = records.create(template())
    for name in (".new-abc", ".rm-def-1234"):
        (records.dir / name / "upper").mkdir(parents=True)
    records.clean_leftovers()
    assert sorted(p.name for p in records.dir.iterdir()) == [".names.lock", kept.id]


def test_the_supervisor_lock_is_held_once(records):
    made = records.create(template())
    assert not records.supervised(made.id)
    lock = records.supervise(made.id)
    try:
        assert records.supervised(made.id)
        with pytest.raises(ContainerError, match="already running"):
            records.supervise(made.id)
        assert not records.wait_unsupervised(made.id, 0.05)
    finally:
        lock.release()
    lock.release()  # a second release is harmless
    assert not records.supervised(made.id)
    assert records.wait_unsupervised(made.id, 0.05)


def test_a_removed_container_is_not_supervised(records):
    made = records.create(template())
    records.remove(made.id)
    assert not records.supervised(made.id)


def test_status_trusts_the_lock_and_the_pid_start_time_over_the_record(records):
    made = records.create(template())
    assert records.status(made) == "created"
    assert records.status(replace(made, state="exited")) == "exited"
    mine = replace(made, state="running", pid=os.getpid(),
                   pid_start=process_start_time(os.getpid()))
    assert records.status(mine) == "dead"  # nobody holds its lock: its supervisor died
    with records.supervise(made.id):
        assert records.status(mine) == "running"
        assert records.status(replace(mine, pid_start=mine.pid_start + 1)) == "dead"  # recycled
        assert records.status(replace(mine, pid=None)) == "dead"


def test_uses_lists_the_containers_of_one_image(records):
    web = records.create(template(name="web"))
    records.create(template(name="db", manifest=OTHER))
    assert records.uses(MANIFEST.digest) == [web]
    assert records.uses(Digest.of(b"nothing")) == []


def test_scrub_scaffolds_removes_only_the_sandbox_leftovers(tmp_path):
    (tmp_path / ".minibuild-scaffold-1" / "etc").mkdir(parents=True)
    (tmp_path / "upper").mkdir()
    scrub_scaffolds(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["upper"]
