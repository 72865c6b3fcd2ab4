"""--chmod values: octal and chmod(1) symbolic modes, as BuildKit's frontend reads them."""

from __future__ import annotations

import pytest

from minibuild.dockerfile.filemode import parse_mode
from minibuild.errors import BuildError


# BuildKit's testChmodNonOctal (dockerfile_copy_test.go): a 0666 file and a 0124 dir.
@pytest.mark.parametrize(("spec", "mode", "is_dir", "expected"), [
    ("go-w", 0o666, False, 0o644),
    ("u=rw,g=r,o=r", 0o666, False, 0o644),
    ("a+X", 0o666, False, 0o666),
    ("go-w", 0o124, True, 0o104),
    ("u+rw,g+r,o-x,o+w", 0o124, True, 0o766),
    ("a+X", 0o124, True, 0o135),
    # The reference's examples (COPY --chmod): +x, u=rwX,go=rX (dirs 755, files 644 unless
    # already executable), g=u.
    ("+x", 0o644, False, 0o755),
    ("u=rwX,go=rX", 0o600, False, 0o644),
    ("u=rwX,go=rX", 0o700, False, 0o755),
    ("u=rwX,go=rX", 0o700, True, 0o755),
    ("g=u", 0o640, False, 0o660),
    ("u+x,g-w", 0o664, False, 0o744),
    ("o=", 0o777, False, 0o770),
    ("u+s", 0o755, False, 0o4755),
    ("o+s", 0o755, False, 0o755),  # setmode(3): set-id bits ignored for `o` alone
    ("+t", 0o755, True, 0o1755),
    ("0750", 0o644, True, 0o750),
])
def test_apply(spec, mode, is_dir, expected) -> None:
    assert parse_mode(spec).apply(mode, is_dir) == expected


def test_dirs_created_on_the_way() -> None:
    # BuildKit's testCopyChmod: `COPY --chmod=777 foo /parent/foo` makes /parent 0777.
    assert parse_mode("777").dir_mode == 0o777
    assert parse_mode("u+x").dir_mode == 0o755


@pytest.mark.parametrize("spec", ["64a", "10000", "8"])
def test_bad_octal_has_buildkits_message(spec) -> None:
    # BuildKit's testCopyInvalidChmod
    with pytest.raises(BuildError, match=f"invalid chmod parameter: '{spec}'. it should be "
                                         "octal string and between 0 and 07777"):
        parse_mode(spec)


@pytest.mark.parametrize("spec", ["", "z+x", "u", "u+x,", "+q"])
def test_bad_symbolic(spec) -> None:
    with pytest.raises(BuildError, match="invalid chmod parameter"):
        parse_mode(spec)
