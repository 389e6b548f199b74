// The staff assistant's page (decision 0065): plain JS over /api/v1/staff, no CDN.
// The token comes from the URL fragment (#token=...&store=...), never sent in a URL
// to the server, or is typed in; it is kept for the tab only (sessionStorage).
"use strict";
const $ = (id) => document.getElementById(id);
const API = "/api/v1/staff";
let token = "", store = "", currency = "EUR", lapsedCursor = null;

function money(minor) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency })
    .format(minor / 100);  // minor units; the chain's currencies have two decimals
}
function when(ms) { return ms == null ? "never" : new Date(ms).toISOString().slice(0, 10); }
function showError(text) { $("error").textContent = text; $("error").hidden = !text; }
function li(text) { const el = document.createElement("li"); el.textContent = text; return el; }
function cell(row, text) { const td = row.insertCell(); td.textContent = text; return td; }

async function api(method, path, body) {
  const res = await fetch(API + path, {
    method, headers: { "Authorization": `Bearer ${token}`,
                       ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return { body: await res.json(), next: res.headers.get("X-Next-Cursor") };
}
const storePath = (path) => `/stores/${encodeURIComponent(store)}${path}`;

async function guarded(fn) {
  showError("");
  try { await fn(); } catch (err) { showError(err.message); }
}

async function signIn() {
  token = $("token").value.trim();
  const me = (await api("GET", "/me")).body;
  store = me.stores.length === 1 ? me.stores[0] : $("store").value.trim();
  if (!store) throw new Error("name the store");
  currency = me.currency;
  sessionStorage.setItem("staff-token", token);
  $("who").textContent = `${me.display_name || me.name} · store ${store}`;
  $("join").hidden = me.assistant_id == null;
  $("signin").hidden = true;
  $("app").hidden = false;
  await Promise.all([birthdays(), lapsed(false), rankings()]);
}

async function lookUp() {
  const ref = $("counter-ref").value.trim();
  const body = ref.startsWith("SFM") ? { code: ref } : { member_id: ref };
  const m = (await api("POST", storePath("/counter"), body)).body;
  $("m-id").textContent = m.member_id;
  $("m-tier").textContent = m.tier || "none";
  $("m-points").textContent = m.points;
  $("m-sv").textContent = money(m.stored_value);
  $("m-extra").textContent = [m.birthday && `birthday ${m.birthday}`,
    m.recruited_by && `recruited by ${m.recruited_by}`,
    `home store ${m.home_store || "none"}`].filter(Boolean).join(" · ");
  $("m-coupons").replaceChildren(...m.coupons.map(
    (c) => li(`${c.campaign}: ${c.code} (until ${when(c.expires_ms)})`)));
  $("m-purchases").replaceChildren(...m.last_purchases.map(
    (p) => li(`${when(p.ts)}: ${money(p.paid)}`)));
  $("member").hidden = false;
}

async function joinQr() {
  const j = (await api("POST", storePath("/join-code"), {})).body;
  $("join-qr").innerHTML = j.qr_svg;  // SVG made by our cloud from our own code
  $("join-code").textContent = j.code;
}

async function birthdays() {
  const rows = (await api("GET", storePath("/birthdays?days=7"))).body;
  $("birthday-list").replaceChildren(...(rows.length ? rows.map(
    (b) => li(`${b.member_id}: ${b.birthday}${b.in_days === 0 ? " (today)" : ""}`))
    : [li("none this week")]));
}

async function giveCoupon(memberId, days, button) {
  button.disabled = true;
  try {
    const c = (await api("POST", storePath(
      `/lapsed/${encodeURIComponent(memberId)}/coupon?days=${days}`))).body;
    button.replaceWith(document.createTextNode(`coupon ${c.code}`));
  } catch (err) { button.disabled = false; throw err; }
}

async function lapsed(more) {
  const days = Number($("lapsed-days").value) || 60;
  const query = `/lapsed?days=${days}&limit=20` +
    (more && lapsedCursor ? `&cursor=${encodeURIComponent(lapsedCursor)}` : "");
  const { body: rows, next } = await api("GET", storePath(query));
  if (!more) $("lapsed-rows").replaceChildren();
  for (const r of rows) {
    const tr = $("lapsed-rows").insertRow();
    tr.dataset.member = r.member_id;
    cell(tr, r.member_id);
    cell(tr, when(r.last_purchase_ms));
    const td = tr.insertCell();
    if (r.coupon) { td.textContent = `coupon ${r.coupon}`; continue; }
    const button = document.createElement("button");
    button.textContent = "Give coupon";
    button.className = "give-coupon";
    button.addEventListener("click", () => guarded(() => giveCoupon(r.member_id, days, button)));
    td.append(button);
  }
  lapsedCursor = next;
  $("lapsed-more").hidden = !next;
}

async function rankings() {
  const days = Number($("rank-days").value) || 30, by = $("rank-by").value;
  const s = (await api("GET", storePath(`/rankings/store?days=${days}`))).body;
  $("store-standing").replaceChildren(
    li(`sales ${money(s.sales.value)}: #${s.sales.rank} of ${s.sales.of}`),
    li(`new members ${s.new_members.value}: #${s.new_members.rank} of ${s.new_members.of}`),
    li(`coupons redeemed ${s.coupons_redeemed.value}: #${s.coupons_redeemed.rank} of ` +
       `${s.coupons_redeemed.of}`));
  const rows = (await api("GET", storePath(
    `/rankings/assistants?days=${days}&by=${by}&limit=100`))).body;
  $("rank-rows").replaceChildren();
  for (const r of rows) {
    const tr = $("rank-rows").insertRow();
    tr.dataset.assistant = r.assistant_id;
    cell(tr, r.rank); cell(tr, r.display_name); cell(tr, money(r.sales));
    cell(tr, r.new_members); cell(tr, r.coupons_redeemed);
  }
}

$("signin-go").addEventListener("click", () => guarded(signIn));
$("counter-go").addEventListener("click", () => guarded(lookUp));
$("join-go").addEventListener("click", () => guarded(joinQr));
$("lapsed-go").addEventListener("click", () => guarded(() => lapsed(false)));
$("lapsed-more").addEventListener("click", () => guarded(() => lapsed(true)));
$("rank-go").addEventListener("click", () => guarded(rankings));

// #token=...&store=... (a link an admin hands out); the fragment never reaches a server.
const fragment = new URLSearchParams(location.hash.slice(1));
$("token").value = fragment.get("token") || sessionStorage.getItem("staff-token") || "";
$("store").value = fragment.get("store") || "";
if (fragment.get("token")) history.replaceState(null, "", location.pathname);
if ($("token").value) guarded(signIn);
