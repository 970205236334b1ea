#!/usr/bin/env bash
# Prepares what Switchboard's test suite needs on a fresh Debian machine.
#
#   scripts/test-deps.sh
#
# 1. Programs: PostgreSQL, redis-server, coturn (turnserver, turnutils_*)
#    and Chromium (plus Node/npm when tests/js exists). As root, missing ones
#    are installed with apt-get; otherwise the script fails naming them.
# 2. PostgreSQL, when SWITCHBOARD_TEST_POSTGRES is requested:
#      SWITCHBOARD_TEST_POSTGRES=auto   start the local cluster (no systemd
#                                       needed), create the role
#                                       "switchboard" (LOGIN CREATEDB) and
#                                       the database "switchboard_test"
#      SWITCHBOARD_TEST_POSTGRES=postgres://...  use that server as it is
#    The URL to pass to the tests as SWITCHBOARD_TEST_POSTGRES is printed on
#    standard output, and nothing else is; all messages go to standard
#    error. Nothing is printed when PostgreSQL was not requested.
#
# Running it twice is harmless.
set -euo pipefail

say() { echo "test-deps: $*" >&2; }
die() { say "$*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want_pg="${SWITCHBOARD_TEST_POSTGRES:-}"

# Newest installed PostgreSQL major version, e.g. 15 (none: empty).
pg_version() {
	local d
	d="$(ls -1 /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
	if [[ -n "$d" && -x "/usr/lib/postgresql/$d/bin/postgres" ]]; then
		echo "$d"
	fi
}

# --- 1. programs ---------------------------------------------------------
missing=()
[[ -n "$(pg_version)" ]] && have pg_ctlcluster || missing+=(postgresql)
have redis-server || missing+=(redis-server)
have turnutils_uclient && have turnserver || missing+=(coturn)
have chromium || missing+=(chromium)
if [[ -f "$repo_root/tests/js/package.json" ]]; then
	have node || missing+=(nodejs)
	have npm || missing+=(npm)
fi

if ((${#missing[@]} > 0)); then
	if [[ "$(id -u)" -ne 0 ]]; then
		die "missing: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}"
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# --- 2. PostgreSQL ---------------------------------------------------------
if [[ -z "$want_pg" ]]; then
	exit 0
fi
if [[ "$want_pg" == postgres://* || "$want_pg" == postgresql://* ]]; then
	echo "$want_pg"
	exit 0
fi
case "$want_pg" in
auto | 1 | true | yes) ;;
*) die "SWITCHBOARD_TEST_POSTGRES must be auto or a postgres:// URL, got '$want_pg'" ;;
esac
if [[ "$(id -u)" -ne 0 ]]; then
	die "SWITCHBOARD_TEST_POSTGRES=auto starts the local cluster and needs root; as another user, set SWITCHBOARD_TEST_POSTGRES to a postgres:// URL of a role with CREATEDB"
fi

ver="$(pg_version)"
[[ -n "$ver" ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
cluster=main
# pg_lsclusters -h: "15 main 5432 online postgres /var/lib/... /var/log/..."
line="$(pg_lsclusters -h 2>/dev/null | awk -v v="$ver" -v c="$cluster" '$1 == v && $2 == c' || true)"
if [[ -z "$line" ]]; then
	say "creating PostgreSQL $ver cluster '$cluster'"
	pg_createcluster "$ver" "$cluster" >&2
	line="$(pg_lsclusters -h | awk -v v="$ver" -v c="$cluster" '$1 == v && $2 == c')"
fi
port="$(awk '{print $3}' <<<"$line")"
status="$(awk '{print $4}' <<<"$line")"
if [[ "$status" != online* ]]; then
	say "starting PostgreSQL $ver/$cluster on port $port"
	pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" start >&2
fi

deadline=$((SECONDS + 60))
until pg_isready -q -h 127.0.0.1 -p "$port"; do
	((SECONDS < deadline)) || die "PostgreSQL $ver/$cluster did not accept connections on 127.0.0.1:$port within 60 s (see /var/log/postgresql/postgresql-$ver-$cluster.log)"
	sleep 0.2
done

role=switchboard
password=switchboard-test
db=switchboard_test
psql_admin() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" "$@"; }

psql_admin -d postgres >&2 <<SQL
DO \$\$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
		CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
	ELSE
		ALTER ROLE $role LOGIN CREATEDB PASSWORD '$password';
	END IF;
END
\$\$;
SQL
if [[ "$(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
	psql_admin -d postgres -c "CREATE DATABASE $db OWNER $role" >&2
fi

url="postgres://$role:$password@127.0.0.1:$port/$db?sslmode=disable"
# Check the URL itself works over TCP with the password.
PGPASSWORD="$password" psql -X -q -h 127.0.0.1 -p "$port" -U "$role" -d "$db" -c 'SELECT 1' >/dev/null ||
	die "cannot connect as $role over TCP to 127.0.0.1:$port"
say "PostgreSQL ready: postgres://$role:***@127.0.0.1:$port/$db"
echo "$url"
