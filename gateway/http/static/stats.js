// The live dashboard: reads the gateway's own /metrics every second and charts the last five
// minutes. Rates and percentiles are taken over the last SPAN seconds from how much the
// counters and histogram buckets grew, as Prometheus's rate() and histogram_quantile() do.
"use strict";

const KEPT = 300; // samples, one a second
const SPAN = 10; // seconds behind each rate and percentile
const samples = []; // {time: seconds, series: Map(name => [{labels, value}])}

// Prometheus's text format: `name{label="value",...} value`; comments are skipped.
function parse(text) {
  const series = new Map();
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name] = value;
    }
    if (!series.has(match[1])) series.set(match[1], []);
    series.get(match[1]).push({ labels, value: Number(match[3]) });
  }
  return series;
}

// The sum of the samples named `name` whose labels pass `keep`.
function total(sample, name, keep = () => true) {
  const matching = (sample.series.get(name) || []).filter((s) => keep(s.labels));
  return matching.reduce((sum, s) => sum + s.value, 0);
}

function latest(name) {
  return total(samples.at(-1), name);
}

// The oldest sample within SPAN seconds of the latest; null while there is only one.
function spanStart() {
  const now = samples.at(-1);
  const start = samples.find((sample) => sample.time >= now.time - SPAN - 0.5);
  return start === now ? null : start;
}

function growth(name, keep) {
  const start = spanStart();
  return start && Math.max(0, total(samples.at(-1), name, keep) - total(start, name, keep));
}

function rate(name, keep) {
  const start = spanStart();
  return start && growth(name, keep) / (samples.at(-1).time - start.time);
}

function percent(part, whole) {
  const of = growth(whole);
  return of ? (100 * growth(part)) / of : null;
}

// The q-quantile of what a histogram observed over the span, interpolated in its bucket.
function quantile(q, name) {
  const start = spanStart();
  if (!start) return null;
  const buckets = new Map(); // upper bound => observations at or below it, over the span
  for (const [sample, sign] of [[samples.at(-1), 1], [start, -1]]) {
    for (const { labels, value } of sample.series.get(`${name}_bucket`) || []) {
      const bound = labels.le === "+Inf" ? Infinity : Number(labels.le);
      buckets.set(bound, (buckets.get(bound) || 0) + sign * value);
    }
  }
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const count = sorted.length ? sorted.at(-1)[1] : 0;
  if (count <= 0) return null;
  let lower = 0;
  let below = 0;
  for (const [upper, cumulative] of sorted) {
    if (cumulative >= q * count) {
      if (upper === Infinity) return lower; // past the last bound: the last bound, as Prometheus
      return lower + ((upper - lower) * (q * count - below)) / (cumulative - below);
    }
    [lower, below] = [upper, cumulative];
  }
  return null;
}

const percentiles = (name) => ({
  p50: () => quantile(0.5, name),
  p90: () => quantile(0.9, name),
  p99: () => quantile(0.99, name),
});

const CHARTS = [
  ["tokens", "Tokens/s", {
    generated: () => rate("gateway_generation_tokens_total"),
    prompt: () => rate("gateway_prompt_tokens_total"),
  }],
  ["requests", "Requests", {
    running: () => latest("gateway_num_requests_running"),
    waiting: () => latest("gateway_num_requests_waiting"),
  }],
  ["ttft", "Time to first token (s)", percentiles("gateway_time_to_first_token_seconds")],
  ["itl", "Inter-token latency (s)", percentiles("gateway_inter_token_latency_seconds")],
  ["kv", "KV-cache use (%)", { used: () => 100 * latest("gateway_kv_cache_usage_perc") }],
  ["prefix", "Prefix-cache hit rate (%)", {
    hits: () => percent("gateway_prefix_cache_hits_total", "gateway_prefix_cache_queries_total"),
  }],
  ["errors", "Rejections and errors /s", {
    rejected: () => rate("gateway_admission_rejections_total"),
    aborted: () => rate("gateway_request_success_total", (l) => l.finished_reason === "abort"),
    failed: () => rate("gateway_request_success_total", (l) => l.finished_reason === "error"),
    "HTTP 5xx": () => rate("gateway_http_requests_total", (l) => l.status.startsWith("5")),
  }],
];

function format(value) {
  if (value === null || Number.isNaN(value)) return "–";
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 1) return value.toFixed(1);
  return value.toPrecision(2);
}

// The axis's top: 1, 2, 4, 8 or 10 times a power of ten, so its quarters read well.
function roundUp(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 4, 8, 10].find((m) => m * power >= max) * power;
}

// One chart: a line per figure over the last KEPT seconds, its latest values in the caption.
class Chart {
  constructor([id, title, lines]) {
    this.lines = Object.entries(lines).map(([name, read], i) => {
      const label = document.createElement("span");
      label.className = `s${i}`;
      const output = document.createElement("output");
      output.dataset.line = name;
      label.append(`${name} `, output);
      return { read, label, output, points: [] };
    });
    const caption = document.createElement("figcaption");
    const heading = document.createElement("strong");
    heading.textContent = title;
    caption.append(heading, ...this.lines.map((line) => line.label));
    this.canvas = document.createElement("canvas");
    const figure = document.createElement("figure");
    figure.id = id;
    figure.append(caption, this.canvas);
    document.getElementById("charts").append(figure);
  }

  update(time) {
    for (const line of this.lines) {
      const value = line.read();
      line.output.textContent = format(value);
      line.points.push([time, value]);
      if (line.points.length > KEPT) line.points.shift();
    }
    this.draw(time);
  }

  draw(now) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = canvas.clientWidth * ratio;
    canvas.height = canvas.clientHeight * ratio;
    const context = canvas.getContext("2d");
    context.scale(ratio, ratio);
    const [width, height, left] = [canvas.clientWidth, canvas.clientHeight, 44];
    const values = this.lines.flatMap((line) => line.points.map(([, v]) => v ?? 0));
    const top = roundUp(Math.max(...values, 0));
    const style = getComputedStyle(canvas);
    context.font = "11px system-ui, sans-serif";
    context.fillStyle = context.strokeStyle = style.color;
    context.globalAlpha = 0.25;
    for (let i = 0; i <= 4; i += 1) {
      const y = height - 14 - ((height - 20) * i) / 4;
      context.fillRect(left, y, width - left, 1);
      context.fillText(format((top * i) / 4), 2, y + 4);
    }
    context.globalAlpha = 1;
    // The time axis grows with the samples, from a minute to all those kept.
    const span = Math.min(Math.max(now - samples[0].time, 60), KEPT);
    context.fillText(`−${Math.round(span)} s`, left, height - 2);
    const x = (time) => left + ((width - left) * (time - now + span)) / span;
    const y = (value) => height - 14 - ((height - 20) * value) / top;
    context.beginPath();
    context.rect(left, 0, width - left, height);
    context.clip(); // points older than the span stay off the axis labels
    for (const line of this.lines) {
      context.strokeStyle = getComputedStyle(line.label).color;
      context.lineWidth = 1.5;
      context.beginPath();
      let drawing = false; // a gap where a figure has no value (no observations yet)
      for (const [time, value] of line.points) {
        if (value === null) {
          drawing = false;
          continue;
        }
        if (drawing) context.lineTo(x(time), y(value));
        else context.moveTo(x(time), y(value));
        drawing = true;
      }
      context.stroke();
    }
  }
}

const charts = CHARTS.map((spec) => new Chart(spec));
const status = document.getElementById("status");

async function tick() {
  try {
    const response = await gateway.fetch("/metrics");
    if (!response.ok) throw new Error(await gateway.error(response));
    const time = performance.now() / 1000;
    samples.push({ time, series: parse(await response.text()) });
    if (samples.length > KEPT) samples.shift();
    for (const chart of charts) chart.update(time);
    status.textContent = `Updated ${new Date().toLocaleTimeString()}: rates and percentiles over the last ${SPAN} s.`;
  } catch (error) {
    status.textContent = error.message;
  }
  // Without a key nothing would change: the key form reloads the page.
  if (document.getElementById("key-form").hidden) setTimeout(tick, 1000);
}

tick();
