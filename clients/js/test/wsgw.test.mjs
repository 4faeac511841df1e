// The client's logic without a browser or a gateway: `node --test clients/js/test/`
// (tests/js_client.rs runs it). A fake WebSocket records what the client
// writes and lets each test play the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GatewayClient,
  Positions,
  backoffDelay,
  base64url,
  isFinalClose,
  parseOffset,
  retryAfterMs,
  toBase64,
} from '../wsgw.js';

class FakeSocket {
  static all = [];
  readyState = 0;
  protocol = '';
  sent = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  // What the server does:
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

function client(options = {}) {
  FakeSocket.all = [];
  const c = new GatewayClient('ws://gw/gateway/ws', {
    token: '42',
    WebSocket: FakeSocket,
    backoffBase: 1,
    backoffMax: 1,
    ackDelay: 1,
    ...options,
  });
  c.states = [];
  c.messages = [];
  c.onstate = (state, detail) => c.states.push([state, detail]);
  c.onmessage = (m) => c.messages.push(m);
  return c.connect();
}

const pushed = (offset, text = offset) => ({ type: 'note', payload: toBase64(Buffer.from(text)), offset });
const latest = () => FakeSocket.all.at(-1);
const reconnected = () =>
  new Promise((resolve) => {
    const n = FakeSocket.all.length;
    const poll = () => (FakeSocket.all.length > n ? resolve(latest()) : setTimeout(poll, 1));
    poll();
  });
const acks = (ws) => ws.sent.filter((f) => f.type === 'ack').map((f) => f.offset);
const tick = (ms) => new Promise((r) => setTimeout(r, ms));

test('helpers', () => {
  assert.deepEqual(parseOffset('k3x9:42'), { epoch: 'k3x9', n: 42 });
  for (const bad of ['', 'K:1', 'k:', 'k:-1', 'k:01', ':3', 'k:1:2', undefined]) {
    assert.equal(parseOffset(bad), null, String(bad));
  }
  assert.equal(base64url('a+b/c='), 'YStiL2M9');
  assert.equal(base64url('??>'), 'Pz8-');
  assert.equal(retryAfterMs('ws-api unavailable; retry after 1s'), 1000);
  assert.equal(retryAfterMs('too many connections for this user'), 0);
  assert.equal(backoffDelay(0, 500, 30000, () => 0.5), 250);
  assert.equal(backoffDelay(10, 500, 30000, () => 0.999999) < 30000, true);
  assert.equal(backoffDelay(3, 500, 30000, () => 1), 4000);
  for (const code of [1000, 4001, 4401, 4403]) assert.equal(isFinalClose(code), true, String(code));
  for (const code of [1001, 1006, 1008, 1011, 1013, 4429, 4503]) assert.equal(isFinalClose(code), false, String(code));
});

test('positions: dedup and the contiguous mark across a gap', () => {
  const p = new Positions();
  assert.equal(p.position, null);
  assert.equal(p.take('e', 5), true); // the first one seen starts the epoch
  assert.equal(p.position, 'e:5');
  assert.equal(p.take('e', 5), false);
  assert.equal(p.take('e', 7), true); // overtook 6
  assert.equal(p.position, 'e:5');
  assert.equal(p.take('e', 7), false);
  assert.equal(p.take('e', 4), false);
  assert.equal(p.take('e', 6), true);
  assert.equal(p.position, 'e:7');
  assert.equal(p.ahead.size, 0);
  assert.equal(p.take('f', 1), true); // another epoch starts afresh
  assert.equal(p.position, 'f:1');
});

test('token and since travel as subprotocol entries; a resume replays without duplicates', async () => {
  const c = client();
  let ws = latest();
  assert.deepEqual(ws.protocols, ['token.NDI']);
  ws.open();
  for (const n of [1, 2, 3]) ws.frame(pushed(`e1:${n}`));
  ws.drop(1001, 'going away: gateway shutting down');
  ws = await reconnected();
  assert.deepEqual(ws.protocols, ['token.NDI', 'since.e1.3']);
  ws.open();
  assert.equal(c.state, 'resuming');
  for (const n of [3, 4, 5]) ws.frame(pushed(`e1:${n}`)); // 3 is a duplicate
  ws.frame({ type: 'resumed', offset: 'e1:5' });
  assert.equal(c.state, 'live');
  assert.deepEqual(c.messages.map((m) => m.offset), ['e1:1', 'e1:2', 'e1:3', 'e1:4', 'e1:5']);
  assert.equal(c.messages[3].text, 'e1:4');
  assert.equal(c.stats.dropped, 1);
  assert.ok(c.states.some(([s, d]) => s === 'resumed' && d.offset === 'e1:5'));
  await tick(10);
  assert.deepEqual(acks(ws), ['e1:5']);
  c.close();
});

test('without a token entry the position goes in the query', async () => {
  const c = client({ token: undefined });
  let ws = latest();
  assert.deepEqual(ws.protocols, []);
  ws.open();
  ws.frame(pushed('e1:4'));
  ws.drop(1006);
  ws = await reconnected();
  assert.deepEqual(ws.protocols, []);
  assert.equal(ws.url, 'ws://gw/gateway/ws?since=e1%3A4');
  c.close();
});

test('acks are cumulative, batched, and never pass a gap', async () => {
  const c = client({ ackEvery: 3, ackDelay: 5 });
  const ws = latest();
  ws.open();
  ws.frame(pushed('e:1'));
  ws.frame(pushed('e:3'));
  ws.frame(pushed('e:4')); // 3 messages: sent at once, up to the gap
  assert.deepEqual(acks(ws), ['e:1']);
  ws.frame(pushed('e:2'));
  assert.deepEqual(acks(ws), ['e:1']);
  await tick(20); // the delay flushes the rest
  assert.deepEqual(acks(ws), ['e:1', 'e:4']);
  c.close();
});

test('resume-failed and a new epoch reset the position', async () => {
  const c = client();
  let ws = latest();
  ws.open();
  ws.frame(pushed('old:7'));
  ws.drop(1006);
  ws = await reconnected();
  assert.deepEqual(ws.protocols, ['token.NDI', 'since.old.7']);
  ws.open();
  ws.frame({ type: 'resume-failed' });
  assert.equal(c.position, null);
  assert.equal(c.state, 'live');
  ws.frame(pushed('new:3'));
  assert.equal(c.position, 'new:3');
  ws.frame(pushed('newer:1'));
  assert.equal(c.position, 'newer:1');
  const failed = c.states.filter(([s]) => s === 'resume-failed');
  assert.equal(failed.length, 2);
  assert.equal(c.messages.length, 3);
  c.close();
});

test('send with ack: kept across reconnects, resent, resolved with duplicate', async () => {
  const c = client();
  let ws = latest();
  ws.open();
  const first = c.send('chat', 'hi', { ack: true });
  const frame = ws.sent.at(-1);
  assert.equal(frame.type, 'chat');
  assert.equal(frame.payload, 'aGk=');
  assert.equal(frame.resent, undefined);
  ws.drop(1006);
  const second = c.send('chat', 'queued', { ack: true }); // while disconnected
  ws = await reconnected();
  ws.open();
  const [again, queued] = ws.sent;
  assert.equal(again.id, frame.id);
  assert.equal(again.resent, true);
  assert.equal(queued.resent, undefined); // never sent before
  ws.frame({ type: 'ack', id: frame.id, duplicate: true });
  ws.frame({ type: 'ack', id: queued.id });
  assert.deepEqual(await first, { id: frame.id, duplicate: true });
  assert.deepEqual(await second, { id: queued.id, duplicate: false });
  const unanswered = c.send('chat', 'late', { ack: true });
  c.close();
  await assert.rejects(unanswered, /closed/);
});

test('server PING is answered with HEARTBEAT and not delivered', () => {
  const c = client();
  const ws = latest();
  ws.open();
  ws.frame({ type: 'PING', payload: '' });
  assert.deepEqual(ws.sent, [{ type: 'HEARTBEAT' }]);
  assert.equal(c.messages.length, 0);
  c.close();
});

test('refusals stop; 4503 waits for the retry-after hint', async () => {
  let c = client();
  latest().open();
  latest().drop(4401, 'missing token');
  assert.equal(c.state, 'closed');
  assert.deepEqual(c.states.at(-1), ['closed', { code: 4401, reason: 'missing token', refused: true }]);
  await tick(10);
  assert.equal(FakeSocket.all.length, 1);

  c = client();
  const pending = c.send('chat', 'x', { ack: true });
  latest().open();
  latest().drop(4503, 'ws-api unavailable; retry after 1s');
  const [state, detail] = c.states.at(-1);
  assert.equal(state, 'reconnecting');
  assert.ok(detail.delay >= 1000, JSON.stringify(detail));
  c.close();
  await assert.rejects(pending, /closed/);
});
