// The cashier screen: a lane terminal in a browser, over the box's lane till API
// (/till/v1, decision 0063). Money arrives and leaves as integer minor units; the
// screen formats and parses decimal text itself, never through floats.
"use strict";

const DIGITS = 2; // minor digits of the store's currency (EUR); receipts carry their own
const state = { token: sessionStorage.getItem("laneToken") || "", basket: null,
                lastSale: null, refundSale: null };
const $ = (id) => document.getElementById(id);

function money(minor, digits = DIGITS) {
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  if (!digits) return sign + abs;
  const unit = 10 ** digits;
  return sign + Math.floor(abs / unit) + "." + String(abs % unit).padStart(digits, "0");
}

function parseMoney(text) {
  // "20", "20.5", "20.50" -> 2050; anything else -> null
  const m = /^\s*(\d{1,9})(?:[.,](\d{0,2}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
}

function showError(doc) {
  const box = $("error");
  if (!doc) { box.hidden = true; box.textContent = ""; return; }
  const detail = typeof doc.detail === "string" ? doc.detail : JSON.stringify(doc.detail);
  box.textContent = `${doc.reason}: ${detail}`;
  box.dataset.reason = doc.reason;
  box.hidden = false;
}

async function api(method, path, body) {
  const res = await fetch("/till/v1" + path, {
    method, headers: { "Authorization": "Bearer " + state.token,
                       "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const doc = res.status === 204 ? null : await res.json();
  if (!res.ok) { showError(doc); throw doc; }
  showError(null);
  return doc;
}

function setEnabled(open) {
  for (const id of ["void-basket", "scan-code", "scan-qty", "scan-btn", "member-kind",
                    "member-value", "member-btn", "order-id", "order-btn",
                    "coupon-code", "coupon-btn",
                    "tender-method", "cash-given", "tender-btn", "complete-btn"]) {
    $(id).disabled = !open;
  }
}

function render(b) {
  state.basket = b;
  setEnabled(!!b);
  $("basket-id").textContent = b ? b.basket_id : "";
  const body = $("lines").querySelector("tbody");
  body.replaceChildren();
  for (const ln of (b ? b.lines : [])) {
    const tr = document.createElement("tr");
    tr.dataset.code = ln.code;
    const cells = [ln.name, String(ln.qty), money(ln.unit_price), money(ln.amount)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i > 0) td.className = "num";
      tr.append(td);
    });
    const td = document.createElement("td");
    const one = document.createElement("button");
    one.textContent = "−1";
    one.className = "remove-one";
    one.onclick = () => act(api("DELETE", `/baskets/${b.basket_id}/items/${ln.code}?qty=1`));
    td.append(one);
    tr.append(td);
    body.append(tr);
  }
  $("subtotal").textContent = money(b ? b.subtotal : 0);
  $("discount").textContent = money(b ? -b.discount : 0);
  $("total").textContent = money(b ? b.total : 0);
  $("to-pay").textContent = money(b ? b.to_pay : 0);
  $("points").textContent = String(b ? b.points_earned : 0);
  $("member").textContent = b && b.member
    ? `Member ${b.member.member_id}${b.member.tier ? " (" + b.member.tier + ")" : ""}` : "";
  $("order").textContent = b && b.order_id ? `Collecting order ${b.order_id}` : "";
  $("order-clear").hidden = !(b && b.order_id);
  const coupons = $("coupons");
  coupons.replaceChildren();
  for (const c of (b ? b.coupons : [])) {
    const li = document.createElement("li");
    li.dataset.code = c.code;
    li.dataset.state = c.state;
    li.textContent = `${c.code}: ${c.state.replace("_", " ")} `;
    const x = document.createElement("button");
    x.textContent = "remove";
    x.onclick = () => act(api("DELETE", `/baskets/${b.basket_id}/coupons/${c.code}`));
    li.append(x);
    coupons.append(li);
  }
  $("change").textContent = money(b && b.tender ? b.tender.change : 0);
}

async function act(promise) {
  try { render(await promise); } catch (err) { if (!err || !err.reason) throw err; }
}

function receiptText(r) {
  const d = r.minor_digits;
  const w = 42;
  const row = (l, rt) => l.slice(0, w - rt.length - 1).padEnd(w - rt.length) + rt;
  const out = [];
  if (r.store) { out.push(r.store.name); out.push(...r.store.address); }
  out.push(row(`Till ${r.till_id || ""}`, r.sale_number ? `Sale ${r.sale_number}` : ""));
  if (r.cashier) out.push(`Cashier ${r.cashier}`);
  out.push("-".repeat(w));
  for (const ln of r.lines) {
    out.push(row(ln.name, money(ln.amount, d)));
    if (ln.qty > 1) out.push(`  ${ln.qty} x ${money(ln.unit_price, d)}`);
  }
  for (const a of r.adjustments) out.push(row(a.label, money(a.amount, d)));
  out.push("-".repeat(w));
  out.push(row("TOTAL", `${r.currency} ${money(r.totals.total, d)}`));
  for (const t of r.tenders) out.push(row(t.method, money(t.amount, d)));
  if (r.change) out.push(row("Change", money(r.change, d)));
  if (r.member) {
    out.push(row(`Member ${r.member.masked_id}`, `+${r.member.points_earned} pts`));
    if (r.member.pending) out.push("Points pending");
  }
  for (const f of r.footer) out.push(f);
  out.push(r.receipt_id);
  return out.join("\n");
}

$("signin-form").onsubmit = async (ev) => {
  ev.preventDefault();
  state.token = $("token").value.trim();
  try {
    const lane = await api("GET", "/lane");
    sessionStorage.setItem("laneToken", state.token);
    $("lane").textContent = `${lane.lane_id} · ${lane.store_id}`;
    $("till").hidden = false;
    render(null);
  } catch (err) { if (!err || !err.reason) throw err; $("till").hidden = true; }
};

$("new-basket").onclick = async () => {
  $("receipt").textContent = "";
  $("printed").textContent = "";
  await act(api("POST", "/baskets"));
  $("scan-code").focus();
};

$("void-basket").onclick = async () => {
  try { await api("DELETE", `/baskets/${state.basket.basket_id}`); render(null); }
  catch (err) { if (!err || !err.reason) throw err; }
};

$("scan-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const code = $("scan-code").value.trim();
  if (!code) return;
  const qty = Number($("scan-qty").value) || 1;
  await act(api("POST", `/baskets/${state.basket.basket_id}/items`, { code, qty }));
  $("scan-code").value = "";
  $("scan-qty").value = "1";
  $("scan-code").focus();
};

$("member-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = { [$("member-kind").value]: $("member-value").value.trim() };
  await act(api("PUT", `/baskets/${state.basket.basket_id}/member`, body));
};

$("order-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const order_id = $("order-id").value.trim();
  if (!order_id) return;
  await act(api("PUT", `/baskets/${state.basket.basket_id}/order`, { order_id }));
  $("order-id").value = "";
};

$("order-clear").onclick = () => act(api("DELETE", `/baskets/${state.basket.basket_id}/order`));

$("coupon-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const code = $("coupon-code").value.trim();
  if (!code) return;
  await act(api("POST", `/baskets/${state.basket.basket_id}/coupons`, { code }));
  $("coupon-code").value = "";
};

$("tender-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const method = $("tender-method").value;
  const body = { method };
  if (method === "cash" && $("cash-given").value.trim()) {
    const given = parseMoney($("cash-given").value);
    if (given === null) { showError({ reason: "invalid", detail: "cash given: 20.00" }); return; }
    body.cash_given = given;
  }
  await act(api("PUT", `/baskets/${state.basket.basket_id}/tender`, body));
};

$("complete-btn").onclick = async () => {
  try {
    const sale = await api("POST", `/baskets/${state.basket.basket_id}/complete`, {});
    state.lastSale = sale;
    render(null);
    $("change").textContent = money(sale.change);
    $("receipt").textContent = receiptText(sale.receipt);
    $("receipt").dataset.saleId = sale.sale_id;
    $("printed").textContent = sale.printed ? "Receipt printed" : "Receipt not printed";
    $("refund-sale").value = sale.sale_id;
  } catch (err) { if (!err || !err.reason) throw err; }
};

$("refund-form").onsubmit = async (ev) => {
  ev.preventDefault();
  try {
    const sale = await api("GET", `/sales/${$("refund-sale").value.trim()}`);
    state.refundSale = sale;
    const body = $("refund-lines").querySelector("tbody");
    body.replaceChildren();
    for (const ln of sale.lines) {
      const tr = document.createElement("tr");
      tr.dataset.lineId = ln.line_id;
      const name = document.createElement("td");
      name.textContent = `${ln.sku} (${ln.qty - ln.returned} of ${ln.qty} left)`;
      const td = document.createElement("td");
      const qty = document.createElement("input");
      qty.type = "number"; qty.min = "0"; qty.max = String(ln.qty - ln.returned);
      qty.value = "0"; qty.className = "refund-qty";
      td.append(qty);
      tr.append(name, td);
      body.append(tr);
    }
    $("refund-btn").hidden = false;
  } catch (err) { if (!err || !err.reason) throw err; }
};

$("refund-btn").onclick = async () => {
  const lines = {};
  for (const tr of $("refund-lines").querySelectorAll("tr")) {
    const n = Number(tr.querySelector(".refund-qty").value);
    if (n > 0) lines[tr.dataset.lineId] = n;
  }
  try {
    const r = await api("POST", `/sales/${state.refundSale.sale_id}/refund`, { lines });
    $("refund-result").textContent = `Refunded ${money(r.paid)} (${r.currency})`;
    $("refund-result").dataset.paid = String(r.paid);
  } catch (err) { if (!err || !err.reason) throw err; }
};

if (state.token) { $("token").value = state.token; }
