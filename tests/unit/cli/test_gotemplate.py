"""gotemplate against the examples of docker's "Format command and log output" page, the
inspect and list commands' --format examples, and Go's text/template rules."""

from __future__ import annotations

import pytest

from minibuild.cli.gotemplate import TemplateError, compile

CONTAINER = {
    "Name": "/Web_1", "Args": ["-c", "echo hi"], "Image": "sha256:abc",
    "Config": {"Env": ["A=1", "B=<2>"], "Labels": {"com.example.vendor": "ACME", "a": "b"},
               "Entrypoint": None, "Cmd": ["sh"]},
    "State": {"Running": True, "Status": "running", "Pid": 42, "ExitCode": 0},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"},
                                     "other": {"IPAddress": "10.0.0.3"}}},
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data"}],
    "RepoTags": ["app:1", "app:latest"],
}


def render(text: str, data=CONTAINER) -> str:
    return compile(text).render(data)


@pytest.mark.parametrize("text,expected", [
    # docs.docker.com/engine/cli/formatting: join, json, lower, split, title, upper, println
    ('{{join .Args " , "}}', "-c , echo hi"),
    ("{{json .Mounts}}", '[{"Type":"volume","Name":"data","Destination":"/data"}]'),
    ("{{lower .Name}}", "/web_1"),
    ('{{split .Image ":"}}', "[sha256 abc]"),
    ("{{title .Name}}", "/Web_1"),
    ("{{upper .Name}}", "/WEB_1"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}",
     "172.17.0.2\n10.0.0.3\n"),
    # docker inspect's documented examples
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "172.17.0.210.0.0.3"),
    ("{{json .Config.Env}}", '["A=1","B=\\u003c2\\u003e"]'),  # Go escapes < > &
    ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
    ('{{index .Config.Labels "missing"}}', ""),
    ("{{.State.Running}}", "true"),
    ("{{.State.Pid}}", "42"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Nothing}}", "<no value>"),
    ("{{.RepoTags}}", "[app:1 app:latest]"),
    ("{{.Config.Labels}}", "map[a:b com.example.vendor:ACME]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=b;com.example.vendor=ACME;"),
    ("{{range $i, $t := .RepoTags}}{{$i}}:{{$t}} {{end}}", "0:app:1 1:app:latest "),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ('{{if eq .State.Status "exited"}}x{{else if eq .State.Status "running"}}r{{else}}?{{end}}', "r"),
    ("{{with .State}}{{.Status}}/{{.ExitCode}}{{end}}", "running/0"),
    ("{{with .Config.Nothing}}yes{{else}}no{{end}}", "no"),
    ("{{range .Config.Nothing}}x{{else}}empty{{end}}", "empty"),
    ("{{len .RepoTags}}", "2"),
    ("{{index .RepoTags 1}}", "app:latest"),
    ("{{.Name | upper | lower}}", "/web_1"),
    ('{{printf "%s has pid %d" .Name .State.Pid}}', "/Web_1 has pid 42"),
    ('{{printf "%-8s|%5s|%q" "ab" "cd" "e"}}', 'ab      |   cd|"e"'),
    ("{{$n := .State.Pid}}{{if gt $n 10}}big{{end}}", "big"),
    ("{{if and .State.Running (not .State.ExitCode)}}ok{{end}}", "ok"),
    ("{{if or .Config.Nothing .Name}}{{.Name}}{{end}}", "/Web_1"),
    ('{{if ne .Name "x"}}ne{{end}}', "ne"),
    ("a {{- /* a comment */ -}} b", "ab"),
    ("x\n{{- .State.Pid -}}\ny", "x42y"),
    ('{{range .RepoTags}}{{if eq . "app:latest"}}{{break}}{{end}}{{.}};{{end}}', "app:1;"),
    ('{{range .RepoTags}}{{if eq . "app:1"}}{{continue}}{{end}}{{.}};{{end}}', "app:latest;"),
    ("{{(index .Mounts 0).Name}}", "data"),
    ("{{`raw {{not}}`}}", "raw {{not}}"),
    ("{{$.Name}}{{range .RepoTags}}{{$.State.Pid}}{{end}}", "/Web_14242"),
    ("{{print 1 2 \"a\" 3}}", "1 2a3"),
    ("{{truncate .Name 3}}|{{pad .Name 1 2}}|", "/We| /Web_1  |"),
])
def test_docker_examples(text, expected):
    assert render(text) == expected


def test_json_of_the_whole_object_keeps_its_key_order():
    assert render("{{json .State}}") == '{"Running":true,"Status":"running","Pid":42,"ExitCode":0}'


class Row:
    ID = "abc"

    def Label(self, name):  # noqa: N802 - docker's placeholder
        return {"k": "v"}.get(name, "")


def test_objects_have_fields_and_methods_and_a_typo_is_an_error():
    assert render('{{.ID}} {{.Label "k"}}', Row()) == "abc v"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        render("{{.Nope}}", Row())


@pytest.mark.parametrize("text,message", [
    ("{{.Name", "unclosed action"),
    ("{{if .Name}}x", "no {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{else}}", "unexpected {{else}}"),
    ("{{nosuch .Name}}", 'function "nosuch" not defined'),
    ("{{break}}", "outside {{range}}"),
    ("{{define \"x\"}}{{end}}", "not supported"),
    ("{{$x}}", "undefined variable"),
    ("{{.Name 1}}", "cannot be called"),
    ("{{(.Name}}", "unclosed"),
])
def test_mistakes_are_template_errors(text, message):
    with pytest.raises(TemplateError, match=message):
        render(text)
