"""Files on disk: atomic writes, content hashes, cache keys and run folders.

Every command that writes a folder follows the same rules. The folder contains a
``.dejavu-run.json`` stamp naming the command and a hash of its settings. A rerun with
the same command and settings reuses the folder, which is how interrupted runs resume.
A folder written by another command or with other settings is rejected unless
``overwrite=True``, which empties it first. A non-empty folder without a stamp is
always rejected and never emptied. Files are written under a temporary name in the
same folder and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.errors import OutputDirError

log = logging.getLogger(__name__)

STAMP_NAME = ".dejavu-run.json"
_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and rename it into place on success.

    The temporary file is removed when the block raises, so ``path`` is either the
    old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file readable by its owner only; give the result the
        # permissions a plain open() would, so reports can be shared.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically, encoded as UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    # NumPy scalars and arrays appear in results; plain JSON has no type for them.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def stable_hash(obj: Any) -> str:
    """Return a SHA-256 of ``obj`` serialised as canonical JSON.

    Used for cache keys: two settings dictionaries with the same content give the same
    key whatever their key order.
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str]:
    """Return the versions of the packages whose behaviour affects results."""
    from importlib import metadata

    import dejavu

    versions = {"dejavu": dejavu.__version__, "python": platform.python_version()}
    for name in ("torch", "open_clip_torch", "faiss-cpu", "faiss-gpu", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def prepare_run_dir(
    path: str | os.PathLike,
    command: str,
    settings: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Path:
    """Create or reuse the output folder of ``command``.

    Parameters
    ----------
    path : path-like
        The output folder.
    command : str
        Name of the command that writes the folder, such as ``"audit"``.
    settings : mapping
        Every setting that affects the folder's content. A folder written by the same
        command with equal settings is reused so that a rerun resumes.
    overwrite : bool, default=False
        Empty a folder that dejavu wrote with another command or other settings
        instead of raising. A non-empty folder without a dejavu stamp is never
        emptied.

    Returns
    -------
    pathlib.Path
        The folder, which exists on return and carries the stamp.

    Raises
    ------
    OutputDirError
        If `path` is an empty string, or the folder cannot be created. Also if
        the folder is not empty and was not written by dejavu, or was written
        with another command or other settings while ``overwrite`` is false.
    """
    if not str(path).strip():
        raise OutputDirError("output folder is an empty string; pass a folder path")
    path = Path(path)
    stamp = {"command": command, "settings_hash": stable_hash(settings)}
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"output path {path} exists and is not a folder")
    # A run that failed on its inputs leaves a folder with only the stamp. That folder
    # has no results to protect, so a corrected rerun may reuse it.
    if path.is_dir() and any(child.name != STAMP_NAME for child in path.iterdir()):
        previous = _read_stamp(path)
        same = previous is not None and all(
            previous.get(key) == value for key, value in stamp.items()
        )
        # Only a folder that dejavu wrote is ever emptied, even with `overwrite`.
        if previous is None:
            raise OutputDirError(
                f"output folder {path} is not empty and was not written by dejavu; "
                "choose another folder, or empty it yourself"
            )
        if not same and not overwrite:
            if previous.get("command") != command:
                why = f"was written by 'dejavu {previous.get('command')}'"
            else:
                why = "was written with different settings"
                changed = _changed_settings(previous.get("settings"), settings)
                if changed:
                    why += f" ({changed})"
            raise OutputDirError(
                f"output folder {path} {why}; choose another folder or pass "
                "--overwrite to replace its contents"
            )
        if not same:
            _empty_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / STAMP_NAME, {**stamp, "settings": dict(settings)})
    except OSError as err:
        raise OutputDirError(
            f"cannot write to output folder {path}: {err.strerror}; "
            "choose a folder you can write to"
        ) from err
    return path


def _changed_settings(previous: Any, settings: Mapping[str, Any]) -> str:
    """Describe up to three settings that differ from a stamp's, or return ''."""
    if not isinstance(previous, dict):
        return ""
    # Compare as JSON values, the form in which the stamp stored them.
    current = json.loads(json.dumps(dict(settings), default=_json_default))
    keys = sorted(set(previous) | set(current))
    changed = [
        f"{key}: {previous.get(key)!r} then, {current.get(key)!r} now"
        for key in keys
        if previous.get(key) != current.get(key)
    ]
    more = f", and {len(changed) - 3} more" if len(changed) > 3 else ""
    return "; ".join(changed[:3]) + more


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads((path / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _empty_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class StageRecords:
    """Completion records of the stages of a multi-stage run.

    ``run(name, settings, work)`` calls ``work`` unless ``FOLDER/.stages/NAME.json``
    records that the stage finished with equal settings, and writes that record
    when it does finish. A stage that was interrupted has no record and runs again,
    resuming from whatever caches or checkpoints it keeps itself. A stage given
    its ``outputs`` also runs again when one of them has been deleted.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder) / ".stages"

    def done(
        self,
        name: str,
        settings: Mapping[str, Any],
        outputs: Sequence[str | os.PathLike] = (),
    ) -> bool:
        """Return whether stage ``name`` finished with these settings.

        A stage is not done when one of its `outputs` is missing, even if its
        record matches.
        """
        try:
            record = json.loads((self.folder / f"{name}.json").read_text())
        except (OSError, ValueError):
            return False
        if record.get("settings_hash") != stable_hash(settings):
            return False
        missing = [path for path in outputs if not Path(path).exists()]
        if missing:
            log.warning("%s: %s is missing, so the stage runs again", name, missing[0])
            return False
        return True

    def run(
        self,
        name: str,
        settings: Mapping[str, Any],
        work: Callable[[], object],
        outputs: Sequence[str | os.PathLike] = (),
    ) -> bool:
        """Run stage ``name`` unless it is done; return whether it ran."""
        if self.done(name, settings, outputs):
            log.info("%s: finished in an earlier run, skipped", name)
            return False
        log.info("%s: running", name)
        work()
        self.mark(name, settings)
        return True

    def mark(self, name: str, settings: Mapping[str, Any]) -> None:
        """Record that stage ``name`` finished with these settings."""
        record = {"settings_hash": stable_hash(settings)}
        write_json(self.folder / f"{name}.json", record)
