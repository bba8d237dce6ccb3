"""The Playground's responsiveness: heat-map frames per second and the time from "play" to the
first frame, for TensorFlow Playground's default network (circle, X1 X2, 4-2 tanh, batch 10,
lr 0.03), measured in headless Chromium against a live server; and the server's cost of one
gradient step and of one frame.

    .venv/bin/python benchmarks/playground_responsiveness.py [--seconds 3] [--runs 3]

Needs the playground extra, Playwright's Python package and Chromium (/usr/bin/chromium, or
FOVEANET_CHROMIUM).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from playground_util import chromium_skip_reason, launch_chromium, live_server  # noqa: E402


def server_costs():
    from foveanet.playground.session import Session

    s = Session()
    s.train(200, budget_s=10)
    t = time.perf_counter()
    n = s.train(2000, budget_s=60)
    step_ms = (time.perf_counter() - t) / n * 1e3
    t = time.perf_counter()
    for _ in range(50):
        s.frame()
    frame_ms = (time.perf_counter() - t) / 50 * 1e3
    return step_ms, frame_ms


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="play time per run")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    reason = chromium_skip_reason()
    if reason:
        print(f"cannot measure in a browser: {reason}", file=sys.stderr)
        return 1
    step_ms, frame_ms = server_costs()
    print(f"server: {step_ms:.3f} ms a gradient step (batch 10), {frame_ms:.2f} ms a frame "
          "(heat map 50x50, thumbnails, weights, losses)")
    fps, first = [], []
    with live_server() as base, launch_chromium() as browser:
        for run in range(args.runs):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base + "/")
            page.wait_for_function("window.fvPlayground && window.fvPlayground.lastFrame")
            page.click("#play-pause-button")
            time.sleep(args.seconds)
            frames, first_ms, elapsed_ms, epoch = page.evaluate(
                "[fvPlayground.stats.playFrames, fvPlayground.stats.firstFrameDelay, "
                "performance.now() - fvPlayground.stats.playClickedAt, "
                "fvPlayground.lastFrame.epoch]")
            page.click("#play-pause-button")
            page.close()
            fps.append(frames / (elapsed_ms / 1000))
            first.append(first_ms)
            print(f"run {run + 1}: {fps[-1]:.1f} frames/s, first frame {first_ms:.0f} ms after "
                  f"play, epoch {epoch} after {elapsed_ms / 1000:.1f} s")
    print(f"median: {statistics.median(fps):.1f} heat-map frames/s, "
          f"{statistics.median(first):.0f} ms from play to the first frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
