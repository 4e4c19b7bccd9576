// xlb status page: polls status.json (the API's status) once a second and
// updates the tables in place. Rates are the change of each counter
// between two readings over the time between them (the status's "time"). Every value shown is
// also set as a data-* attribute, for tests and scripts.
"use strict";
(function () {
  const INTERVAL_MS = 1000;
  const servicesEl = document.getElementById("services");
  const feedEl = document.getElementById("feed");
  const feedText = document.getElementById("feed-text");
  const sections = new Map(); // service key -> {section, head, rows: Map address -> row}
  let prev = null; // {t (ms, the status's time), services: Map key -> counters, backends: Map key|addr -> counters}
  let updates = 0;

  const COLUMNS = [
    // [key, heading, numeric]
    ["backend", "Backend", false],
    ["state", "State", false],
    ["reason", "Reason", false],
    ["check", "Last check", false],
    ["weight", "Weight", true],
    ["active", "Active flows", true],
    ["pps", "Packets/s", true],
    ["bps", "Bytes/s", true],
    ["nfps", "New flows/s", true],
    ["packets", "Packets", true],
    ["bytes", "Bytes", true],
    ["new", "New flows", true],
  ];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function setText(e, text) {
    if (e.textContent !== text) e.textContent = text;
  }
  function setData(e, name, value) {
    const v = value === null || value === undefined ? "" : String(value);
    if (e.dataset[name] !== v) e.dataset[name] = v;
  }

  const group = new Intl.NumberFormat("en-US");
  function count(n) { return group.format(n); }
  // si: 1234567, "B" -> "1.23 MB" (powers of 1000); unit may be "".
  function si(v, unit) {
    const prefixes = ["", "k", "M", "G", "T", "P"];
    let i = 0;
    while (Math.abs(v) >= 999.5 && i < prefixes.length - 1) { v /= 1000; i++; }
    const a = Math.abs(v);
    const digits = i === 0 ? (a !== 0 && a < 10 && v % 1 !== 0 ? 1 : 0) : (a < 10 ? 2 : a < 100 ? 1 : 0);
    const u = prefixes[i] + unit;
    return v.toFixed(digits) + (u ? " " + u : "");
  }
  function bytes(n) { return si(n, "B"); }
  function rateText(r, unit) { return r === null ? "\u2013" : si(r, unit); }
  // ago: seconds between two Date values, as "4 s ago", "3 min ago".
  function ago(then, now) {
    const s = Math.max(0, Math.round((now - then) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function rate(cur, old, dt) {
    if (old === undefined || dt <= 0 || cur < old) return null; // first reading, or a restart reset the counter
    return (cur - old) / dt;
  }

  function healthText(h) {
    if (!h || h.type === "none") return "none";
    let s = h.type;
    if (h.http) s += " " + (h.http.method || "GET") + " " + (h.http.path || "/");
    if (h.port) s += " port " + h.port;
    if (h.via) s += " via " + h.via;
    s += ", every " + h.interval + ", rise " + h.rise + ", fall " + h.fall;
    return s;
  }

  function fact(dl, key, label) {
    const div = el("div", { "data-fact": key });
    div.append(el("dt", {}, label), el("dd"));
    dl.append(div);
    return div.lastChild;
  }

  function newSection(key) {
    const section = el("section", { class: "service", "data-service": key });
    const head = el("div", { class: "svc-head" });
    const h2 = el("h2", {}, key);
    const dl = el("dl", { class: "facts" });
    const f = {
      scheduler: fact(dl, "scheduler", "scheduler"),
      forward: fact(dl, "forward", "forward"),
      persistence: fact(dl, "persistence", "persistence"),
      health: fact(dl, "health", "health"),
      bgp: fact(dl, "bgp", "BGP"),
      drops: fact(dl, "drops", "dropped, no backend"),
    };
    f.bgp.classList.add("bgp");
    const alert = el("p", { class: "alert", hidden: "" });
    head.append(h2, dl, alert);
    const table = el("table");
    const thead = el("thead");
    const hr = el("tr");
    for (const [k, label, num] of COLUMNS) hr.append(el("th", { scope: "col", "data-col": k, class: num ? "num" : "" }, label));
    thead.append(hr);
    const tbody = el("tbody");
    const tfoot = el("tfoot");
    const total = el("tr", { "data-total": "" });
    const totalLabel = { backend: "", state: "Backends" };
    for (const [k, label, num] of COLUMNS) {
      total.append(el("td", { "data-col": k, "data-label": k in totalLabel ? totalLabel[k] : label, class: num ? "num" : "" }));
    }
    tfoot.append(total);
    table.append(el("caption", { class: "mono", hidden: "" }, "Backends of " + key), thead, tbody, tfoot);
    const scroll = el("div", { class: "scroll" });
    scroll.append(table);
    section.append(head, scroll);
    return { section, facts: f, alert, tbody, total, rows: new Map() };
  }

  function newRow(addr) {
    const tr = el("tr", { "data-backend": addr });
    const cells = {};
    for (const [k, label, num] of COLUMNS) {
      const td = el("td", { "data-col": k, "data-label": label, class: num ? "num" : k === "reason" ? "reason" : "" });
      cells[k] = td;
      tr.append(td);
    }
    cells.backend.classList.add("mono");
    const st = el("span", { class: "state" });
    st.append(el("span", { class: "shape", "aria-hidden": "true" }), el("span", { class: "word" }));
    cells.state.append(st);
    const chk = el("span", { class: "check" });
    cells.check.append(chk);
    return { tr, cells, state: st, check: chk };
  }

  function cell(td, name, value, text) {
    setData(td.parentElement, name, value);
    setText(td, text);
  }

  // rateCells shows rates in the cells td(k) of a row: per second, "–"
  // until there are two readings.
  function rateCells(td, rates) {
    for (const [k, unit] of [["pps", ""], ["bps", "B"], ["nfps", ""]]) {
      const r = rates[k];
      cell(td(k), k, r === null ? "" : r.toFixed(1), rateText(r, unit));
    }
  }

  function renderBackend(row, b, rates, serverNow) {
    const c = row.cells;
    // A backend named by DNS shows its name beside the address.
    setText(c.backend, b.name ? b.address + " (" + b.name + ")" : b.address);
    setData(row.tr, "name", b.name || "");
    setData(row.tr, "state", b.state);
    setData(row.state, "state", b.state);
    setText(row.state.lastChild, b.state);
    setText(c.reason, b.reason || "");
    if (b.check) {
      setData(row.check, "ok", b.check.ok);
      setText(row.check, b.check.reason + ", " + ago(Date.parse(b.check.at), serverNow) + " (" + Math.round(b.check.seconds * 1000) + " ms)");
      row.check.title = b.check.at;
      setData(row.tr, "checkAt", b.check.at);
      setData(row.tr, "checkOk", b.check.ok);
    } else {
      setData(row.check, "ok", "");
      setText(row.check, "\u2013");
      setData(row.tr, "checkAt", "");
      setData(row.tr, "checkOk", "");
    }
    cell(c.weight, "weight", b.weight, count(b.weight));
    cell(c.active, "activeFlows", b.active_flows, count(b.active_flows));
    cell(c.packets, "packets", b.packets, count(b.packets));
    cell(c.bytes, "bytes", b.bytes, bytes(b.bytes));
    c.bytes.title = count(b.bytes) + " bytes";
    cell(c.new, "newFlows", b.new_flows, count(b.new_flows));
    rateCells((k) => c[k], rates);
    setData(row.tr, "usable", b.usable);
    setData(row.tr, "inTable", b.in_table);
  }

  function ratesOf(cur, old, dt) {
    return {
      pps: old ? rate(cur.packets, old.packets, dt) : null,
      bps: old ? rate(cur.bytes, old.bytes, dt) : null,
      nfps: old ? rate(cur.new_flows, old.new_flows, dt) : null,
    };
  }

  function renderService(sec, s, st, rates, seen, dt, serverNow) {
    const f = sec.facts;
    setData(sec.section, "scheduler", s.scheduler);
    setData(sec.section, "forward", s.forward);
    setData(sec.section, "announced", s.announced);
    setData(sec.section, "announcedTo", (s.announced_to || []).join(" "));
    setData(sec.section, "health", s.health ? s.health.type : "none");
    setText(f.scheduler, s.scheduler);
    setText(f.forward, s.forward);
    setText(f.persistence, s.persistence === "0s" ? "off" : s.persistence);
    setText(f.health, healthText(s.health));
    let bgp;
    if (!st.bgp) bgp = "off";
    else if (!s.announced) bgp = "not announced";
    else if (s.announced_to && s.announced_to.length) bgp = "announced to " + s.announced_to.join(", ");
    else bgp = "announced, no session established";
    setData(f.bgp, "announced", st.bgp ? s.announced : "");
    setText(f.bgp, bgp);
    setText(f.drops, count(s.drop_no_backend));
    setData(sec.section, "dropNoBackend", s.drop_no_backend);
    if (s.all_down) {
      sec.alert.hidden = false;
      setText(sec.alert, "every backend is down: " + (s.all_down === "keep-last" ? "traffic kept on the last healthy set" : "traffic dropped"));
    } else {
      sec.alert.hidden = true;
    }

    const live = new Set();
    let before = null; // keep rows in the feed's order
    const backends = s.backends || [];
    for (const b of backends) {
      live.add(b.address);
      let row = sec.rows.get(b.address);
      if (!row) {
        row = newRow(b.address);
        sec.rows.set(b.address, row);
      }
      const id = s.service + "|" + b.address;
      seen.set(id, b);
      renderBackend(row, b, ratesOf(b, prev && prev.backends.get(id), dt), serverNow);
      const want = before ? before.nextSibling : sec.tbody.firstChild;
      if (row.tr !== want) sec.tbody.insertBefore(row.tr, want);
      before = row.tr;
    }
    for (const [addr, row] of sec.rows) {
      if (!live.has(addr)) { row.tr.remove(); sec.rows.delete(addr); }
    }

    // Totals: the service's own counters (they include packets whose
    // backend has since been removed), the sums of weight and flows.
    const t = sec.total;
    const tc = (k) => t.querySelector('[data-col="' + k + '"]');
    const up = backends.filter((b) => b.state === "up").length;
    setText(tc("backend"), "Total");
    setText(tc("state"), up + " of " + backends.length + " up");
    setData(t, "up", up);
    const weight = backends.reduce((a, b) => a + b.weight, 0);
    const active = backends.reduce((a, b) => a + b.active_flows, 0);
    cell(tc("weight"), "weight", weight, count(weight));
    cell(tc("active"), "activeFlows", active, count(active));
    cell(tc("packets"), "packets", s.packets, count(s.packets));
    cell(tc("bytes"), "bytes", s.bytes, bytes(s.bytes));
    cell(tc("new"), "newFlows", s.new_flows, count(s.new_flows));
    rateCells(tc, rates);
  }

  function renderSummary(st) {
    document.getElementById("iface").textContent = "on " + st.interface;
    const dl = document.getElementById("summary");
    const items = [
      ["role", "role", st.role || "balancer"],
      ["xdp", "XDP", st.xdp_mode],
      ["version", "version", st.version],
      ["services", "services", count((st.services || []).length)],
      ["flows", "flows in table", count(st.flows)],
      ["bgp", "BGP", st.bgp ? "on" : "off"],
    ];
    for (const [k, label, v] of items) {
      let dd = dl.querySelector('[data-fact="' + k + '"] dd');
      if (!dd) dd = fact(dl, k, label);
      setText(dd, String(v));
    }
    setData(document.body, "flows", st.flows);
  }

  function render(st, t, serverNow) {
    const dt = prev ? (t - prev.t) / 1000 : 0;
    renderSummary(st);
    const seen = new Map();
    const svcs = new Map();
    const keys = new Set();
    let before = null;
    for (const s of st.services || []) {
      keys.add(s.service);
      let sec = sections.get(s.service);
      if (!sec) {
        sec = newSection(s.service);
        sections.set(s.service, sec);
      }
      svcs.set(s.service, s);
      renderService(sec, s, st, ratesOf(s, prev && prev.services.get(s.service), dt), seen, dt, serverNow);
      const want = before ? before.nextSibling : servicesEl.firstChild;
      if (sec.section !== want) servicesEl.insertBefore(sec.section, want);
      before = sec.section;
    }
    for (const [k, sec] of sections) {
      if (!keys.has(k)) { sec.section.remove(); sections.delete(k); }
    }
    if (!st.services || st.services.length === 0) {
      if (!servicesEl.querySelector(".empty")) servicesEl.append(el("p", { class: "empty" }, "No services."));
    } else {
      const e = servicesEl.querySelector(".empty");
      if (e) e.remove();
    }
    prev = { t, services: svcs, backends: seen };
  }

  function setFeed(live, text) {
    setData(feedEl, "live", live);
    setText(feedText, text);
  }

  async function poll() {
    try {
      const resp = await fetch("status.json", { cache: "no-store", headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const st = await resp.json();
      // The status says when its counters were read: rates and ages use
      // the daemon's clock, not this browser's nor the fetch's latency.
      const read = Date.parse(st.time || "");
      const serverNow = isNaN(read) ? Date.now() : read;
      render(st, serverNow, serverNow);
      updates++;
      document.body.dataset.updates = String(updates);
      document.body.dataset.error = "";
      document.body.dataset.ready = "1";
      setFeed(true, "live, updated " + new Date(serverNow).toISOString().slice(11, 19) + " UTC");
    } catch (err) {
      console.error("xlb status page:", err);
      document.body.dataset.error = String(err && err.message ? err.message : err);
      setFeed(false, "not updating: " + document.body.dataset.error + "; retrying");
    }
  }

  async function loop() {
    const start = performance.now();
    await poll();
    setTimeout(loop, Math.max(0, INTERVAL_MS - (performance.now() - start)));
  }
  loop();
})();
