// The signage page: asks the box what plays on this screen (surface, zone), shows each
// item for its duration, and asks again before the next one. Text goes in with
// textContent only: a promotion's name is data, never markup.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const surface = params.get("surface") || "signage";
  const zone = params.get("zone") || "";
  const stage = document.getElementById("stage");
  const IDLE_MS = 5000; // nothing to show: ask again this often
  const state = { version: null, items: [], shown: [], errors: 0 };
  window.signage = state; // read by tests and by a technician's console

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function refresh() {
    const q = new URLSearchParams({ surface });
    if (zone) q.set("zone", zone);
    try {
      const r = await fetch(`/screens/now?${q}`, { cache: "no-store" });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const body = await r.json();
      state.version = body.version;
      state.items = body.items;
    } catch (err) {
      state.errors += 1; // keep showing the last list: the box may be restarting
      console.warn("signage: refresh failed", err);
    }
  }

  function render(item) {
    let node;
    if (item.kind === "image") {
      node = el("img", { src: item.url, alt: item.title || item.id });
    } else if (item.kind === "video") {
      node = el("video", { src: item.url, autoplay: "", muted: "", loop: "", playsinline: "" });
      node.muted = true; // autoplay is allowed muted only
    } else {
      node = el("section", { class: "card" },
        el("h1", {}, item.title),
        el("p", { class: "name" }, item.card.name),
        el("p", { class: "offer" }, item.card.offer));
    }
    stage.dataset.itemId = item.id;
    stage.dataset.kind = item.kind;
    stage.replaceChildren(node);
    state.shown.push(item.id);
  }

  async function run() {
    let next = 0;
    for (;;) {
      await refresh();
      if (!state.items.length) {
        stage.dataset.itemId = "";
        stage.replaceChildren(el("p", { class: "idle" }, ""));
        await sleep(IDLE_MS);
        continue;
      }
      const item = state.items[next % state.items.length];
      next = (next + 1) % state.items.length;
      render(item);
      await sleep(item.duration_s * 1000);
    }
  }
  run();
})();
