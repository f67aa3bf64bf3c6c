// traitlab serve page: chat with persona sliders, streamed replies, live persona gauges, side-by-side mode.
// Plain JS, no dependencies; talks to the same server's /v1 API (bearer key from the header field).
"use strict";

const state = { model: null, personas: [], panes: [], controllers: [], busy: false, key: null };
const $ = (id) => document.getElementById(id);
const GAUGE_RANGE = 3;   // the gauge spans -3..+3 persona units ((projection - baseline) / |v|)

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: headers() });
  if (!res.ok) {
    let message = res.status + " " + res.statusText;
    try { message = (await res.json()).error.message || message; } catch (e) { /* not JSON */ }
    const err = new Error(message);
    err.status = res.status;
    throw err;
  }
  return res;
}

async function connect() {
  state.key = $("key").value.trim();
  try {
    const models = await (await api("/v1/models")).json();
    state.model = models.data[0].id;
    state.personas = (await (await api("/v1/personas")).json()).data;
    const stats = await (await api("/v1/stats")).json();
    const maxTokens = $("max-tokens");
    maxTokens.max = stats.limits.max_tokens;
    maxTokens.value = Math.min(Number(maxTokens.value), stats.limits.max_tokens);
    $("model").textContent = state.model + " · " + state.personas.length + " persona(s)";
    buildPanes();
    setStatus("ready");
    document.body.dataset.ready = "1";
  } catch (err) {
    $("model").textContent = "not connected";
    setStatus(err.status === 401 ? "This server needs an API key: enter it above." : "Cannot reach the API: " + err.message,
              true);
  }
}

function fmt(x, digits = 2) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return (x >= 0 ? "+" : "") + Number(x).toFixed(digits);
}

function makePane(label) {
  const node = $("pane-template").content.firstElementChild.cloneNode(true);
  node.dataset.pane = label;
  node.querySelector(".pane-title").textContent = "Setting " + label;
  const pane = { label, node, history: [], sliders: {}, gauges: {} };
  const sliders = node.querySelector(".sliders");
  if (!state.personas.length) {
    sliders.innerHTML = '<div class="empty">No personas loaded (start the server with --persona NAME=ARTIFACT).</div>';
  }
  for (const p of state.personas) {
    const wrap = document.createElement("div");
    wrap.className = "slider";
    const limit = Math.max(5, Math.ceil(Math.abs(p.default_scale)));
    wrap.innerHTML = '<div class="row"><span class="name"></span><span class="value"></span></div>' +
      '<input type="range" step="0.1">' + '<div class="meta"></div>';
    wrap.querySelector(".name").textContent = p.name;
    const meta = [p.mechanism, [p.trait, p.pole].filter(Boolean).join("/")].filter(Boolean).join(" · ");
    wrap.querySelector(".meta").textContent = meta + (p.batching === "grouped" ? " · weight-space" : "");
    const input = wrap.querySelector("input");
    input.min = -limit; input.max = limit; input.value = p.default_scale;
    input.dataset.persona = p.name;
    input.className = "persona-slider";
    const value = wrap.querySelector(".value");
    // the slider is the multiplier s of the request; the model gets s × the artifact's stored scale (the
    // effective coefficient, what the gauge reads back), so both are shown when they differ
    const stored = p.stored_scale === undefined ? 1 : p.stored_scale;
    const show = () => {
      const s = Number(input.value);
      value.textContent = fmt(s, 1) + (stored === 1 ? "" : " × " + stored.toFixed(2) + " = " + fmt(s * stored) + " effective");
    };
    input.addEventListener("input", show);
    show();
    pane.sliders[p.name] = input;
    sliders.appendChild(wrap);
  }
  const gauges = node.querySelector(".gauges");
  const monitored = state.personas.filter((p) => p.monitor);
  if (!monitored.length) {
    gauges.innerHTML = '<div class="empty">No persona vectors to monitor.</div>';
  }
  for (const p of monitored) {
    const g = document.createElement("div");
    g.className = "gauge";
    g.dataset.persona = p.name;
    g.dataset.value = "";
    g.innerHTML = '<div class="row"><span class="name"></span><span class="readout">—</span></div>' +
      '<div class="track"><div class="zero"></div><div class="needle"></div></div>' +
      '<div class="scale"><span>−' + GAUGE_RANGE + '</span><span>layer ' + p.monitor.layer + '</span><span>+' +
      GAUGE_RANGE + '</span></div>';
    g.querySelector(".name").textContent = p.name;
    pane.gauges[p.name] = g;
    gauges.appendChild(g);
  }
  return pane;
}

function setGauge(pane, name, value, detail) {
  const g = pane.gauges[name];
  if (!g || value === null || value === undefined) return;
  const clipped = Math.max(-GAUGE_RANGE, Math.min(GAUGE_RANGE, value));
  g.querySelector(".needle").style.left = (50 + 50 * clipped / GAUGE_RANGE) + "%";
  g.querySelector(".readout").textContent = fmt(value) + (detail ? " " + detail : "");
  g.dataset.value = String(value);
}

function buildPanes() {
  const two = $("side-by-side").checked;
  const old = state.panes;
  const main = $("panes");
  main.innerHTML = "";
  main.classList.toggle("two", two);
  // Side by side starts a fresh comparison (both panes see the same prompts); B starts from A's sliders.
  // Back to one pane, A keeps its conversation.
  state.panes = (two ? ["A", "B"] : ["A"]).map((label, i) => {
    const pane = makePane(label);
    const source = old[i] || old[0];
    if (source) {
      for (const [name, input] of Object.entries(source.sliders)) {
        if (pane.sliders[name]) { pane.sliders[name].value = input.value; pane.sliders[name].dispatchEvent(new Event("input")); }
      }
      if (!two && old[i]) {
        pane.history = old[i].history;
        for (const m of old[i].node.querySelectorAll(".log .msg")) pane.node.querySelector(".log").appendChild(m.cloneNode(true));
      }
    }
    main.appendChild(pane.node);
    return pane;
  });
}

function addMessage(pane, role, text) {
  const el = document.createElement("div");
  el.className = "msg " + role;
  el.textContent = text;
  const log = pane.node.querySelector(".log");
  log.appendChild(el);
  log.scrollTop = log.scrollHeight;
  return el;
}

function scales(pane) {
  const out = {};
  for (const [name, input] of Object.entries(pane.sliders)) out[name] = Number(input.value);
  return out;
}

async function streamReply(pane, controller) {
  const body = {
    model: state.model, messages: pane.history, stream: true, persona: scales(pane),
    temperature: Number($("temperature").value) || 0, max_tokens: Number($("max-tokens").value) || 96,
  };
  const bubble = addMessage(pane, "assistant streaming", "");
  const textNode = document.createElement("span");
  textNode.className = "text";
  bubble.appendChild(textNode);
  let text = "";
  try {
    const res = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body), signal: controller.signal });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let finished = false;
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") { finished = true; break; }
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          const choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta && choice.delta.content) {
            text += choice.delta.content;
            textNode.textContent = text;
            bubble.dataset.chunks = String(Number(bubble.dataset.chunks || 0) + 1);
          }
          const mon = chunk.persona_monitor;
          if (mon && mon.summary) {
            const parts = [];
            for (const [name, s] of Object.entries(mon.summary)) {
              setGauge(pane, name, s.gauge_response_mean, "mean");
              parts.push(name + " " + fmt(s.gauge_response_mean));
            }
            const tail = document.createElement("span");
            tail.className = "summary";
            tail.textContent = (choice && choice.finish_reason ? choice.finish_reason + " · " : "") +
              (parts.length ? "monitor (reply mean): " + parts.join(", ") : "");
            bubble.appendChild(tail);
          } else if (mon) {
            for (const [name, v] of Object.entries(mon)) setGauge(pane, name, v.gauge);
          }
        }
        const log = pane.node.querySelector(".log");
        log.scrollTop = log.scrollHeight;
      }
    }
    pane.history.push({ role: "assistant", content: text });
  } catch (err) {
    if (err.name === "AbortError") {
      pane.history.push({ role: "assistant", content: text });
    } else {
      addMessage(pane, "error", "error: " + err.message);
      pane.history.pop();  // drop the user turn that failed
    }
  } finally {
    bubble.classList.remove("streaming");
  }
}

async function send(event) {
  if (event) event.preventDefault();
  const input = $("input");
  const text = input.value.trim();
  if (!text || state.busy || !state.model) return;
  input.value = "";
  state.busy = true;
  $("send").disabled = true; $("stop").disabled = false;
  setStatus("generating…");
  state.controllers = state.panes.map(() => new AbortController());
  const jobs = state.panes.map((pane, i) => {
    pane.history.push({ role: "user", content: text });
    addMessage(pane, "user", text);
    return streamReply(pane, state.controllers[i]);
  });
  await Promise.all(jobs);
  state.busy = false;
  $("send").disabled = false; $("stop").disabled = true;
  setStatus("ready");
}

function init() {
  const saved = localStorage.getItem("traitlab-key");
  if (saved) $("key").value = saved;
  $("key").addEventListener("change", () => {
    const key = $("key").value.trim();
    if (key === state.key) return;  // the same key again (a blur after a programmatic change): nothing to do
    localStorage.setItem("traitlab-key", key);
    connect();
  });
  $("composer").addEventListener("submit", send);
  $("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) send(e); });
  $("stop").addEventListener("click", () => state.controllers.forEach((c) => c.abort()));
  $("clear").addEventListener("click", () => {
    state.panes.forEach((p) => { p.history = []; p.node.querySelector(".log").innerHTML = ""; });
  });
  $("side-by-side").addEventListener("change", buildPanes);
  connect();
}

init();
