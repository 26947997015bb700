# regops as a container image: `docker build -t regops .`, then `docker run --rm regops sweep blobs --help`.
# Build stage: every dependency (TypeScript), dist/ built, and the package packed as npm would publish it.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
COPY migrations ./migrations
RUN npm run build \
 && npm pack --ignore-scripts --pack-destination /tmp \
 && mkdir /package \
 && tar -xzf /tmp/regops-*.tgz -C /package --strip-components=1 \
 && cp package-lock.json /package/

# Runtime stage: the packed package with its production dependencies only: no TypeScript, and no
# embedded-postgres (quickstart's PostgreSQL binaries; regops here talks to a real server).
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /opt/regops
COPY --from=build /package/ ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && ln -s /opt/regops/bin/run.js /usr/local/bin/regops
# the image's own non-root user (uid 1000)
USER node
ENTRYPOINT ["regops"]
CMD ["--help"]
