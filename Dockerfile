# syntax=docker/dockerfile:1
# One image per binary (DESIGN §7), all from this file:
#   docker build --build-arg SERVICE=api -t flash-sale/api .
# SERVICE: a binary of shared/services.ts (api, relay, expirer, projector-<store> for each read model of
#          shared/read-models.ts, notifier), or migrate
# compose.yaml builds each of them.

ARG BUN_VERSION=1.4.5

# ---- build: bun build --compile → one self-contained executable (Lua scripts embedded as text imports)
FROM oven/bun:${BUN_VERSION} AS build
WORKDIR /src
COPY package.json bun.lock bunfig.toml tsconfig.json ./
# kafkajs is patched (package.json patchedDependencies; docs/relay.md): bun install applies patches/.
COPY patches ./patches
RUN bun install --frozen-lockfile --production --ignore-scripts
COPY shared ./shared
COPY services ./services
COPY scripts ./scripts
ARG SERVICE
RUN set -eu; \
    case "${SERVICE:?pass --build-arg SERVICE=<name>}" in \
      migrate) entry=scripts/migrate.ts ;; \
      *) entry="services/${SERVICE}/main.ts" ;; \
    esac; \
    flags=""; \
    # The api's server takes headers up to 64 KiB so the app answers oversized ones (scripts/build.ts RUNTIME_FLAGS).
    if [ "$SERVICE" = api ]; then flags="--compile-exec-argv=--max-http-header-size=65536"; fi; \
    test -f "$entry" || { echo "no $entry" >&2; exit 1; }; \
    mkdir -p /out; \
    bun build --compile --minify-syntax $flags "$entry" --outfile /out/service

# ---- runtime: glibc and nothing else of note; the binary carries Bun.
FROM debian:bookworm-slim AS runtime
WORKDIR /app
COPY --from=build /out/service /app/service
# Only the migrate image reads them; small enough to ship everywhere.
COPY migrations /app/migrations
ENV NODE_ENV=production \
    MIGRATIONS_DIR=/app/migrations
# Unprivileged; no home, no shell needed.
USER 10001:10001
# Health checks run the same binary as a plain Bun: BUN_BE_BUN=1 /app/service -e '<fetch /healthz>'
# (see compose.yaml), so the image needs no curl.
ENTRYPOINT ["/app/service"]
