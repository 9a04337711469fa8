#!/bin/bash
# The checks of the euraflow end-to-end test, run INSIDE the booted container (by
# packaging/e2e/run, through nsenter) as root, against the container's own systemd.
#
#   inside.sh install DEB   apt install, units, socket activation, TLS, journal, credentials,
#                           certificate reload under load, restart under load, upgrade, nginx sites
#   inside.sh purge DEB     apt purge: nothing left behind, the database kept
#
# One "ok N - ..." or "not ok N - ..." line per check, "# ..." for figures and diagnostics, and
# "# phase end" when the phase ran to its end.
# SC2016: awk programs and dpkg-query formats are single-quoted on purpose.
# SC1091: /etc/os-release is the container's, read at run time.
# shellcheck disable=SC2016,SC1091
set -uo pipefail # no -e: a failing check is counted and the next one runs

PHASE=${1:?usage: inside.sh install|purge DEB}
DEB=${2:?usage: inside.sh install|purge DEB}
export DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER='' SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
HOST=$(hostname)
TLS_DIR=/etc/euraflow/tls
ENV_FILE=/etc/euraflow/euraflow.env
SECRET=/etc/euraflow/credentials/secret_key
DATA_KEY=/etc/euraflow/credentials/data_key
SELFSIGNED=/var/lib/euraflow/tls/selfsigned.crt
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

n=0 pass=0 fail=0
ok() {
	n=$((n + 1)) pass=$((pass + 1))
	echo "ok $n - $*"
}
not_ok() {
	n=$((n + 1)) fail=$((fail + 1))
	echo "not ok $n - $*"
}
diag() { printf '#   %s\n' "$@"; }
check() { # check DESCRIPTION command...: passes when the command exits 0
	local d=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$d"; else
		not_ok "$d"
		diag "$(head -n 20 <<<"$out")"
	fi
}
is() { # is DESCRIPTION EXPECTED command...: passes when the output equals EXPECTED
	local d=$1 want=$2 got
	shift 2
	got=$("$@" 2>&1)
	if [ "$got" = "$want" ]; then ok "$d"; else not_ok "$d (expected '$want', got '$(head -c 300 <<<"$got")')"; fi
}
has() { # has DESCRIPTION NEEDLE command...: passes when the output contains NEEDLE
	local d=$1 needle=$2 got
	shift 2
	got=$("$@" 2>&1)
	if grep -qF -- "$needle" <<<"$got"; then ok "$d"; else
		not_ok "$d (no '$needle' in the output)"
		diag "$(head -n 20 <<<"$got")"
	fi
}
hasi() { # hasi DESCRIPTION NEEDLE command...: like has, ignoring case (HTTP header names)
	local d=$1 needle=$2 got
	shift 2
	got=$("$@" 2>&1)
	if grep -qiF -- "$needle" <<<"$got"; then ok "$d"; else
		not_ok "$d (no '$needle' in the output)"
		diag "$(head -n 20 <<<"$got")"
	fi
}
absent() { # absent DESCRIPTION PATH...: passes when none of the paths exists
	local d=$1 p found=()
	shift
	for p in "$@"; do [ -e "$p" ] || [ -L "$p" ] && found+=("$p"); done
	if [ "${#found[@]}" = 0 ]; then ok "$d"; else not_ok "$d (still there: ${found[*]})"; fi
}
section() { echo "# ---- $*"; }
mode_of() { stat -c '%a %U:%G' "$1" 2>&1; }
main_pid() { systemctl show -p MainPID --value euraflow.service; }
https() { # https PATH [curl args]: through the name in the certificate, verified against $CA
	local path=$1
	shift
	curl -sS --max-time 10 --resolve "$HOST:443:127.0.0.1" "$@" "https://$HOST$path"
}
status_code() { curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "$@" 2>&1; }

# A request loop in the background: one new connection (and TLS handshake) per request, until
# $SCRATCH/stop-<name> exists, bounded in count and time. Writes "<curl exit> <http code>" lines.
loop_start() { # loop_start NAME URL [curl args]
	local name=$1 url=$2
	shift 2
	rm -f "$SCRATCH/stop-$name" "$SCRATCH/loop-$name"
	(
		i=0
		end=$((SECONDS + 60))
		while [ ! -e "$SCRATCH/stop-$name" ] && [ "$i" -lt 5000 ] && [ "$SECONDS" -lt "$end" ]; do
			code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$@" "$url")
			echo "$? $code" >>"$SCRATCH/loop-$name"
			i=$((i + 1))
		done
	) &
	echo $! >"$SCRATCH/pid-$name"
}
# The same with keep-alive: each curl sends 20 requests on one connection (as browsers, the CDN
# and API clients do), one line per request. Lost requests show as HTTP code 000.
loop_start_keepalive() { # loop_start_keepalive NAME URL [curl args]
	local name=$1 url=$2
	shift 2
	rm -f "$SCRATCH/stop-$name" "$SCRATCH/loop-$name"
	(
		i=0
		end=$((SECONDS + 60))
		urls=()
		for _ in $(seq 1 20); do urls+=("$url" -o /dev/null); done
		while [ ! -e "$SCRATCH/stop-$name" ] && [ "$i" -lt 250 ] && [ "$SECONDS" -lt "$end" ]; do
			curl -s --max-time 10 -w '%{exitcode} %{http_code}\n' "$@" "${urls[@]}" >>"$SCRATCH/loop-$name"
			i=$((i + 1))
		done
	) &
	echo $! >"$SCRATCH/pid-$name"
}
# wrk's keep-alive clients (20 connections on one thread) until wrk_stop; --timeout well above a
# restart, so a request waiting in the listen backlog for the next process is not counted lost.
# wrk reconnects after a response with "Connection: close" without counting an error, and counts
# a connection closed under an unanswered request as a read error.
wrk_start() { # wrk_start NAME URL
	local name=$1 url=$2
	rm -f "$SCRATCH/wrk-$name.out"
	wrk -t1 -c20 -d300s --timeout 10s "$url" >"$SCRATCH/wrk-$name.out" 2>&1 &
	echo $! >"$SCRATCH/wrk-pid-$name"
}
wrk_stop() { # wrk_stop NAME: stop wrk (on SIGINT it prints its summary); print "<requests> <failed>"
	local name=$1 pid
	pid=$(cat "$SCRATCH/wrk-pid-$name")
	kill -INT "$pid" 2>/dev/null
	# Called in $(...), a subshell, which cannot wait for the shell's own child: wait for the
	# summary's last line instead.
	local _
	for _ in $(seq 1 100); do
		grep -q '^Transfer/sec' "$SCRATCH/wrk-$name.out" 2>/dev/null && break
		sleep 0.1
	done
	grep -E 'requests in|errors|Non-2xx' "$SCRATCH/wrk-$name.out" | sed "s/^ */#   wrk $name: /" >&2
	awk '/ requests in / { r = $1 }
		/Socket errors:/ { gsub(",", ""); e += $4 + $6 + $8 + $10 }
		/Non-2xx or 3xx responses:/ { e += $NF }
		END { printf "%d %d\n", r, e + 0 }' "$SCRATCH/wrk-$name.out"
}
# Keep-alive load of three kinds at once, as browsers, the CDN and API clients make it: curl
# sending 20 requests per connection over HTTP/1.1 and over HTTP/2 (where the stop is a GOAWAY),
# and wrk's 20 busy connections.
keepalive_start() { # keepalive_start TAG
	local tag=$1
	loop_start_keepalive "$tag-h1" "https://$HOST/healthz" -k --http1.1 --resolve "$HOST:443:127.0.0.1"
	loop_start_keepalive "$tag-h2" "https://$HOST/healthz" -k --http2 --resolve "$HOST:443:127.0.0.1"
	wrk_start "$tag" "https://127.0.0.1/healthz"
	wait_requests "$tag-h1" 20 || diag "the HTTP/1.1 keep-alive loop is slow"
	wait_requests "$tag-h2" 20 || diag "the HTTP/2 keep-alive loop is slow"
}
keepalive_wait() { # keepalive_wait TAG: until both curl loops made 20 more requests
	local tag=$1 h1 h2
	h1=$(wc -l <"$SCRATCH/loop-$tag-h1")
	h2=$(wc -l <"$SCRATCH/loop-$tag-h2")
	wait_requests "$tag-h1" $((h1 + 20)) || diag "the HTTP/1.1 keep-alive loop is slow"
	wait_requests "$tag-h2" $((h2 + 20)) || diag "the HTTP/2 keep-alive loop is slow"
}
keepalive_stop() { # keepalive_stop TAG WHAT: stop the load; one check: 0 failed requests
	local tag=$1 what=$2 t1 f1 t2 f2 tw fw
	read -r t1 f1 _ <<<"$(loop_stop "$tag-h1")"
	read -r t2 f2 _ <<<"$(loop_stop "$tag-h2")"
	read -r tw fw <<<"$(wrk_stop "$tag")"
	diag "keep-alive clients across $what: curl HTTP/1.1 $t1 requests, $f1 failed; curl HTTP/2 $t2 requests, $f2 failed; wrk (20 connections) $tw requests, $fw failed"
	if [ "$f1" = 0 ] && [ "$f2" = 0 ] && [ "$fw" = 0 ] && [ "$t1" -ge 40 ] && [ "$t2" -ge 40 ] && [ "$tw" -ge 100 ]; then
		ok "zero failed requests of keep-alive clients (HTTP/1.1, HTTP/2, wrk) across $what ($((t1 + t2 + tw)) requests)"
	else
		not_ok "zero failed requests of keep-alive clients across $what (HTTP/1.1 $f1 of $t1, HTTP/2 $f2 of $t2, wrk $fw of $tw failed)"
	fi
}
loop_stop() { # loop_stop NAME: stop and print "<requests> <failed> <refused>"
	local name=$1
	touch "$SCRATCH/stop-$name"
	wait "$(cat "$SCRATCH/pid-$name")" 2>/dev/null
	# what the failures were: "<curl exit> <http code>" and how often (curl 7: refused, 52: empty
	# reply, 56: connection reset, 35: TLS handshake failed, 28: timeout)
	awk '$1 != 0 || $2 != 200 { k[$1 " " $2]++ } END { for (x in k) printf "#   %s failures: %d x curl exit/HTTP code %s\n", name, k[x], x }' \
		name="$name" "$SCRATCH/loop-$name" >&2
	# curl exit 7: could not connect (connection refused)
	awk '{ n++; if ($1 != 0 || $2 != 200) f++; if ($1 == 7) r++ } END { printf "%d %d %d\n", n, f + 0, r + 0 }' \
		"$SCRATCH/loop-$name"
}
wait_requests() { # wait_requests NAME N: until the loop has made N requests (at most 20 s)
	local i
	for i in $(seq 1 200); do
		[ -e "$SCRATCH/loop-$1" ] && [ "$(wc -l <"$SCRATCH/loop-$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

new_pair() { # new_pair DIR: a self-signed certificate for $HOST, localhost and 127.0.0.1
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
		-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST,DNS:localhost,IP:127.0.0.1" \
		-keyout "$1/privkey.pem" -out "$1/fullchain.pem" >/dev/null 2>&1
}
fingerprint() { openssl x509 -noout -fingerprint -sha256 -in "$1" | cut -d= -f2; }
served_fingerprint() {
	openssl s_client -connect 127.0.0.1:443 -servername "$HOST" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 | cut -d= -f2
}

echo "# $(systemctl --version | head -n 1); $(. /etc/os-release && echo "$PRETTY_NAME"); host name $HOST"
is "PID 1 is systemd" systemd cat /proc/1/comm

# ==================================================================================== install
phase_install() {
	section "the machine before the install"
	has "system is running" running systemctl is-system-running
	is "postgresql is active" active systemctl is-active postgresql.service
	is "redis-server is active" active systemctl is-active redis-server.service

	section "apt install ./$(basename "$DEB")"
	local out
	out=$(cd "$(dirname "$DEB")" && apt-get install -y "./$(basename "$DEB")" 2>&1)
	local rc=$?
	echo "$out" >"$SCRATCH/install.log"
	if [ "$rc" = 0 ]; then ok "apt-get install ./$(basename "$DEB")"; else
		not_ok "apt-get install ./$(basename "$DEB") (exit $rc)"
		diag "$(tail -n 30 <<<"$out")"
	fi
	sed -n 's/^\(euraflow: .*\)/#   \1/p' <<<"$out"
	is "package installed" "install ok installed" dpkg-query -W -f='${Status}' euraflow
	has "postinst printed the next steps" "euraflow: ready." cat "$SCRATCH/install.log"
	has "postinst created the PostgreSQL role" "created role euraflow" cat "$SCRATCH/install.log"
	has "postinst created the PostgreSQL database" "created database euraflow" cat "$SCRATCH/install.log"

	section "user, files and secret"
	is "system user euraflow, no login shell" /usr/sbin/nologin bash -c "getent passwd euraflow | cut -d: -f7"
	local uid
	uid=$(id -u euraflow 2>/dev/null || echo 99999)
	if [ "$uid" -lt 1000 ]; then ok "euraflow is a system uid ($uid)"; else not_ok "euraflow is a system uid ($uid)"; fi
	is "env file 0640 root:euraflow" "640 root:euraflow" mode_of "$ENV_FILE"
	check "env file is the short one: equals 'euraflow config template --short'" \
		cmp "$ENV_FILE" <(euraflow config template --short)
	check "the full reference is installed: equals 'euraflow config template'" \
		cmp /usr/share/doc/euraflow/euraflow.env.reference <(euraflow config template)
	is "euraflow.env is not a conffile (upgrades never prompt)" "" \
		bash -c "dpkg-query -W -f='\${Conffiles}\n' euraflow | grep -F /etc/euraflow/"
	is "credentials dir 0750 root:euraflow" "750 root:euraflow" mode_of /etc/euraflow/credentials
	is "secret key 0640 root:euraflow" "640 root:euraflow" mode_of "$SECRET"
	local len
	len=$(tr -d '\n' <"$SECRET" | wc -c)
	if [ "$len" -ge 64 ]; then ok "secret key has $len characters (>= 64)"; else not_ok "secret key has $len characters"; fi
	if grep -qF -- "$(cat "$SECRET")" "$SCRATCH/install.log"; then not_ok "the secret is not printed by the install"; else
		ok "the secret is not printed by the install"
	fi
	sha256sum "$SECRET" >"$SCRATCH/secret.sha"
	is "data key 0640 root:euraflow" "640 root:euraflow" mode_of "$DATA_KEY"
	if grep -qF -- "$(cat "$DATA_KEY")" "$SCRATCH/install.log"; then not_ok "the data key is not printed by the install"; else
		ok "the data key is not printed by the install"
	fi
	sha256sum "$DATA_KEY" >"$SCRATCH/data_key.sha"
	is "state dir 0751 euraflow:euraflow" "751 euraflow:euraflow" mode_of /var/lib/euraflow
	is "web root 0755 root:root" "755 root:root" mode_of /var/lib/euraflow/web
	is "downloads 0755 root:root" "755 root:root" mode_of /var/lib/euraflow/downloads
	is "certbot deploy hook installed" "755 root:root" mode_of /etc/letsencrypt/renewal-hooks/deploy/euraflow

	section "PostgreSQL role and database (peer authentication)"
	is "role euraflow can log in" t bash -c "cd / && runuser -u postgres -- psql -XAtc \"select rolcanlogin from pg_roles where rolname = 'euraflow'\""
	is "database euraflow owned by euraflow, UTF8" "euraflow UTF8" bash -c "cd / && runuser -u postgres -- psql -XAtF' ' -c \"select pg_get_userbyid(datdba), pg_encoding_to_char(encoding) from pg_database where datname = 'euraflow'\""
	is "the euraflow user connects by peer authentication" euraflow bash -c "cd / && runuser -u euraflow -- psql -XAt -d euraflow -c 'select current_user'"

	section "manual pages, completions, operator guides"
	has "euraflow(8) installed" ".TH euraflow 8" bash -c "zcat /usr/share/man/man8/euraflow.8.gz"
	has "euraflow-user-create(8) installed" "user create" bash -c "zcat /usr/share/man/man8/euraflow-user-create.8.gz"
	if command -v man >/dev/null; then
		has "man euraflow renders" "EXIT STATUS" bash -c "MANPAGER=cat man euraflow"
	fi
	has "bash completion for euraflow" "complete -F _euraflow" cat /usr/share/bash-completion/completions/euraflow
	check "zsh completion for euraflow" test -s /usr/share/zsh/vendor-completions/_euraflow
	has "operations guide (English)" "Troubleshooting by symptom" cat /usr/share/doc/euraflow/operations.md
	has "operations guide (Chinese)" "故障排查" cat /usr/share/doc/euraflow/operations.zh-CN.md
	check "alert rules shipped" test -s /usr/share/doc/euraflow/examples/prometheus/euraflow-alerts.yml

	section "units"
	local units=(euraflow.socket euraflow-http.socket euraflow.service euraflow-worker.service
		euraflow-backup.service euraflow-backup.timer)
	check "systemd-analyze verify: clean" bash -c "out=\$(cd /lib/systemd/system && systemd-analyze verify ${units[*]} 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
	local unit exposure
	for unit in euraflow.service euraflow-worker.service euraflow-backup.service; do
		exposure=$(systemd-analyze security --no-pager "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
		if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e <= 1.5) }'; then
			ok "systemd-analyze security $unit (booted systemd 252): exposure $exposure <= 1.5"
		else
			not_ok "systemd-analyze security $unit: exposure '$exposure' (limit 1.5)"
		fi
	done
	is "euraflow.socket enabled" enabled systemctl is-enabled euraflow.socket
	is "euraflow-http.socket enabled" enabled systemctl is-enabled euraflow-http.socket
	is "euraflow.socket active" active systemctl is-active euraflow.socket
	is "euraflow-http.socket active" active systemctl is-active euraflow-http.socket
	is "euraflow.service not started before the first request" inactive systemctl is-active euraflow.service
	is "euraflow-worker.service enabled" enabled systemctl is-enabled euraflow-worker.service
	is "euraflow-worker.service active" active systemctl is-active euraflow-worker.service
	is "euraflow-backup.timer enabled" enabled systemctl is-enabled euraflow-backup.timer
	is "euraflow-backup.timer active" active systemctl is-active euraflow-backup.timer
	has "PID 1 holds port 443" 'pid=1,' ss -Hltnp 'sport = :443'
	has "PID 1 holds 127.0.0.1:8000" 'pid=1,' ss -Hltnp 'src 127.0.0.1 and sport = :8000'

	section "socket activation: the first request starts the server"
	is "first HTTPS request: GET /healthz 200 (it activates the service)" 200 status_code -k https://localhost/healthz
	is "euraflow.service active after the first request" active systemctl is-active euraflow.service
	check "the server generated its self-signed certificate" test -s "$SELFSIGNED"
	is "HTTPS verified with the generated certificate, by host name" 200 \
		status_code --cacert "$SELFSIGNED" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"
	is "HTTPS verified with the generated certificate, at 127.0.0.1" 200 \
		status_code --cacert "$SELFSIGNED" https://127.0.0.1/healthz
	is "plain HTTP GET http://127.0.0.1:8000/healthz 200" 200 status_code http://127.0.0.1:8000/healthz
	has "HTTP/2 over TLS (ALPN)" "HTTP/2 200" https /healthz --cacert "$SELFSIGNED" --http2 -sI
	has "systemctl status: active (running)" "Active: active (running)" systemctl status --no-pager --lines=0 euraflow.service
	has "systemctl status: a Status: line" 'Status: "serving' systemctl status --no-pager --lines=0 euraflow.service
	has "StatusText=serving ... (READY=1 + STATUS= from the server)" "StatusText=serving https" systemctl show -p StatusText euraflow.service
	local pid
	pid=$(main_pid)
	is "server runs as euraflow" euraflow ps -o user= -p "$pid"
	is "server has no capability (CapEff 0)" 0000000000000000 awk '/^CapEff:/ { print $2 }' "/proc/$pid/status"
	is "server has no capability (CapBnd 0)" 0000000000000000 awk '/^CapBnd:/ { print $2 }' "/proc/$pid/status"
	is "NoNewPrivs set" 1 awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status"
	is "seccomp filter on" 2 awk '/^Seccomp:/ { print $2 }' "/proc/$pid/status"
	diag "open-files limit of the server: $(awk '/Max open files/ { print $4 " soft, " $5 " hard" }' "/proc/$pid/limits")"
	is "watchdog armed (WatchdogUSec)" 30s systemctl show -p WatchdogUSec --value euraflow.service

	section "journal"
	has "journalctl -u euraflow -p info: startup line" "listening" journalctl -u euraflow -p info --no-pager -o cat
	local json=$SCRATCH/journal.json
	journalctl -u euraflow -o json --no-pager >"$json"
	is "'listening' is PRIORITY=6 (info), SYSLOG_IDENTIFIER=euraflow" "6 euraflow" \
		jq -r 'select(.MESSAGE == "listening") | "\(.PRIORITY) \(.SYSLOG_IDENTIFIER)"' "$json"
	is "self-signed certificate warning is PRIORITY=4 (warning)" 4 \
		bash -c "jq -r 'select((.MESSAGE // \"\" | tostring) | startswith(\"serving a self-signed certificate\")) | .PRIORITY' '$json' | sort -u"
	is "access log events carry REQUEST_ID, HTTP_STATUS=200, LATENCY_MS" yes \
		bash -c "jq -r 'select(.HTTP_STATUS == \"200\" and .REQUEST_ID != null and .LATENCY_MS != null and .SYSLOG_IDENTIFIER == \"euraflow\") | \"yes\"' '$json' | sort -u"
	has "journalctl can filter the access log: HTTP_STATUS=200" "/healthz" journalctl -u euraflow HTTP_STATUS=200 --no-pager -o cat
	if grep -qF -- "$(cat "$SECRET")" "$json"; then not_ok "the secret is not in the journal"; else ok "the secret is not in the journal"; fi
	has "ExecStartPre 'euraflow config check' ran and passed" "configuration OK" journalctl -u euraflow --no-pager -o cat

	section "optional credentials (generator): db_password"
	install -m 0640 -o root -g euraflow /dev/null /etc/euraflow/credentials/db_password
	echo "e2e-not-a-real-password" >/etc/euraflow/credentials/db_password
	systemctl daemon-reload
	has "db_password present: the generator adds LoadCredential=db_password" \
		"LoadCredential=db_password:/etc/euraflow/credentials/db_password" systemctl cat euraflow.service
	check "restart with the credential" systemctl restart euraflow.service
	check "the server received it (/run/credentials/euraflow.service/db_password)" \
		test -s /run/credentials/euraflow.service/db_password
	rm -f /etc/euraflow/credentials/db_password
	systemctl daemon-reload
	if systemctl cat euraflow.service | grep -q '^LoadCredential=db_password'; then
		not_ok "db_password removed: LoadCredential= gone"
	else ok "db_password removed: LoadCredential= gone"; fi
	check "restart without it: the unit does not fail" systemctl restart euraflow.service
	is "still serving" 200 status_code http://127.0.0.1:8000/healthz

	section "Let's Encrypt deploy hook + reload with a new certificate under load"
	local live=/etc/letsencrypt/live/$HOST
	new_pair "$SCRATCH/a"
	new_pair "$SCRATCH/b"
	new_pair "$SCRATCH/other"
	mkdir -p "$live" /etc/letsencrypt/live/other.example
	cp "$SCRATCH/a/"*.pem "$live/"
	cp "$SCRATCH/other/"*.pem /etc/letsencrypt/live/other.example/
	check "deploy hook (as certbot runs it) installs the pair" \
		env RENEWED_LINEAGE="$live" RENEWED_DOMAINS="$HOST" /etc/letsencrypt/renewal-hooks/deploy/euraflow
	is "hook: key 0640 root:euraflow" "640 root:euraflow" mode_of "$TLS_DIR/privkey.pem"
	is "hook: chain 0640 root:euraflow" "640 root:euraflow" mode_of "$TLS_DIR/fullchain.pem"
	is "hook: tls dir 0750 root:euraflow" "750 root:euraflow" mode_of "$TLS_DIR"
	env RENEWED_LINEAGE=/etc/letsencrypt/live/other.example RENEWED_DOMAINS=other.example \
		/etc/letsencrypt/renewal-hooks/deploy/euraflow 2>/dev/null
	is "hook leaves another domain's renewal alone" "$(fingerprint "$SCRATCH/a/fullchain.pem")" fingerprint "$TLS_DIR/fullchain.pem"
	printf '\n# e2e: Let'"'"'s Encrypt pair copied by the certbot deploy hook\nEF__TLS_CERT=%s\nEF__TLS_KEY=%s\n' \
		"$TLS_DIR/fullchain.pem" "$TLS_DIR/privkey.pem" >>"$ENV_FILE"
	check "euraflow config check accepts the pair (as the service user)" \
		runuser -u euraflow -- env CREDENTIALS_DIRECTORY=/etc/euraflow/credentials euraflow config check
	check "systemctl restart euraflow (to take EF__TLS_CERT/KEY)" systemctl restart euraflow.service
	is "certificate A served" 200 status_code --cacert "$SCRATCH/a/fullchain.pem" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"
	pid=$(main_pid)
	loop_start reload "https://$HOST/healthz" -k --resolve "$HOST:443:127.0.0.1"
	keepalive_start ka-reload
	wait_requests reload 20 || diag "the request loop is slow"
	cp "$SCRATCH/b/"*.pem "$live/"
	local t0=$EPOCHREALTIME
	check "deploy hook with renewed certificate B: copies and runs systemctl reload" \
		env RENEWED_LINEAGE="$live" RENEWED_DOMAINS="$HOST" /etc/letsencrypt/renewal-hooks/deploy/euraflow
	local reload_ms
	reload_ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
	local before
	before=$(wc -l <"$SCRATCH/loop-reload")
	wait_requests reload $((before + 20)) || diag "the request loop is slow"
	keepalive_wait ka-reload
	keepalive_stop ka-reload "the certificate reload"
	read -r total failed refused <<<"$(loop_stop reload)"
	diag "reload under load: $total HTTPS requests (new TLS handshake each), $failed failed, $refused refused; hook + reload took ${reload_ms} ms"
	if [ "$total" -ge 40 ] && [ "$failed" = 0 ]; then
		ok "zero failed requests across the reload ($total requests)"
	else not_ok "zero failed requests across the reload ($total requests, $failed failed)"; fi
	is "new certificate B is served" "$(fingerprint "$SCRATCH/b/fullchain.pem")" served_fingerprint
	is "B verifies" 200 status_code --cacert "$SCRATCH/b/fullchain.pem" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"
	is "reload, not restart: same MainPID" "$pid" main_pid
	has "journal: reloaded certificate (info)" "reloaded certificate" journalctl -u euraflow -p info --no-pager -o cat

	section "a bad pair is refused on reload, the old one stays"
	cp "$SCRATCH/a/privkey.pem" "$TLS_DIR/privkey.pem" # key of A with the chain of B: mismatch
	check "systemctl reload euraflow" systemctl reload euraflow.service
	is "still serving certificate B" "$(fingerprint "$SCRATCH/b/fullchain.pem")" served_fingerprint
	is "journal: the refusal is an error (PRIORITY=3)" 3 bash -c "journalctl -u euraflow -o json --no-pager | jq -r 'select((.MESSAGE // \"\" | tostring) | contains(\"refused\")) | .PRIORITY' | sort -u"
	cp "$SCRATCH/b/privkey.pem" "$TLS_DIR/privkey.pem"
	check "systemctl reload with the matching key again" systemctl reload euraflow.service

	section "restart under load: the sockets stay, nothing is refused"
	pid=$(main_pid)
	loop_start r-https "https://$HOST/healthz" -k --resolve "$HOST:443:127.0.0.1"
	loop_start r-http "http://127.0.0.1:8000/healthz"
	keepalive_start ka-restart
	wait_requests r-https 20 || diag "the request loop is slow"
	# This test restarts far more often than an operator would (StartLimitBurst=10 a minute, and
	# the checks above already restarted 4 times): start the count afresh.
	systemctl reset-failed euraflow.service
	local restart_ms=() i
	for i in 1 2 3 4 5; do
		t0=$EPOCHREALTIME
		check "systemctl restart euraflow ($i of 5)" systemctl restart euraflow.service
		restart_ms+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
		before=$(wc -l <"$SCRATCH/loop-r-https")
		wait_requests r-https $((before + 15)) || diag "the request loop is slow"
		keepalive_wait ka-restart
	done
	local th fh rh tp fp rp
	read -r th fh rh <<<"$(loop_stop r-https)"
	read -r tp fp rp <<<"$(loop_stop r-http)"
	diag "restart under load: 5 restarts took ${restart_ms[*]} ms; https: $th requests, $fh failed, $rh refused; http: $tp requests, $fp failed, $rp refused"
	if [ "$rh" = 0 ] && [ "$rp" = 0 ] && [ "$th" -ge 40 ] && [ "$tp" -ge 10 ]; then
		ok "zero refused connections across the restart ($((th + tp)) requests)"
	else not_ok "zero refused connections across the restart (https $rh, http $rp refused)"; fi
	# Requests that reach the old process while it drains are answered (a connection accepted
	# before the stop gets its first request served), so none may fail.
	if [ "$fh" = 0 ] && [ "$fp" = 0 ]; then
		ok "zero failed requests across the restarts"
	else
		not_ok "zero failed requests across the restarts (https $fh of $th, http $fp of $tp failed)"
	fi
	# Keep-alive connections idle or busy at the stop get one more answer, with Connection: close
	# (HTTP/1.1), or a GOAWAY naming the last stream taken (HTTP/2).
	keepalive_stop ka-restart "5 restarts"
	if [ "$(main_pid)" != "$pid" ] && [ "$(main_pid)" != 0 ]; then ok "new MainPID after the restart"; else not_ok "new MainPID after the restart"; fi
	is "no restarts by systemd (NRestarts=0)" 0 systemctl show -p NRestarts --value euraflow.service

	section "upgrade (reinstall): configuration, secret and data kept, server restarted"
	pid=$(main_pid)
	echo "e2e data" >/var/lib/euraflow/web/e2e.txt
	systemctl reset-failed euraflow.service
	keepalive_start ka-upgrade
	out=$(cd "$(dirname "$DEB")" && apt-get install -y --reinstall "./$(basename "$DEB")" 2>&1)
	rc=$?
	keepalive_wait ka-upgrade
	keepalive_stop ka-upgrade "the upgrade"
	if [ "$rc" = 0 ]; then ok "apt-get install --reinstall (upgrade path)"; else
		not_ok "apt-get install --reinstall (exit $rc)"
		diag "$(tail -n 20 <<<"$out")"
	fi
	has "upgrade message" "upgraded from" echo "$out"
	has "database setup is idempotent" "role euraflow exists" echo "$out"
	check "secret key unchanged" sha256sum -c --quiet "$SCRATCH/secret.sha"
	check "data key unchanged" sha256sum -c --quiet "$SCRATCH/data_key.sha"
	has "edited env file kept" "EF__TLS_CERT=$TLS_DIR/fullchain.pem" cat "$ENV_FILE"
	is "env file still 0640 root:euraflow" "640 root:euraflow" mode_of "$ENV_FILE"
	check "data kept" grep -q "e2e data" /var/lib/euraflow/web/e2e.txt
	if [ "$(main_pid)" != "$pid" ] && [ "$(main_pid)" != 0 ]; then ok "running server restarted by the upgrade"; else not_ok "running server restarted by the upgrade"; fi
	is "serving after the upgrade (certificate B)" 200 status_code --cacert "$SCRATCH/b/fullchain.pem" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"
	is "web file served" "e2e data" curl -sS --max-time 10 http://127.0.0.1:8000/e2e.txt

	upgrade_checks

	section "nginx's remaining role (packaging/nginx)"
	nginx_checks

	section "database, first admin, login, health, euraflow check and status"
	checks_after_database_layer

	echo "# ---- systemctl status (for the log)"
	systemctl status --no-pager --lines=5 euraflow.socket euraflow-http.socket euraflow.service 2>&1 | sed 's/^/#   /'
}

# repack DIR VERSION: unpack $DEB into DIR and set its version (dpkg-deb -b builds it again).
repack() {
	rm -rf "$1"
	dpkg-deb -R "$DEB" "$1" &&
		sed -i "s/^Version: .*/Version: $2/" "$1/DEBIAN/control"
}

# Upgrades that must never stop at a dpkg prompt, run the way unattended-upgrades and Ansible do
# (apt-get install -y, no --force-conf* option, no terminal):
# 1. from the earlier layout, where euraflow.env was the whole reference shipped as a conffile,
#    with the operator's edits in it: the edits move into the short file, the old file is kept;
# 2. to a release whose configuration reference changed: the operator's file is not touched.
upgrade_checks() {
	section "upgrade from the conffile layout (the full reference as a conffile, edited)"
	local version old next out rc before
	version=$(dpkg-query -W -f='${Version}' euraflow)
	old=$SCRATCH/old next=$SCRATCH/next
	repack "$old" "$version~conffile1"
	mkdir -p "$old/etc/euraflow"
	{
		echo '# /etc/euraflow/euraflow.env — configuration of the euraflow appliance.'
		echo '# Every setting is shown commented out with its default; uncomment and edit to change it.'
		euraflow config template | tail -n +3
	} >"$old/etc/euraflow/euraflow.env"
	chmod 0640 "$old/etc/euraflow/euraflow.env"
	printf '/etc/euraflow/euraflow.env\n' >>"$old/DEBIAN/conffiles"
	# The old package's scripts did not manage the file.
	sed -i 's/^\tinstall_config || true$/\t: the conffile layout: dpkg owned euraflow.env/' "$old/DEBIAN/postinst"
	dpkg-deb -b "$old" "$SCRATCH/old.deb" >/dev/null
	cp "$ENV_FILE" "$SCRATCH/edits.env"
	# Setting up the old state is not what is tested: its conffile is installed fresh (no file
	# there, so dpkg keeps no .dpkg-old of ours).
	rm -f "$ENV_FILE"
	out=$(apt-get install -y --allow-downgrades -o Dpkg::Options::=--force-confnew "$SCRATCH/old.deb" 2>&1)
	rc=$?
	if [ "$rc" = 0 ]; then ok "installed the conffile-layout package (setup)"; else
		not_ok "installed the conffile-layout package (setup; exit $rc)"
		diag "$(tail -n 20 <<<"$out")"
	fi
	# The operator's edits, as they made them then: the TLS pair of the sections above.
	grep -E '^EF__' "$SCRATCH/edits.env" >>"$ENV_FILE"
	before=$(grep -cE '^EF__' "$ENV_FILE")
	out=$(cd "$(dirname "$DEB")" && apt-get install -y "./$(basename "$DEB")" </dev/null 2>&1)
	rc=$?
	if [ "$rc" = 0 ]; then ok "apt-get install -y over the edited conffile: exit 0, no prompt"; else
		not_ok "apt-get install -y over the edited conffile (exit $rc)"
		diag "$(tail -n 20 <<<"$out")"
	fi
	sed -n 's/^\(euraflow: .*euraflow.env.*\)/#   \1/p' <<<"$out"
	has "the file starts as the short one" "$(euraflow config template --short | head -n 1)" head -n 1 "$ENV_FILE"
	is "every setting of the operator kept" "$before" grep -cE '^EF__' "$ENV_FILE"
	has "the TLS pair kept" "EF__TLS_CERT=$TLS_DIR/fullchain.pem" cat "$ENV_FILE"
	check "the old file kept beside it, and named in the file" \
		grep -qF /etc/euraflow/euraflow.env.full-template.bak "$ENV_FILE"
	check "the old file is the edited old one" grep -qF "EF__TLS_KEY=$TLS_DIR/privkey.pem" /etc/euraflow/euraflow.env.full-template.bak
	is "env file 0640 root:euraflow" "640 root:euraflow" mode_of "$ENV_FILE"
	is "no .dpkg-* files in /etc/euraflow" "" find /etc/euraflow -name '*.dpkg-*'
	check "config check accepts the migrated file" \
		runuser -u euraflow -- env CREDENTIALS_DIRECTORY=/etc/euraflow/credentials euraflow config check
	is "serving after the migration (certificate B)" 200 status_code --cacert "$SCRATCH/b/fullchain.pem" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"

	section "upgrade to a release whose configuration reference changed"
	repack "$next" "$version+next1"
	printf '\n# e2e: a key documented by the next release\n#EF__E2E_NEXT_KEY=1\n' >>"$next/usr/share/doc/euraflow/euraflow.env.reference"
	dpkg-deb -b "$next" "$SCRATCH/next.deb" >/dev/null
	sha256sum "$ENV_FILE" >"$SCRATCH/env.sha"
	out=$(apt-get install -y "$SCRATCH/next.deb" </dev/null 2>&1)
	rc=$?
	if [ "$rc" = 0 ]; then ok "apt-get install -y of the next release: exit 0, no prompt"; else
		not_ok "apt-get install -y of the next release (exit $rc)"
		diag "$(tail -n 20 <<<"$out")"
	fi
	check "the operator's euraflow.env untouched" sha256sum -c --quiet "$SCRATCH/env.sha"
	has "the new reference installed" "EF__E2E_NEXT_KEY" cat /usr/share/doc/euraflow/euraflow.env.reference
	is "no .dpkg-* files in /etc/euraflow" "" find /etc/euraflow -name '*.dpkg-*'
	is "serving after the upgrade" 200 status_code --cacert "$SCRATCH/b/fullchain.pem" --resolve "$HOST:443:127.0.0.1" "https://$HOST/healthz"
}

nginx_checks() {
	cp /e2e/nginx/euraflow-http-redirect.conf /etc/nginx/sites-enabled/euraflow
	cp /e2e/nginx/euraflow-cdn-origin.conf /etc/nginx/sites-enabled/euraflow-cdn
	mkdir -p /var/www/letsencrypt/.well-known/acme-challenge /var/lib/euraflow/web/assets
	echo "token-e2e" >/var/www/letsencrypt/.well-known/acme-challenge/tok123
	echo "console.log(1)" >/var/lib/euraflow/web/assets/app-0123abcdEF.js
	echo "<svg/>" >/var/lib/euraflow/web/assets/logo.svg
	echo "zip" >/var/lib/euraflow/downloads/ext.zip
	echo "hidden" >/var/lib/euraflow/downloads/.hidden
	check "nginx -t with both sites" nginx -t
	if ! nginx 2>"$SCRATCH/nginx.err"; then
		not_ok "nginx starts with both sites"
		diag "$(cat "$SCRATCH/nginx.err")"
		return
	fi
	ok "nginx starts with both sites"
	local h=(--max-time 10 -sS -o /dev/null)
	is "port 80 redirects to https, same host and path" "301 https://$HOST/x?y=1" \
		curl "${h[@]}" -w '%{http_code} %{redirect_url}' -H "Host: $HOST" "http://127.0.0.1/x?y=1"
	is "ACME challenge served from the webroot" token-e2e \
		curl --max-time 10 -sS -H "Host: $HOST" http://127.0.0.1/.well-known/acme-challenge/tok123
	local cdn=(-H "Host: static-origin.example.com")
	hasi "CDN origin: hashed asset, immutable, CORS" "cache-control: public, max-age=31536000, immutable" \
		curl --max-time 10 -sS -D - -o /dev/null "${cdn[@]}" http://127.0.0.1/assets/app-0123abcdEF.js
	hasi "CDN origin: hashed asset has Access-Control-Allow-Origin" "access-control-allow-origin: *" \
		curl --max-time 10 -sS -D - -o /dev/null "${cdn[@]}" http://127.0.0.1/assets/app-0123abcdEF.js
	is "CDN origin: other assets 1 day" "public, max-age=86400" bash -c "curl --max-time 10 -sS -D - -o /dev/null -H 'Host: static-origin.example.com' http://127.0.0.1/assets/logo.svg | sed -n 's/^[Cc]ache-[Cc]ontrol: //p' | tr -d '\r'"
	hasi "CDN origin: /downloads from the server's folder, 1 h" "cache-control: public, max-age=3600" \
		curl --max-time 10 -sS -D - -o /dev/null "${cdn[@]}" http://127.0.0.1/downloads/ext.zip
	is "CDN origin: CORS preflight 204" 204 curl "${h[@]}" -w '%{http_code}' -X OPTIONS "${cdn[@]}" http://127.0.0.1/assets/app-0123abcdEF.js
	is "CDN origin: POST refused" 403 curl "${h[@]}" -w '%{http_code}' -X POST "${cdn[@]}" http://127.0.0.1/downloads/ext.zip
	is "CDN origin: dotfile in downloads is 404" 404 curl "${h[@]}" -w '%{http_code}' "${cdn[@]}" http://127.0.0.1/downloads/.hidden
	is "CDN origin: missing asset is 404" 404 curl "${h[@]}" -w '%{http_code}' "${cdn[@]}" http://127.0.0.1/assets/missing-0123abcdEF.js
	is "CDN origin: the app itself is not served here" 404 curl "${h[@]}" -w '%{http_code}' "${cdn[@]}" http://127.0.0.1/
	nginx -s quit 2>/dev/null
	rm -f /etc/nginx/sites-enabled/euraflow /etc/nginx/sites-enabled/euraflow-cdn
}

# Checks that need the database layer, the worker and the users (issue 6, item 7):
#   - GET /api/ef/v1/health: 200 with database, Redis and worker ok
#   - login with the initial admin password (path printed by the postinst, 0600)
#   - `euraflow check` passes except the checks that need a real domain
#   - euraflow-backup.timer enabled, `systemctl start euraflow-backup` writes a dump
checks_after_database_layer() {
	local pwfile=/var/lib/euraflow/initial-admin-password
	has "postinst applied the migrations" "applied  0001_service_heartbeats.sql" cat "$SCRATCH/install.log"
	has "postinst created the first admin and printed where its password is" "$pwfile" cat "$SCRATCH/install.log"
	is "the initial admin password file is 0600 euraflow:euraflow" "600 euraflow:euraflow" mode_of "$pwfile"
	local pw
	pw=$(cat "$pwfile" 2>/dev/null)
	if [ -n "$pw" ] && ! grep -qF -- "$pw" "$SCRATCH/install.log"; then ok "the initial admin password is not printed"; else
		not_ok "the initial admin password is not printed"
	fi

	local health
	health=$(curl -sS -k --max-time 10 https://127.0.0.1/api/ef/v1/health)
	is "health over HTTPS: healthy" healthy jq -r .data.status <<<"$health"
	is "health: database ok" ok jq -r .data.checks.database.status <<<"$health"
	is "health: redis ok" ok jq -r .data.checks.redis.status <<<"$health"
	is "health: migrations ok" ok jq -r .data.checks.migrations.status <<<"$health"
	local w="" i
	for i in $(seq 1 30); do
		w=$(curl -sS -k --max-time 10 https://127.0.0.1/api/ef/v1/health | jq -r .data.checks.worker.status)
		[ "$w" = ok ] && break
		sleep 1
	done
	is "health: worker ok (heartbeat from euraflow-worker)" ok echo "$w"
	has "health details on the loopback listener: pool numbers" '"max":100' \
		curl -sS --max-time 10 'http://127.0.0.1:8000/api/ef/v1/health?details=1'

	local login token ctoken
	# The captcha is required in production (EF__LOGIN_CAPTCHA defaults to true): without a token
	# the login is refused; solved through the API as the web app does, reading where the piece
	# goes from Redis (key prefix ef:) and sliding there with a hand-like trail.
	is "login without a captcha token is refused" CAPTCHA_REQUIRED bash -c "curl -sS -k --max-time 20 \
		https://127.0.0.1/api/ef/v1/auth/login -H 'content-type: application/json' \
		-d '{\"username\":\"admin\",\"password\":\"x\"}' | jq -r '.error.detail.code // .error.code'"
	solve_captcha() {
		local captcha cid cx answer
		captcha=$(curl -sS -k --max-time 10 https://127.0.0.1/api/ef/v1/auth/captcha)
		cid=$(jq -r .captcha_id <<<"$captcha")
		cx=$(redis-cli GET "ef:captcha:$cid")
		answer=$(jq -nc --arg id "$cid" --argjson x "${cx:-0}" '{captcha_id: $id, x: $x, duration: 800,
			trail: [range(0; 31) | (. / 30) as $t
				| [500 + ($t * $t * (3 - 2 * $t)) * $x / 0.9, 300 + (($t * 7) | sin) * 2]]}')
		curl -sS -k --max-time 10 https://127.0.0.1/api/ef/v1/auth/captcha/verify \
			-H 'content-type: application/json' -d "$answer" | jq -r '.token // empty'
	}
	ctoken=$(solve_captcha)
	if [ -n "$ctoken" ]; then ok "captcha solved through the API"; else not_ok "captcha solved through the API"; fi
	login=$(curl -sS -k --max-time 20 https://127.0.0.1/api/ef/v1/auth/login -H 'content-type: application/json' \
		-d "$(jq -nc --arg p "$pw" --arg c "$ctoken" '{username: "admin", password: $p, captcha_token: $c}')")
	token=$(jq -r '.access_token // empty' <<<"$login")
	if [ -n "$token" ]; then ok "login with the initial admin password"; else
		not_ok "login with the initial admin password"
		diag "$login"
	fi
	is "GET /auth/me as admin" admin bash -c "curl -sS -k --max-time 10 -H 'Authorization: Bearer $token' https://127.0.0.1/api/ef/v1/auth/me | jq -r .username"
	ctoken=$(solve_captcha)
	is "the old default admin123 does not work" 401 status_code -k https://127.0.0.1/api/ef/v1/auth/login \
		-H 'content-type: application/json' \
		-d "$(jq -nc --arg c "$ctoken" '{username: "admin", password: "admin123", captcha_token: $c}')"

	# max_connections was raised by the postinst; PostgreSQL applies it at its restart.
	has "postinst raised max_connections for the guide" "max_connections raised" cat "$SCRATCH/install.log"
	check "systemctl restart postgresql (to apply max_connections)" systemctl restart postgresql
	check "a backup now: systemctl start euraflow-backup" systemctl start euraflow-backup.service
	local report failed
	report=$(cd / && runuser -u euraflow -- euraflow check --json 2>&1)
	# What cannot pass in a test container: a certificate for a real domain (ours is made up).
	local allowed="tls_certificate tls_expiry tls_hostname"
	failed=$(jq -r '.checks[] | select(.outcome == "fail") | .id' <<<"$report" 2>/dev/null | tr '\n' ' ')
	local unexpected="" f
	for f in $failed; do
		case " $allowed " in *" $f "*) ;; *) unexpected="$unexpected $f" ;; esac
	done
	if jq -e .checks >/dev/null 2>&1 <<<"$report" && [ -z "$unexpected" ]; then
		ok "euraflow check passes except what needs a real domain (failed: ${failed:-none})"
	else
		not_ok "euraflow check passes except what needs a real domain (unexpected failures:${unexpected:- unreadable report})"
		diag "$report"
	fi
	is "euraflow check: pg_max_connections" pass jq -r '.checks[] | select(.id == "pg_max_connections") | .outcome' <<<"$report"
	is "euraflow check: migrations" pass jq -r '.checks[] | select(.id == "migrations") | .outcome' <<<"$report"
	is "euraflow check: secret_key from the packaged credentials" pass jq -r '.checks[] | select(.id == "secret_key") | .outcome' <<<"$report"
	local status_json
	status_json=$(cd / && runuser -u euraflow -- euraflow status --json 2>&1)
	is "euraflow status --json: healthy" healthy jq -r .health.status <<<"$status_json"
	has "euraflow status --json: PostgreSQL connection counts" '"max_connections": 200' echo "$status_json"
}

# ====================================================================================== purge
phase_purge() {
	section "apt purge"
	local out rc
	out=$(apt-get purge -y euraflow 2>&1)
	rc=$?
	if [ "$rc" = 0 ]; then ok "apt-get purge -y euraflow"; else
		not_ok "apt-get purge -y euraflow (exit $rc)"
		diag "$(tail -n 20 <<<"$out")"
	fi
	sed -n 's/^\(euraflow: .*\)/#   \1/p' <<<"$out"
	has "purge says the database was kept" "were NOT dropped" echo "$out"
	if dpkg-query -W -f='${Status}' euraflow 2>/dev/null | grep -q installed; then not_ok "package gone"; else ok "package gone"; fi
	absent "configuration and state removed" /etc/euraflow /var/lib/euraflow
	absent "unit files removed" /lib/systemd/system/euraflow.socket /lib/systemd/system/euraflow-http.socket \
		/lib/systemd/system/euraflow.service /lib/systemd/system/euraflow-worker.service \
		/lib/systemd/system/euraflow-backup.service /lib/systemd/system/euraflow-backup.timer \
		/lib/systemd/system-generators/euraflow-credentials-generator
	absent "binary, sysusers, tmpfiles, hook removed" /usr/bin/euraflow /usr/lib/sysusers.d/euraflow.conf \
		/usr/lib/tmpfiles.d/euraflow.conf /etc/letsencrypt/renewal-hooks/deploy/euraflow /usr/share/doc/euraflow
	is "no enable/mask links left in /etc/systemd/system" "" find /etc/systemd/system -name 'euraflow*'
	# (a folder that does not exist holds nothing: find's complaint about it is dropped)
	is "no generated drop-ins left" "" bash -c "find /run/systemd/generator /run/systemd/generator.early /run/systemd/generator.late -name 'euraflow*' 2>/dev/null"
	is "no deb-systemd-helper state left" "" bash -c "find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked -name 'euraflow*' 2>/dev/null"
	is "systemd knows no euraflow unit file" "" systemctl list-unit-files --no-legend 'euraflow*'
	is "nothing listens on 443 or 8000" "" ss -Hltn '( sport = :443 or sport = :8000 )'
	is "no process of user euraflow" "" pgrep -u euraflow
	is "database euraflow kept" 1 bash -c "cd / && runuser -u postgres -- psql -XAtc \"select count(*) from pg_database where datname = 'euraflow'\""
	is "no failed units" "" systemctl list-units --failed --plain --no-legend
}

case $PHASE in
install) phase_install ;;
purge) phase_purge ;;
*)
	echo "unknown phase $PHASE" >&2
	exit 2
	;;
esac
echo "# phase end: $pass passed, $fail failed"
[ "$fail" = 0 ]
