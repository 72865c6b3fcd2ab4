"""Issue 15: Dockerfile behaviour as the Dockerfile reference describes it (moby/buildkit
frontend/dockerfile/docs/reference.md), mostly written from the reference's own examples.

Where BuildKit does something the reference does not say, the test says which one we follow.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import Minibuild, write_context

pytestmark = pytest.mark.integration


def history(mb: Minibuild, ref: str) -> list[dict]:
    """History entries, oldest first."""
    return list(reversed(json.loads(mb.run("history", "--format", "json", ref).stdout)))


def config(mb: Minibuild, ref: str) -> dict:
    return json.loads(mb.run("inspect", ref).stdout)[0]["Config"]


def cat(mb: Minibuild, ref: str, path: str) -> str:
    """A file of an image, read by a container of it."""
    return mb.run("run", "--rm", ref, "cat", path).stdout


def last_note(proc) -> str:
    """The progress note of the last step (`done in 0.02s CACHED`)."""
    return [line for line in proc.stderr.splitlines() if line.startswith("  done in")][-1]


def host_platform() -> tuple[str, str, str]:
    from minibuild.dockerfile.buildargs import format_platform, host_platform

    os_name, arch, variant = host_platform()
    return format_platform(os_name, arch, variant), arch, variant


# -- built-in and automatic build args --------------------------------------------------------


def test_automatic_platform_args_after_arg_in_a_stage_and_in_the_global_scope(mb, tmp_path):
    platform, arch, variant = host_platform()
    # the reference's example, plus the COPY $TARGETPLATFORM/app (it became /app)
    ctx = write_context(tmp_path / "ctx", """ARG IMAGE=base:1.0
FROM --platform=$BUILDPLATFORM $IMAGE AS build
ARG TARGETPLATFORM
RUN echo "I'm building for $TARGETPLATFORM" > /for
ARG TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT TARGETSTAGE
RUN echo "$TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT] $TARGETSTAGE" > /all
COPY $TARGETPLATFORM/app /usr/bin/
RUN echo "[$BUILDKIT_SANDBOX_HOSTNAME] [$SOURCE_DATE_EPOCH]" > /unset
""", {f"{platform}/app": "the app\n"})
    out = mb.build(ctx, "-t", "plat:1")
    assert "not consumed" not in out.stderr
    assert cat(mb, "plat:1", "/for") == f"I'm building for {platform}\n"
    assert cat(mb, "plat:1", "/all") == (f"linux {arch} [{variant}] {platform} linux {arch} "
                                         f"[{variant}] build\n")
    assert cat(mb, "plat:1", "/usr/bin/app") == "the app\n"
    assert cat(mb, "plat:1", "/unset") == "[] []\n"  # not args of the stage without ARG


def test_from_platform_elsewhere_is_refused_clearly(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM --platform=linux/s390x base:1.0\n")
    if host_platform()[1] == "s390x":
        pytest.skip("this machine is the other platform")
    proc = mb.build(ctx, check=False)
    assert proc.returncode == 1
    assert "Buildfile:1:1: FROM --platform=linux/s390x: minibuild builds only for this machine" in proc.stderr


def test_predefined_proxy_args_reach_run_without_arg_and_stay_out_of_history_and_cache(mb, tmp_path):
    # the reference's "Predefined ARGs" example, built with two proxies
    ctx = write_context(tmp_path / "ctx", 'FROM base:1.0\nRUN echo "Hello World"; env > /env\n')
    lon = mb.build(ctx, "--build-arg", "HTTP_PROXY=http://user:pass@proxy.lon.example.com",
                   "--build-arg", "no_proxy=localhost", "-t", "proxy:lon")
    assert "not consumed" not in lon.stderr
    env = cat(mb, "proxy:lon", "/env")
    assert "HTTP_PROXY=http://user:pass@proxy.lon.example.com" in env and "no_proxy=localhost" in env
    assert "proxy" not in json.dumps(history(mb, "proxy:lon"))
    assert "proxy" not in json.dumps(config(mb, "proxy:lon"))
    sfo = mb.build(ctx, "--build-arg", "HTTP_PROXY=http://user:pass@proxy.sfo.example.com",
                   "-t", "proxy:sfo")
    assert "CACHED" in last_note(sfo)  # "does not result in a cache miss"
    # declared with ARG, it is preserved in the history and a change is a cache miss
    write_context(ctx, 'FROM base:1.0\nARG HTTP_PROXY\nRUN echo "Hello World"\n')
    mb.build(ctx, "--build-arg", "HTTP_PROXY=http://a.example.com", "-t", "proxy:arg")
    changed = mb.build(ctx, "--build-arg", "HTTP_PROXY=http://b.example.com", "-t", "proxy:arg")
    assert "CACHED" not in last_note(changed)
    assert history(mb, "proxy:arg")[-1]["created_by"] == \
        'RUN |1 HTTP_PROXY=http://b.example.com /bin/sh -c echo "Hello World"'


def test_source_date_epoch_build_arg_and_sandbox_hostname(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nARG SOURCE_DATE_EPOCH\n"
                                          "RUN hostname > /h; echo $SOURCE_DATE_EPOCH > /e\n")
    digests = []
    for store in ("one", "two"):  # same inputs, same bytes: two stores, one digest
        other = Minibuild(tmp_path / store)
        subprocess.run(["cp", "-a", str(mb.root), str(other.root)], check=True)
        digests.append(other.build(ctx, "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
                                   "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=box",
                                   "-t", "epoch:1").stdout.strip())
    assert digests[0] == digests[1]
    mb.build(ctx, "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
             "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=box", "-t", "epoch:1")
    info = json.loads(mb.run("inspect", "epoch:1").stdout)[0]
    assert info["Created"] == "2023-11-14T22:13:20Z"
    assert {h["created"] for h in info["History"][-2:]} == {"2023-11-14T22:13:20Z"}
    assert cat(mb, "epoch:1", "/h") == "box\n" and cat(mb, "epoch:1", "/e") == "1700000000\n"


def test_a_bare_build_arg_takes_the_environment_or_keeps_the_default(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nARG V=default\nRUN echo $V > /v\n")
    mb.build(ctx, "--build-arg", "V", "-t", "bare:1")  # V unset in the environment
    assert cat(mb, "bare:1", "/v") == "default\n"
    mb.run("build", "--progress", "plain", "--build-arg", "V", "-t", "bare:2", str(ctx),
           env={"V": "from-env"})
    assert cat(mb, "bare:2", "/v") == "from-env\n"


def test_history_has_arg_entries_and_buildkit_s_run_prefix(mb, tmp_path):
    # the reference's "Impact on build caching" example: the ARG line is no cache miss,
    # the RUN that uses it is; `docker history` shows `|1 CONT_IMG_VER=...`
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nARG CONT_IMG_VER\nRUN echo hello\n")
    mb.build(ctx, "--build-arg", "CONT_IMG_VER=v1", "-t", "hist:1")
    entries = history(mb, "hist:1")[-2:]
    assert [(e["created_by"], e["empty_layer"]) for e in entries] == [
        ("ARG CONT_IMG_VER=v1", True), ("RUN |1 CONT_IMG_VER=v1 /bin/sh -c echo hello", False)]
    again = mb.build(ctx, "--build-arg", "CONT_IMG_VER=v2", "-t", "hist:2")
    assert "CACHED" not in last_note(again)
    assert history(mb, "hist:2")[-1]["created_by"] == "RUN |1 CONT_IMG_VER=v2 /bin/sh -c echo hello"


# -- word expansion and heredocs ----------------------------------------------------------------


def test_pattern_modifiers_from_the_reference(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
ENV str=foobarbaz
ENV a=${str#f*b} b=${str##f*b} c=${str%b*} d=${str%%b*} e=${str/ba/fo} f=${str//ba/fo}
WORKDIR /opt/${str%%bar*}
""")
    mb.build(ctx, "-t", "pat:1")
    env = dict(e.split("=", 1) for e in config(mb, "pat:1")["Env"])
    assert [env[k] for k in "abcdef"] == ["arbaz", "az", "foobar", "foo", "fooforbaz", "fooforfoz"]
    assert config(mb, "pat:1")["WorkingDir"] == "/opt/foo"


def test_every_key_of_a_mount_spec_expands(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
ARG TYPE=tmpfs SIZE=64k WHERE=/scratch
RUN --mount=type=$TYPE,target=$WHERE,size=$SIZE grep " /scratch tmpfs .*size=64k" /proc/mounts > /found
""")
    mb.build(ctx, "-t", "mnt:1")
    assert "/scratch tmpfs" in cat(mb, "mnt:1", "/found")


def test_copy_heredocs_expand_unless_the_delimiter_is_quoted(mb, tmp_path):
    # the example and the reference's Here-Documents examples
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nARG name=world FOO=bar\n"
                        "COPY <<EOF /c\nHello ${name}!\nEOF\n"
                        "COPY <<-EOT /script.sh\n\techo \"hello ${FOO}\"\n"
                        "\tprintf 'a\\tb' \\$FOO\n\tEOT\n"
                        "COPY <<-\"EOT\" /raw.sh\n\techo \"hello ${FOO}\"\nEOT\n")
    mb.build(ctx, "-t", "hd:1")
    assert cat(mb, "hd:1", "/c") == "Hello world!\n"
    # POSIX (the reference's "regular here-doc rules"): \t stays, \$ is a dollar. BuildKit's
    # lexer would drop the backslash of \t too; the reference wins.
    assert cat(mb, "hd:1", "/script.sh") == "echo \"hello bar\"\nprintf 'a\\tb' $FOO\n"
    assert cat(mb, "hd:1", "/raw.sh") == 'echo "hello ${FOO}"\n'


def test_a_shebang_heredoc_is_run_by_its_interpreter(mb, tmp_path):
    # the reference: "shebang header can be used to define an interpreter" (awk here, not sh)
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN <<EOT
#!/bin/awk -f
BEGIN { print "awk ran " ARGV[0] > "/by-awk"; x = 1 + 1; print x > "/two" }
EOT
RUN ls /dev/pipes > /left 2>&1 || echo gone > /left
""")
    mb.build(ctx, "-t", "shebang:1")
    assert cat(mb, "shebang:1", "/by-awk") == "awk ran awk\n"
    assert cat(mb, "shebang:1", "/two") == "2\n"
    assert cat(mb, "shebang:1", "/left") == "gone\n"  # only that RUN's sandbox had it
    assert history(mb, "shebang:1")[-2]["created_by"] == "RUN /bin/sh -c /dev/pipes/EOT"


def test_onbuild_run_heredoc_keeps_its_body(mb, tmp_path):
    parent = write_context(tmp_path / "parent", "FROM base:1.0\nONBUILD RUN <<EOF\n"
                                                "echo from the trigger > /triggered\nEOF\n")
    mb.build(parent, "-t", "parent:1")
    assert config(mb, "parent:1")["OnBuild"] == ["RUN <<EOF\necho from the trigger > /triggered\nEOF"]
    child = write_context(tmp_path / "child", "FROM parent:1\nRUN true\n")
    mb.build(child, "-t", "child:1")
    assert cat(mb, "child:1", "/triggered") == "from the trigger\n"


# -- parser ---------------------------------------------------------------------------------------


def test_trailing_escaped_backslash_is_not_a_continuation(mb, tmp_path):
    # BuildKit's parser/testfiles/trailing-backslash (docker/for-win#5254)
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0

ENV A path
ENV B another\\\\path
ENV C trailing\\\\backslash\\\\
ENV D This should not be appended to C
ENV E hello\\
\\
world
ENV F hello\\
 \\
world
ENV G hello \\
\\
world
""")
    mb.build(ctx, "-t", "bs:1")
    env = dict(e.split("=", 1) for e in config(mb, "bs:1")["Env"])
    assert {k: env[k] for k in "ABCDEFG"} == {
        "A": "path", "B": "another\\path", "C": "trailing\\backslash\\",
        "D": "This should not be appended to C", "E": "helloworld", "F": "hello world",
        "G": "hello world"}


def test_double_dash_ends_the_flags(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\nCOPY -- foo /tmp/\nCOPY -- --x /tmp/\n",
                        {"foo": "foo\n", "--x": "dash\n"})
    mb.build(ctx, "-t", "dd:1")
    assert cat(mb, "dd:1", "/tmp/foo") == "foo\n" and cat(mb, "dd:1", "/tmp/--x") == "dash\n"


@pytest.mark.parametrize("buildfile,message", [
    ("FROM base:1.0\nCOPY --form=x a /a\n", "Buildfile:2:1: unknown flag --form for COPY (did you mean --from?)"),
    ("FROM base:1.0\nRUN --mont=type=tmpfs,target=/t true\n", "unknown flag --mont for RUN (did you mean --mount?)"),
    ("FROM base:1.0 AS build\nFROM base:1.0\nCOPY --from=biuld /a /a\n", "COPY biuld: image not found in the store (did you mean build?)"),
    ("FROM base:1.0 AS build\nFROM buidl\n", "FROM buidl: image not found in the store (did you mean build?)"),
    ("FROM base:1.0\nRUN echo one \\\n  && exit 4\n", "Buildfile:2-3: step 2/2"),
    ("FROM base:1.0\nRUN <<EOF\nexit 5\nEOF\n", "Buildfile:2-4: step 2/2"),
])
def test_did_you_mean_and_errors_over_several_lines(mb, tmp_path, buildfile, message):
    ctx = write_context(tmp_path / "ctx", buildfile, {"a": "a\n"})
    proc = mb.build(ctx, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_did_you_mean_for_a_target(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0 AS build\nFROM base:1.0\n")
    proc = mb.build(ctx, "--target", "biuld", check=False)
    assert "target stage 'biuld' could not be found (did you mean build?)" in proc.stderr


# -- images, stages and contexts -----------------------------------------------------------------


def test_from_scratch_has_docker_s_default_path_and_workdir(empty_mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "FROM scratch\nCOPY a /a\n", {"a": "a\n"})
    empty_mb.build(ctx, "-t", "scratch:1")
    cfg = config(empty_mb, "scratch:1")
    assert cfg["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert cfg["WorkingDir"] == "/"


def test_the_buildfile_s_own_dockerignore_wins(mb, tmp_path):
    ctx = write_context(tmp_path / "ctx", "", {"x": "x\n", "y": "y\n", ".dockerignore": "x\n"})
    (ctx / "Buildfile").unlink()
    (ctx / "Dockerfile").write_text("FROM base:1.0\nCOPY . /ctx/\n")
    mb.build(ctx, "-t", "ign:1")  # no Dockerfile.dockerignore yet: .dockerignore rules
    assert mb.run("run", "--rm", "ign:1", "ls", "/ctx").stdout.split() == ["Dockerfile", "y"]
    (ctx / "Dockerfile.dockerignore").write_text("y\n")
    mb.build(ctx, "-t", "ign:2")  # the memo must notice the new file
    assert mb.run("run", "--rm", "ign:2", "ls", "-A", "/ctx").stdout.split() == [
        ".dockerignore", "Dockerfile", "Dockerfile.dockerignore", "x"]


@pytest.mark.parametrize("name", ["dockerfile", "Containerfile"])
def test_lowercase_dockerfile_and_containerfile_are_found(mb, tmp_path, name):
    ctx = write_context(tmp_path / "ctx", "")
    (ctx / "Buildfile").unlink()
    (ctx / name).write_text(f"FROM base:1.0\nRUN echo {name} > /which\n")
    mb.build(ctx, "-t", "found:1")
    assert cat(mb, "found:1", "/which") == f"{name}\n"


def test_no_buildfile_names_every_name_tried(mb, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = mb.build(tmp_path / "empty", check=False)
    assert proc.returncode == 1
    assert "(tried Buildfile, Dockerfile, dockerfile, Containerfile)" in proc.stderr


def _capabilities(text: str) -> int:
    return int(re.search(r"CapEff:\s*([0-9a-f]+)", text).group(1), 16)


def test_run_security_insecure_with_the_entitlement_only(mb, tmp_path):
    # the reference's "check entitlements" example
    ctx = write_context(tmp_path / "ctx", "FROM base:1.0\n"
                        "RUN --security=insecure grep -E 'CapEff|Seccomp:' /proc/self/status > /insecure\n"
                        "RUN --security=sandbox grep -E 'CapEff|Seccomp:' /proc/self/status > /sandbox\n"
                        "RUN --security=insecure ls /dev > /dev-insecure\n")
    proc = mb.build(ctx, check=False)
    assert proc.returncode == 1
    assert "RUN --security=insecure is not allowed: start the build with `--allow security.insecure`" in proc.stderr
    mb.build(ctx, "--allow", "security.insecure", "--allow", "network.host", "-t", "sec:1")
    insecure = _capabilities(cat(mb, "sec:1", "/insecure"))
    sandbox = _capabilities(cat(mb, "sec:1", "/sandbox"))
    assert insecure & (1 << 21)  # CAP_SYS_ADMIN: "equivalent to docker run --privileged"
    assert not sandbox & (1 << 21) and sandbox < insecure
    # and, as --privileged, no seccomp filter (mode 0); a sandboxed step has one (mode 2)
    assert re.search(r"Seccomp:\s*0", cat(mb, "sec:1", "/insecure"))
    assert re.search(r"Seccomp:\s*2", cat(mb, "sec:1", "/sandbox"))
    # README's difference: /dev stays the sandbox's minimal one (--privileged: the host's)
    assert "null" in cat(mb, "sec:1", "/dev-insecure") and "kmsg" not in cat(mb, "sec:1", "/dev-insecure")


def test_workdir_is_created_owned_by_the_current_user(mb, tmp_path):
    """BuildKit's dispatchWorkdir makes the dir with llb.Mkdir(wd, 0755, WithParents,
    WithUser(USER)): the dirs it creates, parents too, are 0755 and the user's (a number is
    uid and gid both, a name its passwd uid and primary gid); a dir that exists is left alone.
    The reference says only "If the WORKDIR doesn't exist, it will be created"; we follow
    BuildKit, as `docker build` does."""
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN mkdir -m 0700 /kept
USER daemon
WORKDIR /srv/app/data
WORKDIR /kept/sub
USER 1234
WORKDIR /numeric
USER root
WORKDIR /rooted
RUN stat -c '%n %u:%g %a' /srv /srv/app /srv/app/data /kept /kept/sub /numeric /rooted > /owners
""")
    mb.build(ctx, "-t", "wd:1")
    assert cat(mb, "wd:1", "/owners").splitlines() == [
        "/srv 1:1 755", "/srv/app 1:1 755", "/srv/app/data 1:1 755",
        "/kept 0:0 700", "/kept/sub 1:1 755", "/numeric 1234:1234 755", "/rooted 0:0 755"]


def test_onbuild_triggers_copy_and_mount_from_stages_of_the_child_buildfile(mb, tmp_path):
    """The reference's ONBUILD "Copy or mount from stage, image, or context" example: "If the
    source of `from` is a build stage, the stage must be defined in the Dockerfile where ONBUILD
    gets triggered". BuildKit (initOnBuildTriggers) makes the named stage a dependency of the
    stage whose FROM pulls the triggers in, even when nothing else needs it (here `build` and
    `config`); as for any COPY --from, it must come before that stage (convert.go: "it needs
    to be defined before current stage")."""
    parent = write_context(tmp_path / "parent", """FROM base:1.0 AS baseimage
ONBUILD COPY --from=build /usr/bin/app /app
ONBUILD RUN --mount=from=config,target=/opt/appconfig cat /opt/appconfig/conf > /conf
""")
    mb.build(parent, "-t", "onb:1")
    child = write_context(tmp_path / "child", """FROM base:1.0 AS config
RUN mkdir -p /conf.d && echo configured > /conf
FROM base:1.0 AS build
RUN mkdir -p /usr/bin && echo the app > /usr/bin/app
FROM onb:1 AS app
RUN cat /app /conf > /both
""")
    mb.build(child, "--target", "app", "-t", "child:1")
    assert cat(mb, "child:1", "/both") == "the app\nconfigured\n"
    assert config(mb, "child:1").get("OnBuild") in (None, [])  # not inherited further


def test_an_onbuild_trigger_naming_its_own_or_a_later_stage_is_a_clear_error(mb, tmp_path):
    """BuildKit refuses a later stage ("needs to be defined before current stage"); its own
    stage too here (BuildKit would read the stage's state so far)."""
    parent = write_context(tmp_path / "parent", "FROM base:1.0\nONBUILD COPY --from=app /a /a\n")
    mb.build(parent, "-t", "onb:2")
    for text in ("FROM onb:2 AS app\n", "FROM onb:2 AS first\nFROM base:1.0 AS app\n"):
        child = write_context(tmp_path / "child", text)
        proc = mb.build(child, "--target", "first" if "first" in text else "app", check=False)
        assert proc.returncode == 1
        assert "Buildfile:1:1: COPY --from=app: a stage can only copy from an earlier stage" \
            in proc.stderr, proc.stderr


EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
EMPTY_GZIP_DIGEST = "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"


def test_a_step_that_changes_no_file_adds_buildkit_s_empty_layer(mb, tmp_path):
    """The reference says nothing; BuildKit gives every RUN, COPY/ADD and WORKDIR (but
    `WORKDIR /`: convert.go's dispatchWorkdir commits it with withLayer=false) a layer, and an
    unchanged snapshot diffs to Go's 1024-byte empty tar (its testExportedHistory: `RUN ls` is
    no empty_layer). Same diff_ids as docker build, the gzip blob the one BuildKit images share;
    `history` shows such a step as 0B, and the image saves, loads and unpacks (umoci) with the
    one blob listed twice."""
    from tests.integration.test_build import umoci_unpack

    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN true
WORKDIR /
WORKDIR /tmp
RUN echo data > /data
RUN --mount=type=cache,target=/cache echo only-the-cache > /cache/f
""")
    mb.build(ctx, "-t", "empty:1")
    base = inspect_image(mb, "base:1.0")
    shown = inspect_image(mb, "empty:1")
    added = shown["RootFS"]["Layers"][len(base["RootFS"]["Layers"]):]
    assert added[0] == added[1] == added[3] == EMPTY_TAR_DIFF_ID and added[2] != EMPTY_TAR_DIFF_ID
    layers = shown["Manifest"]["layers"][len(base["RootFS"]["Layers"]):]
    assert [l["digest"] for l in layers if l["size"] == 32] == [EMPTY_GZIP_DIGEST] * 3
    entries = history(mb, "empty:1")[-5:]
    assert [(e["created_by"].split(" #")[0][:12], e["empty_layer"], e["size"]) for e in entries] == [
        ("RUN /bin/sh ", False, 0), ("WORKDIR /", True, 0), ("WORKDIR /tmp", False, 0),
        ("RUN /bin/sh ", False, 5), ("RUN /bin/sh ", False, 0)]
    rootfs = umoci_unpack(mb, "empty:1", tmp_path)
    assert (rootfs / "data").read_text() == "data\n"
    archive = tmp_path / "empty.tar"
    mb.run("save", "-o", str(archive), "empty:1")
    mb.run("rmi", "empty:1")
    mb.run("load", "-i", str(archive))
    assert inspect_image(mb, "empty:1")["RootFS"]["Layers"][-4:] == added


def inspect_image(mb: Minibuild, ref: str) -> dict:
    return json.loads(mb.run("inspect", ref).stdout)[0]


def test_run_tmpfs_mount_on_dev_shm_replaces_the_sandbox_s(mb, tmp_path):
    """BuildKit lets a RUN's mount take a default mount's place (executor/oci dedupMounts):
    `--mount=type=tmpfs,target=/dev/shm,size=...` gives the step its own /dev/shm (tmpfs
    options: nosuid and size, so programs there may run); the next step has the default again."""
    ctx = write_context(tmp_path / "ctx", """FROM base:1.0
RUN --mount=type=tmpfs,target=/dev/shm,size=1m sh -c 'grep " /dev/shm " /proc/mounts > /mounted; df -k /dev/shm | tail -1 > /df; echo x > /dev/shm/f; stat -c %a /dev/shm > /mode'
RUN grep " /dev/shm " /proc/mounts > /default
""")
    mb.build(ctx, "-t", "shm:1")
    mounted = cat(mb, "shm:1", "/mounted")
    assert mounted.count("\\n") == 0 and len(mounted.splitlines()) == 1  # one /dev/shm, not two
    assert "size=1024k" in mounted and "noexec" not in mounted
    assert cat(mb, "shm:1", "/df").split()[1] == "1024" and cat(mb, "shm:1", "/mode") == "1777\n"
    assert "size=65536k" in cat(mb, "shm:1", "/default")
    bad = write_context(tmp_path / "bad", "FROM base:1.0\nRUN --mount=type=tmpfs,target=/dev/other true\n")
    proc = mb.build(bad, check=False)
    assert "cannot mount on /dev/other: the sandbox mounts /proc and /dev itself" in proc.stderr
