# EchoServer container: `docker build -t echoserver . && docker run -p 8080:8080 -p 9000:9000 echoserver`
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY src ./src
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
USER node
EXPOSE 8080 9000 9090
# TLS is on by default (self-signed unless ECHO_TLS_CERT/ECHO_TLS_KEY point at mounted files).
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["serve", "--log-format", "json"]
