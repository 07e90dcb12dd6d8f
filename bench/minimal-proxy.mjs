#!/usr/bin/env node
// The runtime's floor: the least a Node proxy does, node:http in front of an undici Pool, no
// caching, no metrics, no logs. Usage: node bench/minimal-proxy.mjs <port> <upstream URL>
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [, , port, upstream] = process.argv;
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 4_000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host']);

const server = createServer((req, res) => {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
  pool.request({ method: req.method, path: req.url, headers }).then(
    ({ statusCode, headers: h, body }) => {
      const out = {};
      for (const [k, v] of Object.entries(h)) if (!HOP.has(k)) out[k] = v;
      res.writeHead(statusCode, out);
      body.on('data', (chunk) => {
        if (!res.write(chunk)) body.pause();
      });
      res.on('drain', () => body.resume());
      body.on('end', () => res.end());
      body.on('error', () => res.destroy());
    },
    () => {
      res.writeHead(502);
      res.end();
    },
  );
});
server.keepAliveTimeout = 5_000;
server.listen(Number(port), '127.0.0.1');
