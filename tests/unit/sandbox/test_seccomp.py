"""Compiling seccomp profiles: moby's filtering, runc's rule forms, and the loaded filter's
answers (checked in a forked child under no_new_privs: no root needed)."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import struct

import pytest

from minibuild.errors import SandboxError
from minibuild.sandbox import linux, seccomp
from minibuild.sandbox.process import STEP_CAPABILITIES

try:
    import pyseccomp  # noqa: F401
    HAVE_LIBSECCOMP = True
except (ImportError, OSError, RuntimeError):
    HAVE_LIBSECCOMP = False

needs_libseccomp = pytest.mark.skipif(not HAVE_LIBSECCOMP, reason="needs pyseccomp + libseccomp2")
x86_64 = pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers of x86_64")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_KEYCTL, SYS_CLONE3, SYS_PERSONALITY, SYS_GETPRIORITY = 250, 435, 135, 140


def _host(caps=(), arch="amd64", kernel=(6, 1)) -> seccomp._Host:
    return seccomp._Host(arch, frozenset(caps), kernel)


# -- moby's includes / excludes -------------------------------------------------------------------


def test_includes_need_every_cap_arch_and_kernel():
    rule = {"includes": {"caps": ["CAP_SYS_ADMIN"]}}
    assert not seccomp.applies(rule, _host())
    assert seccomp.applies(rule, _host({"CAP_SYS_ADMIN"}))
    assert seccomp.applies({"includes": {"arches": ["amd64", "x32"]}}, _host())
    assert not seccomp.applies({"includes": {"arches": ["arm64"]}}, _host())
    assert seccomp.applies({"includes": {"minKernel": "4.8"}}, _host())
    assert not seccomp.applies({"includes": {"minKernel": "6.2"}}, _host())


def test_excludes_drop_on_any_match():
    rule = {"excludes": {"caps": ["CAP_SYS_ADMIN"]}}
    assert seccomp.applies(rule, _host())
    assert not seccomp.applies(rule, _host({"CAP_SYS_ADMIN"}))
    assert not seccomp.applies({"excludes": {"arches": ["amd64"]}}, _host())
    assert not seccomp.applies({"excludes": {"minKernel": "5.0"}}, _host())


def test_the_step_capabilities_have_their_names():
    names = {seccomp.CAPABILITY_NAMES[c] for c in STEP_CAPABILITIES}
    assert "CAP_CHOWN" in names and "CAP_SETFCAP" in names and "CAP_SYS_ADMIN" not in names


def test_the_default_profile_is_mobys():
    profile = json.loads(seccomp.default_profile())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    allowed = {n for rule in profile["syscalls"] if not rule.get("includes")
               for n in rule["names"]}
    assert "read" in allowed and "keyctl" not in allowed and "add_key" not in allowed


# -- compiling, and what the loaded filter answers ------------------------------------------------


def _errnos_under(program: seccomp.Program, calls) -> list[int]:
    """In a forked child: no_new_privs, load, make each (nr, *args) call; 0 or its errno."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            linux.no_new_privs()
            program.load()
            results = []
            for nr, *args in calls:
                ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
                results.append(0 if ret >= 0 else ctypes.get_errno())
            os.write(write_end, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 4096)
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(data)


@needs_libseccomp
@x86_64
def test_default_profile_refuses_keyrings_and_answers_with_its_errnos():
    program = seccomp.compile_profile(seccomp.default_profile(), STEP_CAPABILITIES)
    assert len(program.code) % 8 == 0 and program.syscall_nr == 317
    results = _errnos_under(program, [(SYS_KEYCTL, 1, 0), (SYS_CLONE3, 0, 0),
                                      (SYS_PERSONALITY, 0x0040000), (SYS_PERSONALITY, 0xFFFFFFFF),
                                      (39,)])  # getpid
    assert results == [1, 38, 1, 0, 0]  # EPERM, ENOSYS (glibc falls back to clone), ok


@needs_libseccomp
@x86_64
def test_syscalls_newer_than_the_profile_get_enosys():
    program = seccomp.compile_profile(seccomp.default_profile(), STEP_CAPABILITIES)
    assert _errnos_under(program, [(1000,)]) == [38]  # runc's patch: a C library falls back


def _profile(*rules, default="SCMP_ACT_ALLOW", **extra) -> str:
    return json.dumps({"defaultAction": default, "syscalls": list(rules), **extra})


@needs_libseccomp
@x86_64
def test_no_enosys_stub_when_the_default_lets_new_syscalls_through():
    rule = {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    program = seccomp.compile_profile(_profile(rule), ())  # default: allow
    # getrandom (318) is numbered above keyctl (250), the highest the profile names
    assert _errnos_under(program, [(SYS_KEYCTL, 1, 0), (318, 0, 0, 0)]) == [13, 0]


@needs_libseccomp
@x86_64
def test_masked_eq_and_errno_ret():
    rule = {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 1, "value": 0xFF00, "valueTwo": 0x1200, "op": "SCMP_CMP_MASKED_EQ"}]}
    program = seccomp.compile_profile(_profile(rule), ())
    results = _errnos_under(program, [(SYS_GETPRIORITY, 0, 0x1234), (SYS_GETPRIORITY, 0, 0)])
    assert results == [13, 0]


@needs_libseccomp
@x86_64
def test_two_tests_of_one_argument_are_two_rules():
    rule = {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"},
                     {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}
    program = seccomp.compile_profile(_profile(rule), ())
    results = _errnos_under(program, [(SYS_GETPRIORITY, 0, 7), (SYS_GETPRIORITY, 0, 9),
                                      (SYS_GETPRIORITY, 0, 0)])
    assert results == [13, 13, 0]


@needs_libseccomp
@x86_64
def test_rules_for_missing_caps_are_left_out():
    rule = {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "includes": {"caps": ["CAP_SYS_ADMIN"]}}
    assert _errnos_under(seccomp.compile_profile(_profile(rule), ()),
                         [(SYS_GETPRIORITY, 0, 0)]) == [0]
    assert _errnos_under(seccomp.compile_profile(_profile(rule), {21}),
                         [(SYS_GETPRIORITY, 0, 0)]) == [13]


@needs_libseccomp
def test_unknown_names_are_skipped_and_bad_profiles_refused():
    seccomp.compile_profile(_profile({"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}), ())
    for text, words in (("{", "not valid JSON"), ('{"defaultAction": "SCMP_ACT_NOTIFY"}',
                                                  "unsupported action"),
                        (_profile({"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                   "args": [{"index": 0, "op": "SCMP_CMP_ODD"}]}),
                         "unknown operator")):
        with pytest.raises(SandboxError, match=words):
            seccomp.compile_profile(text, ())


def test_enosys_stub_jumps_land_on_the_filter():
    stub = seccomp._enosys_stub(0xC000003E, 450)
    insns = [stub[i:i + 8] for i in range(0, len(stub), 8)]
    assert len(insns) == 6
    codes = [struct.unpack("=HBBI", i) for i in insns]
    assert codes[1] == (0x15, 0, 4, 0xC000003E)  # not x86_64: to instruction 6, the filter
    assert codes[3] == (0x35, 2, 0, 0x40000000)  # x32 numbers: to the filter
    assert codes[4] == (0x25, 0, 1, 450)  # above 450: ENOSYS, else the filter
    assert codes[5] == (0x06, 0, 0, 0x00050000 | 38)
    assert seccomp._enosys_stub(0xC00000B7, -1) == b""
