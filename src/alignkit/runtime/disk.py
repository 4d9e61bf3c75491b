"""Disk errors as one line naming the path: a full disk, a read-only or forbidden directory, a quota.

Writers wrap what they write in `writing(path, what)`. Errors of the environment (ENOSPC, EROFS,
EACCES, ...) become an AlignkitError such as `cannot write checkpoint runs/x/checkpoints/step_4: No
space left on device`; anything else (a bug) keeps its traceback. torch.save is given an open file
(`save_torch`), so that a failed write raises the OSError of Python's file, with its errno, rather than
a message from inside torch's C++ writer; safetensors reports the OS error's code in its message.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from alignkit.errors import AlignkitError

# A full disk or quota, a read-only or forbidden folder, a failing device, a file where a folder must be.
ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
               errno.ENOTDIR, errno.EISDIR}
_OS_CODE = re.compile(r"\bcode: (\d+)")  # safetensors: IoError(Os { code: 28, kind: StorageFull, ...


def environment_errno(e: BaseException) -> int | None:
    """The errno of a disk error caused by the environment, or None."""
    code = e.errno if isinstance(e, OSError) else None
    if code is None and type(e).__name__ == "SafetensorError" and (m := _OS_CODE.search(str(e))):
        code = int(m.group(1))
    return code if code in ENVIRONMENT else None


def disk_error(path: str | Path, what: str, e: BaseException) -> AlignkitError:
    code = environment_errno(e)
    target = getattr(e, "filename", None) or path
    return AlignkitError(f"cannot write {what} {target}: {os.strerror(code) if code else e}")


@contextmanager
def writing(path: str | Path, what: str) -> Iterator[None]:
    """Turn an environment disk error inside the block into one line naming `what` and `path`."""
    try:
        yield
    except Exception as e:
        if environment_errno(e) is None:
            raise
        raise disk_error(path, what, e) from None


def save_torch(obj: Any, path: Path) -> None:
    """torch.save through a Python file, whose write errors carry an errno (see the module doc)."""
    with path.open("wb") as f:
        torch.save(obj, f)
