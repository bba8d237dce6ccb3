import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# Deterministic property tests: the same examples on every run (CI must not flake), few enough
# to keep the suite fast on a 2-core machine.
settings.register_profile("foveanet", max_examples=12, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "foveanet"))


def pytest_terminal_summary(terminalreporter):
    from test_engine_budget import BUDGET, core_line_count
    counts = core_line_count()
    detail = ", ".join(f"{k} {v}" for k, v in counts.items())
    terminalreporter.write_line(f"engine core: {sum(counts.values())} code lines ({detail}); budget {BUDGET}")
