#!/usr/bin/env node
// The identity provider and connect proxy of auth_peer.py, on Node's http
// module (no code shared with it): the same routes and the same answers.
//
//     node auth_peer.js DIR     # prints "listening on 127.0.0.1:PORT"
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const dir = process.argv[2];
let last = '{}';

function answer(token) {
  const dash = token.indexOf('-');
  const kind = dash < 0 ? token : token.slice(0, dash);
  const rest = dash < 0 ? '' : token.slice(dash + 1);
  switch (kind) {
    case 'user': return [200, { result: { user: rest } }];
    case 'group': {
      const i = rest.indexOf('-');
      return [200, { result: { user: Number(rest.slice(0, i)), groups: [rest.slice(i + 1)] } }];
    }
    case 'expire':
      return [200, { result: { user: rest, expire_at: Math.floor(Date.now() / 1000) + 1 } }];
    case 'refuse': return [403, { error: { message: 'account suspended' } }];
    case 'slow': return [200, { result: { user: '1' } }, 3000];
    default: return [500, null];
  }
}

const server = http.createServer((req, res) => {
  const send = (status, body, type = 'application/json') => {
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.method === 'GET') {
    if (req.url === '/last') return send(200, last);
    fs.readFile(path.join(dir, path.basename(req.url)), (err, data) =>
      err ? send(404, 'not found', 'text/plain') : send(200, data));
    return;
  }
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    if (req.url !== '/connect') return send(404, 'not found', 'text/plain');
    last = body;
    const [status, doc, delay = 0] = answer(JSON.parse(body).token);
    setTimeout(() => (doc === null
      ? send(status, 'oops', 'text/plain')
      : send(status, JSON.stringify(doc))), delay);
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
