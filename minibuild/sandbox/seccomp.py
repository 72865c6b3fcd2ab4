"""Docker's seccomp profiles: compiled once in the parent to a BPF program, loaded in X.

The profile format and its filtering (`includes`/`excludes` by capability, architecture and
kernel version; `archMap`) are moby's (profiles/seccomp/seccomp_linux.go); the rules are added
the way runc adds them (libcontainer/seccomp/seccomp_linux.go): unknown syscall names are
skipped, a rule whose action is the default one is dropped, and a rule testing one argument
twice becomes one rule per test. Like runc's patchbpf, a syscall newer than every syscall the
profile names gets ENOSYS rather than the default errno, so that a C library falls back to an
older call. The default profile is moby's default.json, shipped unchanged as package data.

libseccomp (through pyseccomp) is needed only to compile, in the parent. Loading is one
seccomp(2) call on bytes prepared beforehand: safe in a forked child.
"""

from __future__ import annotations

import ctypes
import errno
import json
import platform
import struct
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from minibuild.errors import SandboxError
from minibuild.sandbox import linux

# capability numbers (linux/capability.h) by the names profiles use
CAPABILITY_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# uname's machine -> the architecture names of `includes.arches` (Go's, through moby's table)
_ARCH_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "x86",
               "i686": "x86", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le",
               "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64",
               "loongarch64": "loong64"}

SECCOMP_SET_MODE_FILTER = 1
_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
          "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
_NR_ERROR = -1  # libseccomp's __NR_SCMP_ERROR: a name it does not know
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E


def default_profile() -> str:
    """moby's default profile (package data)."""
    return resources.files(__package__).joinpath("seccomp-default.json").read_text()


@dataclass(frozen=True)
class Program:
    """A compiled filter: the BPF instructions and what seccomp(2) needs to load them."""

    code: bytes  # struct sock_filter[], native byte order
    syscall_nr: int  # seccomp(2) on this architecture
    flags: int = 0
    # a sock_fprog over a copy of `code`, built here so that loading allocates nothing
    _fprog: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        buffer = ctypes.create_string_buffer(self.code, len(self.code))
        fprog = _SockFprog(len(self.code) // 8, ctypes.addressof(buffer))
        object.__setattr__(self, "_fprog", (buffer, fprog))

    def load(self) -> None:
        """seccomp(SECCOMP_SET_MODE_FILTER): from now on this process and its children are
        filtered. Needs no_new_privs or CAP_SYS_ADMIN; raises OSError."""
        linux.syscall(self.syscall_nr, SECCOMP_SET_MODE_FILTER, self.flags,
                      ctypes.addressof(self._fprog[1]))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


@dataclass(frozen=True)
class _Host:
    """What `includes` and `excludes` are evaluated against."""

    arch: str
    caps: frozenset[str]
    kernel: tuple[int, int]


def _host(capabilities: Collection[int]) -> _Host:
    release = platform.release().split(".")
    kernel = (int(release[0]), int("".join(c for c in release[1] if c.isdigit()) or 0))
    caps = frozenset(CAPABILITY_NAMES[c] for c in capabilities if c < len(CAPABILITY_NAMES))
    return _Host(_ARCH_NAMES.get(platform.machine(), platform.machine()), caps, kernel)


def _kernel_at_least(host: _Host, text: str) -> bool:
    major, _, minor = str(text).partition(".")
    try:
        return host.kernel >= (int(major), int(minor))
    except ValueError:
        raise SandboxError(f"seccomp profile: invalid minKernel {text!r}") from None


def applies(rule: dict[str, Any], host: _Host) -> bool:
    """moby's filter: a rule is dropped by any matching exclude, or any unmet include."""
    excludes, includes = rule.get("excludes") or {}, rule.get("includes") or {}
    if host.arch in (excludes.get("arches") or ()):
        return False
    if any(c in host.caps for c in excludes.get("caps") or ()):
        return False
    if excludes.get("minKernel") and _kernel_at_least(host, excludes["minKernel"]):
        return False
    if includes.get("arches") and host.arch not in includes["arches"]:
        return False
    if any(c not in host.caps for c in includes.get("caps") or ()):
        return False
    return not includes.get("minKernel") or _kernel_at_least(host, includes["minKernel"])


def _action(scmp, name: str, errno_ret: int | None) -> int:
    """A profile's action name as libseccomp's value (runc's mapping)."""
    actions = {"SCMP_ACT_KILL": scmp.KILL_THREAD, "SCMP_ACT_KILL_THREAD": scmp.KILL_THREAD,
               "SCMP_ACT_KILL_PROCESS": scmp.KILL_PROCESS, "SCMP_ACT_TRAP": scmp.TRAP,
               "SCMP_ACT_ALLOW": scmp.ALLOW, "SCMP_ACT_LOG": scmp.LOG}
    if name in actions:
        return actions[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        code = errno.EPERM if errno_ret is None else int(errno_ret)
        return scmp.ERRNO(code) if name == "SCMP_ACT_ERRNO" else scmp.TRACE(code)
    raise SandboxError(f"seccomp profile: unsupported action {name!r}")


def _conditions(scmp, args: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """The argument tests of a rule: one rule with all of them, or (runc) one rule per test
    when an argument is tested twice (libseccomp cannot AND two tests of one argument)."""
    ops = {"SCMP_CMP_NE": scmp.NE, "SCMP_CMP_LT": scmp.LT, "SCMP_CMP_LE": scmp.LE,
           "SCMP_CMP_EQ": scmp.EQ, "SCMP_CMP_GE": scmp.GE, "SCMP_CMP_GT": scmp.GT,
           "SCMP_CMP_MASKED_EQ": scmp.MASKED_EQ}
    tests = []
    for arg in args:
        if arg.get("op") not in ops:
            raise SandboxError(f"seccomp profile: unknown operator {arg.get('op')!r}")
        tests.append(scmp.Arg(int(arg["index"]), ops[arg["op"]], int(arg.get("value", 0)),
                              int(arg.get("valueTwo", 0))))
    indexes = [int(arg["index"]) for arg in args]
    return [[t] for t in tests] if len(set(indexes)) < len(indexes) else [tests]


def _architectures(scmp, profile: dict[str, Any]) -> list[int]:
    """Extra architectures: `architectures` as listed, or the native one's `archMap` entry."""
    if profile.get("architectures") and profile.get("archMap"):
        raise SandboxError("seccomp profile: both 'architectures' and 'archMap' are given")
    native = scmp.system_arch()
    names = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if _arch_value(scmp, entry.get("architecture", ""), strict=False) == native:
            names += [entry["architecture"], *(entry.get("subArchitectures") or ())]
    return [_arch_value(scmp, name) for name in names]


def _arch_value(scmp, name: str, strict: bool = True) -> int | None:
    value = getattr(scmp.Arch, name.removeprefix("SCMP_ARCH_"), None)
    if value is None and strict:
        raise SandboxError(f"seccomp profile: unsupported architecture {name!r}")
    return value


def _libseccomp():
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError) as exc:
        raise SandboxError(f"cannot compile the seccomp profile: {exc} (install libseccomp2, "
                           "or run with --security-opt seccomp=unconfined)") from exc
    return pyseccomp


def compile_profile(text: str, capabilities: Collection[int]) -> Program:
    """The BPF program of a profile for a process whose bounding set is `capabilities`."""
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise SandboxError(f"seccomp profile is not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("syscalls", []), list):
        raise SandboxError("seccomp profile: expected an object with a 'syscalls' list")
    scmp = _libseccomp()
    default = _action(scmp, profile.get("defaultAction", ""), profile.get("defaultErrnoRet"))
    filt = scmp.SyscallFilter(default)
    filt.set_attr(scmp.Attr.CTL_NNP, 0)  # we set no_new_privs ourselves, when asked
    for arch in _architectures(scmp, profile):
        if not filt.exist_arch(arch):
            filt.add_arch(arch)
    host = _host(capabilities)
    rules = [rule for rule in profile.get("syscalls") or () if applies(rule, host)]
    if sum(len(rule.get("names") or ()) for rule in rules) > 32:  # runc counts names
        filt.set_attr(scmp.Attr.CTL_OPTIMIZE, 2)  # libseccomp's binary tree: a short path
    highest = max((_add_rule(scmp, filt, rule, default) for rule in rules), default=-1)
    flags = sum(_FLAGS.get(flag, 0) for flag in profile.get("flags") or ())
    if _permissive(profile):
        highest = -1  # runc: no stub when unknown syscalls are allowed, or get ENOSYS anyway
    code = _enosys_stub(scmp.system_arch(), highest) + _export(filt)
    return Program(code, scmp.resolve_syscall(scmp.Arch.NATIVE, "seccomp"), flags)


def _permissive(profile: dict[str, Any]) -> bool:
    """Whether the default already lets a new syscall through (or answers ENOSYS)."""
    action = profile.get("defaultAction")
    return action in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE") or (
        action == "SCMP_ACT_ERRNO" and profile.get("defaultErrnoRet") == errno.ENOSYS)


def _add_rule(scmp, filt, rule: dict[str, Any], default: int) -> int:
    """Add one profile rule; the highest native syscall number it names (-1 if none)."""
    action = _action(scmp, rule.get("action", ""), rule.get("errnoRet"))
    names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
    numbers = [n for n in (scmp.resolve_syscall(scmp.Arch.NATIVE, name) for name in names)
               if n != _NR_ERROR]  # unknown to libseccomp: skipped, as runc does
    if action != default:
        for number in numbers:
            for tests in _conditions(scmp, rule.get("args") or ()):
                try:
                    filt.add_rule(action, number, *tests)
                except OSError as exc:
                    raise SandboxError(f"seccomp profile: cannot add the rule for "
                                       f"{names}: {exc.strerror}") from None
    return max((n for n in numbers if n >= 0), default=-1)


def _export(filt) -> bytes:
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        return f.read()


def _enosys_stub(native: int, highest: int) -> bytes:
    """runc's patch, for the native architecture: a syscall numbered above every one the
    profile names returns ENOSYS (x32's numbers, bit 30 set, are left to the filter).
    Jumps count from the next instruction; the filter proper starts right after the stub."""
    if highest < 0:
        return b""
    ld_abs, jeq, jge, jgt, ret = 0x20, 0x15, 0x35, 0x25, 0x06
    x32 = native == _AUDIT_ARCH_X86_64
    size = 6 if x32 else 5
    insns = [(ld_abs, 0, 0, 4), (jeq, 0, size - 2, native), (ld_abs, 0, 0, 0)]  # arch, nr
    if x32:
        insns.append((jge, size - 4, 0, _X32_SYSCALL_BIT))
    insns.append((jgt, 0, size - len(insns) - 1, highest))
    insns.append((ret, 0, 0, 0x00050000 | errno.ENOSYS))  # SECCOMP_RET_ERRNO
    return b"".join(struct.pack("=HBBI", *insn) for insn in insns)
