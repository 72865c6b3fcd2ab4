"""suggest.py: the nearest known name to a mistyped one, as BuildKit's util/suggest picks it."""

from __future__ import annotations

from minibuild.dockerfile.suggest import closest, did_you_mean, distance, unknown_flag


def test_distance_is_levenshtein():
    assert distance("", "abc") == 3
    assert distance("kitten", "sitting") == 3
    assert distance("build", "buidl") == 2
    assert distance("same", "same") == 0


def test_only_options_closer_than_three_are_offered():
    assert closest("buidl", ["final", "build"]) == "build"
    assert closest("frm", ["from", "chown"]) == "from"
    assert closest("xyz", ["from", "chown"]) is None


def test_an_exact_option_gets_no_suggestion():
    # the name is known: the error is about something else
    assert closest("from", ["form", "from"]) is None


def test_the_first_of_equally_near_options_wins():
    assert closest("ab", ["ax", "ay"]) == "ax"


def test_messages():
    assert did_you_mean("buidl", ["build"]) == " (did you mean build?)"
    assert did_you_mean("zzzzzz", ["build"]) == ""
    assert unknown_flag("COPY", "form", {"from", "chown"}) == \
        "unknown flag --form for COPY (did you mean --from?)"
    assert unknown_flag("RUN", "bogus", {"mount"}) == "unknown flag --bogus for RUN"
