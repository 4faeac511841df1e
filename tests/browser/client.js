// clients/js/wsgw.js as a page uses it: tests/js_client.rs calls these
// functions through tests/browser/driver.mjs; each returns one plain object.
//
// Every client has a name and records what its app would see: each state
// change (onstate) and each message (onmessage). The wait calls resolve as
// soon as the condition holds, or report a timeout with what was seen.
import { GatewayClient } from '/wsgw.js';

const clients = new Map();

// Calls `check` after every event of `c` until it returns something (the
// answer), or answers {event: 'timeout'} after `ms`.
function until(c, check, ms) {
  const now = check();
  if (now) return Promise.resolve(now);
  return new Promise((resolve) => {
    const waiter = () => {
      const result = check();
      if (!result) return;
      clearTimeout(timer);
      c.waiters.delete(waiter);
      resolve(result);
    };
    const timer = setTimeout(() => {
      c.waiters.delete(waiter);
      resolve({ event: 'timeout', after_ms: ms, states: c.states.map((s) => s.state), messages: c.messages.length });
    }, ms);
    c.waiters.add(waiter);
  });
}

// A GatewayClient on `url` with `options` (token, backoffBase, ...), connected.
function gwStart(name, url, options) {
  const c = { client: new GatewayClient(url, options), states: [], messages: [], waiters: new Set() };
  const wake = () => [...c.waiters].forEach((w) => w());
  c.client.onstate = (state, detail) => {
    c.states.push({ state, ...detail });
    wake();
  };
  c.client.onmessage = (m) => {
    c.messages.push({ type: m.type, text: m.text, offset: m.offset ?? null });
    wake();
  };
  clients.set(name, c);
  c.client.connect();
  return { event: 'started' };
}

// Waits until state `state` was reported at least `count` times.
function gwWaitState(name, state, count = 1, ms = 10000) {
  const c = clients.get(name);
  return until(c, () => {
    const seen = c.states.filter((s) => s.state === state);
    return seen.length >= count && { event: 'state', state, detail: seen[count - 1] };
  }, ms);
}

// Waits until the client's current state is `state`.
function gwWaitCurrent(name, state, ms = 10000) {
  const c = clients.get(name);
  return until(c, () => c.client.state === state && { event: 'state', state }, ms);
}

// Waits until `count` messages were delivered to onmessage.
function gwWaitMessages(name, count, ms = 10000) {
  const c = clients.get(name);
  return until(c, () => c.messages.length >= count && { event: 'messages', count: c.messages.length }, ms);
}

// Everything the app saw so far.
function gwSeen(name) {
  const c = clients.get(name);
  return {
    event: 'seen',
    states: c.states,
    messages: c.messages,
    position: c.client.position,
    dropped: c.client.stats.dropped,
  };
}

// client.send(type, text, {ack}); its outcome within `ms`.
function gwSend(name, type, text, ack, ms = 10000) {
  const c = clients.get(name);
  const sent = c.client.send(type, text, { ack }).then(
    (r) => ({ event: ack ? 'acked' : 'sent', id: r.id ?? null, duplicate: r.duplicate }),
    (e) => ({ event: 'rejected', message: String(e) }),
  );
  const late = new Promise((resolve) => setTimeout(() => resolve({ event: 'timeout', after_ms: ms }), ms));
  return Promise.race([sent, late]);
}

function gwClose(name) {
  const c = clients.get(name);
  c.client.close();
  return { event: 'closed', state: c.client.state };
}

Object.assign(window, { gwStart, gwWaitState, gwWaitCurrent, gwWaitMessages, gwSeen, gwSend, gwClose, pageReady: true });
