# Switchboard: one static binary on a small Debian base, run as a non-root
# user. Build: docker build -t switchboard .
# First run:
#   docker run --rm switchboard generate-config --server-name example.org \
#     --data-dir /var/lib/switchboard > switchboard.yaml
#   (edit it: metrics.listen ":9090" to scrape from outside, public_ip, ...)
#   docker run -v $PWD/switchboard.yaml:/etc/switchboard/switchboard.yaml:ro \
#     -v switchboard-data:/var/lib/switchboard --network host switchboard
# TURN relays and SFU media need their UDP ports reachable; --network host is
# the simplest way to get that.

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

# Client API, federation, metrics.
EXPOSE 8008/tcp 8448/tcp 9090/tcp
# TURN (UDP+TCP), TURN over TLS.
EXPOSE 3478/udp 3478/tcp 5349/tcp
# SFU media: ICE UDP mux and ICE-TCP.
EXPOSE 7882/udp 7881/tcp

ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.yaml"]
