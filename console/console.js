// The EchoServer console: plain ES module, no build step. It talks to the server through the
// client's browser build (served from the package's dist/ under /console/lib/). Everything the
// server or a peer sends is shown with textContent, never parsed as HTML.
import { connect } from './lib/client/browser.js';

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 500;
const MAX_POINTS = 240;

let client;
const rtts = []; // recent round-trip times, ms

// ---- small helpers ----------------------------------------------------------------------
const clock = () => new Date().toISOString().slice(11, 23);
const hex = (u8, max = 48) => {
  const parts = [];
  for (let i = 0; i < Math.min(u8.length, max); i++) parts.push(u8[i].toString(16).padStart(2, '0'));
  return parts.join(' ') + (u8.length > max ? ' …' : '');
};
const preview = (kind, data) => {
  if (kind === 'binary') return 'binary ' + data.length + ' B: ' + hex(data);
  return data.length > 400 ? data.slice(0, 400) + ' … (' + data.length + ' chars)' : data;
};
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

function row(cls, dir, text, cells = {}) {
  const tr = document.createElement('tr');
  tr.className = cls;
  for (const [key, value] of [
    ['time', clock()],
    ['dir', dir],
    ['msg', text],
    ['rtt', cells.rtt ?? ''],
    ['instance', cells.instance ?? ''],
    ['conn', cells.conn ?? ''],
    ['held', cells.held ?? ''],
  ]) {
    const td = document.createElement('td');
    td.className = key;
    td.textContent = value;
    tr.append(td);
  }
  const body = $('log').tBodies[0];
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  return tr;
}
const sys = (text) => row('sys', '·', text);
const fail = (text) => row('err', '!', text);

function echoCells(r) {
  const s = r.srv;
  return {
    rtt: r.rttMs.toFixed(2),
    instance: s ? s.instance : '—',
    conn: s ? s.conn + ' · ' + s.seq : '—',
    held: s ? Math.round((s.tx - s.rx) * 1000).toString() : '—',
  };
}

// ---- connection -------------------------------------------------------------------------
function setState(state) {
  const badge = $('state');
  badge.dataset.state = state === 'open' ? 'open' : state;
  badge.textContent = state === 'open' ? 'connected' : state === 'closed' ? 'disconnected' : state + '…';
  const open = state === 'open';
  $('send').disabled = $('burst').disabled = !open;
  $('disconnect').disabled = state === 'closed';
  $('connect').disabled = state !== 'closed';
  const v1 = $('protocol').value === 'echo.v1';
  for (const id of ['h-id', 'h-ts', 'h-extra']) $(id).disabled = !v1;
}

async function onConnect(event) {
  event.preventDefault();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const path = $('path').value.trim() || '/';
  const url = scheme + '//' + location.host + (path.startsWith('/') ? path : '/' + path);
  const token = $('token').value.trim();
  const protocol = $('protocol').value;
  setState('connecting');
  try {
    client = await connect(url, { protocol, ...(token && { token }), reconnect: { maxDelayMs: 5000 } });
  } catch (err) {
    setState('closed');
    fail('connect ' + url + ' failed: ' + err.message);
    return;
  }
  const c = client;
  c.on('message', (m) => row('in', '←', preview(m.kind, m.data), echoCells({ ...m, rttMs: NaN })));
  c.on('close', (e) => {
    if (c !== client) return;
    sys('closed ' + e.code + (e.reason ? ' ' + e.reason : '') + (e.reconnecting ? ' (reconnecting)' : ''));
    setState(e.reconnecting ? 'reconnecting' : 'closed');
    if (!e.reconnecting) $('conn-info').textContent = 'Not connected.';
  });
  c.on('reconnecting', (e) => sys('reconnect attempt ' + e.attempt + ' in ' + Math.round(e.delayMs) + ' ms'));
  c.on('open', () => {
    setState('open');
    showConn(url, protocol);
    sys('reconnected');
  });
  setState('open');
  showConn(url, protocol);
  sys('open ' + url + ' (' + protocol + ')');
}

function showConn(url, protocol) {
  const parts = [url, protocol];
  if (client.conn) parts.push('conn ' + client.conn);
  if (client.instance) parts.push('instance ' + client.instance);
  $('conn-info').textContent = parts.join(' · ');
}

// ---- sending ----------------------------------------------------------------------------
/** The message and header from the form; throws with a readable message. */
function composed() {
  const kind = $('kind').value;
  const raw = $('msg').value;
  let data;
  if (kind === 'json') {
    try {
      data = JSON.stringify(JSON.parse(raw));
    } catch (err) {
      throw new Error('not valid JSON: ' + err.message);
    }
  } else if (kind === 'binary') {
    const clean = raw.replace(/[\s,:]/g, '').replace(/^0x/i, '');
    if (!/^([0-9a-fA-F]{2})*$/.test(clean)) throw new Error('binary: type hex bytes, e.g. 01 02 ff');
    data = new Uint8Array(clean.length / 2);
    for (let i = 0; i < data.length; i++) data[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  } else data = raw;
  if (client.mode !== 'v1') return { data, header: undefined };
  const header = {};
  const id = $('h-id').value.trim();
  if (id) header.id = id;
  if ($('h-ts').checked) header.ts = new Date().toISOString();
  for (const pair of $('h-extra').value.split(',')) {
    if (!pair.trim()) continue;
    const eq = pair.indexOf('=');
    if (eq < 1) throw new Error('routing hints: use key=value, separated by commas');
    const key = pair.slice(0, eq).trim();
    if (key === 'id' || key === 'srv') throw new Error('routing hints: ' + key + ' is reserved');
    header[key] = pair.slice(eq + 1).trim();
  }
  return { data, header };
}

async function onSend() {
  $('send-error').textContent = '';
  let msg;
  try {
    msg = composed();
  } catch (err) {
    $('send-error').textContent = err.message;
    return;
  }
  const kind = typeof msg.data === 'string' ? 'text' : 'binary';
  const out = row('out', '→', preview(kind, msg.data), { instance: '', conn: msg.header && msg.header.id ? 'id ' + msg.header.id : '' });
  try {
    const r = await client.request(msg.data, { timeout: 10000, ...(msg.header && { header: msg.header }) });
    row('in', '←', preview(r.kind, r.data), echoCells(r));
    addRtt(r.rttMs);
  } catch (err) {
    out.className = 'err';
    fail(err.message);
  }
}

// ---- chart ------------------------------------------------------------------------------
function addRtt(ms) {
  rtts.push(ms);
  if (rtts.length > MAX_POINTS) rtts.splice(0, rtts.length - MAX_POINTS);
  $('rtt-last').textContent = 'last ' + ms.toFixed(2) + ' ms';
  scheduleDraw();
}
let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    draw();
  });
}

function draw() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio)) canvas.width = Math.round(w * ratio);
  if (canvas.height !== Math.round(h * ratio)) canvas.height = Math.round(h * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  g.clearRect(0, 0, w, h);
  const left = 44;
  const bottom = h - 18;
  const top = 8;
  const max = Math.max(1, ...rtts) * 1.15;
  g.font = '11px ui-monospace, monospace';
  g.textBaseline = 'middle';
  g.strokeStyle = color('--grid');
  g.fillStyle = color('--muted');
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(w - 6, y);
    g.stroke();
    g.fillText(((max * i) / 4).toFixed(max < 4 ? 2 : 1), 4, y);
  }
  g.fillText(rtts.length === 0 ? 'no echoes yet' : rtts.length + ' echoes, ms', left, h - 7);
  if (rtts.length === 0) return;
  const step = (w - 6 - left) / Math.max(1, MAX_POINTS - 1);
  const x0 = w - 6 - step * (rtts.length - 1);
  g.strokeStyle = color('--accent');
  g.lineWidth = 1.5;
  g.beginPath();
  rtts.forEach((v, i) => {
    const x = x0 + i * step;
    const y = bottom - ((bottom - top) * v) / max;
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
  g.fillStyle = color('--accent');
  rtts.forEach((v, i) => {
    g.beginPath();
    g.arc(x0 + i * step, bottom - ((bottom - top) * v) / max, 3, 0, Math.PI * 2);
    g.fill();
  });
}

// ---- burst ------------------------------------------------------------------------------
async function onBurst() {
  const n = Math.max(1, Math.min(10000, Number($('burst-n').value) || 200));
  const windowSize = Math.max(1, Math.min(1000, Number($('burst-window').value) || 16));
  $('burst').disabled = true;
  $('burst-result').textContent = 'sending ' + n + '…';
  const results = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      try {
        results.push((await client.request('burst ' + i, { timeout: 10000 })).rttMs);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(windowSize, n) }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const sorted = results.slice().sort((a, b) => a - b);
  for (const v of results.slice(-MAX_POINTS)) addRtt(v);
  const f = (v) => (v === undefined ? '—' : v.toFixed(2));
  $('burst-result').textContent =
    n +
    ' msgs in ' +
    seconds.toFixed(2) +
    ' s (' +
    Math.round(results.length / seconds) +
    '/s) · p50 ' +
    f(percentile(sorted, 50)) +
    ' · p90 ' +
    f(percentile(sorted, 90)) +
    ' · p99 ' +
    f(percentile(sorted, 99)) +
    ' · max ' +
    f(sorted[sorted.length - 1]) +
    ' ms' +
    (errors ? ' · ' + errors + ' errors' : '');
  sys('burst of ' + n + ': ' + $('burst-result').textContent);
  $('burst').disabled = !client || client.readyState !== 'open';
}

// ---- server panel -----------------------------------------------------------------------
let lastCounters;
async function refresh() {
  try {
    const res = await fetch('/info', { cache: 'no-store' });
    const info = await res.json();
    $('info').textContent = JSON.stringify(info, null, 2);
    $('server-name').textContent = (info.instance || '') + (info.version ? ' · v' + info.version : '');
    const facts = [
      ['instance', info.instance],
      ['uptime', info.uptimeSeconds + ' s'],
      ['connections', info.connections ? info.connections.total + ' / ' + info.connections.max : '—'],
      ['TLS', info.security && info.security.tls ? 'on' : 'off'],
      ['auth', info.security ? info.security.auth : '—'],
    ];
    const m = await fetch('/metrics', { cache: 'no-store' }).then(
      (r) => (r.ok ? r.text() : ''),
      () => '',
    );
    if (m) {
      const sum = (name) => {
        let total = 0;
        for (const line of m.split('\n')) {
          if (line.startsWith('#')) continue;
          const metric = line.split(/[{ ]/)[0];
          if (metric.endsWith(name)) total += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
        }
        return total;
      };
      const now = { t: performance.now(), in: sum('echo_messages_in_total'), bytes: sum('echo_bytes_in_total') };
      facts.push(['messages in', String(now.in)]);
      facts.push(['bytes in', String(now.bytes)]);
      if (lastCounters) {
        const dt = (now.t - lastCounters.t) / 1000;
        facts.push(['rate', Math.round((now.in - lastCounters.in) / dt) + ' msg/s']);
      }
      lastCounters = now;
    } else facts.push(['metrics', 'not on this port']);
    const dl = $('metrics');
    dl.replaceChildren();
    for (const [k, v] of facts) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v === undefined ? '—' : String(v);
      dl.append(dt, dd);
    }
    $('server-updated').textContent = 'updated ' + clock().slice(0, 8);
  } catch (err) {
    $('server-updated').textContent = 'unreachable: ' + err.message;
  }
}

// ---- whoami -----------------------------------------------------------------------------
// The server's view of this page's own request (GET /whoami), with the token field's
// credential when there is one: the same view the hello reply carries on echo.v1.
async function onWhoami() {
  const token = $('token').value.trim();
  try {
    const res = await fetch('/whoami', { cache: 'no-store', headers: token ? { authorization: 'Bearer ' + token } : {} });
    const body = await res.json();
    $('whoami').textContent = (res.ok ? '' : 'HTTP ' + res.status + '\n') + JSON.stringify(body, null, 2);
  } catch (err) {
    $('whoami').textContent = 'unreachable: ' + err.message;
  }
}

// ---- wiring -----------------------------------------------------------------------------
$('connect-form').addEventListener('submit', onConnect);
$('disconnect').addEventListener('click', () => client && client.close(1000, 'bye'));
$('send').addEventListener('click', onSend);
$('msg').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    if (!$('send').disabled) onSend();
  }
});
$('burst').addEventListener('click', onBurst);
$('whoami-btn').addEventListener('click', onWhoami);
$('clear').addEventListener('click', () => $('log').tBodies[0].replaceChildren());
$('protocol').addEventListener('change', () => setState($('state').dataset.state === 'open' ? 'open' : 'closed'));
window.addEventListener('resize', scheduleDraw);
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', scheduleDraw);
setState('closed');
draw();
refresh();
setInterval(refresh, 3000);
