# One image for every service; the command picks it:
#   docker run IMAGE proxy | uploader | dashboard | all | setup-bucket
# and a second target, all-in-one, that also runs imgproxy inside (as the original Go image did):
#   docker build --target all-in-one -t imgproxy-cache:all-in-one .
# It builds with BuildKit and with the classic builder (DOCKER_BUILDKIT=0): no syntax directive, so
# BuildKit needs no frontend image.

ARG NODE_IMAGE=node:24.11.1-bookworm-slim
ARG IMGPROXY_IMAGE=ghcr.io/imgproxy/imgproxy:v4.0.12

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages/shared/package.json packages/shared/
COPY apps/proxy/package.json apps/proxy/
COPY apps/uploader/package.json apps/uploader/
COPY apps/cli/package.json apps/cli/
COPY apps/launcher/package.json apps/launcher/
COPY test/package.json test/
RUN npm ci --no-audit --no-fund
COPY packages packages
COPY apps apps
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
# jemalloc under Node: glibc's malloc keeps more of what bursts of sockets and buffers freed, and
# the services hold less with it (bench/PROFILE.md, eighth round)
RUN apt-get update \
  && apt-get install -y --no-install-recommends libjemalloc2 \
  && rm -rf /var/lib/apt/lists/* \
  && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2
ENV NODE_ENV=production LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/packages/shared/package.json packages/shared/
COPY --from=build /app/packages/shared/dist packages/shared/dist
COPY --from=build /app/packages/shared/commands packages/shared/commands
COPY --from=build /app/apps/proxy/package.json apps/proxy/
COPY --from=build /app/apps/proxy/dist apps/proxy/dist
# what npm could not hoist beside another version (lru-cache)
COPY --from=build /app/apps/proxy/node_modules apps/proxy/node_modules
COPY --from=build /app/apps/uploader/package.json apps/uploader/
COPY --from=build /app/apps/uploader/dist apps/uploader/dist
COPY --from=build /app/apps/cli/package.json apps/cli/
COPY --from=build /app/apps/cli/dist apps/cli/dist
COPY --from=build /app/apps/launcher/package.json apps/launcher/
COPY --from=build /app/apps/launcher/dist apps/launcher/dist
COPY scripts/service.mjs scripts/start-all.mjs scripts/
USER node
EXPOSE 8080 9464 3000
# node itself is the process (not npm), so SIGTERM reaches the service
ENTRYPOINT ["node", "--max-semi-space-size=16", "scripts/service.mjs"]
CMD ["proxy"]

# imgproxy and the proxy (and an uploader) in one container, supervised by the launcher: when any
# of them exits, the others are stopped and the container stops. Without REDIS_URL it runs a Redis
# of its own too, on a socket, with its append-only file in the /data volume: the whole set-up is
#   docker run -e S3_BUCKET=… -e AWS_ACCESS_KEY_ID=… -e AWS_SECRET_ACCESS_KEY=… -p 8080:8080 -v cache-data:/data IMAGE
FROM ${IMGPROXY_IMAGE} AS all-in-one
USER root
# the distribution's redis-server (imgproxy's image is Ubuntu 24.04); a user of our own owns /data
RUN apt-get update \
  && apt-get install -y --no-install-recommends redis-server libjemalloc2 \
  && rm -rf /var/lib/apt/lists/* \
  && ln -s "$(find /usr/lib -name libjemalloc.so.2 | head -n 1)" /usr/local/lib/libjemalloc.so.2 \
  && useradd --system --uid 10001 --home-dir /data --no-create-home imgproxy-cache \
  && mkdir -p /data && chown imgproxy-cache /data
# one Node process for the proxy and the uploader (UPLOADER_IN_PROXY): this image is for one small machine
ENV NODE_ENV=production DATA_DIR=/data UPLOADER_IN_PROXY=true LD_PRELOAD=/usr/local/lib/libjemalloc.so.2
COPY --from=runtime /usr/local/bin/node /usr/local/bin/node
COPY --from=runtime /app /app
WORKDIR /app
USER imgproxy-cache
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["node", "--max-semi-space-size=16", "scripts/service.mjs"]
CMD ["all-in-one"]
