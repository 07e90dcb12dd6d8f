// nginx in three roles: a zero-cost upstream (one image for every path), the reference proxy
// (proxy_pass with keep-alive), and a fast S3 endpoint that answers as S3 does without storing.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { httpOk, until } from './proc.mjs';

export async function startNginx(procs, name, port, http) {
  const conf = join(procs.dir, `${name}.conf`);
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${procs.dir}/${name}.pid; error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path ${procs.dir}/${name}-body; proxy_temp_path ${procs.dir}/${name}-proxy;
${http}
}
`,
  );
  const child = procs.start(name, 'nginx', ['-c', conf, '-p', procs.dir]);
  const url = `http://127.0.0.1:${port}`;
  await until(() => httpOk(`${url}/health`), name);
  return { url, child };
}

/** Answers every image path with the file `image` (Content-Type `type`) at once. */
export function staticUpstream(procs, port, root, file, type) {
  return startNginx(
    procs,
    'upstream-static',
    port,
    `  server {
    listen 127.0.0.1:${port};
    location = /health { default_type text/plain; return 200 "imgproxy is running"; }
    location / {
      root ${root}; default_type ${type};
      add_header Cache-Control "max-age=31536000, public";
      rewrite ^ /${file} break;
    }
  }`,
  );
}

export function referenceProxy(procs, port, upstream) {
  return startNginx(
    procs,
    'nginx-proxy',
    port,
    `  upstream imgproxy { server ${upstream.replace('http://', '')}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://imgproxy; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; }
  }`,
  );
}

/**
 * S3 as far as the uploader sees it, at no cost: HeadBucket 200, PutObject 204 (not 200: nginx's
 * not-modified filter would turn `If-None-Match: *` into a 304), HeadObject and GetObject 404
 * NoSuchKey. Bodies are read and dropped.
 */
export function fastS3(procs, port, bucket) {
  return startNginx(
    procs,
    'fast-s3',
    port,
    `  server {
    listen 127.0.0.1:${port};
    client_max_body_size 64m; client_body_buffer_size 64m;
    location = /health { return 200; }
    location ~ ^/${bucket}/?$ { return 200; }
    location / {
      if ($request_method = PUT) { return 204; }
      default_type application/xml;
      return 404 '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>';
    }
  }`,
  );
}

/**
 * A bucket that holds images: GetObject and HeadObject from the files under `root/<bucket>/`
 * (Cache-Control as imgproxy sends it), NoSuchKey for the rest, HeadBucket 200, PutObject 204.
 */
export function bucketS3(procs, port, bucket, root) {
  return startNginx(
    procs,
    'bucket-s3',
    port,
    `  server {
    listen 127.0.0.1:${port};
    location = /health { return 200; }
    location ~ ^/${bucket}/?$ { return 200; }
    location / {
      if ($request_method = PUT) { return 204; }
      root ${root}; default_type image/webp;
      add_header Cache-Control "max-age=31536000, public";
      error_page 404 = @nosuchkey;
    }
    location @nosuchkey {
      default_type application/xml;
      return 404 '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>';
    }
  }`,
  );
}

/** nginx as the cache users would pick instead: proxy_cache in front of `upstream`, on disk in `dir`. */
export function cachingProxy(procs, port, upstream, dir) {
  return startNginx(
    procs,
    'nginx-proxy-cache',
    port,
    `  upstream imgproxy { server ${upstream.replace('http://', '')}; keepalive 64; }
  proxy_cache_path ${dir} levels=1:2 keys_zone=images:16m max_size=2g inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:${port};
    location = /health { return 200; }
    location / {
      proxy_pass http://imgproxy; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache images; proxy_cache_valid 200 1h; proxy_cache_lock on;
    }
  }`,
  );
}
