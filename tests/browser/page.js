// What a web page sees of its WebSockets: tests/browser/driver.mjs calls
// these functions in Chromium; each returns one plain object (an event).
//
// Every socket has a name and a queue of its events ('open', 'message',
// 'close'), so a step can wait for the next one even if it already came.
'use strict';

const sockets = new Map();

function track(name, ws) {
  const s = { ws, events: [], waiters: [], error: false };
  const push = (ev) => {
    const waiter = s.waiters.shift();
    if (waiter) waiter(ev);
    else s.events.push(ev);
  };
  ws.onopen = () => push({ event: 'open', protocol: ws.protocol });
  ws.onmessage = (e) =>
    push({ event: 'message', data: typeof e.data === 'string' ? e.data : '<binary>' });
  // An 'error' event always comes just before its 'close': report it there.
  ws.onerror = () => { s.error = true; };
  ws.onclose = (e) =>
    push({ event: 'close', code: e.code, reason: e.reason, wasClean: e.wasClean, error: s.error });
  sockets.set(name, s);
}

// The next event of socket `name`, or {event: 'timeout'} after `ms`.
function wsNext(name, ms = 10000) {
  const s = sockets.get(name);
  if (!s) return Promise.resolve({ event: 'no-such-socket', name });
  if (s.events.length) return Promise.resolve(s.events.shift());
  return new Promise((resolve) => {
    const waiter = (ev) => { clearTimeout(timer); resolve(ev); };
    const timer = setTimeout(() => {
      s.waiters.splice(s.waiters.indexOf(waiter), 1);
      resolve({ event: 'timeout', after_ms: ms });
    }, ms);
    s.waiters.push(waiter);
  });
}

// `new WebSocket(url[, protocols])`, then its first event: 'open' (with the
// protocol the server chose) or 'close' (a refused or failed connection).
function wsOpen(name, url, protocols) {
  let ws;
  try {
    ws = protocols === undefined || protocols === null
      ? new WebSocket(url)
      : new WebSocket(url, protocols);
  } catch (e) {
    return Promise.resolve({ event: 'throw', message: String(e) });
  }
  track(name, ws);
  return wsNext(name);
}

function wsSend(name, text) {
  const s = sockets.get(name);
  if (!s) return { event: 'no-such-socket', name };
  try {
    s.ws.send(text);
  } catch (e) {
    return { event: 'throw', message: String(e) };
  }
  return { event: 'sent', length: text.length, readyState: s.ws.readyState };
}

// Sends `count` characters 'x' in one text message (an oversized message is
// built here rather than carried through the driver).
function wsSendLarge(name, count) {
  return wsSend(name, 'x'.repeat(count));
}

// The extensions the server agreed (`ws.extensions`), after 'open'.
function wsExtensions(name) {
  const s = sockets.get(name);
  if (!s) return { event: 'no-such-socket', name };
  return { event: 'extensions', extensions: s.ws.extensions };
}

function wsClose(name, code, reason) {
  const s = sockets.get(name);
  if (!s) return { event: 'no-such-socket', name };
  s.ws.close(code, reason);
  return { event: 'closing', readyState: s.ws.readyState };
}

Object.assign(window, { wsOpen, wsNext, wsSend, wsSendLarge, wsExtensions, wsClose, pageReady: true });
