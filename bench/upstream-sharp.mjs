#!/usr/bin/env node
// The bench's stand-in for imgproxy doing real work: libvips (through sharp) resizes a generated,
// photo-like 1200×800 JPEG to WebP at the size and quality the path asks for, on every request,
// as imgproxy would:
//
//   /unsafe/rs:fit:<width>:<height>/q:<quality>/cb:<anything>/plain/local:///photo.jpg@webp
//
// Answers /health as imgproxy does. Usage: node bench/upstream-sharp.mjs <port>
import { createServer } from 'node:http';
import sharp from 'sharp';

const port = Number(process.argv[2] ?? 0);
const WIDTH = 1200;
const HEIGHT = 800;

/** Smooth shapes and fine noise: compresses and resizes like a photograph, not like a flat test card. */
async function photo() {
  const pixels = Buffer.alloc(WIDTH * HEIGHT * 3);
  let seed = 42;
  const noise = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return (seed % 41) - 20;
  };
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const i = (y * WIDTH + x) * 3;
      const sky = y < HEIGHT * 0.45;
      const base = sky ? [110 + y / 6, 150 + y / 8, 220] : [60 + 40 * Math.sin(x / 37) + y / 10, 110 + 30 * Math.cos(y / 23), 50 + 20 * Math.sin((x + y) / 51)];
      const sun = Math.hypot(x - 900, y - 150) < 80 ? 90 : 0;
      for (let c = 0; c < 3; c++) pixels[i + c] = Math.max(0, Math.min(255, base[c] + sun + noise()));
    }
  }
  return sharp(pixels, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

const source = await photo();
const OPTIONS = /\/rs:fit:(\d+):(\d+)\/q:(\d+)\//;

const server = createServer(async (req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-cache' });
    res.end('imgproxy is running');
    return;
  }
  const m = OPTIONS.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('Invalid URL');
    return;
  }
  try {
    const body = await sharp(source)
      .resize(Math.min(Number(m[1]), WIDTH), Math.min(Number(m[2]), HEIGHT), { fit: 'inside' })
      .webp({ quality: Math.min(Number(m[3]), 100) })
      .toBuffer();
    res.writeHead(200, {
      'content-type': 'image/webp',
      'content-length': body.length,
      'cache-control': 'max-age=31536000, public',
      'content-disposition': 'inline; filename="photo.webp"',
    });
    res.end(body);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error));
  }
});
server.keepAliveTimeout = 300_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
