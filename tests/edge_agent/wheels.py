"""Agent release wheels built from this working tree (decision 0041's tests)."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: Path, version: str, *, patch: dict[str, bytes] | None = None) -> Path:
    """A wheel of the working tree's packages (pyproject's list) at ``version``: what
    ``pip wheel`` makes, less the compiled pricing engine (the Python one runs), made
    here because ``pip wheel`` of this tree needs Cython from PyPI to build."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["include"]
    files: dict[str, bytes] = {}
    for pattern in packages:
        for path in sorted((REPO / pattern.rstrip("*")).rglob("*")):
            if (path.is_file() and "__pycache__" not in path.parts
                    and path.suffix not in (".pyc", ".so", ".c")):
                files[path.relative_to(REPO).as_posix()] = path.read_bytes()
    init = files["edge_agent/__init__.py"].decode()
    files["edge_agent/__init__.py"] = re.sub(
        r'^__version__ = ".*"$', f'__version__ = "{version}"', init, flags=re.M).encode()
    files.update(patch or {})
    info = f"storefleet-{version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: storefleet\n"
                                 f"Version: {version}\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: storefleet-tests\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{name},sha256={_record_hash(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    out = dest / f"storefleet-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out
