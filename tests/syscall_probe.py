"""A tiny static x86_64 ELF that makes one system call and exits with its errno (0: it worked).

busybox cannot make most of the calls a seccomp profile refuses (keyctl, add_key, personality
flags, clone3), and no compiler is guaranteed on a test machine, so the tests assemble the
program themselves: load each register with an immediate (a bytes argument becomes a pointer to
a NUL-terminated copy placed after the code), `syscall`, then exit(-rax if negative, else 0).
"""

from __future__ import annotations

import platform
import struct

BASE = 0x400000
_HEADERS = 64 + 56  # ELF header + one program header
_REGISTERS = (b"\x48\xb8", b"\x48\xbf", b"\x48\xbe", b"\x48\xba", b"\x49\xba", b"\x49\xb8",
              b"\x49\xb9")  # movabs into rax, rdi, rsi, rdx, r10, r8, r9
_EXIT = (b"\x0f\x05"  # syscall
         b"\x48\x89\xc7\x48\xf7\xdf"  # mov rdi, rax; neg rdi
         b"\x48\x85\xc0\x7c\x02\x31\xff"  # test rax, rax; jl +2; xor edi, edi
         b"\xb8\x3c\x00\x00\x00\x0f\x05")  # mov eax, 60 (exit); syscall


def supported() -> bool:
    """The probe is x86_64 code."""
    return platform.machine() == "x86_64"


def probe(number: int, *args: int | bytes) -> bytes:
    """The ELF image of a program making syscall `number` with `args`."""
    code_size = 10 * (1 + len(args)) + len(_EXIT)
    data, code = b"", _REGISTERS[0] + struct.pack("<Q", number)
    for register, arg in zip(_REGISTERS[1:], args):
        if isinstance(arg, bytes):
            value = BASE + _HEADERS + code_size + len(data)
            data += arg + b"\0"
        else:
            value = arg & 0xFFFFFFFFFFFFFFFF
        code += register + struct.pack("<Q", value)
    body = code + _EXIT + data
    size = _HEADERS + len(body)
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 2, 62, 1, BASE + _HEADERS, 64, 0, 0, 64, 56,
                         1, 64, 0, 0)
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)
    return header + segment + body
