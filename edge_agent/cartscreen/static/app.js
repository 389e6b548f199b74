// storefleet cart screen: plain JS, no build step, no CDN; everything from the store box.
"use strict";
(() => {
  const cartId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const $ = (id) => document.getElementById(id);
  let T = { en: {}, zh: {} };
  let lang = localStorage.getItem("sf-lang") || "en";
  let state = null;
  let popupCode = null;
  let checkoutId = null;
  let reminder = null;  // the last scan_reminder shown, re-rendered on a language switch
  let reminderTimer = null;

  const t = (key) => (T[lang] && T[lang][key]) || (T.en && T.en[key]) || key;
  const money = (minor) => (minor / 100).toFixed(2);
  const el = (tag, attrs = {}, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  async function api(method, path, body) {
    const r = await fetch(path, { method, headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body) });
    const doc = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(doc.detail || r.statusText);
    return doc;
  }
  const pick = (obj, base) => (lang === "zh" && obj[base + "_zh"]) || obj[base];

  function translate() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
    document.querySelectorAll("[data-ph]").forEach((e) => { e.placeholder = t(e.dataset.ph); });
    render();
  }

  function renderMember() {
    const m = state && state.member;
    $("greeting").textContent = m ? t("hello_member").replace("{name}", m.name) : t("welcome");
    $("member-name").textContent = "";
    $("member-info").hidden = !m;
    $("signin").hidden = !!m;
    if (m) { $("member-tier").textContent = m.tier || "–"; $("member-points").textContent = m.points; }
  }

  function renderBasket() {
    const b = state && state.basket;
    const list = $("basket-lines");
    list.replaceChildren();
    const lines = b ? b.lines : [];
    for (const ln of lines) {
      const name = el("span", {}, `${pick(ln, "name")} ×${ln.qty}`);
      if (ln.discount) name.append(el("span", { class: "disc" }, `−${money(ln.discount)}`));
      list.append(el("li", { "data-sku": ln.sku }, name, el("b", {}, money(ln.net))));
    }
    $("basket-empty").hidden = lines.length > 0;
    $("basket-subtotal").textContent = money(b ? b.subtotal : 0);
    $("basket-savings").textContent = money(b ? b.discount : 0);
    $("basket-total").textContent = money(b ? b.total : 0);
    $("basket-total").dataset.minor = b ? b.total : 0;
  }

  // The wallet (web.py: wallet()): one entry per promotion, "×2" when the shopper holds two
  // of its codes; applying the entry applies its one `code` (the applied or soonest-expiring).
  // An applied entry offers "Remove": the code goes back to the wallet, its reservation for
  // this cart ends, and the basket prices without it.
  function renderCoupons() {
    const list = $("coupon-list");
    list.replaceChildren();
    const wallet = (state && state.wallet) || [];
    for (const g of wallet) {
      const btn = g.applied
        ? el("div", { class: "state" }, el("span", { class: "save" }, t("applied")),
          el("button", { class: "small remove", onclick: () => removeCoupon(g.code) }, t("remove")))
        : el("button", { class: "small apply", onclick: () => applyCoupon(g.code) }, t("apply"));
      const title = el("div", { class: "title" }, pick(g, "title"));
      if (g.count > 1) title.append(el("span", { class: "count" }, ` ×${g.count}`));
      list.append(el("li", { class: g.applied ? "coupon applied" : "coupon", "data-code": g.code,
        "data-codes": g.codes.join(" "), "data-count": g.count },
        el("div", {}, title, el("div", { class: "code" }, g.code)), btn));
    }
    $("no-coupons").hidden = wallet.length > 0;
  }

  function product(p, extra) {
    return el("li", { "data-sku": p.sku }, el("span", {}, pick(p, "name")),
      el("span", {}, `${money(p.price)}${p.shelf ? " · " + p.shelf : ""}`), extra || "");
  }

  function renderSide() {
    const recs = $("recommendations");
    recs.replaceChildren();
    for (const p of (state && state.recommendations) || []) {
      recs.append(product(p, el("button", { class: "small", onclick: () => addToList(p.sku) }, "+")));
    }
    const sl = $("shopping-list");
    sl.replaceChildren();
    for (const sku of (state && state.shopping_list) || []) sl.append(el("li", {}, sku));
    const pos = state && state.position;
    $("zone").textContent = pos && pos.zone ? pos.zone : "–";
  }

  // An item the cart's camera saw going in without a scan: a gentle prompt, gone by itself.
  function renderReminder() {
    if (!reminder) return;
    const item = (T[lang] && T[lang]["cat_" + reminder.category]) || t("cat_other");
    $("scan-reminder-body").textContent = t("scan_reminder_body").replace("{item}", item);
  }
  function showReminder(data) {
    reminder = data;
    renderReminder();
    $("scan-reminder").hidden = false;
    clearTimeout(reminderTimer);
    reminderTimer = setTimeout(() => { $("scan-reminder").hidden = true; }, 30000);
  }

  // An idle cart (no member, empty basket) shows the store's cart playlist for its zone,
  // item by item, from the screens module on this same server (decision 0051); nothing
  // when the box has none. Text goes in with textContent only.
  async function idleLoop() {
    let next = 0;
    for (;;) {
      const b = state && state.basket;
      let items = [];
      if (state && !state.member && !(b && b.lines.length)) {
        const q = new URLSearchParams({ surface: "cart" });
        if (state.position && state.position.zone) q.set("zone", state.position.zone);
        try {
          const r = await fetch(`/screens/now?${q}`, { cache: "no-store" });
          if (r.ok) items = (await r.json()).items;
        } catch (e) { /* the box is restarting: try again */ }
      }
      const box = $("idle-loop");
      let wait = 10000;  // idle check when nothing plays
      if (items.length) {
        const item = items[next++ % items.length];
        const node = item.kind === "image" ? el("img", { src: item.url, alt: item.title || item.id })
          : item.kind === "video" ? el("video", { src: item.url, autoplay: "", loop: "", playsinline: "" })
          : el("div", { class: "idle-card" }, el("b", {}, item.title), el("div", {}, item.card.name),
            el("div", { class: "save" }, item.card.offer));
        if (item.kind === "video") node.muted = true;  // autoplay is allowed muted only
        box.dataset.itemId = item.id;
        box.replaceChildren(node);
        box.hidden = false;
        wait = item.duration_s * 1000;
      } else {
        box.dataset.itemId = "";
        box.replaceChildren();
        box.hidden = true;
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  function render() { renderReminder(); if (state) { renderMember(); renderBasket(); renderCoupons(); renderSide(); } }

  async function refresh() {
    try { state = await api("GET", `/api/cart/${cartId}/state`); render(); } catch (e) { /* next push retries */ }
  }

  function showCoupon(c) {
    popupCode = c.code;
    $("popup-title").textContent = pick(c, "title");
    $("popup-body").textContent = pick(c, "body") || "";
    $("popup-expires").textContent = new Date(c.expires_ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB");
    $("popup-code").textContent = c.code;
    $("coupon-popup").hidden = false;
  }

  async function applyCoupon(code) {
    try { await api("POST", `/api/cart/${cartId}/coupons/${encodeURIComponent(code)}/apply`); }
    catch (e) { alert(e.message); }
    $("coupon-popup").hidden = true;
    await refresh();
  }

  async function removeCoupon(code) {
    try { await api("POST", `/api/cart/${cartId}/coupons/${encodeURIComponent(code)}/remove`); }
    catch (e) { alert(e.message); }
    await refresh();
  }

  async function addToList(sku) {
    const skus = [...((state && state.shopping_list) || []), sku];
    await api("PUT", `/api/cart/${cartId}/list`, { skus });
    await refresh();
    await showRoute();
  }

  async function showRoute() {
    try {
      const r = await api("GET", `/api/cart/${cartId}/route`);
      const line = document.getElementById("route");
      if (line) line.setAttribute("points", r.points.map((p) => p.join(",")).join(" "));
    } catch (e) { /* no layout */ }
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/cart/${cartId}`);
    ws.onopen = () => { $("conn").hidden = true; refresh(); };
    ws.onclose = () => { $("conn").hidden = false; setTimeout(connect, 1000); };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "coupon") { showCoupon(msg.data); refresh(); }
      else if (msg.type === "basket" || msg.type === "member") refresh();
      else if (msg.type === "scan_reminder") showReminder(msg.data);
      else if (msg.type === "receipt") showReceipt(msg.data);
      else if (msg.type === "position") {
        const dot = document.getElementById("cart-dot");
        if (dot && msg.data.svg) { dot.setAttribute("cx", msg.data.svg[0]); dot.setAttribute("cy", msg.data.svg[1]); }
        $("zone").textContent = msg.data.zone || "–";
      }
    };
  }

  $("lang-toggle").addEventListener("click", () => {
    lang = lang === "en" ? "zh" : "en"; localStorage.setItem("sf-lang", lang); translate();
  });
  $("popup-apply").addEventListener("click", () => applyCoupon(popupCode));
  $("popup-later").addEventListener("click", () => { $("coupon-popup").hidden = true; });
  $("scan-reminder-ok").addEventListener("click", () => { $("scan-reminder").hidden = true; });
  $("signin").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await api("POST", `/api/cart/${cartId}/member`, { qr: $("member-qr").value }); await refresh(); }
    catch (e) { alert(e.message); }
  });
  $("search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("search-q").value.trim();
    const out = $("search-results");
    out.replaceChildren();
    let items = [];
    if (/^[0-9]{6,14}$/.test(q)) {
      try { items = [await api("GET", `/api/products/${q}`)]; } catch (e) { items = []; }
    } else items = (await api("GET", `/api/products?q=${encodeURIComponent(q)}`)).items;
    if (!items.length) out.append(el("li", { class: "muted" }, t("not_found")));
    for (const p of items) out.append(product(p, el("button", { class: "small", onclick: () => addToList(p.sku) }, "+")));
  });
  $("route-btn").addEventListener("click", showRoute);
  $("checkout").addEventListener("click", async () => {
    try {
      const c = await api("POST", `/api/cart/${cartId}/checkout`);
      checkoutId = c.checkout_id;
      $("pay-qr").innerHTML = c.qr_svg;  // SVG rendered by the store box from our own payload
      $("pay-total").textContent = money(c.total);
      // the provider's notice confirms (a "receipt" push); the button only in demo mode
      $("pay-done").hidden = !(state && state.payment_confirmation === "screen");
      $("pay-popup").hidden = false;
    } catch (e) { alert(e.message); }
  });
  $("pay-close").addEventListener("click", () => { $("pay-popup").hidden = true; });
  function showReceipt(r) {
    $("pay-popup").hidden = true;
    const list = $("receipt-lines");
    list.replaceChildren();
    for (const ln of r.lines) list.append(el("li", {}, el("span", {}, `${pick(ln, "name")} ×${ln.qty}`), el("b", {}, money(ln.net))));
    $("receipt-savings").textContent = money(r.discount);
    $("receipt-total").textContent = money(r.total);
    $("receipt-points").textContent = r.points_earned;
    $("receipt-popup").hidden = false;
    refresh();
  }
  $("pay-done").addEventListener("click", async () => {
    try { showReceipt(await api("POST", `/api/cart/${cartId}/checkout/${checkoutId}/paid`)); }
    catch (e) { alert(e.message); }
  });
  $("receipt-close").addEventListener("click", () => { $("receipt-popup").hidden = true; });

  (async () => {
    T = await api("GET", "/api/i18n");
    try { $("map").innerHTML = await (await fetch("/map.svg")).text(); } catch (e) { /* no layout */ }
    translate();
    await refresh();
    connect();
    idleLoop();
  })();
})();
