// The chat demo: ws-api `--handler chat` pushes each `say` by uid to every
// member of the room as `said` {room, from, text}, so every line has a
// position and survives reconnects. A `join` is sent on every (re)connect:
// membership belongs to the session, and a new session starts with none.
import { GatewayClient } from '../wsgw.js';

const $ = (selector) => document.querySelector(selector);
const conn = $('#conn');
const say = $('#say');
const log = $('#log');
conn.uid.value ||= String(1 + Math.floor(Math.random() * 99));
// The gateway: `?gw=ws://host:port/gateway/ws` (what `make run` prints), else
// port 8080 on the host that served this page.
conn.url.value = new URLSearchParams(location.search).get('gw')
  ?? `ws://${location.hostname || '127.0.0.1'}:8080/gateway/ws`;

let client = null;

function line(html, cls = '') {
  const li = document.createElement('li');
  li.className = cls;
  li.innerHTML = html;
  log.append(li);
  log.scrollTop = log.scrollHeight;
  return li;
}

const escape = (text) => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

conn.addEventListener('submit', (e) => {
  e.preventDefault();
  client?.close();
  log.replaceChildren();
  const uid = conn.uid.value.trim();
  const room = conn.room.value.trim();
  client = new GatewayClient(conn.url.value.trim(), { token: uid });

  client.onstate = (state, detail) => {
    $('#state').textContent = state + (detail.reason ? ` (${detail.code ?? ''} ${detail.reason})` : '');
    if (state === 'open') client.send('join', room).catch(() => {});
    if (state === 'reconnecting') line(`connection lost (${detail.code}); retrying in ${detail.delay} ms`, 'note');
    if (state === 'resumed') line(`resumed at ${escape(detail.offset)}`, 'note');
    // A real app reloads its state from its backend here.
    if (state === 'resume-failed') line(`history lost (${escape(detail.reason ?? '')}): earlier lines may be missing`, 'note');
    if (state === 'closed') line(`closed: ${detail.code} ${escape(detail.reason ?? '')}`, 'note');
    const usable = state !== 'closed';
    say.text.disabled = say.querySelector('button').disabled = !usable;
  };

  client.onmessage = (m) => {
    $('#position').textContent = client.position ?? '–';
    $('#dropped').textContent = client.stats.dropped;
    if (m.type !== 'said') {
      // E.g. `make run` before it switched to --handler chat: echoes.
      line(`[${escape(m.type)}] ${escape(m.text)}`, 'note');
      return;
    }
    const { room: where, from, text } = JSON.parse(m.text);
    if (where !== room) return;
    line(`<b>${escape(String(from))}</b>: ${escape(text)}`, String(from) === uid ? 'me' : '');
  };

  client.connect();
});

say.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = say.text.value.trim();
  if (!text || !client) return;
  say.text.value = '';
  // Kept and resent across reconnects until ws-api acknowledges it.
  const status = line(`sending “${escape(text)}”…`, 'note');
  client.send('say', text, { ack: true }).then(
    ({ duplicate }) => {
      status.remove();
      if (duplicate) line('(a resend ws-api already had: not said twice)', 'note');
    },
    (err) => {
      status.textContent = `not sent: ${err.message}`;
    },
  );
});
