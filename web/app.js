// tallrec's web page: Chat-REC and a scoring playground over the server's own API.
// Plain JavaScript module, no build step, no dependencies.

const KEY_ITEM = "tallrec-api-key";
const $ = (sel) => document.querySelector(sel);

/** Creates an element: el("li", { class: "x", dataset: { a: 1 } }, child, "text"). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "style") e.style.cssText = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** An error answered by the server: shown as it is (status, code, message). */
class ApiError extends Error {
  constructor(status, body, text) {
    const message = body && typeof body === "object" ? (body.message ?? body.error?.message ?? text) : text;
    super(message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body?.code ?? body?.error?.code ?? "";
  }
  show() {
    const head = [`HTTP ${this.status}`, this.body?.error && typeof this.body.error === "string" ? this.body.error : null, this.code || null].filter(Boolean).join(" · ");
    return `${head}\n${this.message}`;
  }
}

function showError(err, where = $("#error")) {
  where.hidden = false;
  where.textContent = err instanceof ApiError ? err.show() : String(err?.message ?? err);
  where.dataset.message = err?.message ?? String(err);
}

function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// --- the API key: asked once (on the first 401), kept in sessionStorage ---

let keyWaiters = [];
function askKey(message) {
  const form = $("#key-form");
  form.hidden = false;
  if (message) form.querySelector("label").textContent = message;
  $("#api-key").focus();
  return new Promise((resolve) => keyWaiters.push(resolve));
}
$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("#api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  $("#api-key").value = "";
  $("#key-form").hidden = true;
  $("#forget-key").hidden = false;
  const w = keyWaiters;
  keyWaiters = [];
  for (const resolve of w) resolve();
});
$("#forget-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  $("#forget-key").hidden = true;
});
if (sessionStorage.getItem(KEY_ITEM)) $("#forget-key").hidden = false;

/** Calls the API; on 401 asks for the key and retries once. Throws ApiError for an error answer. */
async function api(method, path, body) {
  for (let attempt = 0; ; attempt++) {
    const headers = {};
    const key = sessionStorage.getItem(KEY_ITEM);
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401 && attempt < 2) {
      if (key) sessionStorage.removeItem(KEY_ITEM);
      await askKey(key ? "The API key was refused: enter the right one" : "This server needs an API key");
      continue;
    }
    if (!res.ok) {
      const text = await res.text();
      let parsed = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON: shown as text */
      }
      throw new ApiError(res.status, parsed, text);
    }
    return res;
  }
}

// --- tabs ---

function selectTab(name) {
  for (const t of ["chat", "score"]) {
    $(`#tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`#view-${t}`).hidden = t !== name;
  }
  clearError();
}
$("#tab-chat").addEventListener("click", () => selectTab("chat"));
$("#tab-score").addEventListener("click", () => selectTab("score"));

// --- a ranked list with pYes bars ---

const fmt = (x, d = 3) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(d) : "–");

function bar(p) {
  const w = Math.max(0, Math.min(1, p)) * 100;
  return el("span", { class: "bar", title: `pYes ${p}` }, el("span", { class: "fill", style: `width:${w.toFixed(2)}%` }));
}

function recommendationList(recs) {
  const ol = el("ol", { class: "recs" });
  for (const r of recs) {
    const genres = (r.genres ?? []).filter((g) => g !== "unknown").join(", ");
    ol.append(
      el(
        "li",
        { dataset: { item: r.item, pyes: String(r.pYes), recScore: r.recScore === null ? "" : String(r.recScore) } },
        el("span", { class: "rank" }, `${r.rank}.`),
        el("span", { class: "title" }, r.title, genres ? el("small", {}, ` ${genres}`) : null),
        bar(r.pYes),
        el("span", { class: "pyes", title: "TALLRec's pYes" }, fmt(r.pYes)),
        el("span", { class: "rec", title: "the recommender's score" }, r.recScore === null ? "new item" : `rec ${fmt(r.recScore)}`),
      ),
    );
  }
  return ol;
}

// --- Chat-REC ---

let session = null;
let busy = false;

function setChatEnabled(on) {
  for (const e of [$("#message"), $("#send"), ...document.querySelectorAll("#chips button")]) e.disabled = !on;
}

function showHistory(s) {
  $("#history").hidden = false;
  $("#history-title").textContent = s.user.startsWith("new:") ? `New user ${s.user.slice(4)} · ${s.interactions} ratings` : `User ${s.user} · ${s.interactions} ratings`;
  $("#profile").textContent = s.profile ?? "";
  for (const [id, list] of [["#liked", s.liked], ["#disliked", s.disliked]]) {
    const ul = $(id);
    ul.replaceChildren(...(list.length ? list.map((t) => el("li", {}, t)) : [el("li", { class: "muted" }, "(none)")]));
  }
}

$("#user-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const user = $("#user").value.trim();
  if (user) void startSession(user);
});
// a new user without ratings ("new:..."): the conversation builds the history ("I loved Heat")
$("#cold").addEventListener("click", () => {
  const id = globalThis.crypto?.randomUUID ? crypto.randomUUID().slice(0, 8) : Math.random().toString(16).slice(2, 10);
  void startSession(`new:${id}`);
});

async function startSession(user) {
  if (busy) return;
  clearError();
  try {
    session = await (await api("POST", "/v1/chat/sessions", { user })).json();
  } catch (err) {
    showError(err);
    return;
  }
  showHistory(session);
  $("#conversation").replaceChildren();
  await say("");
}

async function say(message) {
  if (!session || busy) return;
  busy = true;
  setChatEnabled(false);
  clearError();
  const turn = el("div", { class: "turn", dataset: { state: "streaming" } });
  if (message) turn.append(el("p", { class: "said" }, message));
  const recs = el("div", { class: "recs-box" }, el("p", { class: "muted small" }, "ranking candidates with TALLRec…"));
  const explanation = el("p", { class: "explanation" });
  const notes = el("div", { class: "notes" });
  turn.append(recs, explanation, notes);
  $("#conversation").append(turn);
  turn.scrollIntoView({ block: "end" });
  try {
    const res = await api("POST", "/v1/chat", { sessionId: session.sessionId, message, stream: true });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    const handle = (ev) => {
      if (ev.type === "text") explanation.textContent += ev.text;
      else if (ev.type === "recommendations") {
        // ranked before the explanation is generated: show the list while the words stream in
        recs.replaceChildren(ev.recommendations.length ? recommendationList(ev.recommendations) : el("p", { class: "muted" }, "(nothing to recommend)"));
        turn.dataset.ranked = "true";
      } else if (ev.type === "result") {
        recs.replaceChildren(ev.recommendations.length ? recommendationList(ev.recommendations) : el("p", { class: "muted" }, "(nothing to recommend)"));
        explanation.textContent = ev.explanation;
        notes.replaceChildren(...ev.notes.map((n) => el("p", {}, `note: ${n}`)));
        turn.dataset.turn = String(ev.turn);
        turn.dataset.state = "done";
      } else if (ev.type === "error") {
        recs.replaceChildren();
        const box = el("div", { class: "error" });
        turn.append(box);
        box.textContent = `${ev.code}\n${ev.message}`;
        turn.dataset.state = "error";
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) handle(JSON.parse(line));
      }
      turn.scrollIntoView({ block: "end" });
    }
    if (turn.dataset.state === "streaming") turn.dataset.state = "error";
    // what the user said in the chat ("I loved Heat") joins the history TALLRec sees
    if (turn.dataset.state === "done") showHistory(await (await api("GET", `/v1/chat/${encodeURIComponent(session.sessionId)}`)).json());
  } catch (err) {
    turn.dataset.state = "error";
    recs.replaceChildren();
    showError(err);
  } finally {
    busy = false;
    setChatEnabled(true);
    $("#message").focus();
  }
}

$("#chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const m = $("#message").value.trim();
  if (!m) return;
  $("#message").value = "";
  void say(m);
});
for (const b of document.querySelectorAll("#chips button")) b.addEventListener("click", () => void say(b.dataset.say));

// --- scoring playground ---

const lines = (id) => $(id).value.split("\n").map((s) => s.trim()).filter(Boolean);

async function loadAdapters() {
  const sel = $("#adapter");
  try {
    const a = await (await api("GET", "/v1/adapters")).json();
    const opts = a.adapters.map((x) => el("option", { value: x.name }, `${x.name}${x.name === a.default ? " (default)" : ""}`));
    opts.push(el("option", { value: "__base__" }, "(base model, no adapter)"));
    sel.replaceChildren(...opts);
    if (a.default) sel.value = a.default;
  } catch (err) {
    showError(err);
  }
}

$("#rank-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  clearError();
  const rules = $("#scoring").value === "both" ? ["softmax", "tallrec-compat"] : [$("#scoring").value];
  const adapter = $("#adapter").value;
  const out = $("#rankings");
  out.replaceChildren();
  out.dataset.state = "running";
  $("#rank").disabled = true;
  try {
    for (const scoring of rules) {
      const body = {
        ...(adapter ? { adapter: adapter === "__base__" ? null : adapter } : {}),
        scoring,
        domain: $("#domain").value,
        liked: lines("#liked-items"),
        disliked: lines("#disliked-items"),
        candidates: lines("#candidates"),
      };
      const titleOf = (x) => body.candidates[x.index] ?? String(x.id);
      const r = await (await api("POST", "/v1/rank", body)).json();
      const ol = el("ol", { class: "recs" });
      for (const x of r.ranking) {
        ol.append(
          el(
            "li",
            { dataset: { id: String(x.id), pyes: String(x.pYes) } },
            el("span", { class: "rank" }, `${x.rank}.`),
            el("span", { class: "title" }, titleOf(x)),
            bar(x.pYes),
            el("span", { class: "pyes" }, fmt(x.pYes)),
          ),
        );
      }
      const errs = r.errors.map((x) => el("p", { class: "error" }, `${titleOf(x)}: ${x.error}`));
      out.append(el("section", { class: "card ranking", dataset: { scoring } }, el("h2", {}, `${scoring} · ${r.adapter ?? "base model"} · ${r.model}`), ol, ...errs));
    }
    out.dataset.state = "done";
  } catch (err) {
    out.dataset.state = "error";
    showError(err);
  } finally {
    $("#rank").disabled = false;
  }
});

// --- start ---

async function start() {
  try {
    const h = await (await fetch("/health")).json();
    $("#server-info").textContent = h.model ? `model ${h.model}` : (h.status ?? "");
  } catch {
    /* shown by the first API call */
  }
  await loadAdapters();
  document.body.dataset.ready = "true";
}
void start();
