// gslbd status page: renders /api/v1/status and refreshes it every two
// seconds. The first render uses the status the server put into the page,
// so everything is on screen as soon as the script runs.
"use strict";
(function () {
  const REFRESH_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  // Map frame: the whole width of the world, 84°N down to 58°S (nothing to
  // see further south), one unit per degree.
  const NORTH = 84, SOUTH = -58;

  let last = null;        // the last status rendered
  let lastOK = 0;         // when it arrived (ms)
  let lastError = "";

  // h builds an element: h("div", {class: "x"}, child, "text", ...).
  // Text goes through text nodes only, so nothing from the API is parsed as
  // markup.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      e.setAttribute(k, v === true ? "" : String(v));
    }
    append(e, kids);
    return e;
  }
  function s(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    append(e, kids);
    return e;
  }
  function append(e, kids) {
    for (const k of kids.flat()) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }

  function pill(state, text) {
    return h("span", {class: "pill " + state}, text || state);
  }

  // siteState folds a site's addresses into one word for its colour.
  function siteState(site) {
    if (site.drained) return "drained";
    const n = site.addresses.length;
    const ok = site.addresses.filter(a => a.eligible).length;
    if (n === 0) return "empty";
    if (ok === n) return "up";
    if (ok === 0) return site.addresses.every(a => a.drained) ? "drained" : "down";
    return "degraded";
  }

  function ago(iso) {
    if (!iso) return "";
    const t = Date.parse(iso);
    if (isNaN(t)) return "";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 90) return s + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function summary(st) {
    let pools = st.pools.length, sites = 0, addrs = 0, up = 0, down = 0, drained = 0;
    for (const p of st.pools) for (const site of p.sites) {
      sites++;
      for (const a of site.addresses) {
        addrs++;
        if (a.drained) drained++;
        else if (a.verdict === "up") up++;
        else down++;
      }
    }
    const alive = st.members.filter(m => m.state === "alive").length;
    const tile = (label, value, cls) => h("div", {class: "tile " + (cls || "")}, h("div", {class: "v"}, value), h("div", {class: "l"}, label));
    return h("section", {class: "tiles", "aria-label": "summary"},
      tile("pools", pools),
      tile("sites", sites),
      tile("addresses up", up + "/" + addrs, down ? "" : "good"),
      tile("down", down, down ? "bad" : "good"),
      tile("drained", drained, drained ? "warn" : ""),
      tile("mesh members alive", alive + "/" + st.members.length, alive === st.members.length ? "good" : "bad"));
  }

  // worldMap places every site by lat/lon on an equirectangular projection.
  // Sites of several pools at one place share a marker coloured by the worst.
  function worldMap(st) {
    const H = NORTH - SOUTH;
    const x = lon => lon + 180, y = lat => NORTH - Math.max(SOUTH, Math.min(NORTH, lat));
    const svg = s("svg", {viewBox: "0 0 360 " + H, class: "map", role: "img", "aria-label": "map of the sites"});
    svg.append(s("rect", {x: 0, y: 0, width: 360, height: H, class: "sea"}));
    for (let lat = -30; lat <= 60; lat += 30) svg.append(s("line", {x1: 0, x2: 360, y1: y(lat), y2: y(lat), class: "grid"}));
    for (let lon = -150; lon <= 150; lon += 30) svg.append(s("line", {x1: x(lon), x2: x(lon), y1: 0, y2: H, class: "grid"}));
    for (const poly of (window.GSLBD_WORLD || [])) {
      const pts = [];
      for (let i = 0; i + 1 < poly.length; i += 2) pts.push(x(poly[i]).toFixed(1) + "," + y(poly[i + 1]).toFixed(1));
      svg.append(s("polygon", {points: pts.join(" "), class: "land"}));
    }
    const rank = {down: 4, degraded: 3, empty: 2, drained: 1, up: 0};
    const places = new Map();
    for (const p of st.pools) for (const site of p.sites) {
      if (!site.has_coords) continue;
      const key = site.name + "@" + site.lat + "," + site.lon;
      let pl = places.get(key);
      if (!pl) places.set(key, pl = {name: site.name, lat: site.lat, lon: site.lon, state: "up", pools: []});
      const ss = siteState(site);
      if (rank[ss] > rank[pl.state]) pl.state = ss;
      pl.pools.push(p.name + ": " + ss);
    }
    // Labels go right of their marker, else left, below or above,
    // whichever first overlaps no label placed before: nearby sites (fra,
    // ams) stay readable.
    const boxes = [];
    const FS = 7, CW = 4.2; // font size and average glyph width, in degrees
    const free = b => boxes.every(o => b.x + b.w <= o.x || o.x + o.w <= b.x || b.y + b.h <= o.y || o.y + o.h <= b.y);
    for (const pl of places.values()) boxes.push({x: x(pl.lon) - 3.6, y: y(pl.lat) - 3.6, w: 7.2, h: 7.2});
    for (const pl of [...places.values()].sort((a, b) => b.lat - a.lat)) {
      const cx = x(pl.lon), cy = y(pl.lat), w = pl.name.length * CW;
      const tries = [[cx + 5, cy + FS / 2 - 1, "start"], [cx - 5, cy + FS / 2 - 1, "end"], [cx, cy + FS + 4, "middle"], [cx, cy - 5, "middle"]];
      let pick = tries[0];
      for (const t of tries) {
        const bx = t[2] === "start" ? t[0] : t[2] === "end" ? t[0] - w : t[0] - w / 2;
        const b = {x: bx, y: t[1] - FS, w: w, h: FS + 1};
        if (free(b)) { pick = t; boxes.push(b); break; }
      }
      const g = s("g", {class: "marker " + pl.state});
      g.append(s("title", {}, pl.name + " — " + pl.pools.join(", ")));
      g.append(s("circle", {cx: cx, cy: cy, r: 3.6}));
      g.append(s("text", {x: pick[0], y: pick[1], "text-anchor": pick[2]}, pl.name));
      svg.append(g);
    }
    return h("section", {class: "card mapcard", "aria-label": "map"}, svg);
  }

  function votes(a) {
    const names = Object.keys(a.votes || {}).sort();
    if (names.length === 0) return h("span", {class: "votes none"}, "no votes yet");
    return h("span", {class: "votes"}, names.map(n => h("span", {class: "vote " + a.votes[n], title: n + " says " + a.votes[n]}, n + " " + a.votes[n])));
  }

  function address(a) {
    const cls = a.drained ? "drained" : a.verdict;
    return h("li", {class: "addr " + cls},
      h("span", {class: "ip"}, a.address),
      h("span", {class: "states"}, pill(a.verdict), a.drained ? pill("drained") : null),
      votes(a),
      a.monitors && a.monitors.length ? h("span", {class: "monitors muted", title: "monitors that probe this target"}, "probed by " + a.monitors.join(", ")) : null,
      a.reason || a.latency_ms ? h("span", {class: "reason"},
        a.reason || "", a.latency_ms ? " (" + a.latency_ms.toFixed(1) + " ms)" : "",
        a.checked_at ? " · " + ago(a.checked_at) : "") : null);
  }

  function siteCard(p, site) {
    const ss = siteState(site);
    const ok = site.addresses.filter(a => a.eligible).length;
    const where = site.has_coords ? site.lat.toFixed(2) + ", " + site.lon.toFixed(2) : "";
    const prefs = [...(site.countries || []), ...(site.continents || [])].join(" ");
    return h("div", {class: "site " + ss, "data-site": site.name},
      h("div", {class: "site-head"},
        h("span", {class: "site-name"}, site.name),
        pill(ss, site.drained ? "drained" + (site.drained_by ? " (" + site.drained_by + ")" : "") : ss),
        h("span", {class: "muted"}, ok + "/" + site.addresses.length + " eligible"),
        p.policy === "weighted" ? h("span", {class: "muted"}, "weight " + site.weight) : null,
        p.policy === "failover" ? h("span", {class: "muted"}, "priority " + site.priority) : null,
        prefs ? h("span", {class: "muted"}, prefs) : null,
        where ? h("span", {class: "muted where"}, where) : null),
      h("ul", {class: "addrs"}, site.addresses.map(address)));
  }

  function poolCard(p) {
    const ttl = p.current_ttl !== undefined && p.current_ttl !== p.ttl ? "ttl " + p.current_ttl + " (health-aware, normally " + p.ttl + ")" : "ttl " + p.ttl;
    const meta = [p.policy, p.answers + (p.answers === 1 ? " answer" : " answers"), ttl, "check " + p.check];
    if (p.affinity !== "none") meta.push("affinity " + p.affinity);
    meta.push("all down: " + p.when_all_down + (p.fallback ? " → " + p.fallback : ""));
    return h("section", {class: "card pool", "data-pool": p.name},
      h("h2", {}, p.name, " ", h("span", {class: "meta"}, meta.join(" · "))),
      p.sites.map(site => siteCard(p, site)));
  }

  function meshCard(st) {
    const rows = st.members.map(m => h("tr", {class: "member " + m.state},
      h("td", {}, m.name, m.name === st.node ? h("span", {class: "muted"}, " (this node)") : null),
      h("td", {class: "mono"}, m.address),
      h("td", {}, pill(m.state === "alive" ? "up" : (m.state === "left" ? "drained" : "down"), m.state)),
      h("td", {class: "mono config"}, m.config || "-", m.config_differs ? h("span", {}, " ", pill("down", "differs")) : null)));
    const drains = st.drains.length === 0 ? h("p", {class: "muted"}, "no drains through the API") :
      h("ul", {class: "drains"}, st.drains.map(d => h("li", {}, pill("drained"), " ", d.pool + " / " + d.site + (d.address ? " / " + d.address : ""))));
    return h("section", {class: "card mesh", "aria-label": "mesh"},
      h("h2", {}, "Mesh"),
      st.members.length === 0 ? h("p", {class: "muted"}, "no mesh members known") :
        h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "member"), h("th", {}, "address"), h("th", {}, "state"), h("th", {}, "config"))), h("tbody", {}, rows)),
      (st.config_divergent || []).length ? h("p", {class: "divergent bad"}, "serving a different configuration than this node (" + st.config + "): " + st.config_divergent.join(", ")) : null,
      st.monitors_per_target ? h("p", {class: "muted"}, "each target is probed by " + st.monitors_per_target + " monitors (health.monitors_per_target)") : null,
      h("h2", {}, "Drains"), drains);
  }

  function render(st) {
    last = st;
    document.getElementById("node").textContent = st.node ? "· " + st.node : "";
    document.title = "gslbd " + (st.node || "") + " status";
    const app = document.getElementById("app");
    const parts = [summary(st)];
    if (st.last_reload && !st.last_reload.ok) {
      parts.push(h("section", {class: "card alert"}, h("h2", {}, "Last reload failed " + ago(st.last_reload.at)),
        h("ul", {}, (st.last_reload.errors || []).map(e => h("li", {class: "mono"}, e)))));
    }
    const cols = h("div", {class: "cols"},
      worldMap(st),
      h("div", {class: "pools"}, st.pools.length ? st.pools.map(poolCard) : h("p", {class: "card muted"}, "no pools configured")),
      meshCard(st));
    parts.push(cols);
    app.replaceChildren(...parts);
    const foot = document.getElementById("foot");
    foot.replaceChildren(
      "gslbd " + (st.version || "") + " · " + (st.go_version || ""),
      st.config_loaded_at ? " · config loaded " + new Date(st.config_loaded_at).toLocaleString() : "",
      (st.warnings || []).length ? " · " + st.warnings.length + " config warnings" : "",
      (st.zones || []).length ? " · zones " + st.zones.join(" ") : "",
      st.geo && st.geo.type ? " · GeoIP " + st.geo.type + (st.geo.build_time ? " built " + st.geo.build_time.slice(0, 10) : "") : "",
      " · ", h("a", {href: "/api/v1/status"}, "JSON"), " · ", h("a", {href: "/metrics"}, "metrics"));
    liveness();
  }

  // liveness tells whether what is on screen is current.
  function liveness() {
    const el = document.getElementById("live");
    const age = Date.now() - lastOK;
    if (last && age < 3 * REFRESH_MS) {
      el.className = "live ok";
      el.textContent = "live · " + new Date(lastOK).toLocaleTimeString();
    } else {
      el.className = "live stale";
      el.textContent = "stale · " + (lastOK ? Math.round(age / 1000) + " s old" : "no data") + (lastError ? " · " + lastError : "");
    }
  }

  let inflight = false;
  async function refresh() {
    if (inflight) return;
    inflight = true;
    try {
      const r = await fetch("/api/v1/status", {cache: "no-store", headers: {Accept: "application/json"}});
      if (!r.ok) throw new Error("HTTP " + r.status);
      const st = await r.json();
      lastOK = Date.now();
      lastError = "";
      render(st);
    } catch (e) {
      lastError = String(e.message || e);
      liveness();
    } finally {
      inflight = false;
    }
  }

  if (window.GSLBD_INITIAL) {
    lastOK = Date.now();
    render(window.GSLBD_INITIAL);
  } else {
    refresh();
  }
  setInterval(refresh, REFRESH_MS);
})();
