"""The allocator settings of foveanet.backend: applied once at import on Linux/glibc, skipped with
FOVEANET_MALLOC=system (checked in fresh interpreters, since they are process-wide)."""
import os
import subprocess
import sys

import pytest

CODE = "import foveanet.backend.cpu.allocator as b; print(b._tuned, b.tune_allocator())"


def _run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "FOVEANET_MALLOC"}
    if env_value is not None:
        env["FOVEANET_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux") or
                    not os.path.exists("/lib/x86_64-linux-gnu/libc.so.6") and
                    not os.path.exists("/lib/aarch64-linux-gnu/libc.so.6"),
                    reason="the allocator settings are glibc's")
def test_allocator_is_tuned_at_import_on_glibc():
    assert _run(None) == ["True", "True"]


def test_system_allocator_on_request():
    assert _run("system") == ["False", "False"]
