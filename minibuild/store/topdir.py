"""ext4's "top of directory hierarchy" flag on the dirs under which big trees are made.

Why: on ext4 without a journal (as on this project's CI machines), the inode allocator skips an
inode freed in the last 60 s (360 s while its table block is dirty), and it scans from the start
of the group for every new inode (`find_inode_bit` / `recently_deleted`). Create 20,000 files in
the block group where 20,000 were just removed (the last build's scratch, `prune`, a test's
store) and each create scans past thousands of them: 0.55 s becomes 4.4 s here.

A dir with FS_TOPDIR_FL (`chattr +T`) makes ext4 place each new subdir as it places dirs at the
root of the filesystem (Orlov): in a group with more free inodes than average and few dirs,
not next to its parent. So every step's scratch dir starts in a roomy group, and the files below
it follow it there. On other filesystems the flag is not known; nothing happens.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
from pathlib import Path

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602  # _IOR/_IOW('f', 1/2, long)
FS_TOPDIR_FL = 0x00020000
_UNSUPPORTED = {errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM, errno.EACCES, errno.ENOSYS}


def spread_children(path: Path) -> bool:
    """Mark a dir so that ext4 spreads the dirs made in it over roomy block groups; False where
    the filesystem does not know the flag (or the caller may not set it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = array.array("i", [0, 0])  # the kernel reads and writes an int at its start
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if flags[0] & FS_TOPDIR_FL:
            return True
        flags[0] |= FS_TOPDIR_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    finally:
        os.close(fd)
