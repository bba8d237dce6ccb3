/* foveanet Playground: the page's side. The server (foveanet) trains; this draws.
 *
 * One WebSocket (/ws) per tab. The state lives in the URL hash (key=value&...), so a link
 * restores it; the server checks every value and answers the state it applied.
 * window.fvPlayground exposes the state, the frame statistics and request(msg) -> Promise of the
 * reply (for the browser tests and the responsiveness benchmark).
 */
(function () {
  "use strict";

  const LEARNING_RATES = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
  const REG_RATES = [0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
  const SPEEDS = [1, 3, 10, 30, 60, 120, 300];
  const ACTIVATIONS = {relu: "ReLU", tanh: "Tanh", sigmoid: "Sigmoid", linear: "Linear"};
  const REGS = {none: "None", l1: "L1", l2: "L2"};
  const PROBLEMS = {classification: "Classification", regression: "Regression"};
  const FEATURES = [["x1", "X<sub>1</sub>"], ["x2", "X<sub>2</sub>"], ["x1sq", "X<sub>1</sub><sup>2</sup>"],
    ["x2sq", "X<sub>2</sub><sup>2</sup>"], ["x1x2", "X<sub>1</sub>X<sub>2</sub>"],
    ["sinx1", "sin(X<sub>1</sub>)"], ["sinx2", "sin(X<sub>2</sub>)"]];
  const CLASS_SETS = ["circle", "xor", "gauss", "spiral"];
  const REG_SETS = ["plane", "multigauss"];
  const DEFAULTS = {
    dataset: "circle", problem: "classification", noise: 0, ratio: 50, seed: 0,
    features: ["x1", "x2"], layers: [4, 2], activation: "tanh", acts: null, sigma: 1.0,
    lr: 0.03, reg: "none", reg_rate: 0, batch: 10, optimizer: "sgd", init: "playground",
    init_seed: 0, dropout: 0, speed: 60, stop_loss: 0, stop_epochs: 0, csv: null,
    discretize: false, show_test: false,
  };
  const MAX_LAYERS = 6, MAX_NEURONS = 8;
  // Playground's colours: -1 orange, 0 light grey, +1 blue
  const NEG = [245, 147, 34], MID = [232, 234, 235], POS = [8, 119, 189];
  const CLASS_COLOURS = [[245, 147, 34], [8, 119, 189], [46, 160, 67], [214, 39, 40],
    [148, 103, 189], [140, 86, 75], [227, 119, 194], [23, 190, 207]];

  const $ = (id) => document.getElementById(id);
  let state = Object.assign({}, DEFAULTS, parseHash());
  let ws = null, playing = false, data = null, lastFrame = null, pendingFrame = null;
  let history = [], nextId = 1;
  const waiting = new Map();
  const stats = {frames: 0, playFrames: 0, playClickedAt: null, firstFrameAt: null,
                 firstFrameDelay: null, playStartedAt: null, errors: []};
  let netShape = "", nodes = {}, linkPaths = [];
  let csvInfo = null, lastToggle = -1e9;

  // ----------------------------------------------------------------------- colours
  function mix(a, b, t) { return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]; }
  function signedColour(t) { // t in [-1, 1]
    return t < 0 ? mix(MID, NEG, Math.min(1, -t)) : mix(MID, POS, Math.min(1, t));
  }
  const LUT = [], LUT_DISCRETE = [];
  for (let b = 0; b < 256; b++) {
    const t = b / 127.5 - 1;
    LUT.push(signedColour(t));
    LUT_DISCRETE.push(t >= 0 ? POS : NEG);
  }
  function rgb(c) { return `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`; }

  function decode(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  function paint(canvas, bytes, size, discrete, classes, probs) {
    if (canvas.width !== size) { canvas.width = size; canvas.height = size; }
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(size, size);
    const k = classes ? Math.max(2, data ? data.classes : 2) : 0;
    for (let i = 0; i < size * size; i++) {
      let c;
      if (classes) {
        const base = CLASS_COLOURS[classes[i] % CLASS_COLOURS.length];
        const p = probs[i] / 255, t = discrete ? 1 : Math.max(0, (p - 1 / k) / (1 - 1 / k));
        c = mix(MID, base, 0.25 + 0.75 * t);
      } else {
        c = (discrete ? LUT_DISCRETE : LUT)[bytes[i]];
      }
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2];
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  // ------------------------------------------------------------------------ URL hash
  function serialise(st) {
    const parts = [];
    for (const key of Object.keys(DEFAULTS)) {
      let v = st[key];
      if (v === undefined) continue;
      if (key === "csv") v = v ? [v.id, v.label || "", v.x1 || "", v.x2 || ""].map(encodeURIComponent).join(":") : "";
      else if (Array.isArray(v)) v = v.join(",");
      else if (v === null) v = "";
      parts.push(key + "=" + encodeURIComponent(String(v)));
    }
    return parts.join("&");
  }

  function parseHash() {
    const out = {};
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return out;
    for (const part of hash.split("&")) {
      const i = part.indexOf("=");
      if (i < 0) continue;
      const key = part.slice(0, i);
      let raw;
      try { raw = decodeURIComponent(part.slice(i + 1)); } catch (e) { continue; }
      if (!(key in DEFAULTS)) continue;
      const d = DEFAULTS[key];
      if (key === "layers") out[key] = raw === "" ? [] : raw.split(",").map(Number);
      else if (key === "features") out[key] = raw === "" ? [] : raw.split(",");
      else if (key === "acts") out[key] = raw === "" ? null : raw.split(",");
      else if (key === "csv") {
        if (raw === "") out[key] = null;
        else {
          let parts;
          try { parts = raw.split(":").map(decodeURIComponent); } catch (e) { parts = [raw]; }
          const [id, label, x1, x2] = parts;
          out[key] = {id, label: label || null, x1: x1 || null, x2: x2 || null};
        }
      } else if (typeof d === "boolean") out[key] = raw === "true";
      else if (typeof d === "number") out[key] = raw === "" ? NaN : Number(raw);
      else out[key] = raw;
    }
    // a toy data set decides the problem type when the link does not say it
    if (out.dataset && out.problem === undefined && out.dataset !== "csv") {
      out.problem = REG_SETS.includes(out.dataset) ? "regression" : "classification";
    }
    return out;
  }

  function writeHash() {
    const h = "#" + serialise(state);
    if (window.location.hash !== h) history_replace(h);
  }
  function history_replace(h) { window.history.replaceState(null, "", h); }

  // ------------------------------------------------------------------------- socket
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.onopen = () => {
      $("connection").textContent = "connected to foveanet";
      ws.send(JSON.stringify({type: "start", state: state}));
    };
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = () => {
      $("connection").textContent = "the server closed the connection: reload the page";
      setPlaying(false);
    };
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  function request(msg) {
    const id = nextId++;
    msg = Object.assign({}, msg, {id});
    return new Promise((resolve) => { waiting.set(id, resolve); send(msg); });
  }

  function configure(changes) {
    Object.assign(state, changes);
    writeHash();
    send({type: "configure", state: changes});
  }

  function showMessage(text, kind) {
    const box = $("messages");
    box.innerHTML = "";
    const span = document.createElement("span");
    span.className = kind;
    span.textContent = text;
    box.appendChild(span);
  }

  function onMessage(msg) {
    if (msg.id !== undefined && waiting.has(msg.id) && msg.type !== "state") {
      const resolve = waiting.get(msg.id);
      waiting.delete(msg.id);
      resolve(msg);
    }
    switch (msg.type) {
      case "state":
        state = Object.assign({}, DEFAULTS, msg.state);
        writeHash();
        syncControls();
        break;
      case "data":
        data = msg;
        drawPoints();
        drawDatasetList();
        buildNetwork();  // the number of outputs follows the data's classes
        break;
      case "frame":
        if (stats.playClickedAt !== null && stats.firstFrameAt === null && msg.playing) {
          stats.firstFrameAt = performance.now();
          stats.firstFrameDelay = stats.firstFrameAt - stats.playClickedAt;
        }
        if (msg.playing !== undefined && msg.playing !== playing && performance.now() - lastToggle > 500) setPlaying(!!msg.playing);
        pendingFrame = msg;
        requestAnimationFrame(renderPending);
        break;
      case "status":
        showMessage(msg.message, "status");
        break;
      case "error":
        stats.errors.push(msg.message);
        showMessage(msg.message, "error");
        break;
      case "export":
        download(msg);
        break;
      default:
        break;
    }
  }

  function renderPending() {
    if (!pendingFrame) return;
    const f = pendingFrame;
    pendingFrame = null;
    renderFrame(f);
    stats.frames++;
    if (f.playing) stats.playFrames++;
  }

  // ------------------------------------------------------------------------ controls
  function fillSelect(sel, values, labels) {
    sel.innerHTML = "";
    values.forEach((v, i) => {
      const o = document.createElement("option");
      o.value = String(v);
      o.textContent = labels ? labels[i] : String(v);
      sel.appendChild(o);
    });
  }

  function selectValue(sel, v) {
    const s = String(v);
    if (![...sel.options].some((o) => o.value === s)) {
      const o = document.createElement("option");
      o.value = s; o.textContent = s; sel.appendChild(o);
    }
    sel.value = s;
  }

  function setupControls() {
    fillSelect($("learningRate"), LEARNING_RATES);
    fillSelect($("activations"), Object.keys(ACTIVATIONS), Object.values(ACTIVATIONS));
    fillSelect($("regularizations"), Object.keys(REGS), Object.values(REGS));
    fillSelect($("regularRate"), REG_RATES);
    fillSelect($("problem"), Object.keys(PROBLEMS), Object.values(PROBLEMS));
    fillSelect($("speed"), SPEEDS);
    $("learningRate").onchange = (e) => configure({lr: Number(e.target.value)});
    $("activations").onchange = (e) => configure({activation: e.target.value, acts: null});
    $("regularizations").onchange = (e) => configure({reg: e.target.value});
    $("regularRate").onchange = (e) => configure({reg_rate: Number(e.target.value)});
    $("problem").onchange = (e) => {
      const p = e.target.value;
      if (state.dataset === "csv") configure({problem: p});
      else configure({problem: p, dataset: p === "regression" ? "plane" : "circle"});
    };
    $("optimizer").onchange = (e) => configure({optimizer: e.target.value});
    $("init").onchange = (e) => configure({init: e.target.value});
    $("dropout").onchange = (e) => configure({dropout: Number(e.target.value)});
    $("speed").onchange = (e) => configure({speed: Number(e.target.value)});
    $("sigma").onchange = (e) => configure({sigma: Number(e.target.value)});
    $("stop-loss").onchange = (e) => configure({stop_loss: Number(e.target.value)});
    $("stop-epochs").onchange = (e) => configure({stop_epochs: Number(e.target.value)});
    for (const [id, key] of [["percTrainData", "ratio"], ["noise", "noise"], ["batchSize", "batch"]]) {
      $(id).oninput = (e) => { $(id + "-value").textContent = e.target.value; };
      $(id).onchange = (e) => configure({[key]: Number(e.target.value)});
    }
    $("show-test-data").onchange = (e) => { state.show_test = e.target.checked; writeHash(); drawPoints(); };
    $("discretize").onchange = (e) => {
      state.discretize = e.target.checked; writeHash();
      if (lastFrame) renderFrame(lastFrame, true);
    };
    $("play-pause-button").onclick = () => {
      if (playing) { send({type: "pause"}); setPlaying(false); }
      else {
        stats.playClickedAt = performance.now(); stats.firstFrameAt = null; stats.playFrames = 0;
        send({type: "play"}); setPlaying(true);
      }
    };
    $("next-step-button").onclick = () => { setPlaying(false); send({type: "step"}); };
    $("reset-button").onclick = () => { setPlaying(false); history = []; send({type: "reset", same: false}); };
    $("reset-same").onclick = () => { setPlaying(false); history = []; send({type: "reset", same: true}); };
    $("data-regen-button").onclick = () => { history = []; send({type: "regenerate"}); };
    $("add-layers").onclick = () => {
      if (state.layers.length < MAX_LAYERS) changeLayers(state.layers.concat([2]));
    };
    $("remove-layers").onclick = () => {
      if (state.layers.length > 0) changeLayers(state.layers.slice(0, -1));
    };
    for (const [fmt, id] of [["onnx", "export-onnx"], ["safetensors", "export-safetensors"], ["python", "export-python"]]) {
      $(id).onclick = () => send({type: "export", format: fmt});
    }
    $("csv-file").onchange = uploadCsv;
    for (const id of ["csv-label", "csv-x1", "csv-x2"]) $(id).onchange = csvColumnsChanged;
    $("weight-editor-ok").onclick = applyWeightEdit;
    $("weight-editor-input").onkeydown = (e) => {
      if (e.key === "Enter") applyWeightEdit();
      if (e.key === "Escape") $("weight-editor").classList.add("hidden");
    };
  }

  function changeLayers(layers) {
    let acts = state.acts;
    if (acts) acts = layers.map((_, i) => acts[i] || state.activation);
    history = [];
    configure({layers, acts});
  }

  function setPlaying(on) {
    playing = on;
    lastToggle = performance.now();
    $("play-pause-button").classList.toggle("playing", on);
    if (on) stats.playStartedAt = performance.now();
  }

  function syncControls() {
    selectValue($("learningRate"), state.lr);
    $("activations").value = state.activation;
    $("regularizations").value = state.reg;
    selectValue($("regularRate"), state.reg_rate);
    $("problem").value = state.problem;
    $("optimizer").value = state.optimizer;
    $("init").value = state.init;
    selectValue($("dropout"), state.dropout);
    selectValue($("speed"), state.speed);
    $("sigma").value = state.sigma;
    $("stop-loss").value = state.stop_loss;
    $("stop-epochs").value = state.stop_epochs;
    for (const [id, key] of [["percTrainData", "ratio"], ["noise", "noise"], ["batchSize", "batch"]]) {
      $(id).value = state[key];
      $(id + "-value").textContent = state[key];
    }
    $("show-test-data").checked = !!state.show_test;
    $("discretize").checked = !!state.discretize;
    $("num-layers").textContent = state.layers.length;
    $("layers-label").textContent = state.layers.length === 1 ? "hidden layer" : "hidden layers";
    drawDatasetList();
    buildNetwork();
  }

  // ------------------------------------------------------------------------- datasets
  function iconPoints(name) { // a small seeded picture of each data set, drawn here
    let seed = 7;
    const rnd = () => { seed = (seed * 16807) % 2147483647; return seed / 2147483647; };
    const pts = [];
    for (let i = 0; i < 160; i++) {
      let x, y, v;
      if (name === "circle") {
        const inner = i % 2 === 0, r = inner ? rnd() * 2.5 : 3.5 + rnd() * 1.5, a = rnd() * 6.283;
        x = r * Math.sin(a); y = r * Math.cos(a); v = inner ? 1 : -1;
      } else if (name === "xor") {
        x = rnd() * 10 - 5; y = rnd() * 10 - 5; v = x * y >= 0 ? 1 : -1;
      } else if (name === "gauss") {
        const c = i % 2 === 0 ? 2 : -2;
        x = c + (rnd() + rnd() - 1) * 2; y = c + (rnd() + rnd() - 1) * 2; v = c > 0 ? 1 : -1;
      } else if (name === "spiral") {
        const k = i >> 1, r = (k + 1) / 80 * 5, t = 1.75 * (k + 1) / 80 * 6.283 + (i % 2 ? Math.PI : 0);
        x = r * Math.sin(t); y = r * Math.cos(t); v = i % 2 ? -1 : 1;
      } else if (name === "plane") {
        x = rnd() * 12 - 6; y = rnd() * 12 - 6; v = (x + y) / 10;
      } else if (name === "multigauss") {
        x = rnd() * 12 - 6; y = rnd() * 12 - 6;
        v = 0;
        for (const [cx, cy, s] of [[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]]) {
          const d = Math.hypot(x - cx, y - cy), g = s * Math.max(0, 1 - d / 2);
          if (Math.abs(g) > Math.abs(v)) v = g;
        }
      }
      pts.push([x, y, v]);
    }
    return pts;
  }

  function drawDatasetList() {
    const box = $("datasets");
    const sets = state.problem === "regression" ? REG_SETS.slice() : CLASS_SETS.slice();
    if (csvInfo || state.dataset === "csv") sets.push("csv");
    const key = sets.join(",") + "|" + state.dataset;
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.innerHTML = "";
    for (const name of sets) {
      const b = document.createElement("button");
      b.className = "dataset" + (state.dataset === name ? " selected" : "");
      b.id = "dataset-" + name;
      b.title = name === "csv" ? "the uploaded table" : name;
      const c = document.createElement("canvas");
      c.width = 56; c.height = 56;
      b.appendChild(c);
      const label = document.createElement("span");
      label.className = "name"; label.textContent = name === "multigauss" ? "multi-gauss" : name;
      b.appendChild(label);
      box.appendChild(b);
      const ctx = c.getContext("2d");
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 56, 56);
      if (name !== "csv") {
        for (const [x, y, v] of iconPoints(name)) {
          ctx.fillStyle = rgb(signedColour(v));
          ctx.beginPath(); ctx.arc((x + 6) / 12 * 56, (6 - y) / 12 * 56, 1.8, 0, 6.283); ctx.fill();
        }
      } else {
        ctx.fillStyle = "#183d4e"; ctx.font = "14px sans-serif"; ctx.fillText("CSV", 14, 32);
      }
      b.onclick = () => {
        if (name === "csv") {
          if (!csvInfo && !state.csv) return;
          configure({dataset: "csv", csv: state.csv || csvSpec(), problem: state.problem});
        } else {
          history = [];
          configure({dataset: name, problem: REG_SETS.includes(name) ? "regression" : "classification"});
        }
      };
    }
  }

  // ----------------------------------------------------------------------------- CSV
  async function restoreCsv() { // a link or a reload with an uploaded table: its column menus
    if (!state.csv || csvInfo) return;
    const r = await fetch("/api/csv/" + encodeURIComponent(state.csv.id));
    if (!r.ok) return; // the server's error message says to upload it again
    csvInfo = await r.json();
    for (const id of ["csv-label", "csv-x1", "csv-x2"]) fillSelect($(id), csvInfo.columns);
    $("csv-label").value = state.csv.label || csvInfo.suggestion.label;
    $("csv-x1").value = state.csv.x1 || csvInfo.suggestion.x1;
    $("csv-x2").value = state.csv.x2 || csvInfo.suggestion.x2;
    $("csv-columns").classList.remove("hidden");
    $("csv-info").textContent = `${csvInfo.filename || "table"}: ${csvInfo.rows} rows, ${csvInfo.columns.length} columns`;
    drawDatasetList();
  }

  async function uploadCsv() {
    const file = $("csv-file").files[0];
    if (!file) return;
    const r = await fetch("/api/csv?filename=" + encodeURIComponent(file.name), {method: "POST", body: file});
    const body = await r.json();
    if (!r.ok) { showMessage(`The CSV file was refused: ${body.error}`, "error"); return; }
    csvInfo = body;
    for (const id of ["csv-label", "csv-x1", "csv-x2"]) fillSelect($(id), body.columns);
    $("csv-label").value = body.suggestion.label;
    $("csv-x1").value = body.suggestion.x1;
    $("csv-x2").value = body.suggestion.x2;
    $("csv-columns").classList.remove("hidden");
    $("csv-info").textContent = `${body.rows} rows, ${body.columns.length} columns`;
    showMessage(`Uploaded ${body.filename || "the table"}: ${body.rows} rows; training on it.`, "status");
    history = [];
    configure({dataset: "csv", csv: csvSpec(), problem: body.suggestion.problem});
  }

  function csvSpec() {
    return {id: csvInfo.id, label: $("csv-label").value, x1: $("csv-x1").value, x2: $("csv-x2").value};
  }

  function csvColumnsChanged() {
    if (!csvInfo) return;
    history = [];
    configure({dataset: "csv", csv: csvSpec()});
  }

  // -------------------------------------------------------------------------- network
  function outputs() { return data && data.classes > 2 ? data.classes : 1; }

  function layerActs() { return state.acts || state.layers.map(() => state.activation); }

  function buildNetwork() {
    const shape = JSON.stringify([state.features, state.layers, layerActs(), outputs()]);
    if (shape === netShape) return;
    netShape = shape;
    const net = $("network");
    const svg = $("links");
    net.querySelectorAll(".node, .layer-head").forEach((n) => n.remove());
    svg.innerHTML = "";
    nodes = {};
    const width = Math.max(520, net.clientWidth || 600);
    const cols = state.layers.length + 2;
    const colX = (i) => 60 + i * ((width - 140) / (cols - 1));
    const nodeY = (j) => 40 + j * 48;
    // features
    FEATURES.forEach(([key, label], j) => {
      const n = makeNode(`feature-${key}`, "node feature" + (state.features.includes(key) ? "" : " off"), colX(0), nodeY(j));
      const l = document.createElement("span");
      l.className = "label"; l.innerHTML = label;
      n.appendChild(l);
      n.onclick = () => {
        const on = state.features.includes(key);
        const features = on ? state.features.filter((f) => f !== key) : state.features.concat([key]);
        if (features.length === 0) { showMessage("Keep at least one feature on.", "error"); return; }
        history = [];
        configure({features: FEATURES.map((f) => f[0]).filter((f) => features.includes(f))});
      };
      n.onmouseenter = (e) => showHover(e, n.querySelector("canvas"), label.replace(/<[^>]+>/g, ""));
      n.onmouseleave = hideHover;
      nodes[`f:${key}`] = n;
      drawFeature(n.querySelector("canvas"), key);
    });
    // hidden layers
    const acts = layerActs();
    state.layers.forEach((count, L) => {
      const head = document.createElement("div");
      head.className = "layer-head";
      head.style.left = (colX(L + 1) - 25) + "px";
      head.style.top = "-8px";
      head.innerHTML = `<button class="round-button small" data-op="add">+</button> <button class="round-button small" data-op="remove">&minus;</button><br>${count} neuron${count === 1 ? "" : "s"}<br>`;
      const sel = document.createElement("select");
      sel.id = `layer-act-${L}`;
      sel.title = "this layer's activation";
      fillSelect(sel, Object.keys(ACTIVATIONS), Object.values(ACTIVATIONS));
      sel.value = acts[L];
      sel.onchange = () => {
        const a = layerActs().slice(); a[L] = sel.value;
        configure({acts: a});
      };
      head.appendChild(sel);
      head.querySelector('[data-op="add"]').onclick = () => {
        if (count < MAX_NEURONS) { const ls = state.layers.slice(); ls[L]++; changeLayers(ls); }
      };
      head.querySelector('[data-op="remove"]').onclick = () => {
        if (count > 1) { const ls = state.layers.slice(); ls[L]--; changeLayers(ls); }
      };
      net.appendChild(head);
      for (let j = 0; j < count; j++) {
        const n = makeNode(`neuron-${L}-${j}`, "node neuron", colX(L + 1), nodeY(j) + 30);
        addBias(n, L, j);
        n.onmouseenter = (e) => showHover(e, n.querySelector("canvas"), `layer ${L + 1}, neuron ${j + 1}`);
        n.onmouseleave = hideHover;
        nodes[`h:${L}:${j}`] = n;
      }
    });
    // the output node(s)
    for (let j = 0; j < outputs(); j++) {
      const n = makeNode(`output-${j}`, "node output", colX(cols - 1), nodeY(j) + 30);
      addBias(n, state.layers.length, j);
      n.onmouseenter = (e) => showHover(e, $("heatmap"), "the output");
      n.onmouseleave = hideHover;
      nodes[`o:${j}`] = n;
    }
    // links
    linkPaths = [];
    const cols2 = [state.features.map((f) => nodes[`f:${f}`])];
    state.layers.forEach((count, L) => cols2.push([...Array(count).keys()].map((j) => nodes[`h:${L}:${j}`])));
    cols2.push([...Array(outputs()).keys()].map((j) => nodes[`o:${j}`]));
    for (let L = 0; L < cols2.length - 1; L++) {
      linkPaths.push([]);
      cols2[L + 1].forEach((to, t) => {
        linkPaths[L].push([]);
        cols2[L].forEach((from, s) => {
          const x1 = from.offsetLeft + 40, y1 = from.offsetTop + 20, x2 = to.offsetLeft, y2 = to.offsetTop + 20;
          const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
          const mx = (x1 + x2) / 2;
          p.setAttribute("d", `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`);
          p.setAttribute("stroke", "#bbb");
          p.setAttribute("stroke-width", "1");
          p.dataset.layer = L; p.dataset.to = t; p.dataset.from = s;
          p.id = `link-${L}-${t}-${s}`;
          p.addEventListener("mouseenter", (e) => showValue(e, p, `weight ${p.dataset.value || ""}`));
          p.addEventListener("mouseleave", hideHover);
          p.addEventListener("click", (e) => editWeight(e, L, t, s));
          svg.appendChild(p);
          linkPaths[L][t].push(p);
        });
      });
    }
    net.style.height = Math.max(420, 40 + Math.max(7 * 48, 30 + MAX_NEURONS * 48)) + "px";
    if (lastFrame) renderFrame(lastFrame, true);
  }

  function makeNode(id, cls, x, y) {
    const n = document.createElement("div");
    n.className = cls; n.id = id;
    n.style.left = x + "px"; n.style.top = y + "px";
    const c = document.createElement("canvas");
    c.width = 25; c.height = 25;
    n.appendChild(c);
    $("network").appendChild(n);
    return n;
  }

  function addBias(n, L, j) {
    const b = document.createElement("div");
    b.className = "bias"; b.id = `bias-${L}-${j}`;
    b.addEventListener("mouseenter", (e) => { e.stopPropagation(); showValue(e, b, `bias ${b.dataset.value || ""}`); });
    b.addEventListener("mouseleave", hideHover);
    b.addEventListener("click", (e) => { e.stopPropagation(); editWeight(e, L, j, "bias"); });
    n.appendChild(b);
  }

  function drawFeature(canvas, key) {
    const size = 25, vals = new Uint8Array(size * size);
    const f = {x1: (a) => a / 6, x2: (a, b) => b / 6, x1sq: (a) => a * a / 18 - 1, x2sq: (a, b) => b * b / 18 - 1,
      x1x2: (a, b) => a * b / 18, sinx1: (a) => Math.sin(a), sinx2: (a, b) => Math.sin(b)}[key];
    for (let r = 0; r < size; r++) for (let c = 0; c < size; c++) {
      const x = ((c + 0.5) / size) * 12 - 6, y = 6 - ((r + 0.5) / size) * 12;
      vals[r * size + c] = Math.round((Math.max(-1, Math.min(1, f(x, y))) + 1) * 127.5);
    }
    paint(canvas, vals, size, false);
  }

  // ------------------------------------------------------------------ hover, editing
  function showHover(e, canvas, text) {
    const card = $("hovercard");
    card.classList.remove("hidden", "text-only");
    const big = $("hovercard-canvas");
    big.width = canvas.width; big.height = canvas.height;
    big.getContext("2d").drawImage(canvas, 0, 0);
    $("hovercard-text").textContent = text;
    card.style.left = (e.clientX + 16) + "px"; card.style.top = (e.clientY - 100) + "px";
  }
  function showValue(e, el, text) {
    const card = $("hovercard");
    card.classList.remove("hidden"); card.classList.add("text-only");
    $("hovercard-text").textContent = text + " (click to edit)";
    card.style.left = (e.clientX + 12) + "px"; card.style.top = (e.clientY + 12) + "px";
  }
  function hideHover() { $("hovercard").classList.add("hidden"); }

  let editing = null;
  function editWeight(e, L, to, from) {
    hideHover();
    const ed = $("weight-editor");
    const col = $("network-column").getBoundingClientRect();
    ed.style.left = (e.clientX - col.left + 10) + "px";
    ed.style.top = (e.clientY - col.top + 10) + "px";
    ed.classList.remove("hidden");
    editing = {layer: L, to, from};
    let v = 0;
    if (lastFrame) v = from === "bias" ? lastFrame.biases[L][to] : lastFrame.weights[L][to][from];
    $("weight-editor-label").textContent = from === "bias" ? `bias of neuron ${to + 1}: ` : `weight ${from + 1} \u2192 ${to + 1}: `;
    $("weight-editor-input").value = v;
    $("weight-editor-input").focus();
  }
  function applyWeightEdit() {
    if (!editing) return;
    const value = Number($("weight-editor-input").value);
    send({type: "weight", layer: editing.layer, to: editing.to, from: editing.from, value});
    $("weight-editor").classList.add("hidden");
    editing = null;
  }

  // ------------------------------------------------------------------------ drawing
  function fmt(v) { return v === undefined || v === null ? "\u2013" : Number(v).toFixed(3); }

  function renderFrame(f, redrawOnly) {
    lastFrame = f;
    const disc = !!state.discretize;
    const ep = String(f.epoch).padStart(6, "0");
    $("epoch-number").textContent = ep.slice(0, -3) + "," + ep.slice(-3);
    $("loss-test").textContent = fmt(f.test_loss);
    $("loss-train").textContent = fmt(f.train_loss);
    const cls = state.problem === "classification";
    $("accuracy-row").classList.toggle("hidden", !cls);
    if (cls) {
      $("accuracy-test").textContent = f.test_accuracy === undefined ? "\u2013" : (100 * f.test_accuracy).toFixed(1) + "%";
      $("accuracy-train").textContent = f.train_accuracy === undefined ? "\u2013" : (100 * f.train_accuracy).toFixed(1) + "%";
    }
    if (f.output) {
      const out = decode(f.output);
      if (f.output_class) paint($("heatmap"), null, f.grid, disc, decode(f.output_class), out);
      else paint($("heatmap"), out, f.grid, disc);
    }
    (f.neurons || []).forEach((layer, L) => layer.forEach((b64, j) => {
      const n = nodes[`h:${L}:${j}`];
      if (n) paint(n.querySelector("canvas"), decode(b64), f.thumb, disc);
    }));
    (f.outputs || []).forEach((b64, j) => {
      const n = nodes[`o:${j}`];
      if (n) paint(n.querySelector("canvas"), decode(b64), f.thumb, disc);
    });
    const on = nodes["o:0"];
    if (on && f.output && !f.outputs) {
      const c = on.querySelector("canvas"), ctx = c.getContext("2d");
      c.width = 25; c.height = 25;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage($("heatmap"), 0, 0, 25, 25);
    }
    // links and biases
    (f.weights || []).forEach((W, L) => W.forEach((row, t) => row.forEach((w, s) => {
      const p = linkPaths[L] && linkPaths[L][t] && linkPaths[L][t][s];
      if (!p) return;
      p.dataset.value = w.toFixed(3);
      p.setAttribute("stroke", rgb(signedColour(Math.max(-1, Math.min(1, w)))));
      p.setAttribute("stroke-width", String(Math.min(10, 1 + Math.abs(w) * 2)));
    })));
    (f.biases || []).forEach((B, L) => B.forEach((b, j) => {
      const el = document.getElementById(`bias-${L}-${j}`);
      if (el) { el.dataset.value = b.toFixed(3); el.style.background = rgb(signedColour(Math.max(-1, Math.min(1, b)))); }
    }));
    drawConfusion(f.confusion);
    if (!redrawOnly && f.test_loss !== undefined) {
      const lastEp = history.length ? history[history.length - 1][0] : -1;
      if (f.epoch !== lastEp || !history.length) history.push([f.epoch, f.train_loss, f.test_loss]);
      if (history.length > 600) history = history.filter((_, i) => i % 2 === 0);
    }
    drawChart();
  }

  function drawConfusion(cm) {
    const table = $("confusion");
    $("confusion-box").classList.toggle("hidden", !cm);
    if (!cm) return;
    const names = data && data.info && data.info.class_values ? data.info.class_values
      : (cm.length === 2 ? ["-1", "+1"] : cm.map((_, i) => String(i)));
    let h = "<tr><th></th>" + cm.map((_, j) => `<th>${names[j]}</th>`).join("") + "</tr>";
    cm.forEach((row, i) => {
      h += `<tr><th>${names[i]}</th>` + row.map((v, j) => `<td class="${i === j ? "diag" : ""}">${v}</td>`).join("") + "</tr>";
    });
    table.innerHTML = h;
  }

  function drawChart() {
    const c = $("linechart"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    if (history.length < 2) return;
    let max = 0;
    for (const [, a, b] of history) max = Math.max(max, a, b);
    max = max || 1;
    const x0 = history[0][0], x1 = history[history.length - 1][0] || 1;
    for (const [idx, colour] of [[1, "#999"], [2, "#000"]]) {
      ctx.strokeStyle = colour; ctx.lineWidth = 1.5; ctx.beginPath();
      history.forEach((h, i) => {
        const x = (x1 === x0 ? i / (history.length - 1) : (h[0] - x0) / (x1 - x0)) * (c.width - 4) + 2;
        const y = c.height - 3 - (h[idx] / max) * (c.height - 6);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
  }

  function drawPoints() {
    const c = $("points"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    if (!data) return;
    const d = data.domain, S = c.width;
    const classes = data.classes;
    const n = data.points.length;
    for (let i = 0; i < n; i++) {
      const test = i >= data.n_train;
      if (test && !state.show_test) continue;
      const [x, y] = data.points[i];
      const v = data.labels[i];
      let colour;
      if (classes > 2) colour = CLASS_COLOURS[v % CLASS_COLOURS.length];
      else if (classes === 2) colour = v ? POS : NEG;
      else colour = signedColour(v);
      ctx.fillStyle = rgb(colour);
      ctx.strokeStyle = test ? "#000" : "#fff";
      ctx.lineWidth = test ? 2 : 1.5;
      ctx.beginPath();
      ctx.arc((x + d) / (2 * d) * S, (d - y) / (2 * d) * S, 7, 0, 6.283);
      ctx.fill(); ctx.stroke();
    }
    drawLegend();
  }

  function drawLegend() {
    const box = $("legend");
    if (data && data.classes > 2) {
      const names = data.info.class_values || [];
      box.innerHTML = names.map((v, i) => `<span style="display:inline-block;width:10px;height:10px;background:${rgb(CLASS_COLOURS[i % 8])}"></span> ${v}`).join(" ");
    } else {
      box.innerHTML = `<span>-1</span><span class="bar" style="background:linear-gradient(to right, ${rgb(NEG)}, ${rgb(MID)}, ${rgb(POS)})"></span><span>1</span>`;
    }
  }

  function download(msg) {
    let blob;
    if (msg.text !== undefined) {
      blob = new Blob([msg.text], {type: "text/x-python"});
      $("snippet").textContent = msg.text;
      $("snippet-box").classList.remove("hidden");
      $("snippet-box").open = true;
    }
    else blob = new Blob([decode(msg.data)], {type: "application/octet-stream"});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = msg.filename;
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    showMessage(`Exported ${msg.filename}.`, "status");
  }

  window.addEventListener("hashchange", () => {
    const h = parseHash(), changes = {};
    for (const k of Object.keys(h)) if (JSON.stringify(h[k]) !== JSON.stringify(state[k])) changes[k] = h[k];
    if (Object.keys(changes).length) configure(changes);
  });

  window.fvPlayground = {
    get state() { return state; }, get playing() { return playing; }, get lastFrame() { return lastFrame; },
    get data() { return data; }, stats, request, send,
  };

  setupControls();
  syncControls();
  connect();
  restoreCsv();
})();
