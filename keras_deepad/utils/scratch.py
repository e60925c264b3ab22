"""Hidden scratch files and folders next to what they become, and removal of abandoned ones.

Every save and export of keras_deepad writes to a hidden entry in the
destination folder (same file system, so the final `os.replace`/`os.rename` is
atomic) and removes it on every failure path. A process killed by a signal
cannot clean up, so each save or export to a path first removes the scratch
entries of that same path last modified more than `STALE_AFTER_S` seconds
ago (scratch is written continuously while in use, and no save or export
takes that long). The age test assumes the clocks of the writers of a shared
folder agree within that margin.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

#: Scratch untouched for longer than this (seconds) is considered abandoned.
STALE_AFTER_S = 3600.0
#: The random part of every scratch name.
HEX = "[0-9a-f]{32}"


def unique_hex() -> str:
    return uuid.uuid4().hex


def stale_entries(directory, pattern, older_than=None):
    """Entries of `directory` whose name fully matches `pattern` and that are older than
    `older_than` seconds (default `STALE_AFTER_S`), by modification time."""
    older_than = STALE_AFTER_S if older_than is None else float(older_than)
    pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    stale = []
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            modified = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # removed meanwhile by another cleaner
            continue
        if now - modified > older_than:
            stale.append(Path(entry.path))
    return stale


def remove(path):
    """Removes a file or a folder tree; missing entries and errors are ignored."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def remove_stale(directory, pattern, older_than=None) -> list[Path]:
    """Removes the stale entries of `directory` matching `pattern` (see `stale_entries`)."""
    stale = stale_entries(directory, pattern, older_than)
    for path in stale:
        remove(path)
    return stale


def hidden_pattern(name, kinds=("tmp",), suffix="") -> str:
    """The regex of `hidden_name(name, kind, suffix)` for every kind in `kinds`."""
    kinds = "|".join(map(re.escape, kinds))
    return rf"\.{re.escape(name)}\.(?:{kinds})-{HEX}{re.escape(suffix)}"


def hidden_name(name, kind="tmp", suffix="") -> str:
    """`.<name>.<kind>-<32 hex digits><suffix>`: a unique hidden sibling of `name`."""
    return f".{name}.{kind}-{unique_hex()}{suffix}"


@contextlib.contextmanager
def scratch_dir(directory, name, stale_names=()):
    """A hidden scratch folder `<directory>/.<name>.scratch-<hex>`, removed on exit.

    `directory` is created if needed (and removed again, if it was created
    here and is still empty, when the block raises). Abandoned scratch folders
    of the same `name`, and abandoned `.<n>.tmp-<hex>` files of `name` and of
    each of `stale_names`, are removed first.
    """
    directory = Path(directory)
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale(directory, hidden_pattern(name, ("scratch", "tmp")))
    for other in stale_names:
        remove_stale(directory, hidden_pattern(other))
    path = directory / hidden_name(name, "scratch")
    path.mkdir()
    ok = False
    try:
        yield path
        ok = True
    finally:
        remove(path)
        if not ok:
            for folder in created:  # the innermost first
                try:
                    os.rmdir(folder)
                except OSError:
                    break


def _fsync(path):
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def keras_tmp_pattern(path) -> str:
    """The names of the temporary files of a `.keras` save to `path`."""
    path = Path(path)
    return hidden_pattern(path.stem, suffix=".keras")


def as_keras_tmp(path) -> Path | None:
    """The final path when `path` is itself such a temporary name, else None."""
    path = Path(path)
    match = re.fullmatch(rf"\.(?P<stem>.+)\.tmp-{HEX}\.keras", path.name)
    return path.with_name(f"{match['stem']}.keras") if match else None


def write_atomically(path, write) -> Path:
    """Calls `write(tmp)` for a hidden temporary sibling of `path`, then renames it to `path`.

    The temporary file is removed on every failure path; stale ones of
    earlier, killed writes to `path` are removed first. A reader of `path`
    sees the old file or the complete new one, never a partial one. The one
    atomic writer of the package (`.keras` files, CSV scores, figures,
    TFLite files with their metadata through `write_all_atomically`).
    """
    return write_all_atomically([(path, write)])[0]


def write_all_atomically(writes) -> list[Path]:
    """`write_atomically` for files that belong together, e.g. a model and its metadata.

    Every `write(tmp)` runs (and is flushed to disk) before the first
    rename, so a failure in any of them leaves every target as it was; the
    renames then run in the given order (put first the file whose partner
    must not be read without it).

    Args:
        writes: `(path, write)` pairs, `write(tmp)` writing the file `tmp`.

    Returns:
        The paths written, in order.
    """
    entries = [(Path(path), write) for path, write in writes]
    tmps = []
    try:
        for path, write in entries:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale(path.parent, hidden_pattern(path.stem, suffix=path.suffix))
            tmps.append(path.with_name(hidden_name(path.stem, suffix=path.suffix)))
            write(tmps[-1])
            _fsync(tmps[-1])
        for (path, _), tmp in zip(entries, tmps, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            if os.path.lexists(tmp):
                remove(tmp)
    return [path for path, _ in entries]


def save_keras_atomically(model, path, **kwargs) -> Path:
    """`model.save(path)` through a temporary `.<stem>.tmp-<hex>.keras` file and a rename."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model files must end in .keras. Received: {path}")
    return write_atomically(path, lambda tmp: model.save(tmp, **kwargs))


def exchange_paths(a: Path, b: Path) -> bool:
    """Swaps two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`); False where the
    system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_path(src: Path, target: Path):
    """Moves `src` to `target`, replacing an existing target: swapped in one step where the
    system can (a server never misses the version), else the old one is renamed to a hidden
    `.old-` name first (restored if the second rename fails); the old one is then deleted."""
    if not target.exists():
        os.rename(src, target)
        return
    if exchange_paths(src, target):
        remove(src)  # now the old version
        return
    # `.old-<name>-<hex>`: what an interrupted swap leaves, which the next writer restores
    # or removes (`export.saved_model` cleans its versions' so).
    trash = target.with_name(f".old-{target.name}-{unique_hex()}")
    os.rename(target, trash)
    try:
        os.rename(src, target)
    except BaseException:
        os.rename(trash, target)
        raise
    remove(trash)
