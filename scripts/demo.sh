#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, and tells leakguard's story in
# the network lab (namespaces only; the machine's own network is never touched):
#   1. a real Chromium opens a WebRTC leak-test page: without leakguard the page learns the real
#      ISP address (IPv4) and the host's own IPv6 address, although a WireGuard VPN is up - also
#      over TCP, from a TURN server on port 443 (the relay candidate's raddr); Firefox ESR opens
#      the same pages and shows how differently it gathers;
#   2. leakguardd starts (armed, udp policy), the tunnel is declared the way the wg-quick hook does;
#      IPv6 does not go into the tunnel (its default route leaves via eth0), so IPv6 is held as
#      strict at once - a page's TCP (TURN) could reach a server there;
#   3. the same pages learn only the VPN's exit address, in both browsers; leakguard names Chromium
#      as what tried to reach the STUN server outside the tunnel (leakguardctl blocked);
#   4. the tunnel drops: the page learns nothing, leakguard says "blocking";
#   5. someone runs `nft flush ruleset`: leakguard's table stays.
# Exit status 0 when every step went as expected. Screenshots and logs go to demo-output/.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$PWD
if [[ ${1:-} != --no-build ]]; then
  scripts/deps.sh
  scripts/build.sh
fi
BUILD=${LEAKGUARD_BUILD:-$ROOT/build}
OUT=$ROOT/demo-output
mkdir -p "$OUT"
rm -f "$OUT"/*.png "$OUT"/*.log

if [[ -t 1 ]]; then B=$'\e[1m' R=$'\e[1;31m' G=$'\e[1;32m' Y=$'\e[1;33m' D=$'\e[2m' N=$'\e[0m'; else B= R= G= Y= D= N=; fi
failures=0
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
ok() { printf '   %s✔ %s%s\n' "$G" "$*" "$N"; }
bad() { printf '   %s✘ %s%s\n' "$R" "$*" "$N"; failures=$((failures + 1)); }
note() { printf '   %s%s%s\n' "$D" "$*" "$N"; }

ID=demo$$
WORK=$(mktemp -d /tmp/lgt-demo.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  tests/lab/lab.sh down --id "$ID" >/dev/null 2>&1
  [[ -z ${SCOPE:-} ]] || rmdir "$SCOPE" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Building the lab: a host with a WireGuard VPN (wireguard-go), an ISP, a STUN server (coturn), a web server"
eval "$(tests/lab/lab.sh up --id "$ID" --owner $$ --split-stun on --ipv6 native | grep '^LAB_')"
note "host eth0 192.0.2.10 behind the ISP's NAT (203.0.113.2), IPv6 2001:db8:2::10 native; wg0 to the VPN (exit 203.0.113.66)"
note "the STUN server's address is routed outside the tunnel (split routing), IPv6 is not tunnelled: two classic leaks"
HOST=$LAB_NS_HOST

# The leak-test page, served from the internet namespace.
ip netns exec "$LAB_NS_INET" node tests/e2e/browser/server.js "$LAB_WEB4" 8080 "$WORK/results" >"$OUT/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ip netns exec "$LAB_NS_INET" ss -Hltn 'sport = :8080' | grep -q 8080 && break; sleep 0.1; done
EXPECT="expect=$LAB_VPN_EXIT4&expect=[$LAB_VPN_EXIT6]"
URL="http://$LAB_WEB4:8080/leaktest.html?stun=$LAB_STUN4:3478&stun=[$LAB_STUN6]:3478&$EXPECT"

# A TURN server over TCP on port 443 (coturn, a test user), as pages reach TURN through networks
# that let only TCP out; on addresses of its own in the internet namespace. Its log names who came.
TURN4=203.0.113.43 TURN6=2001:db8:3::43
ip netns exec "$LAB_NS_INET" ip addr add $TURN4/24 dev br0
ip netns exec "$LAB_NS_INET" ip addr add $TURN6/64 dev br0 nodad
ip netns exec "$LAB_NS_INET" turnserver -n --lt-cred-mech --user demo:demo-secret --realm leakguard.test \
  --listening-ip $TURN4 --listening-ip $TURN6 --listening-port 443 --relay-ip $TURN4 --relay-ip $TURN6 \
  --no-udp --no-tls --no-dtls --no-cli --log-file stdout --simple-log --verbose >"$OUT/turnserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ip netns exec "$LAB_NS_INET" ss -Hltn 'sport = :443' | grep -q "$TURN6" && break; sleep 0.1; done
TURN_URL="http://$LAB_WEB4:8080/leaktest.html?turn=[$TURN6]:443&turn=$TURN4:443&turn_user=demo&turn_pass=demo-secret&$EXPECT"

# What a page learns, as the candidates it got (srflx: what a STUN server saw; relay: a TURN
# server's relay, with raddr = the address the TURN server saw, readable by the page).
show() {  # show JSON -> sets SRFLX, RADDR
  local json=$1 c
  SRFLX=$(jq -r '[.candidates[] | select(.type=="srflx") | .address] | unique | join(" ")' <<<"$json")
  RADDR=$(jq -r '[.candidates[] | select(.type=="relay") | .relatedAddress // empty | ltrimstr("[") | rtrimstr("]")] | unique | join(" ")' <<<"$json")
  for c in $(jq -r '.candidates[] | "\(.type)=\(.address)" + (if .type == "relay" then "(raddr=\(.relatedAddress))" else "" end)' <<<"$json" | sort -u); do
    case $c in
      srflx=$LAB_VPN_EXIT4|srflx=\[$LAB_VPN_EXIT6\]|*raddr=$LAB_VPN_EXIT4\)) printf '   %s%-56s%s (the VPN exit: fine)\n' "$G" "$c" "$N" ;;
      srflx=*|*raddr=\[2001:db8:2::10\]\)|*raddr=203.0.113.2\)) printf '   %s%-56s%s <- the real address, leaked\n' "$R" "$c" "$N" ;;
      *) printf '   %-56s\n' "$c" ;;
    esac
  done
}
# Chromium in the host namespace (playwright-core), with a screenshot; in a scope of its own as a
# desktop starts applications (systemd-run --user --scope), where the cgroup2 hierarchy is in sight.
CGROUP2=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
SCOPE=""
if [[ -n $CGROUP2 ]] && mkdir "$CGROUP2/app-org.chromium.Chromium-demo$$.scope" 2>/dev/null; then
  SCOPE=$CGROUP2/app-org.chromium.Chromium-demo$$.scope
fi
page() {  # page NAME [URL]
  # Into the scope before `ip netns exec`, which mounts a /sys of its own without the cgroup2 tree.
  show "$(sh -c '[ -z "$0" ] || echo $$ >"$0/cgroup.procs"; exec "$@"' "$SCOPE" ip netns exec "$HOST" \
            node tests/e2e/browser/gather.js "${2:-$URL}" --screenshot "$OUT/$1.png" 2>>"$OUT/chromium.log")"
  note "screenshot: $OUT/$1.png"
}
# Firefox ESR in the host namespace, with no driver: the page posts its result to its server.
RESULTS=$WORK/results
mkdir -p "$RESULTS"
firefox_page() {  # firefox_page NAME [URL]
  local profile=$WORK/firefox-$1 id=ff$1$$ ff json=""
  mkdir -p "$profile"
  printf 'user_pref("%s", %s);\n' browser.shell.checkDefaultBrowser false datareporting.policy.dataSubmissionEnabled false \
    network.captive-portal-service.enabled false network.connectivity-service.enabled false app.update.enabled false \
    >"$profile/user.js"
  setsid ip netns exec "$HOST" env HOME="$profile" MOZ_HEADLESS=1 firefox-esr --headless --no-remote --profile "$profile" \
    "${2:-$URL}&report=$id" >>"$OUT/firefox.log" 2>&1 &
  ff=$!
  for _ in $(seq 300); do [[ -s $RESULTS/$id.json ]] && break; sleep 0.1; done
  kill -KILL -- -"$ff" 2>/dev/null; wait "$ff" 2>/dev/null || true
  [[ -s $RESULTS/$id.json ]] && json=$(cat "$RESULTS/$id.json")
  if [[ -z $json ]]; then bad "Firefox ESR did not report (see $OUT/firefox.log)"; SRFLX= RADDR=; return; fi
  show "$json"
}
has() { [[ " $SRFLX " == *" $1 "* ]]; }
raddr_has() { [[ " $RADDR " == *" $1 "* ]]; }
turn_saw() { grep -q "remote \[\?$1\]\?:" "$OUT/turnserver.log"; }

say "1. Without leakguard: a web page asks the STUN server over WebRTC (real Chromium, no permission needed)"
page leaking
has 203.0.113.2 && ok "the page learned the ISP address 203.0.113.2 although the VPN is up" || bad "expected the ISP address"
has "[2001:db8:2::10]" && ok "and the host's own IPv6 address 2001:db8:2::10" || bad "expected the host's IPv6 address"
note "a page that names a TURN server over TCP (port 443, IPv6 and IPv4):"
page leaking-turn "$TURN_URL"
raddr_has 2001:db8:2::10 && ok "over TCP too: the relay's raddr is the host's IPv6 address, readable by the page" ||
  bad "expected a relay candidate with raddr 2001:db8:2::10"
turn_saw 2001:db8:2::10 && ok "and the TURN server logged it as the client" || bad "the TURN server did not see 2001:db8:2::10"
note "Firefox ESR, the same two pages (it gathers on the default route's addresses only, the tunnel's for IPv4):"
firefox_page leaking
firefox_page leaking-turn "$TURN_URL"
note "(Firefox shows no real address here: it drops a reflexive candidate equal to its host address and does"
note " not use an IPv6 TURN server while its IPv4 goes into the tunnel; Chromium is the page that leaks)"

say "2. Starting leakguardd (armed, policy udp) and declaring the tunnel like the wg-quick hook does"
BUS=$WORK/bus
mkdir -p "$BUS"
sed 's/group="leakguard"/group="root"/' systemd/org.leakguard.Daemon1.conf >"$BUS/leakguard.conf"
cat >"$BUS/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><auth>EXTERNAL</auth><listen>unix:path=$BUS/socket</listen>
<policy context="default"><allow user="*"/><deny own="*"/><deny send_type="method_call"/>
<allow send_type="signal"/><allow send_requested_reply="true" send_type="method_return"/>
<allow send_requested_reply="true" send_type="error"/><allow receive_type="method_call"/>
<allow receive_type="method_return"/><allow receive_type="error"/><allow receive_type="signal"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/></policy>
<include>$BUS/leakguard.conf</include></busconfig>
CONF
dbus-daemon --config-file="$BUS/bus.conf" --nofork --nopidfile >/dev/null 2>&1 &
pids+=($!)
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$BUS/socket
for _ in $(seq 100); do [[ -S $BUS/socket ]] && break; sleep 0.05; done
note "(a private system bus: this machine has no systemd; on a real system leakguard.service runs it)"

cat >"$WORK/leakguard.yaml" <<CONF
policy: udp
armed: true
tunnel:
  interfaces: [tun*]   # wg0 is not named here: the VPN client declares it (below)
probe:
  interval: 30s
  timeout: 2s
  servers: ["$LAB_STUN4:3478", "[$LAB_STUN6]:3478", "[$LAB_STUN6]:3478/tcp"]
  on_exposure: escalate   # the default: a page's path out that udp policy leaves open is closed
CONF
# nsenter, not `ip netns exec`: the latter mounts a fresh /sys, which hides the cgroup2 mount the
# daemon names senders by (docs/attribution.md).
nsenter --net=/run/netns/"$HOST" "$BUILD/daemon/leakguardd" --config "$WORK/leakguard.yaml" >"$OUT/leakguardd.log" 2>&1 &
pids+=($!)
CTL=$BUILD/cli/leakguardctl
state() { "$CTL" status --json 2>/dev/null | jq -r .state 2>/dev/null; }
wait_state() { for _ in $(seq 150); do [[ $(state) == "$1" ]] && return 0; sleep 0.1; done; return 1; }
# No tunnel yet: UDP is blocked (state blocking) - but udp policy lets TCP out, and the probe finds
# it over the native IPv6 (state leaking). IPv6 is escalated once a tunnel is up that does not carry it.
for _ in $(seq 150); do [[ $(state) == leaking ]] && break; sleep 0.1; done
case $(state) in
  leaking) ok "leakguardd is up, UDP outside the tunnel blocked; its probe says leaking: no tunnel yet, and TCP gets out over IPv6" ;;
  blocking) ok "leakguardd is up: state blocking (no tunnel declared yet, nothing leaves but the allowed)" ;;
  *) bad "leakguardd did not start blocking (state: $(state); see $OUT/leakguardd.log)" ;;
esac
# The call wg-quick's PostUp hook makes (systemd/hooks/wg-quick reads these from `wg show`):
"$CTL" tunnel set wg0 --endpoint 198.51.100.1:51820/udp --fwmark 51820 &&
  ok "tunnel wg0 declared, endpoint 198.51.100.1:51820/udp for packets with fwmark 51820" ||
  bad "declaring the tunnel failed"
wait_state secured && ok "state secured: rules in place, and leakguard's own probe found no leak (any more)" ||
  bad "expected secured, got $(state)"
grep -q "escalated IPv6 to strict" "$OUT/leakguardd.log" &&
  ok "the tunnel does not carry IPv6 (its default route leaves via eth0): IPv6 escalated to strict" ||
  bad "expected IPv6 escalated (see $OUT/leakguardd.log)"
printf '\n'
"$CTL" status | sed 's/^/   /' || true

# A desktop session, as every user's has one: a session bus, a (virtual) display, a notification
# server (dunst), and the notifier the package starts in each session
# (/etc/xdg/autostart/leakguard-notify.desktop: leakguardctl monitor --notify).
SESSION=unix:path=$WORK/session-bus
dbus-daemon --config-file=/usr/share/dbus-1/session.conf --address="$SESSION" --nofork >"$OUT/session-bus.log" 2>&1 &
pids+=($!)
DISPLAY_NUM=$((100 + $$ % 800))
Xvfb ":$DISPLAY_NUM" -nolisten tcp -screen 0 960x240x24 >"$OUT/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do [[ -S $WORK/session-bus && -S /tmp/.X11-unix/X$DISPLAY_NUM ]] && break; sleep 0.1; done
DISPLAY=":$DISPLAY_NUM" DBUS_SESSION_BUS_ADDRESS=$SESSION dunst -print >"$OUT/dunst.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do DBUS_SESSION_BUS_ADDRESS=$SESSION dunstctl count >/dev/null 2>&1 && break; sleep 0.1; done
DBUS_SESSION_BUS_ADDRESS=$SESSION "$CTL" monitor --notify >"$OUT/monitor.log" 2>&1 &
pids+=($!)
# Notified: the summary dunst printed that contains $1, within 10 s.
notified() {
  for _ in $(seq 100); do
    grep -m1 -o "summary: '[^']*$1[^']*'" "$OUT/dunst.log" 2>/dev/null | sed "s/^summary: //" && return 0
    sleep 0.1
  done
  return 1
}
screenshot() { import -display ":$DISPLAY_NUM" -window root "$OUT/$1.png" 2>>"$OUT/import.log" && note "screenshot of the desktop: $OUT/$1.png"; }

say "3. The same page, with leakguard"
page protected
has 203.0.113.2 && bad "the ISP address still leaks" || ok "no ISP address: UDP outside the tunnel is blocked"
has "[2001:db8:2::10]" && bad "the host's IPv6 still leaks" || ok "no IPv6 address of the host"
note "(the STUN server is routed outside the tunnel, so the page gets no reflexive address at all)"
note "who tried? the blocked packets are logged, and leakguardd looks up their sender (leakguardctl blocked):"
"$CTL" blocked --no-color | grep -v "leakguardd (probe)\|the daemon's own probe" | head -n 6 | sed 's/^/   /' || true
if "$CTL" blocked --json | jq -e --arg d "$LAB_STUN4:3478/udp" \
     '[.flows[] | select(.destination == $d and (.app | test("chrom"; "i")))] | length > 0' >/dev/null; then
  ok "leakguard names Chromium as what tried to reach the STUN server $LAB_STUN4:3478 outside the tunnel (blocked)"
else
  bad "expected Chromium named among the blocked senders to $LAB_STUN4:3478 (leakguardctl blocked)"
fi
if shown=$(notified "tried to reach $LAB_STUN4:3478"); then
  ok "and the user's desktop says so: $shown"
  screenshot notification-blocked
else
  bad "expected a desktop notification naming Chromium (see $OUT/dunst.log, $OUT/monitor.log)"
fi
tests/lab/lab.sh set --id "$ID" split-stun off >/dev/null
note "now the STUN server's route goes through the tunnel, as it should:"
page protected-through-tunnel
[[ $SRFLX == 203.0.113.66 ]] && ok "the page sees only the VPN exit 203.0.113.66: WebRTC works, through the tunnel" ||
  bad "expected only the VPN exit, got: ${SRFLX:-nothing}"
note "the TURN page:"
page protected-turn "$TURN_URL"
raddr_has 2001:db8:2::10 && bad "the relay still shows the host's IPv6 address" ||
  ok "no relay with the host's IPv6 address: IPv6 is held as strict, TCP over it is refused"
raddr_has 203.0.113.66 && ok "TURN over TCP through the tunnel still works (raddr = the VPN exit)" ||
  bad "expected a relay through the tunnel (raddr 203.0.113.66)"
note "Firefox ESR:"
firefox_page protected-through-tunnel
[[ $SRFLX == 203.0.113.66 ]] && ok "Firefox too sees only the VPN exit" || bad "Firefox: expected only the VPN exit, got: ${SRFLX:-nothing}"

say "4. The tunnel drops (like wg-quick down without the hook)"
tests/lab/lab.sh set --id "$ID" tunnel down >/dev/null
wait_state blocking && ok "leakguard noticed at once: state blocking" || bad "expected blocking, got $(state)"
if shown=$(notified "VPN down"); then
  ok "the desktop notification: $shown"
  screenshot notification-vpn-down
else
  bad "expected a 'VPN down' desktop notification (see $OUT/dunst.log)"
fi
page tunnel-down
[[ -z $SRFLX ]] && ok "the page learns no reflexive address at all" || bad "the page learned: $SRFLX"

say "5. Someone runs 'nft flush ruleset' (as a careless /etc/nftables.conf or a firewall reload would)"
ip netns exec "$HOST" nft flush ruleset || true
sleep 0.2
if ip netns exec "$HOST" nft list table inet leakguard >/dev/null 2>&1; then
  ok "leakguard's table is still there (owned by the daemon; restored if the kernel let it go)"
else
  bad "leakguard's table is gone"
fi
grep -m1 -E "table inet leakguard changed" "$OUT/leakguardd.log" | sed 's/^/   /' || true
[[ $(state) == blocking ]] && ok "still blocking" || bad "state is $(state)"

say "Done"
note "logs and screenshots: $OUT"
if ((failures == 0)); then
  printf '%sEvery step went as expected.%s\n' "$G" "$N"
else
  printf '%s%d step(s) did not go as expected.%s\n' "$R" "$failures" "$N"
  exit 1
fi
