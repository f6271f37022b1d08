"""Failed writes, told apart by their cause (a full disk, permissions, a failing device) without Lightning, so the
plain-PyTorch modules (export) can report them too."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from lightning_trickster.errors import WriteFailedError

WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
"""What the filesystem answers when a write cannot be done: the disk is full, a quota or the file size limit is
reached, the filesystem is read-only, permissions, a failing device."""

NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def failed_write_errno(err: BaseException, directory: Path | None = None) -> int | None:
    """The errno behind a failed write, also where a library hides it: safetensors' `SafetensorError: ... I/O error:
    No space left on device (os error 28)`, numpy's `OSError: N requested and M written` (no errno: then a filesystem
    with no room left is the reason), or an OSError in the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            return current.errno
        found = re.search(r"\(os error (\d+)\)", str(current))
        if found:
            return int(found.group(1))
        current = current.__cause__ or current.__context__
    if directory is not None and free_bytes(directory) < 64 * 1024:
        return errno.ENOSPC
    return None


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged write could still use on directory's filesystem (its nearest existing ancestor's)."""
    directory = Path(directory)
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        stat = os.statvfs(directory)
    except OSError:
        return 1 << 62
    return stat.f_bavail * stat.f_frsize


def write_failure(what: str | Path, err: BaseException, directory: Path, then: str) -> WriteFailedError:
    """`could not write <what> (<reason>): <fix for that reason>, then <then>` as one line."""
    number = failed_write_errno(err, directory)
    reason = os.strerror(number) if number else " ".join(str(err).split())[:200]
    if number in NO_ROOM:
        fix = f"free disk space on the filesystem of {directory}"
    elif number in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = f"make {directory} writable"
    else:
        fix = f"check the disk that holds {directory}"
    return WriteFailedError(f"could not write {what} ({reason}): {fix}, then {then}")
