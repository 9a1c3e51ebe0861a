// streammood dashboard: one card per source, fed by Server-Sent Events (GET events), filled from
// the history streams (GET api/history/ID) on load and after every reconnection. No framework,
// no network beyond this server.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const QUADS = ["AP", "AN", "PP", "PN"];
  const WORDS = {
    AP: "happy · excited", AN: "tense · angry", PN: "sad · gloomy", PP: "calm · relaxed",
  };
  const TRAIL_S = 60;          // fading trail on the circumplex, seconds of stream time
  const TIMELINE_S = 600;      // curves and band, seconds of stream time
  const HISTORY_N = 1200;      // 10 minutes of 500 ms steps
  const POLL_MS = 2000;        // sources, metrics and Redis state
  const STALE_S = 5;           // no message for this long: said in the health line
  const RECENT_S = 60;         // a counter that grew this recently is a warning
  const GAP_REFILL_S = 5;      // at most one history read per source this often for seq gaps
  const PLOT = { x0: 40, x1: 630, y0: 8, y1: 112, band0: 120, band1: 140, top: 8 };

  const grid = document.getElementById("sources");
  const template = document.getElementById("source-card");
  const views = new Map();
  let epoch = null;
  let redisUp = null;
  let es = null;
  let backoff = 500;

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }
  function fmt(x, digits) { return (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(digits); }
  function keyOf(m) { return m.seq + ":" + m.emitted_at; }

  class SourceView {
    constructor(id) {
      this.id = id;
      this.msgs = [];
      this.keys = new Set();
      this.pending = null;
      this.refillToken = 0;
      this.gapRefill = 0;
      this.refillAgain = false;
      this.lastArrival = 0;
      this.delay = null;
      this.metrics = {};
      this.grown = {};
      this.scheduled = false;
      const node = template.content.firstElementChild.cloneNode(true);
      node.dataset.source = id;
      node.querySelector(".source-name").textContent = id;
      this.node = node;
      this.q = (sel) => node.querySelector(sel);
      const after = [...grid.children].find((c) => c.dataset.source > id);
      grid.insertBefore(node, after || null);
      document.body.classList.add("has-sources");
    }

    reset() { this.msgs = []; this.keys = new Set(); }

    // Add one message in stream order; false for a duplicate or a stale one.
    add(m, live) {
      const key = keyOf(m);
      if (this.keys.has(key)) return false;
      const last = this.msgs[this.msgs.length - 1];
      if (last && m.seq <= last.seq) {
        if (m.seq < last.seq && m.t_end < last.t_end) this.reset();  // a new session
        else return false;
      }
      this.msgs.push(m);
      this.keys.add(key);
      const horizon = m.t_end - TIMELINE_S;
      while (this.msgs.length && this.msgs[0].t_end < horizon) {
        this.keys.delete(keyOf(this.msgs.shift()));
      }
      if (live) {
        this.lastArrival = Date.now() / 1000;
        if (typeof m.captured_at === "number") this.delay = this.lastArrival - m.captured_at;
      }
      return true;
    }

    live(m) {
      const last = this.msgs[this.msgs.length - 1];
      if (this.pending) this.pending.push(m);
      if (!this.add(m, true)) return;
      const now = Date.now() / 1000;
      if (last && m.seq > last.seq + 1 && now - this.gapRefill > GAP_REFILL_S) {
        this.gapRefill = now;  // steps missing between two live ones: read them from the history
        if (this.pending) this.refillAgain = true;  // (after the read in flight)
        else this.refill();
      }
      this.schedule();
    }

    async refill() {
      const token = ++this.refillToken;
      this.pending = [];
      try {
        const res = await fetch("api/history/" + encodeURIComponent(this.id) + "?n=" + HISTORY_N);
        if (!res.ok) throw new Error("history: HTTP " + res.status);
        const history = await res.json();
        if (token !== this.refillToken) return;
        // merge what is shown, the history and what arrived meanwhile, in publishing order
        // (a Redis restarted without persistence returns less history than the page holds)
        const all = new Map();
        for (const list of [this.msgs, history, this.pending]) {
          for (const m of list) all.set(keyOf(m), m);
        }
        const merged = [...all.values()].sort((a, b) => a.emitted_at - b.emitted_at || a.seq - b.seq);
        this.reset();
        for (const m of merged) this.add(m, false);
        this.node.dataset.filled = String(Number(this.node.dataset.filled || 0) + 1);
      } catch (err) {
        console.warn("streammood: could not read the history of", this.id, err);
      } finally {
        if (token === this.refillToken) {
          this.pending = null;
          if (this.refillAgain) {
            this.refillAgain = false;
            this.refill();
          }
        }
        this.schedule();
      }
    }

    schedule() {
      if (this.scheduled) return;
      this.scheduled = true;
      requestAnimationFrame(() => { this.scheduled = false; this.render(); });
    }

    render() {
      const m = this.msgs[this.msgs.length - 1];
      this.node.dataset.messages = String(this.msgs.length);
      if (m) {
        this.renderNow(m);
        this.renderTrail(m);
        this.renderTimeline(m);
      }
      this.renderHealth();
    }

    renderNow(m) {
      const node = this.node;
      node.dataset.quadrant = m.quadrant;
      node.dataset.seq = String(m.seq);
      this.q(".q-code").textContent = m.quadrant;
      this.q(".q-words").textContent = WORDS[m.quadrant] || "";
      const point = this.q(".point");
      point.style.transform = `translate(${(100 * m.valence).toFixed(2)}px, ${(-100 * m.arousal).toFixed(2)}px)`;
      point.setAttribute("visibility", "visible");
      point.dataset.valence = String(m.valence);
      point.dataset.arousal = String(m.arousal);
      point.dataset.quadrant = m.quadrant;
      let top = QUADS[0];
      for (const q of QUADS) if ((m.probs[q] || 0) > (m.probs[top] || 0)) top = q;
      for (const row of node.querySelectorAll(".prob")) {
        const p = m.probs[row.dataset.q] || 0;
        row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
        row.querySelector(".prob-value").textContent = Math.round(100 * p) + " %";
        row.classList.toggle("top", row.dataset.q === top);
        row.dataset.p = String(p);
      }
      this.q(".f-valence").textContent = fmt(m.valence, 2);
      this.q(".f-arousal").textContent = fmt(m.arousal, 2);
      this.q(".f-time").textContent = m.t_end.toFixed(1) + " s";
      this.q(".f-window").textContent = m.window_steps >= 60
        ? "full (30 s)" : `${m.window_steps} steps (${(m.window_steps / 2).toFixed(1)} s)`;
      this.q(".f-segment").textContent = typeof m.segment_start === "number"
        ? `since ${Math.max(0, m.t_end - m.segment_start).toFixed(1)} s` : "–";
      this.q(".f-delay").textContent = this.delay === null ? "–" : this.delay.toFixed(2) + " s";
    }

    renderTrail(m) {
      const g = this.q(".trail");
      g.replaceChildren();
      const since = m.t_end - TRAIL_S;
      const pts = this.msgs.filter((x) => x.t_end >= since);
      for (let i = 0; i < pts.length; i++) {
        const p = pts[i];
        const fade = 1 - (m.t_end - p.t_end) / TRAIL_S;
        const opacity = (0.08 + 0.7 * fade * fade).toFixed(3);
        const x = (100 * p.valence).toFixed(2);
        const y = (-100 * p.arousal).toFixed(2);
        if (i > 0) {
          const a = pts[i - 1];
          g.appendChild(el("line", {
            x1: (100 * a.valence).toFixed(2), y1: (-100 * a.arousal).toFixed(2), x2: x, y2: y,
            "stroke-opacity": opacity,
          }));
        }
        g.appendChild(el("circle", { cx: x, cy: y, r: 2.2, "fill-opacity": opacity }));
      }
      g.dataset.points = String(pts.length);
    }

    renderTimeline(m) {
      const end = m.t_end;
      const start = end - TIMELINE_S;
      const xs = (t) => PLOT.x0 + (PLOT.x1 - PLOT.x0) * (Math.max(t, start) - start) / TIMELINE_S;
      const ys = (v) => PLOT.y0 + (PLOT.y1 - PLOT.y0) * (1 - v) / 2;
      const svg = this.q(".timeline");
      // curves, one polyline per contiguous run (a gap of more than 2 s breaks the line)
      const curves = this.q(".curves");
      curves.replaceChildren();
      const band = this.q(".band");
      band.replaceChildren();
      let run = [];
      const flush = () => {
        if (run.length === 0) return;
        for (const field of ["valence", "arousal"]) {
          const pts = run.map((p) => xs(p.t_end).toFixed(1) + "," + ys(p[field]).toFixed(1));
          curves.appendChild(el("polyline", { class: "curve " + field, points: pts.join(" ") }));
        }
        run = [];
      };
      let bandStart = null;
      let bandQ = null;
      let bandEnd = null;
      const closeBand = () => {
        if (bandQ === null) return;
        const x0 = xs(bandStart);
        const w = Math.max(0.5, xs(bandEnd) - x0);
        band.appendChild(el("rect", {
          "data-q": bandQ, x: x0.toFixed(1), y: PLOT.band0, width: w.toFixed(1),
          height: PLOT.band1 - PLOT.band0,
        }));
        if (w > 24) {
          const t = el("text", { x: (x0 + 3).toFixed(1), y: PLOT.band1 - 5 });
          t.textContent = bandQ;
          band.appendChild(t);
        }
      };
      const segments = this.q(".segments");
      segments.replaceChildren();
      let prev = null;
      let marks = 0;
      for (const p of this.msgs) {
        if (prev && p.t_start - prev.t_end > 2) flush();
        run.push(p);
        if (p.quadrant !== bandQ || (prev && p.t_start - prev.t_end > 2)) {
          closeBand();
          bandQ = p.quadrant;
          bandStart = p.t_start;
        }
        bandEnd = p.t_end;
        if (prev && typeof p.segment_start === "number" && typeof prev.segment_start === "number"
            && p.segment_start !== prev.segment_start && p.segment_start >= start) {
          const x = xs(p.segment_start).toFixed(1);
          const g = el("g", { class: "segment-marker", "data-t": String(p.segment_start) });
          g.appendChild(el("line", { x1: x, y1: PLOT.top, x2: x, y2: PLOT.band1 }));
          g.appendChild(el("path", { d: `M${x},${PLOT.top} l-6,-7 h12 z` }));
          const title = el("title", {});
          title.textContent = `new segment at ${p.segment_start.toFixed(1)} s`;
          g.appendChild(title);
          segments.appendChild(g);
          marks++;
        }
        prev = p;
      }
      flush();
      closeBand();
      segments.dataset.count = String(marks);
      svg.dataset.start = String(start);
    }

    setMetrics(metrics) {
      const now = Date.now() / 1000;
      for (const k of Object.keys(metrics)) {
        const before = this.metrics[k];
        if (typeof before === "number" && metrics[k] > before) this.grown[k] = now;
      }
      this.metrics = metrics;
      this.schedule();
    }

    renderHealth() {
      const now = Date.now() / 1000;
      const mt = this.metrics;
      const parts = [];
      let state = "ok";
      const counter = (key, label) => {
        const v = mt[key];
        if (typeof v !== "number") return;
        if (v > 0) parts.push(`${Math.round(v)} ${label}`);
        if (v > 0 && now - (this.grown[key] || 0) < RECENT_S) state = "warn";
      };
      counter("audio_overflows", "audio overflows");
      counter("audio_dropped_blocks", "audio blocks dropped");
      counter("dropped_steps", "steps dropped");
      counter("moods_dropped", "moods dropped");
      counter("moods_reconnects", "Redis reconnects");
      if ((mt.moods_buffered || 0) > 0) {
        parts.unshift(`publisher buffering ${Math.round(mt.moods_buffered)}`);
        state = "warn";
      }
      if (this.lastArrival && now - this.lastArrival > STALE_S) {
        parts.unshift(`no mood for ${Math.round(now - this.lastArrival)} s`);
        if (state === "ok") state = "warn";
      }
      if (redisUp === false) {
        parts.unshift("Redis away");
        state = "away";
      }
      const box = this.q(".health");
      box.dataset.state = state;
      this.q(".health-text").textContent = parts.length ? parts.join(" · ") : "OK, nothing dropped";
    }
  }

  function viewFor(id) {
    let v = views.get(id);
    if (!v) {
      v = new SourceView(id);
      views.set(id, v);
      v.refill();
    }
    return v;
  }

  function setFeed(state, text) {
    document.body.dataset.feed = state;
    document.getElementById("feed-status").textContent = text;
  }

  function setRedis(up) {
    redisUp = up;
    document.body.dataset.redis = up === null ? "unknown" : up ? "up" : "away";
    document.getElementById("redis-status").textContent =
      up === null ? "Redis …" : up ? "Redis up" : "Redis away";
    for (const v of views.values()) v.schedule();
  }

  function refillAll() {
    for (const v of views.values()) v.refill();
  }

  function connect() {
    if (es) es.close();
    es = new EventSource("events");
    es.onopen = () => {
      backoff = 500;
      setFeed("live", "live");
      refillAll();   // fill whatever was missed while away
      poll();        // and find sources that appeared meanwhile
    };
    es.onmessage = (event) => {
      let m;
      try { m = JSON.parse(event.data); } catch (err) { return; }
      if (!m || typeof m.source !== "string") return;
      viewFor(m.source).live(m);
    };
    es.onerror = () => {
      es.close();
      es = null;
      setFeed("reconnecting", "reconnecting…");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 4000);
    };
  }

  async function poll() {
    try {
      const status = await (await fetch("api/status")).json();
      setRedis(status.redis === "up");
      const prefix = document.getElementById("empty-prefix");
      prefix.textContent = status.prefix ? ` (key prefix ${status.prefix})` : "";
      if (epoch !== null && status.epoch !== epoch) refillAll();
      epoch = status.epoch;
      const res = await fetch("api/sources");
      if (res.ok) {
        const body = await res.json();
        for (const s of body.sources) viewFor(s.source).setMetrics(s.metrics || {});
      }
    } catch (err) {
      // the server is away: the feed's reconnection says so
    }
  }

  setInterval(() => {
    poll();
    for (const v of views.values()) v.schedule();
  }, POLL_MS);
  connect();
})();
