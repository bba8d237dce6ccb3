"""The Playground's CNN view (``foveanet.playground.cnn``): a session trains LeNet-5 on a
Fashion-MNIST subset over its WebSocket, its kernels and activation maps change as it learns, a
drawn or uploaded picture gets a prediction, a run directory of ``foveanet train`` loads, bad input
gets a sentence, closing the socket stops the session; and in headless Chromium the page trains
and its pictures change.

The server tests run the view's routes in Starlette's TestClient; the browser test runs the whole
Playground (``tests/playground_util.live_server``). They read the real Fashion-MNIST (found
locally, never downloaded) and skip with the reason when it is not there.
"""
import base64
import contextlib
import io
import json
import os
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.applications import Starlette  # noqa: E402
with warnings.catch_warnings():  # Starlette's advice to install httpx2, not ours to follow
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet.playground import cnn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the screenshot goes to the test's temporary directory; FOVEANET_SCREENSHOTS=docs/images (a
# directory) refreshes the README's picture instead
SCREENSHOT_DIR = os.environ.get("FOVEANET_SCREENSHOTS")


def _have_fashion():
    try:
        fv.data.FashionMNIST(train=False)
        return True
    except fv.data.DatasetError:
        return False


pytestmark = pytest.mark.skipif(not _have_fashion(), reason="Fashion-MNIST is not found locally "
                                "(apt-get install dataset-fashion-mnist, or set FOVEANET_DATA)")


def make_app(max_sessions=8):
    """The view's routes alone, with the Playground's shared session registry."""
    from foveanet.playground.limits import SessionRegistry
    app = Starlette(routes=cnn.routes())
    app.state.max_sessions = max_sessions
    app.state.sessions = SessionRegistry(max_sessions)
    return app


@pytest.fixture(scope="module")
def client():
    with TestClient(make_app()) as c:
        yield c


def receive(ws, kind, limit=50):
    """The next message of type ``kind`` (other messages before it are skipped)."""
    for _ in range(limit):
        m = ws.receive_json()
        if m["type"] == kind:
            return m
        assert m["type"] != "error" or kind == "error", m["message"]
    raise AssertionError(f"no {kind!r} message in {limit}")


def signed(entry, key="data", scale="scale"):
    """A frame's signed bytes back as float values."""
    q = np.frombuffer(base64.b64decode(entry[key]), dtype=np.uint8).astype(np.float64)
    return (q - 127.5) / 127.5 * entry[scale]


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ------------------------------------------------------------------------------- HTTP
def test_page_static_files_and_options(client):
    r = client.get("/cnn")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert '/cnn/static/cnn.js' in r.text and 'href="/"' in r.text  # links back to the 2-D view
    for name, kind in (("cnn.js", "javascript"), ("cnn.css", "css")):
        r = client.get(f"/cnn/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.text) > 1000
    r = client.get("/cnn/static/app.py")
    assert r.status_code == 404 and "serves cnn.js, cnn.css" in r.json()["error"]
    doc = client.get("/cnn/api/options").json()
    assert set(doc["models"]) == {"lenet5", "cnn_bn"}
    assert set(doc["optimizers"]) == {"sgd", "adam"}
    assert doc["limits"]["train_size"] == [100, 10000]


# ------------------------------------------------------------------------- the session
def test_session_trains_and_its_pictures_change(client):
    with client.websocket_connect("/cnn/ws") as ws:
        hello = receive(ws, "hello")
        assert hello["classes"][9] == "Ankle boot" and len(hello["strip"]) == cnn.STRIP_SIZE
        ws.send_json({"type": "configure", "train_size": 500, "batch_size": 32, "lr": 0.002})
        first = receive(ws, "frame")
        while first["config"]["train_size"] != 500:
            first = receive(ws, "frame")
        assert first["step"] == 0 and first["reset"]
        assert [l["name"] for l in first["layers"]] == ["0", "1", "2", "3", "4", "5"]
        conv2 = first["layers"][3]
        assert conv2["shape"] == [16, 10, 10] and conv2["type"] == "Conv2d"
        assert first["kernels"]["shape"] == [6, 1, 5, 5]
        loss0 = first["test"][-1][1]
        assert loss0 > 2.0  # an untrained 10-class network: about ln 10
        ws.send_json({"type": "step", "n": 60})
        later = receive(ws, "frame")
        assert later["step"] == 60
        loss1 = later["test"][-1][1]
        assert loss1 < 0.75 * loss0, (loss0, loss1)  # the test loss falls
        assert later["test"][-1][2] > 0.4            # accuracy well above chance (0.1)
        assert later["train"][-1][0] == 60 and later["train"][-1][1] < loss0
        # kernels and activation maps differ between the two moments, numerically
        k0, k1 = signed(first["kernels"]), signed(later["kernels"])
        assert k0.shape == (6 * 25,) and np.abs(k1 - k0).mean() > 0.05 * np.abs(k0).mean()
        for a, b in zip(first["layers"], later["layers"]):
            assert a["name"] == b["name"] and a["shape"] == b["shape"]
            x0, x1 = signed(a), signed(b)
            assert np.abs(x1 - x0).mean() > 0.05 * max(np.abs(x0).mean(), 1e-6), a["name"]
            g0, g1 = signed(a, "grad", "grad_scale"), signed(b, "grad", "grad_scale")
            assert not np.allclose(g0, g1), a["name"]
        # the probabilities are a distribution; the image is test image 0 with its label
        assert abs(sum(later["probs"]) - 1) < 1e-3
        assert later["pred"] == int(np.argmax(later["probs"]))
        assert later["image"] == {**later["image"], "index": 0,
                                  "label": hello["strip"][0]["label"]}
        cam = np.frombuffer(base64.b64decode(later["gradcam"]["data"]), dtype=np.uint8)
        assert cam.shape == (784,) and later["gradcam"]["layer"] == "3"


def test_cnn_bn_shows_its_ten_layers(client):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "configure", "model": "cnn_bn", "optimizer": "sgd", "lr": 0.05,
                      "train_size": 200, "batch_size": 16})
        f = receive(ws, "frame")
        while f["model"] != "cnn_bn":
            f = receive(ws, "frame")
        assert f["kernels"]["shape"] == [16, 1, 3, 3] and f["gradcam"]["layer"] == "10"
        assert [(l["name"], l["type"]) for l in f["layers"]][:3] == [
            ("0", "Conv2d"), ("2", "ReLU"), ("3", "Conv2d")]  # BatchNorm has no maps of its own
        assert [l["shape"] for l in f["layers"]][-1] == [32, 7, 7] and len(f["layers"]) == 10
        ws.send_json({"type": "step", "n": 3})
        g = receive(ws, "frame")
        assert g["step"] == 3 and not np.allclose(signed(g["kernels"]), signed(f["kernels"]))


def test_play_streams_frames_and_pause_stops(client):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "play"})
        steps = [receive(ws, "frame")["step"] for _ in range(3)]
        assert steps == sorted(steps) and steps[-1] > 0
        ws.send_json({"type": "pause"})
        f = receive(ws, "frame")
        while f["playing"]:
            f = receive(ws, "frame")
        ws.send_json({"type": "frame"})
        again = receive(ws, "frame")
        assert again["step"] == f["step"] and not again["playing"]  # paused: no more steps


def test_a_drawn_picture_gets_a_prediction(client):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "step", "n": 30})
        receive(ws, "frame")
        picture = np.zeros((28, 28))
        picture[4:26, 9:19] = 0.8   # a light upright block, trouser-like
        ws.send_json({"type": "image", "pixels": picture.reshape(-1).tolist()})
        f = receive(ws, "frame")
        assert f["image"]["index"] is None and f["image"]["label"] is None
        shown = np.frombuffer(base64.b64decode(f["image"]["data"]), dtype=np.uint8) / 255
        assert np.abs(shown - picture.reshape(-1)).max() < 0.003
        assert abs(sum(f["probs"]) - 1) < 1e-3 and 0 <= f["pred"] < 10
        assert f["pred"] == int(np.argmax(f["probs"]))
        # its activations are the drawing's, not a test image's
        ws.send_json({"type": "select", "index": 1})
        g = receive(ws, "frame")
        assert g["image"]["index"] == 1
        assert not np.allclose(signed(f["layers"][0]), signed(g["layers"][0]))


def _png(array, mode="L"):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_gives_the_models_input_and_a_prediction(client):
    # a dark trouser shape on a white, non-square picture: squared, resized, inverted
    img = np.full((80, 50), 255, dtype=np.uint8)
    img[5:75, 12:38] = 30
    img[40:75, 23:27] = 255
    r = client.post("/cnn/api/image", content=_png(img), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["inverted"] and (doc["width"], doc["height"]) == (50, 80)
    x = np.asarray(doc["pixels"]).reshape(28, 28)
    assert x[8, 14] > 0.6 and x[24, 14] < 0.4  # light legs on black, dark between them
    assert x[1, 1] < 0.05 and x[14, 1] < 0.05
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "image", "pixels": doc["pixels"]})
        f = receive(ws, "frame")
        assert f["image"]["index"] is None and abs(sum(f["probs"]) - 1) < 1e-3


def test_bad_uploads_get_a_sentence(client):
    from PIL import Image
    cases = [(b"", 400, "empty"),
             (b"GIF89a" + b"\0" * 50, 415, "not a PNG or JPEG"),
             (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, 415, "cannot be read"),
             (b"\x89PNG\r\n\x1a\n" + b"\0" * (cnn.MAX_UPLOAD_BYTES + 1), 413, "at most")]
    big = io.BytesIO()
    Image.new("1", (5000, 4000)).save(big, format="PNG")  # small file, too many pixels
    cases.append((big.getvalue(), 413, "5000x4000"))
    for body, status, words in cases:
        r = client.post("/cnn/api/image", content=body)
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["error"], r.json()


@pytest.mark.parametrize("message, field, words", [
    ("not json", None, "not JSON"),
    ('["play"]', None, "JSON object"),
    ('{"type": "fly"}', "type", "unknown message type 'fly'"),
    ('{"type": "configure", "model": "resnet18"}', "model", "model must be one of lenet5, cnn_bn"),
    ('{"type": "configure", "lr": 5}', "lr", "lr must be a number from 1e-05 to 1, got 5"),
    ('{"type": "configure", "lr": "fast"}', "lr", "lr must be a number"),
    ('{"type": "configure", "lr": true}', "lr", "lr must be a number"),
    ('{"type": "configure", "batch_size": 0}', "batch_size", "from 1 to 128"),
    ('{"type": "configure", "batch_size": 2.5}', "batch_size", "an integer"),
    ('{"type": "configure", "train_size": 1000000}', "train_size", "from 100 to 10000"),
    ('{"type": "configure", "optimizer": "lbfgs"}', "optimizer", "one of sgd, adam"),
    ('{"type": "configure", "depth": 3}', "depth", "unknown setting 'depth'"),
    ('{"type": "step", "n": 1000}', "n", "from 1 to 100"),
    ('{"type": "select", "index": 99}', "index", "from 0 to 15"),
    ('{"type": "play", "now": 1}', "now", "no field 'now'"),
    ('{"type": "image", "pixels": [0.5, 0.5]}', "pixels", "28x28 = 784 pixels, got 2"),
    ('{"type": "image", "pixels": "abc"}', "pixels", "a list of 784 numbers"),
    ('{"type": "image", "pixels": [' + ",".join(["2"] * 784) + "]}", "pixels", "from 0 to 1"),
    ('{"type": "load_run", "path": ""}', "path", "type the path of a run directory"),
    ('{"type": "load_run", "path": "/nonexistent/run"}', "path", "no such directory"),
    ('{"type": "load_run", "path": "/tmp", "checkpoint": "first"}', "checkpoint", "'best' or"),
])
def test_bad_messages_get_a_sentence(client, message, field, words):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_text(message)
        err = receive(ws, "error")
        assert words in err["message"] and err["field"] == field, err
        ws.send_json({"type": "frame"})  # the session goes on
        assert receive(ws, "frame")["step"] == 0


def test_a_diverging_network_pauses_with_a_sentence(client):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "configure", "model": "cnn_bn", "optimizer": "sgd", "lr": 1.0,
                      "batch_size": 128, "train_size": 500})
        receive(ws, "frame")
        ws.send_json({"type": "step", "n": 100})
        m = ws.receive_json()
        while m["type"] == "frame" and m["step"] == 0:
            m = ws.receive_json()
        assert m["type"] == "error" and m["field"] == "lr", m
        assert "diverged" in m["message"] and "lower the learning rate" in m["message"]
        ws.send_json({"type": "configure", "lr": 0.01})
        ws.send_json({"type": "reset"})  # the session goes on with a new network
        f = receive(ws, "frame")
        while f["step"] != 0 or f["config"]["lr"] != 0.01:
            f = receive(ws, "frame")
        assert all(np.isfinite(f["probs"])) and f["test"][-1][1] > 2.0


def test_binary_and_oversized_messages_are_refused(client):
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_bytes(b"\x00\x01")
        assert "JSON text messages" in receive(ws, "error")["message"]
        ws.send_text(" " * (cnn.MAX_MESSAGE_BYTES + 1))
        assert "at most 65536 bytes" in receive(ws, "error")["message"]


# ----------------------------------------------------------------------- run directories
def _train_run(tmp, model_args):
    from foveanet.cli import main
    from test_cli import make_fake_fashion
    data_dir = make_fake_fashion(os.path.join(tmp, "data"), n_train=200, n_test=40)
    run = os.path.join(tmp, "run-" + model_args[1])
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["train", "--data-dir", data_dir, "--epochs", "1", "--limit-train", "100",
                   "--limit-test", "20", "--out", run, "--threads", "1", "--no-progress",
                   "--augment", "none"] + model_args)
    assert rc == 0
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("cnn-runs"))
    return {"lenet5": _train_run(tmp, ["--model", "lenet5"]),
            "mlp": _train_run(tmp, ["--model", "mlp", "--model-option", "hidden=16"])}


def test_a_run_directory_loads(client, runs):
    run_dir = runs["lenet5"]
    r = client.post("/cnn/api/run", json={"path": run_dir})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == "lenet5" and doc["convolutions"] == ["0", "3"]
    assert doc["dataset"] == "fashion-mnist" and doc["checkpoint"] == "best"
    before = {f: os.path.getmtime(os.path.join(run_dir, f)) for f in os.listdir(run_dir)}
    weights = fv.load_run(run_dir).model[0].weight.data
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "load_run", "path": run_dir, "checkpoint": "last"})
        status = receive(ws, "status")
        assert "loaded lenet5" in status["message"] and status["run"]["checkpoint"] == "last"
        f = receive(ws, "frame")
        assert f["run"]["path"] == os.path.abspath(run_dir) and f["step"] == 0
        k = signed(f["kernels"]).reshape(weights.shape)
        assert np.abs(k - weights).max() <= f["kernels"]["scale"] / 127.5 + 1e-6
        ws.send_json({"type": "step", "n": 5})  # continue training it here
        g = receive(ws, "frame")
        assert g["step"] == 5 and g["run"] is not None
        assert not np.allclose(signed(g["kernels"]), signed(f["kernels"]))
    after = {f: os.path.getmtime(os.path.join(run_dir, f)) for f in os.listdir(run_dir)}
    assert after == before  # the directory was only read


def test_unsuitable_run_directories_get_a_sentence(client, runs, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [({"path": str(tmp_path / "missing")}, 404, "no such directory"),
             ({"path": str(tmp_path / "notes.txt")}, 422, "is a file, not a run directory"),
             ({"path": str(tmp_path / "empty")}, 422, "has no config.json"),
             ({"path": runs["mlp"]}, 422, "has no convolution layer"),
             ({"path": runs["lenet5"], "checkpoint": "middle"}, 400, "'best' or 'last'"),
             ({"path": 3}, 400, "type the path"),
             ({"path": runs["lenet5"], "epoch": 1}, 400, "unknown field 'epoch'")]
    for body, status, words in cases:
        r = client.post("/cnn/api/run", json=body)
        assert r.status_code == status and words in r.json()["error"], (body, r.text)
    r = client.post("/cnn/api/run", content=b"{not json")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{\"model\": ")
    r = client.post("/cnn/api/run", json={"path": str(broken)})
    assert r.status_code == 422 and "cannot load the run" in r.json()["error"]
    monkeypatch.setattr(cnn, "MAX_RUN_PARAMETERS", 1000)
    r = client.post("/cnn/api/run", json={"path": runs["lenet5"]})
    assert r.status_code == 422 and "61,706 parameters" in r.json()["error"], r.text


def test_the_playground_app_serves_the_view_and_counts_its_sessions():
    from foveanet.playground.app import create_app
    with TestClient(create_app(max_sessions=2)) as c:
        assert c.get("/cnn").status_code == 200
        assert 'href="/cnn"' in c.get("/").text  # the 2-D page links here
        with c.websocket_connect("/cnn/ws") as ws:
            receive(ws, "frame")
            assert c.get("/healthz").json()["sessions"] == 1
        assert wait_until(lambda: c.get("/healthz").json()["sessions"] == 0)


def test_a_slow_client_skips_pictures_but_no_curve_points():
    box = cnn.Outbox()
    box.put_frame({"step": 1, "train": [[1, 2.0, 0.1]], "test": [[1, 2.1, 0.1]], "reset": True})
    box.put({"type": "status", "message": "x"})
    box.put_frame({"step": 2, "train": [[2, 1.5, 0.3]], "test": [], "reset": False})
    msgs = box.drain()
    assert [m.get("type") for m in msgs] == ["status", None]  # control first, one frame
    frame = msgs[1]
    assert frame["step"] == 2 and frame["reset"]  # the latest pictures, the earlier reset
    assert frame["train"] == [[1, 2.0, 0.1], [2, 1.5, 0.3]] and frame["test"] == [[1, 2.1, 0.1]]
    box.put_frame({"step": 3, "train": [[3, 1.0, 0.5]], "test": [], "reset": False})
    box.put_frame({"step": 0, "train": [], "test": [[0, 2.3, 0.1]], "reset": True})
    assert box.drain() == [{"step": 0, "train": [], "test": [[0, 2.3, 0.1]], "reset": True}]
    assert box.drain() == []


# ---------------------------------------------------------------- lifetime and limits
def test_closing_the_socket_stops_the_session(client):
    assert wait_until(lambda: cnn.live_sessions() == 0)
    with client.websocket_connect("/cnn/ws") as ws:
        receive(ws, "frame")
        ws.send_json({"type": "play"})
        receive(ws, "frame")
        assert cnn.live_sessions() == 1
    assert wait_until(lambda: cnn.live_sessions() == 0), "the session's thread is still running"


def test_a_client_that_vanishes_mid_stream_leaves_the_server_healthy():
    import socket as sockets
    import urllib.request

    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    from playground_util import live_app

    def health(base):
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            return json.loads(r.read())

    with live_app() as (base, app):
        url = base.replace("http://", "ws://") + "/cnn/ws"
        try:
            with connect(url, max_size=None) as ws:
                assert json.loads(ws.recv())["type"] == "hello"
                ws.send(json.dumps({"type": "play"}))
                ws.recv()
                assert health(base)["sessions"] == 1
                ws.socket.shutdown(sockets.SHUT_RDWR)  # gone without a closing handshake
                ws.socket.close()
        except (OSError, WebSocketException):
            pass  # closing a socket that is gone
        assert wait_until(lambda: health(base)["sessions"] == 0 and cnn.live_sessions() == 0)
        with connect(url, max_size=None) as again:  # a new session works
            msgs = [json.loads(again.recv()) for _ in range(2)]
            assert [m["type"] for m in msgs] == ["hello", "frame"]


def test_sessions_count_against_the_shared_limit():
    app = make_app(max_sessions=1)
    with TestClient(app) as c:
        with c.websocket_connect("/cnn/ws") as ws:
            receive(ws, "frame")
            assert app.state.sessions.counts() == {"cnn": 1}
            with c.websocket_connect("/cnn/ws") as second:
                err = second.receive_json()
                assert err["type"] == "error" and "1 training sessions already" in err["message"]
        assert wait_until(lambda: len(app.state.sessions) == 0)
        with c.websocket_connect("/cnn/ws") as ws:  # the slot is free again
            assert receive(ws, "frame")["step"] == 0


# ----------------------------------------------------------------------------- browser
@pytest.mark.slow
def test_browser_page_trains_and_its_pictures_change(tmp_path):
    from playground_util import chromium_skip_reason, console_watch, launch_chromium, live_server
    reason = chromium_skip_reason()
    if reason:
        pytest.skip(reason)
    pictures = """() => ({kernels: document.getElementById('kernels').toDataURL(),
        act: document.querySelector('canvas.act').toDataURL(),
        step: window.cnnView.lastFrame.step})"""
    with live_server() as base, launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 1120})
        with console_watch(page) as errors:
            page.goto(base + "/cnn")
            page.wait_for_function("window.cnnView && window.cnnView.frames > 0", timeout=30000)
            assert page.locator("#strip canvas").count() == cnn.STRIP_SIZE
            before = page.evaluate(pictures)
            t0, frames0 = time.monotonic(), page.evaluate("window.cnnView.frames")
            page.click("#play")
            page.wait_for_function("window.cnnView.lastFrame.step >= 150", timeout=30000)
            page.wait_for_function("window.cnnView.test.length >= 2", timeout=30000)
            during = page.evaluate(pictures)
            assert during["step"] > before["step"]
            assert during["kernels"] != before["kernels"] and during["act"] != before["act"]
            seconds = time.monotonic() - t0
            fps = (page.evaluate("window.cnnView.frames") - frames0) / seconds
            print(f"\nCNN view (lenet5): step {during['step']} {seconds:.1f} s after play, "
                  f"{fps:.1f} frames/s")
            page.click("#play")  # pause
            page.wait_for_function("!window.cnnView.lastFrame.playing", timeout=10000)
            # draw on the canvas: the prediction is for the drawing
            box = page.locator("#draw").bounding_box()
            page.mouse.move(box["x"] + 70, box["y"] + 30)
            page.mouse.down()
            for i in range(12):
                page.mouse.move(box["x"] + 70 + 5 * (i % 2), box["y"] + 30 + 12 * i)
            page.mouse.up()
            page.wait_for_function("window.cnnView.lastFrame.image.index === null", timeout=10000)
            assert page.inner_text("#picturecap") == "your picture"
            # upload a picture: it becomes the drawing and gets a prediction
            img = np.full((60, 60), 250, dtype=np.uint8)
            img[10:50, 20:40] = 20
            page.evaluate("window.cnnView.lastFrame.image.index = -1")
            page.set_input_files("#upload", files=[{"name": "shirt.png", "mimeType": "image/png",
                                                    "buffer": _png(img)}])
            page.wait_for_function("window.cnnView.lastFrame.image.index === null", timeout=10000)
            assert "uploaded shirt.png (60x60, inverted" in page.inner_text("#message")
            page.click("#strip canvas >> nth=0")
            page.wait_for_function("window.cnnView.lastFrame.image.index === 0", timeout=10000)
            # a bad run directory gets a sentence in the page
            page.fill("#runpath", "/nonexistent/run")
            page.click("#loadrun")
            page.wait_for_function("document.getElementById('message').textContent"
                                   ".includes('no such directory')", timeout=10000)
            assert "no such directory" in page.inner_text("#runinfo")  # beside the field too
            page.fill("#runpath", "")
            assert page.inner_text("#runinfo") == ""
            page.click("#play")  # clears the message bar
            assert page.inner_text("#message") == ""
            page.wait_for_timeout(2500)
            page.click("#play")
            page.wait_for_function("!window.cnnView.lastFrame.playing", timeout=10000)
            page.wait_for_timeout(500)
            shot = os.path.join(SCREENSHOT_DIR or str(tmp_path), "playground_cnn.png")
            os.makedirs(os.path.dirname(shot), exist_ok=True)
            page.screenshot(path=shot + ".tmp.png", full_page=True)
            os.replace(shot + ".tmp.png", shot)
            assert os.path.getsize(shot) > 10000
        assert errors == [], errors
