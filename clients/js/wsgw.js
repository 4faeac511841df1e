// wsgw.js: a browser client for ws-gateway, one dependency-free ES module.
//
//   import { GatewayClient } from './wsgw.js';
//   const c = new GatewayClient('wss://host/gateway/ws', { token: '42' });
//   c.onmessage = (m) => console.log(m.type, m.text, m.offset);
//   c.onstate = (state, detail) => console.log(state, detail);
//   c.connect();
//   await c.send('chat', 'hi', { ack: true });
//
// What it guarantees, with a ws-api that keeps positions (docs/delivery.md):
// - Messages pushed to this user by uid reach onmessage at least once
//   across reconnects (the client resumes from its position, and
//   acknowledges only what onmessage has returned from), and at most once
//   per offset: duplicates (replays, resends) are dropped by offset.
// - A `send(..., {ack: true})` is kept and sent again after every reconnect
//   until ws-api acknowledges it; ws-api drops what it already had.
// Not guaranteed: messages without a position (group, broadcast, replies
// to one session, echoes) are lost when they meet a broken connection; when
// the history is lost (state 'resume-failed') so are the messages in it, and
// the app must reload its state; a handler that throws still counts as
// having processed its message (it is not delivered again).

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Base64 (standard alphabet, padded) of bytes: the envelope's payload. */
export function toBase64(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** base64url without padding of a string's UTF-8: a subprotocol cannot
 * hold '=', '+' or '/', so tokens travel as `token.<base64url>`. */
export function base64url(text) {
  return toBase64(encoder.encode(text)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** "<epoch>:<n>" → {epoch, n}, or null when it is not a position. */
export function parseOffset(text) {
  const m = /^([a-z0-9]+):([1-9][0-9]*|0)$/.exec(text ?? '');
  return m ? { epoch: m[1], n: Number(m[2]) } : null;
}

/** Full jitter: uniform in [0, min(max, base · 2^attempt)), so that
 * clients dropped together (a gateway draining) do not return together. */
export function backoffDelay(attempt, base, max, random = Math.random) {
  return random() * Math.min(max, base * 2 ** attempt);
}

/** The gateway ends the reason of a refusal worth retrying (4503, ws-api
 * down or draining) with "; retry after <n>s": that hint in ms, else 0. */
export function retryAfterMs(reason) {
  const m = /retry after (\d+(?:\.\d+)?)s\b/.exec(reason ?? '');
  return m ? Number(m[1]) * 1000 : 0;
}

/** Close codes after which reconnecting cannot help or is unwanted:
 * refusals (4401 token, 4403 Origin), a server's normal close (ws-api's
 * Kick without a code) and kicks (other 4xxx), except the transient 4429
 * (per-user cap, rate) and 4503 (ws-api unavailable). */
export function isFinalClose(code) {
  if (code === 4429 || code === 4503) return false;
  return code === 1000 || (code >= 4000 && code <= 4999);
}

/**
 * Which offsets of the current epoch were seen. `upTo` is the contiguous
 * mark: every offset up to it was seen (or came before the first one seen
 * in this epoch). It is what the client acknowledges and resumes from;
 * offsets seen beyond a gap wait in `ahead`, so a message that overtook
 * another is never acknowledged past the gap.
 */
export class Positions {
  constructor() {
    this.reset();
  }

  reset() {
    this.epoch = null;
    this.upTo = 0;
    this.ahead = new Set();
  }

  /** "<epoch>:<upTo>", or null before the first positioned message. */
  get position() {
    return this.epoch === null ? null : `${this.epoch}:${this.upTo}`;
  }

  /** Starts `epoch` with everything up to `upTo` taken as seen. */
  start(epoch, upTo) {
    this.epoch = epoch;
    this.upTo = upTo;
    this.ahead.clear();
  }

  /** Records offset n of `epoch`; false for a duplicate. Another epoch
   * than the current one starts afresh from this message. */
  take(epoch, n) {
    if (epoch !== this.epoch) this.start(epoch, n - 1);
    if (n <= this.upTo || this.ahead.has(n)) return false;
    this.ahead.add(n);
    while (this.ahead.delete(this.upTo + 1)) this.upTo++;
    return true;
  }
}

const DEFAULTS = {
  token: undefined, // sent as the `token.<base64url>` subprotocol entry
  protocols: [], // application subprotocols, offered after the token
  backoffBase: 500, // ms; the first retry waits up to this
  backoffMax: 30000, // ms; no retry waits longer (plus a retry-after hint)
  ackDelay: 100, // ms; acknowledgements are batched over this long...
  ackEvery: 50, // ...or this many messages, whichever comes first
  WebSocket: globalThis.WebSocket,
};

// States that report an event rather than a condition of the connection.
const EVENTS = new Set(['resumed', 'resume-failed']);

export class GatewayClient {
  #opts;
  #ws = null;
  #positions = new Positions();
  #ackedPosition = null;
  #unacked = 0;
  #ackTimer = null;
  #retryTimer = null;
  #attempt = 0;
  #finished = false;
  #pending = new Map(); // id → {frame, sent, resolve, reject}
  #idPrefix = Math.random().toString(36).slice(2, 10);
  #nextId = 0;

  /** The last state: idle, connecting, open, resuming, live, reconnecting, closed. */
  state = 'idle';
  /** Duplicates dropped by offset, for the curious. */
  stats = { dropped: 0 };
  /** Called with {type, payload: Uint8Array, text, offset} per message. */
  onmessage = () => {};
  /** Called with (state, detail) on each change and on 'resumed' / 'resume-failed'. */
  onstate = () => {};

  constructor(url, options = {}) {
    this.url = url;
    this.#opts = { ...DEFAULTS, ...options };
  }

  /** The position to resume from, "<epoch>:<n>", or null. */
  get position() {
    return this.#positions.position;
  }

  connect() {
    if (!this.#ws && !this.#retryTimer && !this.#finished) this.#open();
    return this;
  }

  /**
   * Sends {type, payload}. `payload` is a string (sent as UTF-8) or bytes.
   * Without `ack` it resolves once written and rejects when not connected.
   * With `ack: true` it is kept until ws-api acknowledges it, across
   * reconnects, and resolves with {id, duplicate}; it rejects on close().
   */
  send(type, payload = '', { ack = false } = {}) {
    const bytes = typeof payload === 'string' ? encoder.encode(payload) : payload;
    const frame = { type, payload: toBase64(bytes) };
    if (!ack) {
      if (!this.#isOpen()) return Promise.reject(new Error(`not connected (${this.state})`));
      this.#write(frame);
      return Promise.resolve({ id: undefined, duplicate: false });
    }
    if (this.#finished) return Promise.reject(new Error('closed'));
    frame.id = `${this.#idPrefix}-${++this.#nextId}`;
    return new Promise((resolve, reject) => {
      const entry = { frame, sent: false, resolve, reject };
      this.#pending.set(frame.id, entry);
      if (this.#isOpen()) this.#transmit(entry);
    });
  }

  /** Acknowledges what was processed, closes for good, rejects pending sends. */
  close(code = 1000, reason = 'client closed') {
    if (this.#finished) return;
    this.#flushAck();
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(code, reason);
    this.#finish({ code, reason, byClient: true });
  }

  #open() {
    this.#retryTimer = null;
    const since = this.#positions.position;
    const protocols = [...this.#opts.protocols];
    if (this.#opts.token != null) protocols.unshift(`token.${base64url(String(this.#opts.token))}`);
    let url = this.url;
    if (since && protocols.length) {
      protocols.push(`since.${since.replace(':', '.')}`);
    } else if (since) {
      // Offered alone, the entry would go unanswered (the gateway answers
      // only a token or app entry) and the browser would fail the connection.
      const u = new URL(url);
      u.searchParams.set('since', since);
      url = u.href;
    }
    this.#emit('connecting', { attempt: this.#attempt, since });
    let ws;
    try {
      ws = new this.#opts.WebSocket(url, protocols);
    } catch (e) {
      // A malformed URL or subprotocol: retrying would fail the same way.
      this.#finish({ code: 0, reason: String(e) });
      return;
    }
    this.#ws = ws;
    ws.onopen = () => this.#onOpen(ws, since);
    ws.onmessage = (e) => ws === this.#ws && this.#onFrame(e.data);
    ws.onclose = (e) => ws === this.#ws && this.#onClose(e.code, e.reason);
  }

  #onOpen(ws, since) {
    if (ws !== this.#ws) return;
    // An in-band refusal also opens first (then closes 44xx): the backoff
    // is reset only by a first message, in #onFrame.
    this.#emit('open', { protocol: ws.protocol });
    if (since) this.#emit('resuming', { since });
    else this.#live();
    // After 'open', so that what the app sends there (a join) goes first.
    for (const entry of this.#pending.values()) this.#transmit(entry);
  }

  #live() {
    if (this.state !== 'live') this.#emit('live', { position: this.position });
    // The server may have missed the last acknowledgement with the socket.
    this.#ackedPosition = null;
    this.#flushAck();
  }

  #onFrame(data) {
    // Replies come in the format of our frames, always text (JSON).
    if (typeof data !== 'string') return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    this.#attempt = 0;
    switch (f.type) {
      case 'PING':
        this.#write({ type: 'HEARTBEAT' });
        return;
      case 'ack':
        if (f.id !== undefined) this.#onAck(f.id, f.duplicate === true);
        return;
      case 'resumed': {
        const at = parseOffset(f.offset);
        const epoch = this.#positions.epoch;
        if (at && epoch !== null && at.epoch !== epoch) {
          this.#reset('resume-failed', `resumed in epoch ${at.epoch} (was ${epoch}): history lost`);
        }
        // Nothing seen in this epoch yet (a resume from the acknowledged
        // position with nothing missed): the server's position is ours.
        if (at && this.#positions.epoch === null) this.#positions.start(at.epoch, at.n);
        this.#emit('resumed', { offset: f.offset });
        this.#live();
        return;
      }
      case 'resume-failed':
        this.#reset('resume-failed', 'the server cannot resume from our position');
        this.#live();
        return;
    }
    const at = parseOffset(f.offset);
    if (at) {
      const epoch = this.#positions.epoch;
      if (epoch !== null && at.epoch !== epoch) {
        this.#reset('resume-failed', `new epoch ${at.epoch} (was ${epoch}): history lost`);
      }
      if (!this.#positions.take(at.epoch, at.n)) {
        this.stats.dropped++;
        return;
      }
    }
    const payload = f.payload ? fromBase64(f.payload) : new Uint8Array(0);
    const message = {
      type: f.type,
      payload,
      offset: at ? f.offset : undefined,
      get text() {
        return decoder.decode(payload);
      },
    };
    try {
      this.onmessage(message);
    } catch (e) {
      console.error('wsgw: onmessage threw; the message counts as processed', e);
    }
    if (at) this.#scheduleAck();
  }

  #reset(state, reason) {
    this.#positions.reset();
    this.#ackedPosition = null;
    this.#emit(state, { reason });
  }

  #scheduleAck() {
    if (++this.#unacked >= this.#opts.ackEvery) this.#flushAck();
    else this.#ackTimer ??= setTimeout(() => this.#flushAck(), this.#opts.ackDelay);
  }

  #flushAck() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#unacked = 0;
    const pos = this.#positions.position;
    // Offset 0 acknowledges nothing; an unsent ack is sent on the next live.
    if (!pos || this.#positions.upTo === 0 || pos === this.#ackedPosition) return;
    if (!this.#isOpen() || this.state !== 'live') return;
    this.#write({ type: 'ack', offset: pos });
    this.#ackedPosition = pos;
  }

  #onAck(id, duplicate) {
    const entry = this.#pending.get(id);
    if (!entry) return; // an ack for a resend whose first copy was acked
    this.#pending.delete(id);
    entry.resolve({ id, duplicate });
  }

  #transmit(entry) {
    if (entry.sent) entry.frame.resent = true;
    entry.sent = true;
    this.#write(entry.frame);
  }

  #onClose(code, reason) {
    this.#ws = null;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    if (isFinalClose(code)) {
      this.#finish({ code, reason, refused: code === 4401 || code === 4403 });
      return;
    }
    const { backoffBase, backoffMax } = this.#opts;
    const delay = retryAfterMs(reason) + backoffDelay(this.#attempt++, backoffBase, backoffMax);
    this.#emit('reconnecting', { code, reason, delay: Math.round(delay) });
    this.#retryTimer = setTimeout(() => this.#open(), delay);
  }

  #finish(detail) {
    this.#finished = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#ackTimer);
    this.#retryTimer = this.#ackTimer = null;
    for (const entry of this.#pending.values()) entry.reject(new Error(`closed: ${detail.reason}`));
    this.#pending.clear();
    this.#emit('closed', detail);
  }

  #isOpen() {
    return this.#ws !== null && this.#ws.readyState === 1;
  }

  #write(frame) {
    this.#ws.send(JSON.stringify(frame));
  }

  #emit(state, detail) {
    if (!EVENTS.has(state)) this.state = state;
    try {
      this.onstate(state, detail);
    } catch (e) {
      console.error('wsgw: onstate threw', e);
    }
  }
}
