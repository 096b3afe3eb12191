# EchoServer container.
#   docker build -t echoserver:0.1.0 .
#   docker run --read-only -p 8080:8080 -p 9000:9000 echoserver:0.1.0
# TLS is on by default: a self-signed certificate generated in memory at start, unless
# ECHO_TLS_CERT/ECHO_TLS_KEY point at mounted files. Nothing is written to the filesystem (the
# image runs with a read-only root; only a Unix socket, when asked for, needs a writable mount).

# --- build: compile TypeScript, then keep only the runtime dependencies ---
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY src ./src
# `npm ci` runs the `prepare` script, which compiles src/ into dist/.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

# --- runtime: Node and the compiled server, nothing else ---
FROM node:20.20.2-bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="echoserver" \
      org.opencontainers.image.description="Real-time echo and messaging component: WebSocket, TCP framing v1, Unix sockets" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/echoserver/echoserver" \
      org.opencontainers.image.documentation="https://github.com/echoserver/echoserver/blob/main/docs/DEPLOYMENT.md"
# HOME points at /tmp: with a numeric user there is no home directory, and /tmp is the one
# place a read-only deployment mounts writable (an emptyDir in the Helm chart).
ENV NODE_ENV=production HOME=/tmp
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# Numeric user and group: the kubelet can only verify runAsNonRoot for a numeric user.
USER 10001:10001
EXPOSE 8080 9000 9090
# One echo round trip against this container's own WebSocket listener (or TCP, or Unix socket:
# `probe self` reads the same ECHO_* settings as the server). The certificate is not verified:
# it is our own, and names the service, not 127.0.0.1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["node", "dist/cli.js", "probe", "self"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--log-format", "json"]
