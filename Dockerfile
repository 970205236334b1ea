# Switchboard: one static binary on a small Debian base, run as a non-root
# user. Build: docker build -t switchboard .
# First run:
#   docker run --rm switchboard generate-config --server-name example.org \
#     --data-dir /var/lib/switchboard > switchboard.yaml
#   (edit it: public_ip, ...)
#   docker run -v $PWD/switchboard.yaml:/etc/switchboard/switchboard.yaml:ro \
#     -v switchboard-data:/var/lib/switchboard --network host switchboard
# TURN relays and SFU media need their UDP ports reachable from clients;
# --network host is the simplest way to get that. Publishing ports instead
# (-p) works too, but publish the whole TURN relay range, and keep it small
# (Docker maps each port): e.g. -e SWITCHBOARD_TURN_RELAY_PORTS=50000-50199
# -p 50000-50199:50000-50199/udp.
# Check a deployment from inside: docker exec CONTAINER switchboard doctor

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/switchboard ./cmd/switchboard

FROM debian:bookworm-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 switchboard \
	&& useradd --system --uid 10001 --gid switchboard --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
	&& mkdir -p /var/lib/switchboard /etc/switchboard \
	&& chown switchboard:switchboard /var/lib/switchboard
COPY --from=build /out/switchboard /usr/local/bin/switchboard

USER switchboard:switchboard
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
# serve, health and doctor all read this file.
ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.yaml

# Client API, federation. (Metrics listen on 127.0.0.1:9090 by default,
# not reachable from outside the container: not exposed.)
EXPOSE 8008/tcp 8448/tcp
# TURN (UDP+TCP), TURN over TLS.
EXPOSE 3478/udp 3478/tcp 5349/tcp
# TURN relay sockets: turn.relay_port_min-relay_port_max (default
# 49152-65535; --turn-relay-ports / SWITCHBOARD_TURN_RELAY_PORTS).
EXPOSE 49152-65535/udp
# SFU media: ICE UDP mux and ICE-TCP.
EXPOSE 7882/udp 7881/tcp

# `switchboard health` asks the client listener for /health (no curl in
# the image); it finds the listener as serve does, from SWITCHBOARD_CONFIG.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
	CMD ["/usr/local/bin/switchboard", "health"]

ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.yaml"]
