"""Landlock: a step's processes may execute only files beneath its root.

The only executables outside the root that a step can name are the host interpreter's, through
the magic links /proc/self/exe and /proc/1/exe of the Python processes in its pid namespace
(runc's CVE-2019-5736 pattern). Landlock checks every execve in the kernel, at the moment the
file is opened (interpreters of scripts and binfmt_misc included), so no path swapped in by a
concurrent process can slip past it. Only execution is restricted (REFER is handled only to be
granted beneath the root): reads, writes, renames and everything else stay as they were. memfd files live on an internal mount that Landlock never restricts, so
`fexecve` of a memfd still works, as in docker. Needs Linux 5.19 with Landlock enabled; without
it (or with ABI 1, see `available`), the identity check in process.py is what remains.
"""

from __future__ import annotations

import ctypes
import os

from minibuild.sandbox import linux

# Landlock's syscall numbers are the same on every architecture (after 424: unified).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_ACCESS_FS_EXECUTE = 1
# Reparenting (rename or link into another directory) is denied by every ruleset unless REFER is
# handled and granted (ABI 2+): without it apt's and dpkg's rename(2) fail with EXDEV.
_ACCESS_FS_REFER = 1 << 13
_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def available() -> bool:
    """Whether the kernel has Landlock enabled with ABI 2 or later (5.19+): ABI 1 cannot grant
    REFER, so it would break every rename into another directory."""
    try:
        return linux.syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION) >= 2
    except OSError:  # ENOSYS: too old; EOPNOTSUPP: built but not enabled at boot
        return False


def execute_only_beneath(root: str) -> None:
    """From now on this process and its children may execve only files beneath `root`.

    Needs no_new_privs or CAP_SYS_ADMIN; raises OSError. Safe in a forked child.
    """
    rights = _ACCESS_FS_EXECUTE | _ACCESS_FS_REFER
    attr = _RulesetAttr(rights)
    ruleset = linux.syscall(_CREATE_RULESET, ctypes.addressof(attr), ctypes.sizeof(attr), 0)
    try:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            beneath = _PathBeneathAttr(rights, fd)
            linux.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.addressof(beneath), 0)
        finally:
            os.close(fd)
        linux.syscall(_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)
