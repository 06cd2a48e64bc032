"""Replacing a file atomically, and removing what writers that were killed left behind.

A file is written under a temporary name beside its target, then renamed over it: a
reader sees the old file or the new one, never half of one. A writer killed before
the rename leaves its temporary file, so the names say who wrote them,
`.{name}.{host}.{pid}.{random}.keras_agd-tmp`, and the next write to the same target
on the same machine removes those whose process is gone.
"""

import contextlib
import hashlib
import os
import socket
import tempfile

SUFFIX = ".keras_agd-tmp"


@contextlib.contextmanager
def replacing(path):
    """Yields a binary file that replaces `path` once the block ends without error.

    The file gets the mode of any file the user creates. If the block raises, the
    temporary file is removed and `path` is left as it was.

    Args:
        path: The file to write; its folder must exist.
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _prefix(path)
    _remove_abandoned(directory, prefix)
    file = tempfile.NamedTemporaryFile(
        dir=directory, prefix=f"{prefix}{os.getpid()}.", suffix=SUFFIX, delete=False
    )
    try:
        with file:
            yield file
        # A temporary file is private (0600); the target gets the mode of any file the
        # user creates, so that other workers or users can read a shared one.
        os.chmod(file.name, 0o666 & ~_umask())
        os.replace(file.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(file.name)
        raise


def host():
    """This machine, as far as process ids go: its host name and pid namespace."""
    name = socket.gethostname().replace(os.sep, "_")[:64]
    try:
        # Containers can share a host name (host networking) but not their pids.
        return f"{name}~{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return name


def _prefix(path):
    """`.{name}.{host}.`: how this machine's temporary files for `path` start."""
    name = os.path.basename(path)
    if len(name) > 100:  # Keeps the whole name within the usual 255-byte limit.
        digest = hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()
        name = f"{name[:80]}~{digest[:16]}"
    return f".{name}.{host()}."


def _remove_abandoned(directory, prefix):
    """Deletes the temporary files starting with `prefix` whose process is gone.

    The prefix names this machine: a file system shared by several workers holds
    other machines' writes in progress, whose pids mean nothing here.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(SUFFIX)):
            continue
        pid = name[len(prefix) :].partition(".")[0]
        if pid.isdigit() and not _is_running(int(pid)):
            with contextlib.suppress(OSError):  # E.g. another writer removed it first.
                os.unlink(os.path.join(directory, name))


def _is_running(pid):
    """Whether process `pid` exists here; `True` when that cannot be told."""
    if os.name != "posix":  # On Windows, os.kill(pid, 0) would end the process.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # E.g. PermissionError: another user's process.
        return True
    return True


def _umask():
    """The process's umask, read without setting it (which would race other threads)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022
