// The Playground's CNN view: the page side of /cnn/ws (protocol in foveanet/playground/cnn.py).
// Plain JavaScript, no build step, no libraries.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    ws: null, classes: [], options: null, config: null, playing: false,
    train: [], test: [], frames: 0, lastFrame: null, strip: [],
    drawing: new Float32Array(28 * 28), drawnShown: false, sendTimer: null,
  };
  window.cnnView = state;  // read by the browser tests

  // ------------------------------------------------------------------ colours
  // A diverging map for signed values (127.5 = zero): blue below, dark at zero, orange to
  // light yellow above; grey for pictures in [0, 1].
  function lerp(a, b, t) { return [0, 1, 2].map((i) => Math.round(a[i] + (b[i] - a[i]) * t)); }
  const ZERO = [24, 24, 28], NEG1 = [60, 130, 255], NEG2 = [200, 230, 255];
  const POS1 = [250, 140, 30], POS2 = [255, 250, 210];
  const SIGNED = [];
  for (let i = 0; i < 256; i++) {
    const t = (i - 127.5) / 127.5, a = Math.abs(t);
    const c = t < 0 ? (a < 0.5 ? lerp(ZERO, NEG1, a / 0.5) : lerp(NEG1, NEG2, (a - 0.5) / 0.5))
                    : (a < 0.6 ? lerp(ZERO, POS1, a / 0.6) : lerp(POS1, POS2, (a - 0.6) / 0.4));
    SIGNED.push(c);
  }
  const GREY = Array.from({ length: 256 }, (_, i) => [i, i, i]);

  function decode(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // Draw `count` maps of h x w bytes (from `bytes`, map after map) into `canvas` as a grid of
  // `cols` columns with a 1-pixel gap; CSS scales it by `zoom` without smoothing.
  function drawGrid(canvas, bytes, count, h, w, cols, zoom, lut) {
    const rows = Math.ceil(count / cols), gap = 1;
    const W = cols * w + (cols - 1) * gap, H = rows * h + (rows - 1) * gap;
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    if (zoom > 0) { canvas.style.width = (W * zoom) + "px"; canvas.style.height = (H * zoom) + "px"; }
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(W, H);
    const px = img.data;
    for (let i = 0; i < px.length; i += 4) { px[i] = 255; px[i + 1] = 255; px[i + 2] = 255; px[i + 3] = 255; }
    for (let k = 0; k < count; k++) {
      const ox = (k % cols) * (w + gap), oy = Math.floor(k / cols) * (h + gap);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const c = lut[bytes[k * h * w + y * w + x]];
          const o = ((oy + y) * W + ox + x) * 4;
          px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2];
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas._grid = { bytes, count, h, w, cols, lut };
    if (hover.canvas === canvas) showZoom();
  }

  // ------------------------------------------------------------------ hover enlarges
  // Hovering a grid (kernels, activations, gradients) shows the map under the pointer enlarged.
  const hover = { canvas: null, k: -1, label: "" };
  const zoomBox = document.createElement("div");
  zoomBox.className = "zoom";
  zoomBox.innerHTML = '<canvas></canvas><div class="cap"></div>';
  document.body.appendChild(zoomBox);
  function showZoom() {
    const g = hover.canvas && hover.canvas._grid;
    if (!g || hover.k < 0 || hover.k >= g.count) { zoomBox.style.display = "none"; return; }
    const c = zoomBox.querySelector("canvas");
    drawGrid(c, g.bytes.subarray(hover.k * g.h * g.w, (hover.k + 1) * g.h * g.w), 1, g.h, g.w, 1,
      0, g.lut);
    zoomBox.querySelector(".cap").textContent = hover.label + ", channel " + hover.k;
    zoomBox.style.display = "block";
  }
  function watchGrid(canvas, label) {
    canvas.addEventListener("mousemove", (e) => {
      const g = canvas._grid;
      if (!g) return;
      const r = canvas.getBoundingClientRect();
      const x = (e.clientX - r.left) / r.width * canvas.width;
      const y = (e.clientY - r.top) / r.height * canvas.height;
      const col = Math.floor(x / (g.w + 1)), row = Math.floor(y / (g.h + 1));
      hover.canvas = canvas;
      hover.k = col < g.cols ? row * g.cols + col : -1;
      hover.label = label();
      zoomBox.style.left = Math.min(window.innerWidth - 170, e.clientX + 16) + "px";
      zoomBox.style.top = Math.min(window.innerHeight - 190, e.clientY + 16) + "px";
      showZoom();
    });
    canvas.addEventListener("mouseleave", () => { hover.canvas = null; zoomBox.style.display = "none"; });
  }

  function drawPicture(canvas, bytes) { drawGrid(canvas, bytes, 1, 28, 28, 1, 0, GREY); }

  function columnsFor(count) { return count <= 8 ? count : 8; }
  function zoomFor(h) { return h >= 20 ? 2 : Math.max(1, Math.round(36 / h)); }

  // ------------------------------------------------------------------ messages
  function showMessage(text, kind) {
    const el = $("message");
    el.textContent = text || "";
    el.className = "message" + (text ? " " + kind : "");
  }

  function markInvalid(field) {
    document.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
    const id = { path: "runpath", checkpoint: "checkpoint" }[field] || field;
    if (id && $(id)) $(id).classList.add("invalid");
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  // ------------------------------------------------------------------ controls
  function fillSelect(sel, entries) {
    sel.innerHTML = "";
    for (const [value, title] of Object.entries(entries)) {
      const o = document.createElement("option");
      o.value = value; o.textContent = title; sel.appendChild(o);
    }
  }

  function setControls(cfg) {
    $("model").value = cfg.model;
    $("optimizer").value = cfg.optimizer;
    const lr = String(cfg.lr);
    if (![...$("lr").options].some((o) => Number(o.value) === cfg.lr)) {
      const o = document.createElement("option"); o.textContent = lr; $("lr").appendChild(o);
    }
    [...$("lr").options].forEach((o) => { if (Number(o.value) === cfg.lr) $("lr").value = o.value; });
    $("batch_size").value = cfg.batch_size;
    $("train_size").value = cfg.train_size;
    $("seed").value = cfg.seed;
  }

  function configure(field) {
    const el = $(field);
    let value = el.value;
    if (field === "lr") value = Number(value);
    if (["batch_size", "train_size", "seed"].includes(field)) {
      value = Number(value);
      if (!Number.isFinite(value) || !Number.isInteger(value)) {
        showMessage(field.replace("_", " ") + " must be a whole number", "error");
        markInvalid(field);
        return;
      }
    }
    markInvalid(null);
    showMessage("", "");
    send({ type: "configure", [field]: value });
  }

  function setPlaying(on) {
    state.playing = on;
    const b = $("play");
    b.innerHTML = on ? "&#10074;&#10074;" : "&#9654;";
    b.title = on ? "Pause" : "Run";
  }

  // ------------------------------------------------------------------ drawing
  const draw = $("draw");
  function renderDrawing() {
    const bytes = new Uint8Array(784);
    for (let i = 0; i < 784; i++) bytes[i] = Math.round(state.drawing[i] * 255);
    drawGrid(draw, bytes, 1, 28, 28, 1, 0, GREY);
  }
  function sendDrawing() {
    state.drawnShown = true;
    send({ type: "image", pixels: Array.from(state.drawing, (v) => Math.round(v * 1000) / 1000) });
  }
  function scheduleSend() {
    if (state.sendTimer) return;
    state.sendTimer = setTimeout(() => { state.sendTimer = null; sendDrawing(); }, 200);
  }
  function paint(ev) {
    const r = draw.getBoundingClientRect();
    const cx = (ev.clientX - r.left) / r.width * 28, cy = (ev.clientY - r.top) / r.height * 28;
    for (let y = Math.floor(cy - 2); y <= Math.ceil(cy + 2); y++) {
      for (let x = Math.floor(cx - 2); x <= Math.ceil(cx + 2); x++) {
        if (x < 0 || y < 0 || x >= 28 || y >= 28) continue;
        const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
        const v = Math.max(0, 1 - d / 1.9);
        state.drawing[y * 28 + x] = Math.min(1, state.drawing[y * 28 + x] + v);
      }
    }
    renderDrawing();
    scheduleSend();
  }
  let painting = false;
  draw.addEventListener("pointerdown", (e) => { painting = true; draw.setPointerCapture(e.pointerId); paint(e); });
  draw.addEventListener("pointermove", (e) => { if (painting) paint(e); });
  draw.addEventListener("pointerup", () => { painting = false; sendDrawing(); });
  $("clear").addEventListener("click", () => { state.drawing.fill(0); renderDrawing(); sendDrawing(); });

  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    if (file.size > (state.options ? state.options.limits.max_upload_bytes : 1 << 20)) {
      showMessage("the picture is " + file.size + " bytes; at most 1 MiB is accepted", "error");
      return;
    }
    try {
      const r = await fetch("/cnn/api/image", { method: "POST", body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" } });
      const doc = await r.json();
      if (!r.ok) { showMessage(doc.error, "error"); return; }
      state.drawing.set(doc.pixels);
      renderDrawing();
      sendDrawing();
      showMessage("uploaded " + file.name + " (" + doc.width + "x" + doc.height +
        (doc.inverted ? ", inverted to light on dark" : "") + ")", "status");
    } catch (err) {
      showMessage("the upload failed: " + err, "error");
    }
  });

  // ------------------------------------------------------------------ rendering
  function renderStrip(strip) {
    const el = $("strip");
    el.innerHTML = "";
    for (const item of strip) {
      const c = document.createElement("canvas");
      c.width = 28; c.height = 28;
      c.title = state.classes[item.label] || "";
      c.dataset.index = item.index;
      drawPicture(c, decode(item.data));
      c.addEventListener("click", () => send({ type: "select", index: item.index }));
      el.appendChild(c);
    }
  }

  function renderProbs(frame) {
    const el = $("probs");
    if (el.children.length !== state.classes.length) {
      el.innerHTML = "";
      state.classes.forEach((name) => {
        const row = document.createElement("div");
        row.className = "prob";
        row.innerHTML = '<span class="name"></span><span class="bar"><span></span></span><span class="val"></span>';
        row.querySelector(".name").textContent = name;
        el.appendChild(row);
      });
    }
    frame.probs.forEach((p, i) => {
      const row = el.children[i];
      row.querySelector(".bar span").style.width = (100 * p).toFixed(1) + "%";
      row.querySelector(".val").textContent = (100 * p).toFixed(1) + "%";
      row.classList.toggle("pred", i === frame.pred);
      row.classList.toggle("truth", i === frame.image.label);
    });
  }

  function renderGradcam(frame) {
    const pic = decode(frame.image.data), cam = decode(frame.gradcam.data);
    const c = $("gradcam"), ctx = c.getContext("2d");
    const img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const g = pic[i] * 0.55, t = cam[i] / 255;
      const heat = [255 * Math.min(1, 2 * t), 255 * Math.max(0, 2 * t - 1) * 0.9, 40 * (1 - t)];
      const a = 0.75 * t;
      img.data[4 * i] = g * (1 - a) + heat[0] * a;
      img.data[4 * i + 1] = g * (1 - a) + heat[1] * a;
      img.data[4 * i + 2] = g * (1 - a) + heat[2] * a;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    $("gradcamcap").textContent = "Grad-CAM, layer " + frame.gradcam.layer;
  }

  function renderKernels(k) {
    const [cout, cin, kh, kw] = k.shape;
    const bytes = decode(k.data);
    const cols = Math.min(8, cout * cin);
    const zoom = Math.max(2, Math.min(Math.round(36 / kh), Math.floor(330 / (cols * (kw + 1)))));
    drawGrid($("kernels"), bytes, cout * cin, kh, kw, cols, zoom, SIGNED);
    $("kernelcap").textContent = "layer " + k.layer + ", " + cout + " of " + cin + "x" + kh + "x" +
      kw + ", max |w| " + k.scale.toFixed(3);
  }

  function renderLayers(frame) {
    const list = $("layerlist");
    const convOnly = $("convonly").checked;
    const shown = frame.layers.filter((l) => !convOnly || l.type === "Conv2d");
    const key = shown.map((l) => l.name + ":" + l.shape.join("x")).join(",");
    if (list.dataset.key !== key) {
      list.innerHTML = "";
      list.dataset.key = key;
      for (const l of shown) {
        const div = document.createElement("div");
        div.className = "layer";
        div.dataset.layer = l.name;
        div.innerHTML = '<div class="title"><b></b><span class="meta"></span></div>' +
          '<div class="maps"><figure><canvas class="act"></canvas><figcaption>activations</figcaption></figure>' +
          '<figure class="grad"><canvas class="gradmap"></canvas><figcaption>d loss / d activation</figcaption></figure></div>';
        div.querySelector(".act").dataset.layer = l.name;
        watchGrid(div.querySelector(".act"), () => "layer " + l.name + " " + l.type + ", activations");
        watchGrid(div.querySelector(".gradmap"), () => "layer " + l.name + " " + l.type + ", d loss / d activation");
        list.appendChild(div);
      }
    }
    shown.forEach((l, i) => {
      const div = list.children[i];
      const [C, H, W] = l.shape;
      div.querySelector("b").textContent = l.name + " \u00b7 " + l.type;
      div.querySelector(".meta").textContent = C + "\u00d7" + H + "\u00d7" + W +
        "   max |a| " + l.scale.toPrecision(3) + "   max |grad| " + l.grad_scale.toPrecision(3);
      const cols = columnsFor(C), zoom = zoomFor(H);
      drawGrid(div.querySelector(".act"), decode(l.data), C, H, W, cols, zoom, SIGNED);
      if (l.grad) drawGrid(div.querySelector(".gradmap"), decode(l.grad), C, H, W, cols, zoom, SIGNED);
    });
  }

  function chart(canvas, series, pick, label, fixedMax) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, L = 38, B = 18, T = 8, R = 8;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "#888";
    const all = series.flatMap((s) => s.points);
    if (!all.length) return;
    const xmax = Math.max(1, ...all.map((p) => p[0]));
    let ymax = fixedMax || Math.max(...all.map(pick)) * 1.05;
    if (!(ymax > 0)) ymax = 1;
    const X = (x) => L + (W - L - R) * x / xmax, Y = (y) => H - B - (H - B - T) * Math.min(y, ymax) / ymax;
    ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = ymax * i / 4;
      ctx.beginPath(); ctx.moveTo(L, Y(y)); ctx.lineTo(W - R, Y(y)); ctx.stroke();
      ctx.fillText(fixedMax ? (100 * y).toFixed(0) + "%" : y.toFixed(2), 2, Y(y) + 3);
    }
    ctx.fillText("step " + xmax, W - R - 50, H - 4);
    ctx.fillText(label, L + 4, H - 4);
    for (const s of series) {
      if (!s.points.length) continue;
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.6; ctx.beginPath();
      s.points.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(pick(p))) : ctx.moveTo(X(p[0]), Y(pick(p)))));
      ctx.stroke();
      if (s.points.length === 1) { ctx.fillStyle = s.color; ctx.fillRect(X(s.points[0][0]) - 2, Y(pick(s.points[0])) - 2, 4, 4); }
    }
  }

  function renderCharts() {
    const series = [{ points: state.train, color: "#0877bd" }, { points: state.test, color: "#f59322" }];
    chart($("losschart"), series, (p) => p[1], "cross-entropy");
    chart($("accchart"), series, (p) => p[2], "accuracy", 1);
  }

  function onFrame(f) {
    state.frames += 1;
    state.lastFrame = f;
    if (f.reset) { state.train = []; state.test = []; }
    state.train.push(...f.train);
    state.test.push(...f.test);
    if (state.train.length > 4000) state.train.splice(0, state.train.length - 4000);
    if (state.test.length > 4000) state.test.splice(0, state.test.length - 4000);
    setPlaying(f.playing);
    $("stepno").textContent = f.step;
    $("epoch").textContent = f.epoch.toFixed(2);
    if (state.test.length) $("testacc").textContent = (100 * state.test[state.test.length - 1][2]).toFixed(1) + "%";
    if (f.config) { state.config = f.config; setControls(f.config); }
    if (f.run || !$("runinfo").classList.contains("error")) {  // a load error stays until the next try
      $("runinfo").className = "runinfo";
      $("runinfo").textContent = f.run ? "showing " + f.run.model + " from " + f.run.path + " (" +
        f.run.checkpoint + ", epoch " + f.run.epoch + ")" : "";
    }
    drawPicture($("picture"), decode(f.image.data));
    const truth = f.image.label === null ? "your picture" : "test image " + f.image.index + ": " + state.classes[f.image.label];
    $("picturecap").textContent = truth;
    document.querySelectorAll("#strip canvas").forEach((c) => c.classList.toggle("chosen", Number(c.dataset.index) === f.image.index));
    draw.classList.toggle("chosen", f.image.index === null);
    renderProbs(f);
    renderGradcam(f);
    renderKernels(f.kernels);
    renderLayers(f);
    renderCharts();
  }

  // ------------------------------------------------------------------ the socket
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/cnn/ws");
    state.ws = ws;
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "hello") {
        state.classes = m.classes;
        state.options = m.options;
        fillSelect($("model"), m.options.models);
        fillSelect($("optimizer"), m.options.optimizers);
        $("testsize").textContent = m.options.limits.test_size;
        setControls(m.config);
        renderStrip(m.strip);
      } else if (m.type === "frame") {
        onFrame(m);
      } else if (m.type === "error") {
        showMessage(m.message, "error");
        markInvalid(m.field);
        if (m.field === "path" || m.field === "checkpoint") {
          $("runinfo").textContent = m.message;
          $("runinfo").className = "runinfo error";
        }
        if (m.field && state.config) setControls(state.config);
      } else if (m.type === "status") {
        showMessage(m.message, "status");
        if (m.run) $("runinfo").textContent = "";
      }
    };
    ws.onclose = () => {
      setPlaying(false);
      if (!$("message").classList.contains("error")) showMessage("the connection to the server closed; reload the page to start a new session", "error");
    };
  }

  $("play").addEventListener("click", () => {
    if (!state.playing) showMessage("", "");
    send({ type: state.playing ? "pause" : "play" });
    setPlaying(!state.playing);
  });
  $("step").addEventListener("click", () => { showMessage("", ""); send({ type: "step", n: 1 }); });
  $("reset").addEventListener("click", () => { showMessage("", ""); send({ type: "reset" }); });
  ["model", "optimizer", "lr", "batch_size", "train_size", "seed"].forEach((f) =>
    $(f).addEventListener("change", () => configure(f)));
  $("loadrun").addEventListener("click", () => {
    const path = $("runpath").value.trim();
    if (!path) { showMessage("type the path of a run directory (made by foveanet train)", "error"); markInvalid("runpath"); return; }
    markInvalid(null);
    $("runinfo").className = "runinfo";
    $("runinfo").textContent = "";
    showMessage("loading " + path + " ...", "status");
    send({ type: "load_run", path: path, checkpoint: $("checkpoint").value });
  });
  $("runpath").addEventListener("input", () => {
    markInvalid(null);
    if ($("runinfo").classList.contains("error")) { $("runinfo").textContent = ""; $("runinfo").className = "runinfo"; }
  });
  $("runpath").addEventListener("keydown", (e) => { if (e.key === "Enter") $("loadrun").click(); });
  $("showgrads").addEventListener("change", () => document.querySelector(".col.layers").classList.toggle("nograds", !$("showgrads").checked));
  $("convonly").addEventListener("change", () => { if (state.lastFrame) renderLayers(state.lastFrame); });

  watchGrid($("kernels"), () => "first-layer kernel");
  renderDrawing();
  connect();
})();
