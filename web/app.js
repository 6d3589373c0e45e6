// The nulltext page: plain JavaScript over the JSON API (no build step). Every request goes to
// /api/...; progress comes from the job's server-sent events.
const $ = (id) => document.getElementById(id);
const state = { health: null, file: null, image: null, job: null, inversion: null, blend: new Set(), editJob: null };

async function api(path, options = {}) {
  const res = await fetch(path, options);
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw new Error(body?.error ?? `${res.status} ${res.statusText}`);
  return body;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

const seconds = (s) => (s < 90 ? `${s.toFixed(s < 10 ? 1 : 0)} s` : `${(s / 60).toFixed(1)} min`);

async function init() {
  const h = await api("/api/health");
  state.health = h;
  $("model").textContent = `${h.model.split("/").pop()} · ${h.resolution}×${h.resolution}`;
  for (const c of ["preview", "inv-map"]) {
    $(c).width = h.resolution;
    $(c).height = h.resolution;
  }
  for (const m of h.methods) {
    const est = m.estimate_seconds === null ? "" : ` — about ${seconds(m.estimate_seconds)} at 50 steps`;
    $("method").append(el("option", { value: m.id, textContent: `${m.id}${est}`, title: m.summary }));
  }
  await refreshLibrary();
}

// ---- 1. the photo, fitted to the model's square as the server will fit it
function drawPreview() {
  const c = $("preview");
  const ctx = c.getContext("2d");
  const s = c.width;
  const img = state.image;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, s, s);
  if (!img) return;
  const fit = $("fit").value;
  const w = img.naturalWidth;
  const h = img.naturalHeight;
  if (fit === "stretch") ctx.drawImage(img, 0, 0, s, s);
  else if (fit === "pad") {
    const k = s / Math.max(w, h);
    ctx.drawImage(img, (s - w * k) / 2, (s - h * k) / 2, w * k, h * k);
  } else {
    const side = Math.min(w, h);
    ctx.drawImage(img, (w - side) / 2, (h - side) / 2, side, side, 0, 0, s, s);
  }
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  const img = new Image();
  img.onload = () => {
    state.image = img;
    drawPreview();
    $("invert").disabled = false;
  };
  img.onerror = () => {
    $("invert-error").textContent = `${file.name}: the browser cannot show this file`;
  };
  img.src = URL.createObjectURL(file);
}

// ---- jobs: progress bar from server-sent events
function follow(job, bar, cancelButton) {
  return new Promise((resolve) => {
    const progress = $(bar);
    progress.hidden = false;
    const fill = progress.querySelector(".bar div");
    const text = progress.querySelector(".text");
    const cancel = $(cancelButton);
    cancel.hidden = false;
    cancel.onclick = () => api(`/api/jobs/${job}`, { method: "DELETE" }).catch(() => {});
    const events = new EventSource(`/api/jobs/${job}/events`);
    events.onmessage = (m) => {
      const j = JSON.parse(m.data);
      const p = j.progress;
      if (j.state === "queued") text.textContent = `queued: position ${j.position}`;
      else if (p) {
        fill.style.width = `${(100 * p.step) / p.total}%`;
        const loss = p.loss === undefined ? "" : ` · loss ${p.loss.toExponential(2)}`;
        const eta = p.eta === undefined ? "" : ` · ETA ${seconds(p.eta)}`;
        text.textContent = `${p.phase} ${p.step}/${p.total}${loss}${eta}`;
      }
      if (["done", "failed", "cancelled"].includes(j.state)) {
        events.close();
        cancel.hidden = true;
        if (j.state !== "done") text.textContent = j.state;
        resolve(j);
      }
    };
  });
}

async function invert() {
  $("invert-error").textContent = "";
  const f = new FormData();
  f.set("image", state.file);
  f.set("prompt", $("prompt").value);
  f.set("method", $("method").value);
  f.set("fit", $("fit").value);
  f.set("steps", $("steps").value);
  $("invert").disabled = true;
  try {
    const { id, job } = await api("/api/inversions", { method: "POST", body: f });
    const j = await follow(job, "invert-progress", "cancel");
    if (j.state === "done") await openInversion(id);
    else if (j.state === "cancelled") $("invert-error").textContent = "cancelled: press Invert again to resume it";
    else $("invert-error").textContent = j.error ?? j.state;
  } catch (e) {
    $("invert-error").textContent = e.message;
  } finally {
    $("invert").disabled = false;
    refreshLibrary();
  }
}

// ---- 2. an inversion and its attention maps
function drawMap(canvas, imageUrl, token, resolution) {
  const ctx = canvas.getContext("2d");
  const img = new Image();
  img.onload = () => {
    const s = canvas.width;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, s, s);
    if (!token) return;
    const small = document.createElement("canvas");
    small.width = small.height = resolution;
    const sctx = small.getContext("2d");
    const px = sctx.createImageData(resolution, resolution);
    token.map.forEach((v, i) => {
      px.data.set([255, Math.round(255 * (1 - v)), 0, Math.round(200 * v)], i * 4);
    });
    sctx.putImageData(px, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, s, s);
  };
  img.src = imageUrl;
}

function tokenChips(container, attention, promptIndex, canvas, imageUrl) {
  container.replaceChildren();
  const prompt = attention.prompts[promptIndex];
  for (const t of prompt.tokens) {
    const chip = el("span", { textContent: t.text, title: `max ${t.max.toFixed(3)}` });
    chip.dataset.token = t.text;
    chip.onclick = () => {
      for (const c of container.children) c.classList.remove("active");
      chip.classList.add("active");
      drawMap(canvas, imageUrl, t, attention.resolution);
    };
    container.append(chip);
  }
  drawMap(canvas, imageUrl, null, attention.resolution);
}

async function openInversion(id) {
  const inv = await api(`/api/inversions/${id}`);
  state.inversion = inv;
  state.blend.clear();
  $("result-panel").hidden = false;
  $("edit-panel").hidden = false;
  $("inv-title").textContent = `“${inv.prompt}” · ${inv.method}`;
  $("inv-input").src = inv.urls.input ?? inv.urls.reconstruction;
  $("inv-rec").src = inv.urls.reconstruction;
  $("inv-quality").textContent =
    inv.psnr === undefined ? "reconstruction" : `reconstruction · PSNR ${inv.psnr.toFixed(2)} dB · SSIM ${inv.ssim.toFixed(3)}`;
  const attention = await api(inv.urls.attention);
  tokenChips($("inv-tokens"), attention, 0, $("inv-map"), inv.urls.reconstruction);
  $("edit-prompts").replaceChildren();
  addPrompt(inv.prompt);
  $("gallery").replaceChildren();
  renderWords();
}

// ---- 3. the edit panel
const words = (p) => p.trim().split(/\s+/).filter(Boolean);

function addPrompt(text) {
  const input = el("input", { type: "text", value: text, oninput: renderWords });
  const row = el("div", { class: "edit-prompt" }, input, el("span", { class: "prompt-words" }));
  $("edit-prompts").append(row);
  renderWords();
}

function toggleBlend(word) {
  if (state.blend.has(word)) state.blend.delete(word);
  else state.blend.add(word);
  renderWords();
}

function wordSpan(word, cls) {
  const s = el("span", { textContent: word, class: cls, onclick: () => toggleBlend(word) });
  s.dataset.word = word;
  if (state.blend.has(word)) s.classList.add("blend");
  return s;
}

function renderWords() {
  const source = words(state.inversion?.prompt ?? "");
  $("source-words").replaceChildren(...source.map((w) => wordSpan(w, "")));
  const all = new Set();
  for (const row of $("edit-prompts").children) {
    const ws = words(row.querySelector("input").value);
    const swap = ws.length === source.length;
    row.querySelector(".prompt-words").replaceChildren(
      el("em", { textContent: swap ? "word swap: " : "refinement: " }),
      ...ws.map((w, i) => wordSpan(w, swap ? (w !== source[i] ? "swap" : "") : source.includes(w) ? "" : "added")),
    );
    for (const w of ws) all.add(w);
  }
  const old = new Map([...$("reweights").querySelectorAll("input")].map((i) => [i.dataset.word, i.value]));
  $("reweights").replaceChildren(
    ...[...all].map((w) => {
      const input = el("input", { type: "range", min: "0", max: "3", step: "0.1", value: old.get(w) ?? "1" });
      input.dataset.word = w;
      const out = el("output", { textContent: input.value });
      input.oninput = () => {
        out.textContent = input.value;
      };
      return el("label", {}, `${w}`, input, out);
    }),
  );
}

async function edit() {
  $("edit-error").textContent = "";
  const prompts = [...$("edit-prompts").children].map((r) => r.querySelector("input").value.trim());
  const reweight = [...$("reweights").querySelectorAll("input")]
    .filter((i) => Number(i.value) !== 1)
    .map((i) => ({ word: i.dataset.word, scale: Number(i.value) }));
  const body = {
    prompts,
    reweight,
    blend: [...state.blend],
    crossSteps: Number($("cross").value),
    selfSteps: Number($("self").value),
    nullSteps: Number($("nulls").value),
  };
  $("edit").disabled = true;
  try {
    const inv = state.inversion;
    const { id, job } = await api(`/api/inversions/${inv.id}/edits`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const j = await follow(job, "edit-progress", "edit-cancel");
    if (j.state !== "done") {
      $("edit-error").textContent = j.error ?? j.state;
      return;
    }
    const e = await api(`/api/edits/${id}`);
    const attention = await api(e.attention);
    const figure = (src, caption, name) =>
      el(
        "figure",
        {},
        el("img", { src, alt: caption }),
        el("figcaption", {}, caption, " ", el("a", { href: src, download: name, textContent: "download" })),
      );
    const mapCanvas = el("canvas", { width: state.health.resolution, height: state.health.resolution });
    const chips = el("div", { class: "tokens" });
    const selectors = e.images.map((img, i) =>
      el("button", { textContent: `maps of “${img.prompt}”`, onclick: () => tokenChips(chips, attention, i + 1, mapCanvas, img.url) }),
    );
    $("gallery").replaceChildren(
      figure(inv.urls.input ?? inv.urls.reconstruction, "input", "input.png"),
      figure(e.source, "reconstruction", "reconstruction.png"),
      ...e.images.map((img, i) => figure(img.url, img.prompt, `edit-${i + 1}.png`)),
      el("figure", { class: "maps" }, mapCanvas, el("figcaption", {}, ...selectors, chips)),
    );
    $("gallery").dataset.edit = id;
    tokenChips(chips, attention, 1, mapCanvas, e.images[0].url);
  } catch (err) {
    $("edit-error").textContent = err.message;
  } finally {
    $("edit").disabled = false;
  }
}

// ---- the library
async function refreshLibrary() {
  const { inversions } = await api("/api/inversions");
  $("library").replaceChildren(
    ...inversions.map((inv) =>
      el(
        "div",
        { class: "card" },
        el("img", { src: inv.urls.input ?? inv.urls.reconstruction, alt: inv.prompt }),
        el("div", { textContent: inv.prompt }),
        el("div", { class: "hint", textContent: `${inv.method} · ${new Date(inv.created).toLocaleString()}` }),
        el(
          "div",
          { class: "actions" },
          el("button", { textContent: "Open", onclick: () => openInversion(inv.id) }),
          el("a", { href: inv.urls.file, download: `${inv.id}.nti`, textContent: ".nti" }),
          el("button", {
            textContent: "Delete",
            onclick: async () => {
              try {
                await api(`/api/inversions/${inv.id}`, { method: "DELETE" });
              } catch (e) {
                alert(e.message);
              }
              refreshLibrary();
            },
          }),
        ),
      ),
    ),
  );
}

async function importFile(file) {
  const f = new FormData();
  f.set("file", file);
  try {
    const { id, job } = await api("/api/inversions/import", { method: "POST", body: f });
    const j = await follow(job, "invert-progress", "cancel");
    if (j.state === "done") await openInversion(id);
  } catch (e) {
    $("invert-error").textContent = e.message;
  }
  refreshLibrary();
}

$("file").onchange = (e) => chooseFile(e.target.files[0]);
$("fit").onchange = drawPreview;
$("invert").onclick = invert;
$("edit").onclick = edit;
$("add-prompt").onclick = () => addPrompt(state.inversion?.prompt ?? "");
$("import").onchange = (e) => importFile(e.target.files[0]);
for (const id of ["cross", "self", "nulls"]) {
  $(id).oninput = () => {
    $(id).nextElementSibling.textContent = $(id).value;
  };
}
const drop = $("drop");
drop.ondragover = (e) => {
  e.preventDefault();
  drop.classList.add("over");
};
drop.ondragleave = () => drop.classList.remove("over");
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  chooseFile(e.dataTransfer.files[0]);
};
init().catch((e) => {
  $("invert-error").textContent = e.message;
});
