"""Finding the MPI launcher and building its command line (used by the tests, the benchmark and
the docs' examples): ``mpirun_command(2) + [python, script.py]``.

The launcher beside the running Python comes first (the MPICH wheel of
``foveanet[distributed]`` installs ``mpirun`` into the environment's ``bin``), then one on PATH.
Open MPI refuses to run as root and to start more ranks than cores without being told; its flags
for both are added when it is the launcher (MPICH's Hydra needs neither)."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["find_mpirun", "mpirun_command"]


@functools.lru_cache(maxsize=None)
def find_mpirun() -> tuple[str, str] | None:
    """``(path, "mpich" | "openmpi" | "unknown")`` of the launcher, or None when there is none."""
    candidates = [Path(sys.executable).parent / name for name in ("mpirun", "mpiexec")]
    candidates += [shutil.which(name) for name in ("mpirun", "mpiexec")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            try:
                text = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                                      timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            kind = "mpich" if "HYDRA" in text or "MPICH" in text else \
                "openmpi" if "Open MPI" in text or "OpenRTE" in text else "unknown"
            return str(path), kind
    return None


def mpirun_command(n: int, hostfile: str | None = None) -> list[str]:
    """The launcher's command line for ``n`` ranks (before the program and its arguments)."""
    found = find_mpirun()
    if found is None:
        raise FileNotFoundError("no MPI launcher (mpirun or mpiexec) beside this Python or on "
                                "PATH: pip install 'foveanet[distributed]', or install a system "
                                "MPI (Debian: openmpi-bin)")
    path, kind = found
    cmd = [path, "-n", str(int(n))]
    if kind == "openmpi":
        cmd += ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    if hostfile is not None:
        cmd += ["--hostfile" if kind == "openmpi" else "-f", str(hostfile)]
    return cmd
