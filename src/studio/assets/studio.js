// iw-lab studio: plain JavaScript, no build step. Every text from files, models and servers is
// put into the page as text (textContent), never as HTML.
"use strict";

const TOKEN = (() => {
  const q = new URLSearchParams(location.search).get("token");
  if (q) sessionStorage.setItem("iw-token", q);
  return q || sessionStorage.getItem("iw-token") || "";
})();

// ---------- small helpers ----------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (TOKEN) opts.headers["X-IW-Token"] = TOKEN;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try { resp = await fetch(url, opts); }
  catch (e) { return { status: 0, data: { error: "the studio is not answering: " + e } }; }
  let data = null;
  try { data = await resp.json(); } catch (_) { data = { error: resp.statusText }; }
  return { status: resp.status, data };
}

let noticeTimer = null;
function notice(text, kind) {
  const n = document.getElementById("notice");
  n.textContent = text || "";
  n.className = kind || "";
  clearTimeout(noticeTimer);
  if (text && kind !== "error" && kind !== "conflict") noticeTimer = setTimeout(() => notice(""), 4000);
}

function scoreClass(s) {
  if (s === null || s === undefined) return "s0";
  const b = Math.max(1, Math.min(5, Math.ceil(s * 5)));
  return "s" + b;
}

function writeFailed(r) {
  if (r.status === 401) notice("Saving needs the studio's token: open the URL the server printed.", "error");
  else notice(r.data && r.data.error ? r.data.error : "error " + r.status, "error");
}

// ---------- hand-tagging ----------
const T = { session: null, index: 0, item: null, tags: [], version: null, sugg: [], rejected: new Set(),
            undo: [], all: [], filter: "" };

async function startTagging(info) {
  document.getElementById("mode").textContent = "tagging " + info.detail.out;
  const r = await api("GET", "/api/tag/session");
  if (r.status !== 200) return fail(r);
  T.session = r.data;
  const app = clear(document.getElementById("app"));
  app.className = "tagging";
  app.append(
    el("section", { id: "stage" },
      el("div", { id: "viewer" }, el("img", { id: "image", alt: "" })),
      el("div", { id: "imgname" }),
      el("div", { id: "chips", class: "chips", "aria-label": "tags of this image" }),
      el("div", { id: "pending", class: "chips pending", "aria-label": "suggestions" }),
      el("div", { class: "nav" },
        el("button", { id: "prev", onclick: () => go(T.index - 1), text: "← previous" }),
        el("button", { id: "save", onclick: () => saveAndNext(), text: "save ⏎" }),
        el("button", { id: "skip", onclick: () => skip(), text: "skip" }),
        el("button", { id: "next", onclick: () => go(T.index + 1), text: "next →" }),
        el("button", { onclick: () => toggleHelp(), text: "keys ?" }))),
    el("aside", { id: "side" },
      el("div", { class: "adder" },
        el("input", { id: "taginput", placeholder: "add a tag (/)", autocomplete: "off", spellcheck: "false" }),
        el("ul", { id: "complete", class: "complete", hidden: true })),
      el("h3", { text: "Recently used" }),
      el("div", { id: "recent", class: "chips" }),
      el("h3", { text: "All tags" }),
      el("input", { id: "tagfilter", placeholder: "filter", autocomplete: "off" }),
      el("div", { id: "alltags", class: "chips" })));
  const input = document.getElementById("taginput");
  input.addEventListener("keydown", onInputKey);
  input.addEventListener("input", () => completeFor(input.value));
  document.getElementById("tagfilter").addEventListener("input", (e) => { T.filter = e.target.value; renderAll(); });
  document.getElementById("image").addEventListener("click", (e) => e.target.classList.toggle("actual"));
  document.addEventListener("keydown", onKey);
  await loadAllTags();
  const total = T.session.total;
  if (total === 0) {
    clear(app).append(el("p", { text: "No images in " + info.detail.out + "." }));
    return;
  }
  let start = T.session.resume_at;
  if (start === null || start === undefined) start = T.session.position;
  if (T.session.done > 0 && T.session.resume_at !== null) {
    notice("Resumed at the first unfinished image (" + T.session.done + " of " + total + " done).");
  }
  await go(start, true);
}

function progress() {
  const s = T.session;
  document.getElementById("progress").textContent = s.done + " of " + s.total + " done";
}

async function go(i, force) {
  await saving.catch(() => {});
  if (!T.session || i < 0 || i >= T.session.total) return;
  if (i === T.index && !force) return;
  const r = await api("GET", "/api/tag/items/" + i);
  if (r.status !== 200) return writeFailed(r);
  T.index = i; T.item = r.data; T.undo = []; T.rejected = new Set(); T.sugg = [];
  T.tags = r.data.tags || []; T.version = r.data.version || null;
  const img = document.getElementById("image");
  img.classList.remove("actual");
  img.src = r.data.url;
  img.alt = r.data.name;
  img.onerror = () => { img.alt = "cannot show " + r.data.name + (r.data.image_error ? ": " + r.data.image_error : ""); img.classList.add("broken"); };
  img.onload = () => img.classList.remove("broken");
  const name = document.getElementById("imgname");
  name.textContent = r.data.name + "  ←  " + r.data.original + "   (" + (i + 1) + " / " + T.session.total + ")" +
    (r.data.done ? "  ✓ done" : r.data.skipped ? "  skipped" : "");
  if (r.data.error) notice(r.data.error, "error");
  renderTags();
  progress();
  api("POST", "/api/tag/position", { position: i });
  if (T.session.settings.suggest) loadSuggestions(i);
}

async function loadSuggestions(i) {
  const r = await api("GET", "/api/tag/items/" + i + "/suggest");
  if (i !== T.index) return;
  if (r.status !== 200) { notice("suggestions: " + (r.data.error || r.status), "error"); return; }
  T.sugg = r.data.tags || [];
  renderTags();
}

function pending() {
  const have = new Set(T.tags.map((t) => t.toLowerCase()));
  return T.sugg.filter((s) => !have.has(s.tag.toLowerCase()) && !T.rejected.has(s.tag.toLowerCase()));
}

function renderTags() {
  const chips = clear(document.getElementById("chips"));
  T.tags.forEach((t, n) => chips.append(el("span", { class: "chip tag", "data-tag": t },
    el("span", { text: t }),
    el("button", { class: "x", title: "remove", "aria-label": "remove " + t, onclick: () => change((tags) => tags.filter((x) => x !== t), "tag") }, "×"))));
  if (T.tags.length === 0) chips.append(el("span", { class: "muted", text: "no tags yet" }));
  const pend = clear(document.getElementById("pending"));
  pending().forEach((s, n) => pend.append(el("span", { class: "chip suggestion " + scoreClass(s.score), "data-tag": s.tag, title: "score " + Number(s.score).toFixed(3) },
    el("kbd", { text: n < 9 ? String(n + 1) : "" }),
    el("button", { class: "accept", onclick: () => accept(s.tag), text: s.tag }),
    el("button", { class: "x", title: "reject", "aria-label": "reject " + s.tag, onclick: () => reject(s.tag) }, "×"))));
}

async function loadAllTags() {
  const r = await api("GET", "/api/tag/tags?limit=5000");
  if (r.status === 200) T.all = r.data.tags;
  renderAll();
  const rec = clear(document.getElementById("recent"));
  for (const t of (T.session.recent || [])) rec.append(el("button", { class: "chip used", onclick: () => add(t), text: t }));
}

function renderAll() {
  const box = clear(document.getElementById("alltags"));
  const f = T.filter.trim().toLowerCase();
  let shown = 0;
  for (const t of T.all) {
    if (f && !t.tag.toLowerCase().includes(f)) continue;
    if (++shown > 500) break;
    box.append(el("button", { class: "chip used", onclick: () => add(t.tag), "data-tag": t.tag },
      el("span", { text: t.tag }), el("small", { text: " " + t.count })));
  }
}

// Saves run one after another, each computing its tags from the state the previous one left,
// so quick keys (1 then 2) never race each other into a 409.
let saving = Promise.resolve(true);
function change(update, action, done) {
  saving = saving.then(() => save(update, action, done), () => save(update, action, done));
  return saving;
}

async function save(update, action, done) {
  const before = T.tags.slice();
  const tags = typeof update === "function" ? update(before) : update;
  if (tags === null) return false;
  const r = await api("PUT", "/api/tag/items/" + T.index, { tags, version: T.version || "absent", done: !!done, action });
  if (r.status === 200) {
    if (action !== "undo" && action !== "done") T.undo.push(before);
    T.tags = r.data.tags; T.version = r.data.version;
    T.session.done = r.data.done;
    T.session.recent = r.data.recent;
    renderTags(); progress(); loadAllTags();
    return true;
  }
  if (r.status === 409 && r.data.tags) {
    T.tags = r.data.tags; T.version = r.data.version;
    renderTags();
    notice("Not saved: " + r.data.error + ". Showing the current tags.", "conflict");
    return false;
  }
  writeFailed(r);
  return false;
}

function add(raw) {
  const t = raw.trim().replace(/\s+/g, " ");
  if (!t) return;
  return change((tags) => {
    if (tags.some((x) => x.toLowerCase() === t.toLowerCase())) { notice("already tagged " + t); return null; }
    return tags.concat([t]);
  }, "tag");
}

function accept(tag) {
  return change((tags) => tags.some((x) => x.toLowerCase() === tag.toLowerCase()) ? null : tags.concat([tag]), "accept");
}
function reject(tag) { T.rejected.add(tag.toLowerCase()); renderTags(); }

async function undo() {
  await saving.catch(() => {});
  const prev = T.undo.pop();
  if (!prev) { notice("nothing to undo for this image"); return; }
  await change(() => prev, "undo");
}

async function saveAndNext() {
  const ok = await change((tags) => tags, "done", true);
  if (ok) {
    if (T.index + 1 < T.session.total) await go(T.index + 1);
    else notice("That was the last image: " + T.session.done + " of " + T.session.total + " done.");
  }
}

async function skip() {
  const r = await api("POST", "/api/tag/items/" + T.index + "/skip");
  if (r.status !== 200) return writeFailed(r);
  T.session.done = r.data.done;
  await go(T.index + 1);
}

let completeSel = -1;
async function completeFor(q) {
  const list = document.getElementById("complete");
  completeSel = -1;
  if (!q.trim()) { list.hidden = true; return; }
  const r = await api("GET", "/api/tag/tags?limit=12&q=" + encodeURIComponent(q));
  if (r.status !== 200 || document.getElementById("taginput").value !== q) return;
  clear(list);
  for (const t of r.data.tags) list.append(el("li", { onmousedown: (e) => { e.preventDefault(); pick(t.tag); } },
    el("span", { text: t.tag }), el("small", { text: " " + t.count })));
  list.hidden = r.data.tags.length === 0;
}

function pick(tag) {
  const input = document.getElementById("taginput");
  input.value = "";
  document.getElementById("complete").hidden = true;
  add(tag);
}

function onInputKey(e) {
  const list = document.getElementById("complete");
  const items = [...list.children];
  if (e.key === "ArrowDown" && items.length) { completeSel = Math.min(items.length - 1, completeSel + 1); mark(items); e.preventDefault(); }
  else if (e.key === "ArrowUp" && items.length) { completeSel = Math.max(0, completeSel - 1); mark(items); e.preventDefault(); }
  else if (e.key === "Enter") {
    e.preventDefault(); e.stopPropagation();
    const chosen = completeSel >= 0 && !list.hidden ? items[completeSel].firstChild.textContent : e.target.value;
    pick(chosen);
  } else if (e.key === "Escape") { e.target.value = ""; list.hidden = true; e.target.blur(); }
  e.stopPropagation();
}

function mark(items) { items.forEach((li, k) => li.classList.toggle("sel", k === completeSel)); }

function toggleHelp(force) {
  const h = document.getElementById("help");
  h.hidden = force === undefined ? !h.hidden : !force;
}

function onKey(e) {
  if (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA") return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  if (k === "ArrowLeft" || k === "k") go(T.index - 1);
  else if (k === "ArrowRight" || k === "j") go(T.index + 1);
  else if (k === "Enter") { e.preventDefault(); saveAndNext(); }
  else if (/^[1-9]$/.test(k)) { const s = pending()[Number(k) - 1]; if (s) accept(s.tag); }
  else if (k === "x") { const s = pending()[0]; if (s) reject(s.tag); }
  else if (k === "/") { e.preventDefault(); document.getElementById("taginput").focus(); }
  else if (k === "s") skip();
  else if (k === "?") toggleHelp();
  else if (k === "Escape") toggleHelp(false);
}

// ---------- the grid (browse and review) ----------
const G = { mode: null, info: null, q: {}, offset: 0, size: 256, selected: null, facets: {} };

async function startGrid(info) {
  G.mode = info.mode; G.info = info.detail; G.similar = info.similar || {};
  document.getElementById("mode").textContent = info.mode === "review"
    ? "reviewing " + info.detail.runs.map((r) => r.id).join(", ")
    : "browsing " + info.detail.root;
  const app = clear(document.getElementById("app"));
  app.className = "grid-mode";
  const flags = info.mode === "review"
    ? ["disagree", "error", "failed"].map((f) => el("label", {}, el("input", { type: "checkbox", class: "flag", value: f }), " " + f))
    : [];
  const sorts = [["name", "name"], ["tags", "most tags"]];
  if (info.mode === "review") sorts.push(["f1", "F1 (worst first)"]);
  app.append(
    el("form", { id: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
      el("input", { id: "q", placeholder: "tags: cat dog -outdoors", autocomplete: "off", size: 30 }),
      el("select", { id: "qmode" }, el("option", { value: "all", text: "all" }), el("option", { value: "any", text: "any" })),
      ...["generator", "sampler", "model", "lora", "folder"].map((f) => el("select", { id: "f-" + f, "data-field": f }, el("option", { value: "", text: f + ": any" }))),
      ...flags,
      el("select", { id: "sort" }, ...sorts.map(([v, t]) => el("option", { value: v, text: "sort: " + t }))),
      el("input", { id: "scoretag", placeholder: "sort by a tag's score", size: 16 }),
      el("select", { id: "group" }, ...["none", "tag", "sampler", "generator", "model", "lora", "folder"].map((g) => el("option", { value: g, text: "group: " + g }))),
      el("span", { class: "sizes" }, ...[["S", 128], ["M", 256], ["L", 512]].map(([t, s]) => el("button", { type: "button", onclick: () => { G.size = s; refresh(); }, text: t }))),
      el("button", { type: "submit", text: "search" }),
      el("button", { type: "button", onclick: exportSel, text: "export" }),
      el("button", { type: "button", id: "dupes-open", onclick: () => openDupes(0), text: "duplicates" })),
    el("div", { id: "body" },
      el("aside", { id: "taglist" }),
      el("section", {}, el("div", { id: "count" }), el("div", { id: "grid" }), el("div", { id: "more" }))),
    el("div", { id: "detail", class: "overlay", hidden: true }, el("div", { class: "panel wide", id: "detailpanel" })));
  app.querySelectorAll("select, input[type=checkbox]").forEach((s) => s.addEventListener("change", () => refresh()));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  const f = await api("GET", "/api/grid/facets");
  if (f.status === 200) {
    G.facets = f.data;
    const group = document.getElementById("group");
    for (const [c] of (f.data.category || [])) group.append(el("option", { value: "category:" + c, text: "group: " + c }));
    for (const field of ["generator", "sampler", "model", "lora", "folder"]) {
      const sel = document.getElementById("f-" + field);
      for (const [v, n] of (f.data[field] || [])) sel.append(el("option", { value: v, text: v + " (" + n + ")" }));
      sel.hidden = !(f.data[field] || []).length;
    }
  }
  await refresh();
}

function query(extra) {
  const p = new URLSearchParams();
  const v = (id) => (document.getElementById(id) || {}).value || "";
  if (v("q")) p.set("q", v("q"));
  p.set("mode", v("qmode") || "all");
  for (const f of ["generator", "sampler", "model", "lora", "folder"]) if (v("f-" + f)) p.set(f, v("f-" + f));
  const flags = [...document.querySelectorAll("input.flag:checked")].map((c) => c.value);
  if (flags.length) p.set("flags", flags.join(","));
  let sort = v("sort");
  if (v("scoretag")) sort = "score:" + v("scoretag");
  if (G.selected !== null && sort === "shared") sort = "shared:" + G.selected;
  p.set("sort", sort || "name");
  p.set("group", v("group") || "none");
  for (const [k, x] of Object.entries(extra || {})) p.set(k, x);
  return p.toString();
}

async function refresh(append) {
  if (!append) G.offset = 0;
  const r = await api("GET", "/api/grid/page?" + query({ offset: G.offset, limit: 120 }));
  if (r.status !== 200) { notice(r.data.error, "error"); return; }
  const grid = document.getElementById("grid");
  if (!append) clear(grid);
  grid.className = "size" + G.size;
  let lastGroup = grid.dataset.lastGroup;
  if (!append) lastGroup = undefined;
  for (const it of r.data.items) {
    const g = it.group === null ? "—" : it.group;
    if (document.getElementById("group").value !== "none" && g !== lastGroup) {
      grid.append(el("h4", { class: "group", text: g }));
      lastGroup = g;
    }
    const img = el("img", { src: it.thumb + "?size=" + G.size, alt: it.path, loading: "lazy" });
    img.addEventListener("error", () => { img.replaceWith(el("div", { class: "placeholder", text: "cannot show: " + (it.error || it.path) })); });
    grid.append(el("figure", { class: "cell", "data-id": it.id, onclick: () => openDetail(it.id) },
      img,
      el("figcaption", {}, el("span", { class: "path", text: it.path }),
        it.key !== null && it.key !== undefined ? el("span", { class: "key", text: " " + Number(it.key).toFixed(3) }) : null,
        el("span", { class: "tags", text: (it.tags || []).join(", ") }))));
  }
  grid.dataset.lastGroup = lastGroup === undefined ? "" : lastGroup;
  G.offset += r.data.items.length;
  document.getElementById("count").textContent = r.data.total + " images";
  const more = clear(document.getElementById("more"));
  if (G.offset < r.data.total) more.append(el("button", { onclick: () => refresh(true), text: "more (" + (r.data.total - G.offset) + " left)" }));
  if (!append) loadTagList();
}

async function loadTagList() {
  const r = await api("GET", "/api/grid/tags?" + query({ limit: 300 }));
  const box = clear(document.getElementById("taglist"));
  if (G.mode === "review" && G.info.editable) box.append(renameForm());
  box.append(el("h3", { text: "Tags" }));
  if (r.status !== 200) return;
  const ul = el("ul", {});
  for (const t of r.data.tags) ul.append(el("li", { class: t.category ? "cat-" + t.category : null },
    el("a", { href: "#", onclick: (e) => { e.preventDefault(); addFilter(t.tag); }, text: t.tag }),
    el("small", { text: " " + t.count + (t.category && t.category !== "general" ? " " + t.category : "") })));
  box.append(ul);
}

function renameForm() {
  const from = el("input", { id: "rename-from", placeholder: "tag", size: 10 });
  const to = el("input", { id: "rename-to", placeholder: "new name", size: 10 });
  const out = el("div", { id: "rename-out" });
  const run = async (confirm) => {
    const r = await api("POST", "/api/review/rename", { from: from.value, to: to.value, confirm });
    clear(out);
    if (r.status !== 200) return writeFailed(r);
    if (!confirm) {
      out.append(el("p", { text: r.data.files.length + " sidecars hold “" + r.data.pair[0] + "”; the pair goes into " + r.data.alias_file }),
        el("ul", {}, ...r.data.files.slice(0, 50).map((f) => el("li", { text: f }))),
        el("button", { id: "rename-confirm", type: "button", onclick: () => run(true), text: "rename in " + r.data.files.length + " files" }));
    } else {
      out.append(el("p", { text: "renamed in " + r.data.rewritten + " files" + (r.data.conflicts.length ? "; not in: " + r.data.conflicts.join("; ") : "") }));
      refresh();
    }
  };
  return el("details", { class: "rename" }, el("summary", { text: "Rename or merge a tag" }),
    from, " → ", to, el("button", { id: "rename-preview", type: "button", onclick: () => run(false), text: "preview" }), out);
}

function addFilter(tag) {
  const q = document.getElementById("q");
  const word = tag.replace(/ /g, "_");
  q.value = (q.value + " " + word).trim();
  refresh();
}

async function exportSel() {
  const r = await api("GET", "/api/grid/export?" + query());
  if (r.status !== 200) return notice(r.data.error, "error");
  const p = clear(document.getElementById("detailpanel"));
  p.append(el("button", { class: "close", onclick: closeDetail, text: "×" }),
    el("h2", { text: "Export" }),
    el("h3", { text: "Prompt" }), el("textarea", { rows: 3, readonly: true }, r.data.positive),
    el("h3", { text: "Negative prompt" }), el("textarea", { rows: 2, readonly: true }, r.data.negative),
    el("h3", { text: r.data.files.length + " files" }), el("textarea", { rows: 10, readonly: true }, r.data.files.join("\n")));
  document.getElementById("detail").hidden = false;
}

// Face boxes of a run's `faces` variants over the image (fractions of the upright image).
const FACE_COLOURS = ["#e53935", "#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b"];
function withFaces(img, variants) {
  const boxes = [];
  variants.forEach((v, k) => (v.regions || []).forEach((r) => {
    const label = r.person || (r.skipped ? "skipped: " + r.skipped : "");
    const b = el("span", { class: "face" + (r.skipped ? " skipped" : ""),
      title: v.key + ": " + (label ? label + ", " : "") + "score " + Number(r.score).toFixed(3) });
    b.style.left = (100 * r.x).toFixed(2) + "%";
    b.style.top = (100 * r.y).toFixed(2) + "%";
    b.style.width = (100 * r.w).toFixed(2) + "%";
    b.style.height = (100 * r.h).toFixed(2) + "%";
    b.style.borderColor = FACE_COLOURS[k % FACE_COLOURS.length];
    if (r.person) b.append(el("span", { class: "who", text: r.person }));
    boxes.push(b);
  }));
  if (!boxes.length) return img;
  return el("span", { class: "frame" }, img, ...boxes);
}

function closeDetail() { G.back = null; const d = document.getElementById("detail"); if (d) d.hidden = true; }

async function openDetail(id) {
  G.selected = id;
  const r = await api("GET", "/api/" + (G.mode === "review" ? "review" : "browse") + "/items/" + id);
  if (r.status !== 200) return notice(r.data.error, "error");
  const d = r.data;
  const p = clear(document.getElementById("detailpanel"));
  const img = el("img", { class: "big", src: d.url, alt: d.path });
  img.addEventListener("error", () => img.replaceWith(el("div", { class: "placeholder", text: "cannot show " + d.path })));
  const info = el("div", { class: "info" });
  p.append(el("button", { class: "close", onclick: closeDetail, text: "×" }),
    el("h2", { text: d.path }),
    el("div", { class: "detail" }, el("div", { class: "pic" }, withFaces(img, d.variants || [])), info),
    el("button", { onclick: () => { document.getElementById("sort").value = "name"; sortShared(id); }, text: "images sharing most tags with this one" }));
  if (G.back) p.append(" ", el("button", { id: "back-dupes", onclick: G.back, text: "back to duplicates" }));
  const near = el("section", { id: "similar" });
  p.append(near);
  if (G.mode === "review") renderReview(info, d); else renderBrowse(info, d);
  document.getElementById("detail").hidden = false;
  loadSimilar(id, near);
}

// ---------- similar images and duplicates ----------
function thumbCell(it, caption, onclick) {
  const img = el("img", { src: it.thumb + "?size=128", alt: it.path, loading: "lazy" });
  img.addEventListener("error", () => img.replaceWith(el("div", { class: "placeholder", text: "cannot show " + it.path })));
  return el("figure", { class: "cell", "data-id": it.id, onclick }, img,
    el("figcaption", {}, el("span", { class: "path", text: it.path }), el("span", { class: "tags", text: caption })));
}

function waiting(box, r, again) {
  box.append(el("p", { class: "muted computing", text: "computing " + r.data.what + " of every image (once; kept in the project's cache)… " + r.data.seconds + " s" }));
  setTimeout(again, 1500);
}

async function loadSimilar(id, box) {
  const r = await api("GET", "/api/similar/" + id + "?k=12");
  if (G.selected !== id || !box.isConnected) return;
  clear(box).append(el("h3", { text: "Similar images" }));
  if (r.status === 202) return waiting(box, r, () => loadSimilar(id, box));
  if (r.status !== 200) { box.append(el("p", { class: "muted", text: r.data.error })); return; }
  const m = r.data.measure;
  box.append(el("p", { class: "muted", text: "nearest by " + m.by + " (distance: " + m.distance + ")" }));
  const strip = el("div", { class: "strip" });
  for (const it of r.data.items) strip.append(thumbCell(it, "distance " + it.distance, () => openDetail(it.id)));
  box.append(strip);
}

async function openDupes(offset) {
  G.selected = null; G.back = null;
  const p = clear(document.getElementById("detailpanel"));
  const body = el("div", { id: "dupes" });
  p.append(el("button", { class: "close", onclick: closeDetail, text: "×" }), el("h2", { text: "Duplicates" }), body);
  document.getElementById("detail").hidden = false;
  await loadDupes(body, offset);
}

async function loadDupes(body, offset) {
  const dist = G.dupeDistance === undefined ? "" : "&max_distance=" + G.dupeDistance;
  const r = await api("GET", "/api/dupes?limit=30&offset=" + offset + dist);
  if (!body.isConnected) return;
  clear(body);
  if (r.status === 202) return waiting(body, r, () => loadDupes(body, offset));
  const d = r.status === 200 ? r.data : null;
  const distance = el("input", { type: "number", id: "dupes-distance", min: 0, max: 24, step: 1, size: 3,
    value: d ? d.max_distance : (G.dupeDistance || "") });
  distance.addEventListener("change", () => {
    const v = Number(distance.value);
    if (!Number.isInteger(v) || v < 0 || v > 24) { notice("a distance is a whole number of bits from 0 to 24", "error"); return; }
    G.dupeDistance = v; loadDupes(body, 0);
  });
  if (!d) {
    G.dupeDistance = undefined;
    body.append(el("p", {}, "pHash within ", distance, " bits of 64"), el("p", { class: "error", text: r.data.error }));
    return;
  }
  const n = (k, one, many) => k + " " + (k === 1 ? one : many);
  const bad = d.unreadable_total ? "; unreadable: " + d.unreadable.slice(0, 5).map((u) => u.file).join(", ") + (d.unreadable_total > 5 ? " and " + (d.unreadable_total - 5) + " more" : "") : "";
  body.append(el("p", { id: "dupes-summary" }, n(d.total, "group", "groups") + " holding " + n(d.files_in_groups, "file", "files") + "; pHash within ", distance,
    " bits of 64" + (d.dismissed ? "; " + n(d.dismissed, "pair", "pairs") + " left out as not duplicates" : "") + bad));
  body.append(el("p", { class: "muted", text: "Nothing is moved or deleted here: `iw-lab dupes --script` prints the moves of every non-keeper." }));
  for (const g of d.groups) body.append(dupeGroup(body, offset, d.max_distance, g));
  const nav = el("div", { class: "nav" });
  if (offset > 0) nav.append(el("button", { onclick: () => loadDupes(body, Math.max(0, offset - 30)), text: "previous" }));
  if (offset + d.groups.length < d.total) nav.append(el("button", { id: "dupes-next", onclick: () => loadDupes(body, offset + 30), text: "next" }));
  body.append(nav);
}

function dupeGroup(body, offset, distance, g) {
  const strip = el("div", { class: "strip" });
  for (const f of g.files) {
    const keeper = f.id === g.keeper;
    const size = f.width ? f.width + "×" + f.height + " " : "";
    const cap = (keeper ? "keeper · " : "") + size + (f.format || "") + (keeper ? "" : f.same_bytes ? " · same bytes" : " · " + f.distance + " bits");
    const fig = thumbCell(f, cap, () => { G.back = () => openDupes(offset); openDetail(f.id); });
    if (keeper) fig.classList.add("keeper");
    else if (!f.same_bytes) {
      fig.append(el("button", { class: "notdupe", title: "not a duplicate of any image in this group", onclick: async (e) => {
        e.stopPropagation();
        const x = await api("POST", "/api/dupes/not-duplicate", { file: f.id, content: f.content, max_distance: distance });
        if (x.status !== 200) return writeFailed(x);
        notice("remembered: " + f.path + " is not a duplicate");
        loadDupes(body, offset);
      }, text: "not a duplicate" }));
    }
    strip.append(fig);
  }
  const more = g.size > g.files.length ? " (" + g.files.length + " of " + g.size + " files shown)" : "";
  return el("div", { class: "dupe-group" }, el("h4", { text: (g.exact ? "same bytes" : "near duplicates, up to " + g.max_distance + " bits apart") + more }), strip);
}

function sortShared(id) {
  closeDetail();
  const sel = document.getElementById("sort");
  if (![...sel.options].some((o) => o.value === "shared")) sel.append(el("option", { value: "shared", text: "sort: shared tags with the chosen image" }));
  sel.value = "shared";
  G.selected = id;
  refresh();
}

function metaBlock(info, pairs, prompt, negative, promptTags) {
  if (prompt) info.append(el("h3", { text: "Prompt" }), el("p", { class: "prompt", text: prompt }));
  if (negative) info.append(el("h3", { text: "Negative" }), el("p", { class: "prompt", text: negative }));
  if (promptTags && promptTags.length) info.append(el("h3", { text: "Prompt tags" }), el("p", { text: promptTags.join(", ") }));
  if (pairs && pairs.length) {
    const t = el("table", { class: "meta" });
    for (const [k, v] of pairs) t.append(el("tr", {}, el("td", { text: k }), el("td", { text: v })));
    info.append(t);
  }
}

function renderBrowse(info, d) {
  const m = d.meta || {};
  const pairs = Object.entries(m).filter(([k]) => !["prompt", "negative_prompt", "extra_prompts"].includes(k)).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  metaBlock(info, pairs, m.prompt, m.negative_prompt, null);
  if (d.error) { info.append(el("p", { class: "error", text: d.error })); return; }
  const state = { tags: d.tags || [], version: d.version || "absent" };
  const chips = el("div", { class: "chips" });
  const input = el("input", { placeholder: "add a tag", autocomplete: "off" });
  const save = async (tags) => {
    const r = await api("PUT", "/api/browse/items/" + d.id, { tags, version: state.version });
    if (r.status === 200) { state.tags = r.data.tags; state.version = r.data.version; draw(); notice("saved " + (d.txt || "")); }
    else if (r.status === 409 && r.data.tags) { state.tags = r.data.tags; state.version = r.data.version; draw(); notice("Not saved: " + r.data.error, "conflict"); }
    else writeFailed(r);
  };
  const draw = () => {
    clear(chips);
    state.tags.forEach((t, n) => chips.append(el("span", { class: "chip tag" }, el("span", { text: t }),
      el("button", { class: "x", onclick: () => save(state.tags.filter((_, k) => k !== n)) }, "×"))));
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter" && input.value.trim()) { save(state.tags.concat([input.value.trim()])); input.value = ""; } });
  draw();
  info.append(el("h3", { text: "Tags (" + (d.txt || "no sidecar") + ")" }), chips, input);
}

function renderReview(info, d) {
  const tf = d.truth_file || {};
  const truthBox = el("div", { class: "chips" });
  const state = { truth: d.truth || [], version: tf.version || "absent" };
  const edit = async (body) => {
    body.version = state.version;
    const r = await api("POST", "/api/review/items/" + d.id + "/truth", body);
    if (r.status === 200) { notice("ground truth saved"); openDetail(d.id); }
    else if (r.status === 409) { notice("Not saved: " + (r.data.error || "changed elsewhere"), "conflict"); openDetail(d.id); }
    else writeFailed(r);
  };
  for (const t of state.truth) truthBox.append(el("span", { class: "chip truth" }, el("span", { text: t }),
    tf.editable ? el("button", { class: "x", title: "remove from the ground truth", onclick: () => edit({ remove: t }) }, "×") : null));
  const undoBtn = tf.editable ? el("button", { class: "undo-gt", title: "undo the last edit of this file (from the edit log)", text: "undo" }) : null;
  if (undoBtn) undoBtn.addEventListener("click", async () => {
    const x = await api("POST", "/api/review/items/" + d.id + "/undo", {});
    if (x.status === 200) { notice("undone"); openDetail(d.id); } else writeFailed(x);
  });
  info.append(el("h3", { text: "Ground truth" + (tf.file ? " (" + tf.file + ")" : "") }), truthBox, undoBtn);
  if (!tf.editable && tf.error) info.append(el("p", { class: "muted", text: tf.error }));
  for (const v of d.variants) {
    const box = el("div", { class: "chips" });
    for (const t of v.tags) {
      box.append(el("span", { class: "chip " + t.status + " " + scoreClass(t.score), title: t.status + (t.score !== null ? " " + Number(t.score).toFixed(3) : "") },
        el("span", { text: t.tag }),
        t.status === "fp" && tf.editable ? el("button", { class: "accept-gt", title: "accept into the ground truth", onclick: () => edit({ add: t.tag }) }, "✓") : null));
    }
    info.append(el("h3", { text: v.key + " @ " + v.threshold }), box);
    for (const f of v.failed) info.append(el("p", { class: "error", text: "failed: " + f }));
  }
  metaBlock(info, d.meta, d.prompt, d.negative, d.prompt_tags);
  for (const c of d.captions) {
    info.append(el("h3", { text: "Caption: " + c.variant + (c.repeat ? " #" + c.repeat : "") }), el("p", { class: "prompt", text: c.text }));
    for (const v of c.verdicts) info.append(el("p", { class: "verdict", text: v.judge + (v.side ? " (" + v.side + ")" : "") + ": " + (v.verdict || "—") + (v.score !== null ? " " + v.score : "") }));
  }
}

// ---------- the picker (`iw-lab serve` in a project) ----------
async function startPicker() {
  document.getElementById("mode").textContent = "choose a run to review or a dataset to browse";
  const r = await api("GET", "/api/pick");
  if (r.status !== 200) return fail(r);
  const app = clear(document.getElementById("app"));
  app.className = "picker";
  const choose = async (body, button) => {
    button.disabled = true;
    notice("loading…");
    const x = await api("POST", "/api/pick", body);
    if (x.status === 200) location.reload();
    else { button.disabled = false; writeFailed(x); }
  };
  const runs = el("table", { id: "runs" }, el("tr", {}, ...["run", "experiment", "dataset", "images", "status", ""].map((h) => el("th", { text: h }))));
  for (const run of r.data.runs) {
    const b = el("button", { "data-run": run.id, text: "review" });
    b.addEventListener("click", () => choose({ run: run.id }, b));
    runs.append(el("tr", {}, el("td", { text: run.id }), el("td", { text: run.experiment }), el("td", { text: run.dataset }),
      el("td", { text: run.images }), el("td", { text: run.status }), el("td", {}, b)));
  }
  const sets = el("table", { id: "datasets" }, el("tr", {}, ...["dataset", "folder", ""].map((h) => el("th", { text: h }))));
  for (const d of r.data.datasets) {
    const b = d.error ? el("span", { class: "error", text: d.error }) : el("button", { "data-dataset": d.name, text: "browse" });
    if (!d.error) b.addEventListener("click", () => choose({ dataset: d.name }, b));
    sets.append(el("tr", {}, el("td", { text: d.name }), el("td", { text: d.root || "" }), el("td", {}, b)));
  }
  app.append(el("h2", { text: "Runs of " + r.data.project }), runs, el("h2", { text: "Datasets" }), sets);
}

function backToPicker(info) {
  if (!info.picker) return;
  const b = el("button", { id: "to-picker", text: "← runs and datasets" });
  b.addEventListener("click", async () => { const x = await api("POST", "/api/pick", {}); if (x.status === 200) location.reload(); else writeFailed(x); });
  document.getElementById("bar").insertBefore(b, document.getElementById("notice"));
}

// ---------- start ----------
function fail(r) {
  clear(document.getElementById("app")).append(el("p", { class: "error", text: (r.data && r.data.error) || "error " + r.status }));
}

async function main() {
  const r = await api("GET", "/api/info");
  if (r.status !== 200) return fail(r);
  backToPicker(r.data);
  if (r.data.mode === "tag") await startTagging(r.data);
  else if (r.data.mode === "pick") await startPicker();
  else await startGrid(r.data);
}

window.addEventListener("DOMContentLoaded", main);
