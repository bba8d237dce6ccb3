"""The Playground's server without a browser: validation (HTTP and socket), limits, 8 sessions at
once, closing and breaking sockets, training, exports."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")

from starlette.testclient import TestClient  # noqa: E402

import foveanet as fv  # noqa: E402
from foveanet.playground.app import MAX_COLUMNS, MAX_CSV_BYTES, MAX_ROWS, create_app  # noqa: E402
from foveanet.playground.limits import SessionRegistry  # noqa: E402
from foveanet.playground.session import Session, check_state  # noqa: E402
from playground_util import live_app  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def receive_until(ws, kind, limit=50):
    """Messages from a TestClient socket until one of type ``kind``; returns (it, all seen)."""
    seen = []
    for _ in range(limit):
        msg = ws.receive_json()
        seen.append(msg)
        if msg["type"] == kind:
            return msg, seen
    raise AssertionError(f"no {kind!r} message in {limit}: {[m['type'] for m in seen]}")


# ---------------------------------------------------------------------------- binding
def test_cli_binds_localhost_by_default():
    from foveanet.cli import build_parser
    from foveanet.cli import playground as cli_playground

    args = build_parser().parse_args(["playground"])
    assert args.host == "127.0.0.1"
    assert cli_playground.DEFAULT_HOST == "127.0.0.1"
    assert args.max_sessions == "8" and not args.open


def test_cli_refuses_a_bad_port():
    from foveanet.cli import main

    assert main(["playground", "--port", "70000"]) == 2
    assert main(["playground", "--max-sessions", "0"]) == 2


def test_pages_and_options(client):
    r = client.get("/")
    assert r.status_code == 200 and "playground.js" in r.text
    assert 'href="/cnn"' in r.text and "The lecture, slide by slide" in r.text
    for name in ("playground.js", "playground.css"):
        assert client.get(f"/static/{name}").status_code == 200
    opts = client.get("/api/options").json()
    assert opts["defaults"]["layers"] == [4, 2] and opts["limits"]["max_sessions"] == 8
    assert client.get("/healthz").json() == {"ok": True, "sessions": 0, "max_sessions": 8}


def test_unknown_pages_answer_a_sentence(client):
    r = client.get("/nowhere")
    assert r.status_code == 404 and "no page /nowhere" in r.json()["error"]
    r = client.get("/api/csv")
    assert r.status_code == 405 and "GET is not accepted" in r.json()["error"]


def test_lecture_page(tmp_path):
    doc = tmp_path / "LECTURE.md"
    doc.write_text("# Slide 1 <neuron>\n\nSee [two](#2-two) and `fv.nn`.\n\n```\nx = 1\n```\n",
                   encoding="utf-8")
    with TestClient(create_app(lecture_path=doc)) as c:
        r = c.get("/lecture")
        assert r.status_code == 200
        assert "<h1 id='slide-1-neuron'>Slide 1 &lt;neuron&gt;</h1>" in r.text
        assert "<a href='#2-two'>two</a>" in r.text and "<code>fv.nn</code>" in r.text
        assert "<pre>x = 1</pre>" in r.text
    with TestClient(create_app(lecture_path=tmp_path / "missing.md")) as c:
        r = c.get("/lecture")
        assert r.status_code == 404 and "not part of this installation" in r.text


# ----------------------------------------------------------------------- HTTP validation
@pytest.mark.parametrize("doc, field, words", [
    ({"lr": 100}, "lr", "from 1e-05 to 10"),
    ({"lr": "fast"}, "lr", "must be a number"),
    ({"layers": [2] * 7}, "layers", "at most 6"),
    ({"layers": [9]}, "layers", "from 1 to 8"),
    ({"layers": [0]}, "layers", "from 1 to 8"),
    ({"features": ["x3"]}, "features", "must be one of"),
    ({"features": []}, "features", "non-empty"),
    ({"batch": 0}, "batch", "from 1 to 30"),
    ({"batch": 2.5}, "batch", "an integer"),
    ({"noise": 51}, "noise", "from 0 to 50"),
    ({"ratio": 5}, "ratio", "from 10 to 90"),
    ({"activation": "softplus"}, "activation", "relu, tanh, sigmoid, linear"),
    ({"reg": "l3"}, "reg", "none, l1, l2"),
    ({"reg_rate": -1}, "reg_rate", "from 0 to 10"),
    ({"dataset": "moons"}, "dataset", "must be one of"),
    ({"dataset": "circle", "problem": "regression"}, "problem", "classification set"),
    ({"dataset": "csv"}, "csv", "uploaded table"),
    ({"sigma": 0}, "sigma", "from 0.1 to 10"),
    ({"dropout": 1}, "dropout", "from 0 to 0.9"),
    ({"speed": 10000}, "speed", "from 1 to 300"),
    ({"discretize": "yes"}, "discretize", "true or false"),
    ({"depth": 3}, "depth", "unknown setting"),
])
def test_state_validation(client, doc, field, words):
    r = client.post("/api/state", content=json.dumps(doc))
    assert r.status_code == 400
    body = r.json()
    assert body["field"] == field and words in body["error"], body


def test_state_accepts_and_normalises(client):
    r = client.post("/api/state", content=json.dumps({"dataset": "multigauss",
                                                      "features": ["x2", "x1"]}))
    assert r.status_code == 200
    state = r.json()["state"]
    assert state["problem"] == "regression" and state["features"] == ["x1", "x2"]
    r = client.post("/api/state", content=b"{not json")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    r = client.post("/api/state", content=b"x" * (70 * 1024))
    assert r.status_code == 413


def csv_bytes(rows, header="a,b,label"):
    return (header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows)).encode()


@pytest.mark.parametrize("data, status, words", [
    (b"", 422, "empty"),
    (b"a,b\x00,c\n", 415, "not a text file"),
    (b"a,b\n\xff\xfe1,2\n", 415, "not UTF-8"),
    (csv_bytes([[1, 2, 0], [1, 2], [3, 4, 1], [5, 6, 0]]), 422, "row 3 has 2 values"),
    (csv_bytes([[1, 2, 0], [1, "x", 1], [3, 4, 1], [5, 6, 0]]), 422, "row 3, column 'b'"),
    (csv_bytes([[1, 2, 0], [1, "nan", 1], [3, 4, 1], [5, 6, 0]]), 422, "not a finite number"),
    (csv_bytes([[1, 2, 0]]), 422, "at least 4"),
    (csv_bytes([[1]] * 10, header="only"), 422, "at least 2 columns"),
    (csv_bytes([list(range(MAX_COLUMNS + 1))] * 5,
               header=",".join(f"c{i}" for i in range(MAX_COLUMNS + 1))), 422,
     f"at most {MAX_COLUMNS}"),
    (csv_bytes([[1, 2, 0]] * (MAX_ROWS + 1)), 422, f"at most {MAX_ROWS}"),
    (b"a,a,b\n1,2,3\n1,2,3\n1,2,3\n1,2,3\n", 422, "twice"),
    (b"x" * (MAX_CSV_BYTES + 1), 413, "at most"),
])
def test_csv_validation(client, data, status, words):
    r = client.post("/api/csv", content=data)
    assert r.status_code == status, r.text
    assert words in r.json()["error"], r.json()


def three_class_table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-3.0, -2.0], [3.0, -2.0], [0.0, 3.0]])
    label = rng.integers(0, 3, n)
    pts = centres[label] + rng.normal(0, 0.8, (n, 2))
    lines = ["width;height;kind"] + [f"{x:.4f};{y:.4f};{k}" for (x, y), k in zip(pts, label)]
    return "\n".join(lines).encode()


def test_csv_upload_trains_three_classes(client):
    r = client.post("/api/csv?filename=blobs.csv", content=three_class_table())
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["columns"] == ["width", "height", "kind"] and up["rows"] == 300
    assert up["suggestion"] == {"label": "kind", "x1": "width", "x2": "height",
                                "problem": "classification"}
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "state": {
            "dataset": "csv", "problem": "classification", "lr": 0.1,
            "csv": {"id": up["id"], "label": "kind", "x1": "width", "x2": "height"}}})
        data, _ = receive_until(ws, "data")
        assert data["classes"] == 3 and len(data["points"]) == 300
        first, _ = receive_until(ws, "frame")
        for _ in range(20):
            ws.send_json({"type": "step"})
            frame, _ = receive_until(ws, "frame")
        assert frame["test_loss"] < 0.5 * first["test_loss"]
        assert frame["test_accuracy"] > 0.9
        assert np.array(frame["confusion"]).shape == (3, 3)
        assert "output_class" in frame
        assert client.get(f"/api/csv/{up['id']}").json()["rows"] == 300
        r = client.get("/api/csv/feedbeef")
        assert r.status_code == 404 and "upload the file again" in r.json()["error"]
        # an unknown upload id is a sentence, and the session goes on
        ws.send_json({"type": "configure", "state": {"csv": {"id": "feedbeef"}}})
        err, _ = receive_until(ws, "error")
        assert "upload the file again" in err["message"] and err["field"] == "csv"
        ws.send_json({"type": "frame"})
        receive_until(ws, "frame")


# ------------------------------------------------------------------- socket validation
def test_socket_validation_keeps_the_session(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "state": {"lr": 0.1}})
        receive_until(ws, "frame")
        cases = [
            ("not json", None, "not JSON"),
            (json.dumps([1, 2]), "type", "unknown message type"),
            (json.dumps({"type": "explode"}), "type", "unknown message type"),
            (json.dumps({"type": "configure", "state": {"layers": [1] * 8}}), "layers",
             "at most 6"),
            (json.dumps({"type": "configure", "state": 5}), "state", "JSON object"),
            (json.dumps({"type": "weight", "layer": 9, "to": 0, "from": 0, "value": 1}), "layer",
             "from 0 to 2"),
            (json.dumps({"type": "weight", "layer": 0, "to": 0, "from": 0, "value": "big"}),
             "value", "must be a number"),
            (json.dumps({"type": "export", "format": "pickle"}), "format", "onnx, safetensors"),
            (json.dumps({"type": "predict", "points": [[1, "a"]]}), "points", "pair"),
            (json.dumps({"type": "reset", "same": "yes"}), "same", "true or false"),
            ("x" * (300 * 1024), None, "at most"),
        ]
        for text, field, words in cases:
            ws.send_text(text)
            err, _ = receive_until(ws, "error")
            assert err["field"] == field and words in err["message"], (text[:60], err)
        ws.send_bytes(b"\x00\x01")
        err, _ = receive_until(ws, "error")
        assert "not binary" in err["message"]
        ws.send_json({"type": "step", "id": 7})
        frame, _ = receive_until(ws, "frame")
        assert frame["id"] == 7 and frame["epoch"] == 1


def test_a_bad_start_state_falls_back_to_the_defaults(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "state": {"layers": [99], "lr": 0.1}})
        err, _ = receive_until(ws, "error")
        assert err["field"] == "layers" and "the default layers" in err["message"]
        state, _ = receive_until(ws, "state")
        assert state["state"]["layers"] == [4, 2] and state["state"]["lr"] == 0.1
    with client.websocket_connect("/ws") as ws:  # a link whose problem type contradicts its set
        ws.send_json({"type": "start", "state": {"dataset": "multigauss",
                                                 "problem": "classification", "batch": 5}})
        err, _ = receive_until(ws, "error")
        assert err["field"] == "problem"
        state, _ = receive_until(ws, "state")
        assert state["state"]["dataset"] == "multigauss" and state["state"]["batch"] == 5
        assert state["state"]["problem"] == "regression"


# ------------------------------------------------------------------ training, exports
def test_default_net_learns_circle():
    s = Session()
    t = time.perf_counter()
    n = s.train(500, budget_s=10)
    print(f"{(time.perf_counter() - t) / n * 1e3:.2f} ms a step")  # the speed: the benchmark's
    assert n == 500
    for _ in range(60):
        s.epoch_step()
    assert s.metrics()["test_loss"] < 0.1


def test_xor_with_product_feature_learns():
    s = Session({"dataset": "xor", "features": ["x1", "x2", "x1x2"], "layers": [2]})
    for _ in range(60):
        s.epoch_step()
    assert s.metrics()["test_loss"] < 0.1


def test_regression_and_settings_apply():
    s = Session({"dataset": "plane", "layers": [2], "activation": "linear"})
    assert s.state["problem"] == "regression" and s.outputs == 1
    before = s.metrics()["test_loss"]
    for _ in range(10):
        s.epoch_step()
    assert s.metrics()["test_loss"] < before / 4
    s.configure({"optimizer": "adam", "reg": "l1", "reg_rate": 0.01, "dropout": 0.2,
                 "lr": 0.003})
    assert type(s.optimizer).__name__ == "Adam" and s.optimizer.param_groups[0]["lr"] == 0.003
    assert all(d.p == 0.2 for d in s.dropouts)
    s.epoch_step()
    assert np.isfinite(s.metrics()["test_loss"])


def test_per_layer_activation_and_sigmoid_steepness():
    s = Session({"layers": [3, 3], "acts": ["relu", "sigmoid"], "sigma": 4.0})
    kinds = [type(m).__name__ for m in s.model]
    assert kinds.count("ReLU") == 1 and kinds.count("Sigmoid") == 1
    assert next(m for m in s.model if type(m).__name__ == "Sigmoid").sigma == 4.0
    assert check_state({"acts": ["tanh", "tanh"]})["acts"] is None  # all the global one


def test_reset_to_the_same_initial_weights():
    s = Session({"init": "xavier", "init_seed": 3})
    w0 = [lin.weight.data.copy() for lin in s.linears]
    for _ in range(3):
        s.epoch_step()
    assert not np.allclose(w0[0], s.linears[0].weight.data)
    s.reset(same=True)
    assert all(np.array_equal(a, lin.weight.data) for a, lin in zip(w0, s.linears))
    s.reset(same=False)
    assert s.state["init_seed"] == 4
    assert not np.allclose(w0[0], s.linears[0].weight.data)


def test_weight_edit_changes_the_output():
    s = Session()
    before = s.predict([[1.0, 1.0]])
    s.set_weight(0, 0, 0, 5.0)
    s.set_weight(0, 1, "bias", -2.0)
    assert s.linears[0].weight.data[0, 0] == 5.0 and s.linears[0].bias.data[1] == -2.0
    assert s.predict([[1.0, 1.0]]) != before


def test_stop_conditions():
    s = Session({"stop_epochs": 3})
    for _ in range(3):
        s.epoch_step()
    assert "3 epochs done" in s.stop_reason(s.metrics())
    s.configure({"stop_epochs": 0, "stop_loss": 5.0})
    assert "below 5" in s.stop_reason(s.metrics())


def test_exports_load_back_with_equal_outputs(tmp_path):
    pytest.importorskip("onnx")
    s = Session({"features": ["x1", "x2", "x1sq", "sinx2"], "layers": [3, 2], "dropout": 0.1})
    for _ in range(5):
        s.epoch_step()
    pts = [[0.5, -1.0], [3.0, 2.0], [-4.0, 5.5]]
    expected = np.array(s.predict(pts))
    onnx_path = tmp_path / "net.onnx"
    onnx_path.write_bytes(base64.b64decode(s.export("onnx")["data"]))
    model = fv.onnx.load(str(onnx_path))
    from foveanet.playground.session import features_of
    with fv.no_grad():
        got = model(fv.tensor(features_of(np.array(pts), s.state["features"]))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    (tmp_path / "playground.safetensors").write_bytes(
        base64.b64decode(s.export("safetensors")["data"]))
    snippet = s.export("python")["text"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(snippet, "playground_model.py", "exec"), scope)  # noqa: S102 - our snippet
    finally:
        os.chdir(cwd)
    with fv.no_grad():
        rebuilt = scope["model"](scope["features"](pts)).numpy()
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ the registry, concurrency
def test_registry_counts_kinds_and_refuses_beyond_the_limit():
    reg = SessionRegistry(2)
    a, b = reg.acquire("playground"), reg.acquire("cnn")
    assert a is not None and b is not None and reg.acquire("cnn") is None
    assert reg.counts() == {"playground": 1, "cnn": 1} and len(reg) == 2
    reg.release(a)
    reg.release(a)
    assert len(reg) == 1 and "limit" in reg.refusal()
    with pytest.raises(ValueError):
        SessionRegistry(0)


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _frames(ws, count, timeout=20.0, until=None):
    """``count`` frames from ``ws`` or, with ``until``, frames until ``until(frames)`` holds (at
    least ``count``); either way within ``timeout`` seconds."""
    out = []
    deadline = time.monotonic() + timeout

    def more():
        return len(out) < count or (until is not None and not until(out))

    while more() and time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if msg["type"] == "frame":
            out.append(msg)
        elif msg["type"] == "error":
            raise AssertionError(msg["message"])
    return out


@pytest.mark.slow
def test_eight_sessions_train_independently_and_a_ninth_is_refused():
    settings = [{"dataset": d, "lr": lr, "layers": layers}
                for d, lr, layers in [("circle", 0.03, [4, 2]), ("xor", 0.1, [4]),
                                      ("gauss", 0.01, [2]), ("spiral", 0.03, [8, 8]),
                                      ("plane", 0.01, [1]), ("multigauss", 0.03, [6, 4]),
                                      ("circle", 0.3, [3]), ("xor", 0.003, [])]]
    with live_app(max_sessions=8) as (base, app):
        url = base.replace("http", "ws") + "/ws"
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(websockets_sync.connect(url)) for _ in settings]
            for ws, st in zip(sockets, settings):
                ws.send(json.dumps({"type": "start", "state": st}))
            assert _wait_for(lambda: len(app.state.sessions) == 8)
            with websockets_sync.connect(url) as ninth:
                msg = json.loads(ninth.recv(timeout=10))
                assert msg["type"] == "error" and "8 training sessions already" in msg["message"]
            for ws in sockets:
                ws.send(json.dumps({"type": "play"}))
            # on a loaded machine a frame may carry a single update: read until the epoch moves
            def advanced(frames):
                playing = [f for f in frames if f["playing"]]
                return len(playing) >= 2 and playing[-1]["epoch"] > playing[0]["epoch"]

            runs = [_frames(ws, 6, timeout=60.0, until=advanced) for ws in sockets]
            for st, frames in zip(settings, runs):
                assert len(frames) >= 6, st
                playing = [f for f in frames if f["playing"]]
                assert playing[-1]["epoch"] > playing[0]["epoch"], st
                assert playing[-1]["test_loss"] != playing[0]["test_loss"], st
            for frames in runs:
                assert frames[-1]["epoch"] > 0
            # each session has its own network: the weight shapes follow its own settings
            for st, frames in zip(settings, runs):
                assert len(frames[-1]["weights"]) == len(st["layers"]) + 1
            finals = {round(frames[-1]["test_loss"], 6) for frames in runs}
            assert len(finals) == 8
        assert _wait_for(lambda: len(app.state.sessions) == 0), "closed sockets keep sessions"


@pytest.mark.slow
def test_a_client_that_vanishes_mid_stream_leaves_the_server_healthy():
    import urllib.request

    with live_app() as (base, app):
        url = base.replace("http", "ws") + "/ws"
        with websockets_sync.connect(url) as ws:
            ws.send(json.dumps({"type": "start", "state": {}}))
            ws.send(json.dumps({"type": "play"}))
            assert len(_frames(ws, 3)) == 3
            ws.socket.close()  # no closing handshake: the tab crashed, the network went away
        assert _wait_for(lambda: len(app.state.sessions) == 0), "a vanished client kept its session"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
        with websockets_sync.connect(url) as again:
            again.send(json.dumps({"type": "start", "state": {"dataset": "xor"}}))
            again.send(json.dumps({"type": "step"}))
            frames = _frames(again, 2)
            assert frames[-1]["epoch"] == 1
        assert _wait_for(lambda: len(app.state.sessions) == 0)


@pytest.mark.slow
def test_the_command_prints_its_url_and_serves_on_localhost():
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "foveanet", "playground", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("foveanet Playground: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "healthz", timeout=10) as r:
            assert json.loads(r.read())["ok"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_diverging_network_pauses_with_a_sentence(client):
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"type": "start", "state": {"lr": 10, "activation": "relu", "dataset":
                                                 "plane", "layers": [8, 8, 8], "init": "he"}})
        receive_until(ws, "frame")
        messages = []
        for _ in range(30):
            ws.send_json({"type": "step"})
            msg, seen = receive_until(ws, "frame")
            messages += seen
            if any(m["type"] == "error" for m in seen):
                break
        errors = [m for m in messages if m["type"] == "error"]
        assert errors, "relu at learning rate 10 on the plane diverges in its first epoch"
        for e in errors:
            assert e["field"] == "lr" and "lower the learning rate" in e["message"]
        ws.send_json({"type": "reset", "same": False})
        ws.send_json({"type": "configure", "state": {"lr": 0.03}})
        ws.send_json({"type": "step"})
        frame, _ = receive_until(ws, "frame")
        assert frame["epoch"] <= 1


def test_a_failed_change_keeps_the_network():
    s = Session()
    s.epoch_step()
    w = s.linears[0].weight.data.copy()
    with pytest.raises(Exception, match="upload the file again"):
        s.configure({"dataset": "csv", "csv": {"id": "gone"}})
    assert s.state["dataset"] == "circle" and s.epoch == 1
    assert np.array_equal(w, s.linears[0].weight.data)


def test_the_command_names_a_port_in_use(capsys):
    import socket

    from foveanet.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["playground", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "in use" in err


def test_a_data_change_trains_on_the_new_points():
    s = Session()
    s.epoch_step()
    s.configure({"dataset": "xor", "ratio": 80, "features": ["x1", "x2", "x1x2"],
                 "layers": [2]})
    assert s.n_train == 400 and s.epoch == 0
    for _ in range(40):
        s.epoch_step()
    assert len(s._train_x) == 400 and s._train_x.shape[1] == 3
    assert s.metrics()["test_loss"] < 0.1
    s.regenerate()
    assert s.state["seed"] == 1 and s.epoch == 0
