from dataclasses import dataclass

from minibuild.layer.accounting import wasted_space


@dataclass
class S:
    files: tuple = ()
    whiteouts: tuple = ()
    opaques: tuple = ()


def test_rm_of_earlier_file_is_wasted_in_the_layer_that_added_it():
    layers = [S(files=(("bin/sh", 900),)), S(files=(("data/big", 50_000_000),)), S(whiteouts=("data/big",))]
    waste = wasted_space(layers)
    assert [w.wasted for w in waste] == [0, 50_000_000, 0]
    hidden = waste[1].paths[0]
    assert (hidden.path, hidden.how, hidden.by_layer) == ("data/big", "deleted", 2)


def test_whiteout_of_a_dir_hides_everything_below_it():
    layers = [S(files=(("d/a", 10), ("d/e/b", 20), ("dd/c", 5))), S(whiteouts=("d",))]
    assert wasted_space(layers)[0].wasted == 30


def test_opaque_dir_hides_lower_children_but_not_its_own():
    layers = [S(files=(("d/a", 10),)), S(files=(("d/new", 3),), opaques=("d",))]
    waste = wasted_space(layers)
    assert [w.wasted for w in waste] == [10, 0]


def test_overwrite_names_the_nearest_layer():
    layers = [S(files=(("f", 7),)), S(files=(("f", 8),)), S(whiteouts=("f",))]
    waste = wasted_space(layers)
    assert waste[0].paths[0].how == "overwritten" and waste[0].paths[0].by_layer == 1
    assert waste[1].paths[0].how == "deleted" and waste[1].paths[0].by_layer == 2
    assert sum(w.wasted for w in waste) == 15


def test_file_replacing_a_dir_hides_its_children():
    layers = [S(files=(("x/y", 4),)), S(files=(("x", 1),))]
    assert wasted_space(layers)[0].wasted == 4
