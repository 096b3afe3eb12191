/**
 * The debug console: one self-contained page (no external assets, no inline event handlers
 * reaching outside it) served at `/console`, and at `/` to browsers. It opens a WebSocket to the
 * same listener, sends what you type, and shows each echo with its round-trip time, plus `/info`.
 */
export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>EchoServer console</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; max-width: 60rem; color: #222; }
  h1 { font-size: 1.3rem; }
  #log { border: 1px solid #ccc; height: 18rem; overflow: auto; padding: .5rem; font-family: ui-monospace, monospace; white-space: pre-wrap; }
  .out { color: #05a; } .in { color: #070; } .sys { color: #888; } .err { color: #b00; }
  input[type=text] { width: 30rem; }
  pre { background: #f6f6f6; padding: .5rem; overflow: auto; }
</style>
</head>
<body>
<h1>EchoServer console</h1>
<p>Path <input id="path" value="/ws" size="12"> token <input id="token" size="20" placeholder="(if auth is on)">
<button id="connect">Connect</button> <button id="disconnect" disabled>Disconnect</button> <span id="state" class="sys">disconnected</span></p>
<p><input id="msg" type="text" value="hello" disabled> <label><input id="binary" type="checkbox"> binary</label>
<button id="send" disabled>Send</button></p>
<div id="log"></div>
<h2>/info</h2>
<pre id="info">loading…</pre>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  const log = (cls, text) => { const d = document.createElement('div'); d.className = cls; d.textContent = new Date().toISOString().slice(11, 23) + ' ' + text; $('log').append(d); $('log').scrollTop = 1e9; };
  let ws; const sent = [];
  const set = (open) => { $('send').disabled = $('msg').disabled = $('disconnect').disabled = !open; $('connect').disabled = open; $('state').textContent = open ? 'connected' : 'disconnected'; };
  $('connect').onclick = () => {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const token = $('token').value.trim();
    const url = scheme + '//' + location.host + $('path').value + (token ? '?token=' + encodeURIComponent(token) : '');
    ws = new WebSocket(url); ws.binaryType = 'arraybuffer';
    ws.onopen = () => { set(true); log('sys', 'open ' + url.replace(/token=[^&]*/, 'token=…')); };
    ws.onmessage = (e) => { const t0 = sent.shift(); const rtt = t0 === undefined ? '' : ' (' + (performance.now() - t0).toFixed(2) + ' ms)';
      log('in', '← ' + (typeof e.data === 'string' ? JSON.stringify(e.data) : 'binary ' + e.data.byteLength + ' bytes') + rtt); };
    ws.onclose = (e) => { set(false); sent.length = 0; log('sys', 'closed ' + e.code + (e.reason ? ' ' + e.reason : '')); };
    ws.onerror = () => log('err', 'connection error');
  };
  $('disconnect').onclick = () => ws && ws.close(1000, 'bye');
  $('send').onclick = () => { const text = $('msg').value; const data = $('binary').checked ? new TextEncoder().encode(text) : text;
    sent.push(performance.now()); ws.send(data); log('out', '→ ' + ($('binary').checked ? 'binary ' + data.byteLength + ' bytes' : JSON.stringify(text))); };
  $('msg').onkeydown = (e) => { if (e.key === 'Enter') $('send').click(); };
  const info = () => fetch('/info').then((r) => r.json()).then((j) => { $('info').textContent = JSON.stringify(j, null, 2); }, () => {});
  info(); setInterval(info, 5000);
})();
</script>
</body>
</html>
`;
