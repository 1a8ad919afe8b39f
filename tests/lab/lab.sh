#!/usr/bin/env bash
# lab.sh — leakguard's network lab: a user's machine behind an ISP, a WireGuard VPN provider and
# a STUN server on "the internet", all in network namespaces named lgt-<id>-<role>.
# It never touches the machine's own (root) network namespace. See tests/lab/README.md.
set -Eeuo pipefail

readonly LAB_STATE_ROOT=${LAB_STATE_ROOT:-/run/leakguard-lab}
readonly ROLES_BASE="host isp inet vpn"
readonly FWMARK=51820          # wg-quick's default fwmark and routing table
readonly WG_PORT=51820

usage() {
  cat <<'TXT'
usage: lab.sh COMMAND [options]

  up    [--id ID] [SWITCHES]        build a lab; prints LAB_*=VALUE lines (addresses, namespace names)
  set   --id ID KNOB VALUE          flip a switch of a running lab
  down  --id ID                     tear a lab down (processes by PID, then namespaces)
  run   [--id ID] [SWITCHES] -- CMD run CMD with the LAB_* variables exported; tears down on exit/interrupt
  exec  --id ID ROLE CMD...         run CMD inside a role's namespace (host, isp, inet, vpn, isp2)
  list                              labs that exist, with their owner process
  gc                                tear down labs whose owner process has exited
  orphans                           list lgt-* namespaces whose owner has exited (left behind)

A lab lives as long as its owner process (the caller of 'up', or --owner PID): when the owner
exits, however it exits, the lab is torn down within a second.

switches (knobs for 'set' use the same names without dashes):
  --tunnel up|down                  wg0 with wg-quick-style routing (default up)
  --ipv6 tunnel|native              IPv6 through the tunnel, or natively via eth0 (default tunnel)
  --split-stun off|on|wlan0         route the STUN server outside the tunnel via eth0 (on) or wlan0 (default off)
  --second-uplink off|on            a second physical uplink wlan0 via another ISP (default off)
TXT
}

die() { echo "lab.sh: $*" >&2; exit 2; }
log() { [ -n "${LAB_QUIET:-}" ] || echo "lab.sh: $*" >&2; }

# --- prerequisites -----------------------------------------------------------------------------
declare -A PKG_OF=([ip]=iproute2 [nft]=nftables [wg]=wireguard-tools [wireguard-go]=wireguard-go
                   [turnserver]=coturn [turnutils_stunclient]=coturn [sysctl]=procps [ss]=iproute2)
need_tools() {
  local t
  for t in ip nft wg wireguard-go turnserver sysctl ss; do
    command -v "$t" >/dev/null 2>&1 ||
      die "'$t' not found; install it: apt-get install --no-install-recommends ${PKG_OF[$t]} (or run scripts/deps.sh)"
  done
}
need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces); try: sudo $0 $*"
}
check_id() {
  [[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,23}$ ]] ||
    die "bad --id '$1': use 1-24 characters of a-z, 0-9 and '-'"
}
check_value() {  # knob value allowed...
  local knob=$1 value=$2; shift 2
  local v
  for v in "$@"; do [ "$value" = "$v" ] && return 0; done
  die "unknown value '$value' for $knob (expected $(IFS='|'; echo "$*"))"
}

# --- state -------------------------------------------------------------------------------------
ID=""
state_dir() { echo "$LAB_STATE_ROOT/$ID"; }
ns() { echo "lgt-$ID-$1"; }
nsx() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }
save_setting() {  # KEY VALUE: settings survive between lab.sh calls
  local f; f="$(state_dir)/settings"
  touch "$f"; sed -i "/^$1=/d" "$f"; echo "$1=$2" >>"$f"
}
load_settings() {
  [ -f "$(state_dir)/settings" ] || die "no lab '$ID' (nothing in $(state_dir)); see 'lab.sh list'"
  # shellcheck disable=SC1090
  . "$(state_dir)/settings"
}
our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^lgt-$ID-[a-z0-9]+$" || true; }

# Waits until a command succeeds, polling every 20 ms, for at most $1 seconds.
wait_until() {
  local limit=$1; shift
  local end=$((SECONDS + limit + 1))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.02
  done
}

# Starts a long-running program inside a namespace; remembers its PID in the state dir under NAME.
# If WGDIR is set, the program gets a private /run/wireguard (wireguard-go's UAPI sockets are named
# by interface only, so two labs' wg0 would otherwise collide).
spawn() {  # NAME ROLE CMD...
  local name=$1 role=$2; shift 2
  local log; log="$(state_dir)/$name.log"
  if [ -n "${WGDIR:-}" ]; then
    ip netns exec "$(ns "$role")" sh -c 'mount --bind "$0" /run/wireguard && exec "$@"' "$WGDIR" "$@" >"$log" 2>&1 &
  else
    ip netns exec "$(ns "$role")" "$@" >"$log" 2>&1 &
  fi
  echo "$! $role" >"$(state_dir)/$name.pid"
  disown  # no job notices from this shell: the lab's processes are ended by PID, on purpose
}
# Waits until a spawned program is ready (a test command succeeds); fails at once if it exited,
# with the last line it logged.
wait_ready() {  # NAME WHAT SECONDS TEST...
  local name=$1 what=$2 limit=$3; shift 3
  local pid; read -r pid _ <"$(state_dir)/$name.pid"
  local end=$((SECONDS + limit + 1))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$pid" || [ $SECONDS -ge $end ]; then
      local last; last=$(grep -v '^\s*$' "$(state_dir)/$name.log" 2>/dev/null | tail -n1)
      die "$what did not start${last:+: $last}"
    fi
    sleep 0.02
  done
}
alive() {  # PID: running and not a zombie (a reparented child may wait a while to be reaped)
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
in_ns() {  # PID ROLE: the process lives in that lab namespace (guards against a reused PID)
  [ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$(stat -L -c %i "/run/netns/$(ns "$2")" 2>/dev/null)" ]
}
stop_pid() {  # NAME: ends a process we started, by the PID we recorded, and waits until it is gone
  local f; f="$(state_dir)/$1.pid"
  [ -f "$f" ] || return 0
  local pid role; read -r pid role <"$f"
  if alive "$pid" && in_ns "$pid" "$role"; then
    kill -9 "$pid" 2>/dev/null || true
    wait_until 5 eval "! alive $pid" || true
  fi
  rm -f "$f"
}
# Runs wg against a wireguard-go instance whose UAPI socket lives in the given directory.
wgx() {  # ROLE WGDIR wg-args...
  local role=$1 dir=$2; shift 2
  ip netns exec "$(ns "$role")" sh -c 'mount --bind "$0" /run/wireguard && exec wg "$@"' "$dir" "$@"
}

# --- building blocks -------------------------------------------------------------------------
make_ns() {
  local n; n=$(ns "$1")
  ip netns add "$n"
  ip -n "$n" link set lo up
  # Static addresses only: no DAD delay, no autoconfiguration from router advertisements.
  nsx "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
}
router() {  # ROLE: forwards both families
  nsx "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0
}
veth() {  # ROLE_A IF_A ROLE_B IF_B
  ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}
addr() {  # ROLE IF ADDR/LEN...
  local role=$1 dev=$2; shift 2
  local a
  for a in "$@"; do
    if [[ $a == *:* ]]; then ip -n "$(ns "$role")" -6 addr add "$a" dev "$dev" nodad
    else ip -n "$(ns "$role")" addr add "$a" dev "$dev"; fi
  done
}
masquerade() {  # ROLE OUT_IF [nft match]: source NAT of everything (or what matches) leaving OUT_IF
  nsx "$1" nft -f - <<NFT
table inet lab_nat {
  chain post {
    type nat hook postrouting priority srcnat;
    oifname "$2" ${3:-} masquerade
  }
}
NFT
}

build_internet() {
  # inet: the internet core. A bridge joins the ISPs and the VPN provider; the core router
  # (203.0.113.1), the STUN server (203.0.113.3) and a web server address for test pages
  # (203.0.113.80) live on it.
  ip -n "$(ns inet)" link add br0 type bridge
  ip -n "$(ns inet)" link set br0 up
  addr inet br0 203.0.113.1/24 203.0.113.3/24 203.0.113.80/24 2001:db8:3::1/64 2001:db8:3::3/64 2001:db8:3::80/64
  router inet
  # isp: the user's ISP. IPv4 is masqueraded to 203.0.113.2; IPv6 2001:db8:2::/64 is routed natively.
  veth isp up0 inet isp
  ip -n "$(ns inet)" link set isp master br0
  addr isp up0 203.0.113.2/24 2001:db8:3::2/64
  ip -n "$(ns isp)" route add default via 203.0.113.1
  ip -n "$(ns isp)" -6 route add default via 2001:db8:3::1
  router isp
  masquerade isp up0 "meta nfproto ipv4"
  ip -n "$(ns inet)" -6 route add 2001:db8:2::/64 via 2001:db8:3::2
  # vpn: the VPN provider. Endpoint 198.51.100.1; tunnel traffic exits as 203.0.113.66 / 2001:db8:3::66.
  veth vpn up0 inet vpn
  ip -n "$(ns inet)" link set vpn master br0
  addr vpn up0 203.0.113.66/24 2001:db8:3::66/64
  addr vpn lo 198.51.100.1/32
  ip -n "$(ns vpn)" route add default via 203.0.113.1
  ip -n "$(ns vpn)" -6 route add default via 2001:db8:3::1
  ip -n "$(ns inet)" route add 198.51.100.1/32 via 203.0.113.66
  router vpn
  # Only tunnel traffic is translated: the server's own UDP must keep 198.51.100.1 as its source.
  masquerade vpn up0 "ip saddr 100.64.0.0/24"
  nsx vpn nft add rule inet lab_nat post oifname up0 ip6 saddr 2001:db8:100::/64 masquerade
}

build_host() {
  # host: the user's machine; eth0 to the ISP, metric 100 like NetworkManager's wired default.
  veth host eth0 isp down0
  addr host eth0 192.0.2.10/24 2001:db8:2::10/64
  addr isp down0 192.0.2.1/24 2001:db8:2::1/64
  ip -n "$(ns host)" route add default via 192.0.2.1 dev eth0 metric 100
  ip -n "$(ns host)" -6 route add default via 2001:db8:2::1 dev eth0 metric 100
  nsx host sysctl -qw net.ipv4.conf.all.src_valid_mark=1
}

start_stun() {
  # An empty config file: Debian's /etc/turnserver.conf changes the answers. No RFC 5780 (NAT
  # behaviour discovery): public STUN servers that pages use do not offer it, and clients that
  # see it run extra tests that wait for timeouts.
  : >"$(state_dir)/turnserver.conf"
  spawn turnserver inet turnserver -c "$(state_dir)/turnserver.conf" -L 203.0.113.3 -L 2001:db8:3::3 \
    -p 3478 --stun-only --no-rfc5780 --no-tls --no-dtls --no-cli --log-file stdout --simple-log \
    --pidfile "$(state_dir)/turnserver.pidfile"
}
stun_listening() {
  local out; out=$(nsx inet ss -Hlun 'sport = :3478')
  [[ $out == *203.0.113.3:3478* && $out == *"[2001:db8:3::3]:3478"* ]]
}

start_vpn_server() {
  local d; d="$(state_dir)/wg-vpn"; mkdir -p "$d" /run/wireguard
  (umask 077; wg genkey >"$(state_dir)/server.key"; wg genkey >"$(state_dir)/client.key")
  wg pubkey <"$(state_dir)/server.key" >"$(state_dir)/server.pub"
  wg pubkey <"$(state_dir)/client.key" >"$(state_dir)/client.pub"
  WGDIR=$d spawn wg-vpn vpn wireguard-go -f wg0
  wait_ready wg-vpn "wireguard-go (VPN server)" 5 test -S "$d/wg0.sock"
  wgx vpn "$d" set wg0 listen-port $WG_PORT private-key "$(state_dir)/server.key" \
    peer "$(cat "$(state_dir)/client.pub")" allowed-ips 100.64.0.2/32,2001:db8:100::2/128
  addr vpn wg0 100.64.0.1/24 2001:db8:100::1/64
  ip -n "$(ns vpn)" link set wg0 up
}

# wg-quick-style client: all traffic into wg0 unless it carries the fwmark; the endpoint via eth0.
tunnel_up() {
  local d; d="$(state_dir)/wg-host"; mkdir -p "$d" /run/wireguard
  local allowed=0.0.0.0/0
  [ "$IPV6" = tunnel ] && allowed=0.0.0.0/0,::/0
  # A socket left by the previous instance (tunnel down, then up) would pass the readiness check
  # before the new wireguard-go listens: wg would then fall back to kernel WireGuard and fail.
  rm -f "$d/wg0.sock"
  WGDIR=$d spawn wg-host host wireguard-go -f wg0
  wait_ready wg-host "wireguard-go (client)" 5 test -S "$d/wg0.sock"
  wgx host "$d" set wg0 fwmark $FWMARK private-key "$(state_dir)/client.key" \
    peer "$(cat "$(state_dir)/server.pub")" endpoint 198.51.100.1:$WG_PORT allowed-ips "$allowed" \
    persistent-keepalive 25
  addr host wg0 100.64.0.2/24
  ip -n "$(ns host)" link set wg0 mtu 1420 up
  ip -n "$(ns host)" route add default dev wg0 table $FWMARK
  ip -n "$(ns host)" rule add not fwmark $FWMARK table $FWMARK priority 32765
  ip -n "$(ns host)" rule add table main suppress_prefixlength 0 priority 32764
  if [ "$IPV6" = tunnel ]; then
    addr host wg0 2001:db8:100::2/64
    ip -n "$(ns host)" -6 route add default dev wg0 table $FWMARK
    ip -n "$(ns host)" -6 rule add not fwmark $FWMARK table $FWMARK priority 32765
    ip -n "$(ns host)" -6 rule add table main suppress_prefixlength 0 priority 32764
  fi
  # The handshake: wait until the server has heard from us, so the tunnel carries traffic at once.
  nsx host ping -c1 -W1 -q 100.64.0.1 >/dev/null 2>&1 || true
  wait_until 5 handshake_done || die "the WireGuard handshake did not complete within 5 s"
}
handshake_done() {
  local t; t=$(wgx vpn "$(state_dir)/wg-vpn" show wg0 latest-handshakes | awk '{print $2}')
  [ -n "$t" ] && [ "$t" != 0 ]
}
# Like wg-quick down: the interface and its routing rules go away.
tunnel_down() {
  stop_pid wg-host
  local fam
  for fam in -4 -6; do
    while ip -n "$(ns host)" "$fam" rule del priority 32765 2>/dev/null; do :; done
    while ip -n "$(ns host)" "$fam" rule del priority 32764 2>/dev/null; do :; done
  done
  ip -n "$(ns host)" link del wg0 2>/dev/null || true
}

split_stun() {  # off|on|wlan0: host routes for the STUN server outside the tunnel
  ip -n "$(ns host)" route del 203.0.113.3/32 2>/dev/null || true
  ip -n "$(ns host)" -6 route del 2001:db8:3::3/128 2>/dev/null || true
  case $1 in
    on)
      ip -n "$(ns host)" route add 203.0.113.3/32 via 192.0.2.1 dev eth0
      ip -n "$(ns host)" -6 route add 2001:db8:3::3/128 via 2001:db8:2::1 dev eth0 ;;
    wlan0)
      [ "$UPLINK2" = on ] || die "split-stun wlan0 needs second-uplink on"
      ip -n "$(ns host)" route add 203.0.113.3/32 via 198.51.100.129 dev wlan0
      ip -n "$(ns host)" -6 route add 2001:db8:3::3/128 via 2001:db8:4::1 dev wlan0 ;;
  esac
}

# A second physical uplink (think Wi-Fi next to Ethernet): wlan0 via isp2, seen as 203.0.113.4.
uplink2_on() {
  make_ns isp2
  veth host wlan0 isp2 down0
  addr host wlan0 198.51.100.130/26 2001:db8:4::10/64
  addr isp2 down0 198.51.100.129/26 2001:db8:4::1/64
  veth isp2 up0 inet isp2
  ip -n "$(ns inet)" link set isp2 master br0
  addr isp2 up0 203.0.113.4/24 2001:db8:3::4/64
  ip -n "$(ns isp2)" route add default via 203.0.113.1
  ip -n "$(ns isp2)" -6 route add default via 2001:db8:3::1
  router isp2
  masquerade isp2 up0 "meta nfproto ipv4"
  ip -n "$(ns inet)" -6 route add 2001:db8:4::/64 via 2001:db8:3::4
  ip -n "$(ns host)" route add default via 198.51.100.129 dev wlan0 metric 600
  ip -n "$(ns host)" -6 route add default via 2001:db8:4::1 dev wlan0 metric 600
}
uplink2_off() {
  ip -n "$(ns inet)" -6 route del 2001:db8:4::/64 2>/dev/null || true
  kill_ns_processes isp2
  ip netns del "$(ns isp2)" 2>/dev/null || true   # takes wlan0 and the bridge port with it
}

kill_ns_processes() {  # ROLE: every process in a lab namespace is one we started
  local pids; pids=$(ip netns pids "$(ns "$1")" 2>/dev/null || true)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
}

print_vars() {
  cat <<VARS
LAB_ID=$ID
LAB_STATE=$(state_dir)
LAB_NS_HOST=$(ns host)
LAB_NS_ISP=$(ns isp)
LAB_NS_INET=$(ns inet)
LAB_NS_VPN=$(ns vpn)
LAB_NS_ISP2=$(ns isp2)
LAB_HOST4=192.0.2.10
LAB_HOST6=2001:db8:2::10
LAB_GW4=192.0.2.1
LAB_GW6=2001:db8:2::1
LAB_ISP_PUBLIC4=203.0.113.2
LAB_STUN4=203.0.113.3
LAB_STUN6=2001:db8:3::3
LAB_STUN_PORT=3478
LAB_WEB4=203.0.113.80
LAB_WEB6=2001:db8:3::80
LAB_VPN_ENDPOINT=198.51.100.1:$WG_PORT
LAB_VPN_EXIT4=203.0.113.66
LAB_VPN_EXIT6=2001:db8:3::66
LAB_TUN_IF=wg0
LAB_TUN4=100.64.0.2
LAB_TUN6=2001:db8:100::2
LAB_FWMARK=$FWMARK
LAB_WLAN4=198.51.100.130
LAB_WLAN6=2001:db8:4::10
LAB_ISP2_PUBLIC4=203.0.113.4
VARS
}

# --- commands ------------------------------------------------------------------------------------
TUNNEL=up IPV6=tunnel SPLIT=off UPLINK2=off OWNER=$PPID
parse_switches() {  # sets ID, TUNNEL, IPV6, SPLIT, UPLINK2, OWNER; leaves the rest in REST
  REST=()
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || die "--id needs a value"; ID=$2; shift 2 ;;
      --tunnel) [ $# -ge 2 ] || die "--tunnel needs a value"; check_value --tunnel "$2" up down; TUNNEL=$2; shift 2 ;;
      --ipv6) [ $# -ge 2 ] || die "--ipv6 needs a value"; check_value --ipv6 "$2" tunnel native; IPV6=$2; shift 2 ;;
      --split-stun) [ $# -ge 2 ] || die "--split-stun needs a value"; check_value --split-stun "$2" off on wlan0; SPLIT=$2; shift 2 ;;
      --second-uplink) [ $# -ge 2 ] || die "--second-uplink needs a value"; check_value --second-uplink "$2" off on; UPLINK2=$2; shift 2 ;;
      --owner) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--owner needs a process id"; OWNER=$2; shift 2 ;;
      --) shift; REST=("$@"); return ;;
      *) die "unknown option '$1' (see 'lab.sh --help')" ;;
    esac
  done
}

cmd_up() {
  parse_switches "$@"
  [ ${#REST[@]} -eq 0 ] || die "'up' takes no command (did you mean 'run'?)"
  [ -n "$ID" ] || ID="$$-$(printf '%04x' $RANDOM)"
  check_id "$ID"
  need_root "up"; need_tools
  [ "$SPLIT" != wlan0 ] || [ "$UPLINK2" = on ] || die "--split-stun wlan0 needs --second-uplink on"
  local taken; taken=$(our_namespaces | head -n1)
  [ -z "$taken" ] || die "namespace $taken already exists: lab '$ID' is taken; pick another --id or run 'lab.sh down --id $ID'"
  [ ! -e "$(state_dir)" ] || die "$(state_dir) already exists: lab '$ID' is taken; pick another --id or run 'lab.sh down --id $ID'"

  local t0=$EPOCHREALTIME
  mkdir -p "$(state_dir)"
  # From here on, anything that fails (an error or a die) takes the partial lab down with it.
  UP_DONE=0
  trap 'echo "lab.sh: building lab $ID failed at line $LINENO: $BASH_COMMAND" >&2' ERR
  trap '[ "$UP_DONE" = 1 ] || LAB_QUIET=1 teardown' EXIT
  echo "$OWNER" >"$(state_dir)/owner"
  # Which lab of this id this is: the watcher of an earlier lab of the same id (taken down and
  # made again at once) must not take this one down.
  local instance="$$-$EPOCHREALTIME-$RANDOM"
  echo "$instance" >"$(state_dir)/instance"
  save_setting TUNNEL "$TUNNEL"; save_setting IPV6 "$IPV6"; save_setting SPLIT "$SPLIT"; save_setting UPLINK2 "$UPLINK2"
  local r
  for r in $ROLES_BASE; do make_ns "$r"; done
  build_internet
  build_host
  start_stun
  start_vpn_server
  [ "$UPLINK2" = off ] || uplink2_on
  [ "$TUNNEL" = down ] || tunnel_up
  split_stun "$SPLIT"
  wait_ready turnserver "the STUN server (turnserver)" 10 stun_listening
  trap - ERR
  # A lab lives as long as its owner: a watcher in its own session takes it down when the owner
  # exits, even by SIGKILL or Ctrl-C (which skip the owner's own cleanup).
  LAB_INSTANCE=$instance setsid -f "$(readlink -f "$0")" watch --id "$ID" --owner "$OWNER" </dev/null >/dev/null 2>&1
  UP_DONE=1
  print_vars | tee "$(state_dir)/vars" >/dev/null
  print_vars
  log "lab $ID up in $(awk "BEGIN {printf \"%.2f\", $EPOCHREALTIME - $t0}") s (tunnel $TUNNEL, ipv6 $IPV6, split-stun $SPLIT, second-uplink $UPLINK2)"
}

teardown() {
  local t0=$EPOCHREALTIME
  local n all=""
  for n in $(our_namespaces); do
    local pids; pids=$(ip netns pids "$n" 2>/dev/null || true)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    all="$all $pids"
    ip netns del "$n" 2>/dev/null || true
  done
  # SIGKILL is delivered asynchronously: wait (at most 2 s) until every process is gone or a
  # zombie, so that "down" returning means nothing of the lab runs any more.
  local p tries=0
  for p in $all; do
    while [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && [ $tries -lt 200 ]; do
      sleep 0.01; tries=$((tries + 1))
    done
  done
  rm -rf "$(state_dir)"
  log "lab $ID down in $(awk "BEGIN {printf \"%.2f\", $EPOCHREALTIME - $t0}") s"
}

cmd_down() {
  parse_switches "$@"
  [ -n "$ID" ] || die "down needs --id ID (see 'lab.sh list')"
  check_id "$ID"; need_root "down"
  teardown
}

cmd_set() {
  parse_switches "$@"
  [ -n "$ID" ] || die "set needs --id ID"
  check_id "$ID"; need_root "set"; need_tools
  [ ${#REST[@]} -eq 0 ] || die "set takes KNOB VALUE, not '--'"
  # parse_switches stopped at the first non-option: re-read KNOB VALUE from the original args.
  local knob="" value=""
  set -- "${SET_ARGS[@]}"
  [ $# -eq 2 ] || die "set needs exactly: --id ID KNOB VALUE"
  knob=$1 value=$2
  load_settings
  case $knob in
    tunnel)
      check_value tunnel "$value" up down
      [ "$value" = "$TUNNEL" ] || { if [ "$value" = up ]; then tunnel_up; else tunnel_down; fi; }
      save_setting TUNNEL "$value" ;;
    ipv6)
      check_value ipv6 "$value" tunnel native
      if [ "$value" != "$IPV6" ]; then
        IPV6=$value
        [ "$TUNNEL" = down ] || { tunnel_down; tunnel_up; }
      fi
      save_setting IPV6 "$value" ;;
    split-stun)
      check_value split-stun "$value" off on wlan0
      split_stun "$value"; save_setting SPLIT "$value" ;;
    second-uplink)
      check_value second-uplink "$value" off on
      if [ "$value" != "$UPLINK2" ]; then
        if [ "$value" = on ]; then UPLINK2=on; uplink2_on
        else [ "$SPLIT" != wlan0 ] || { split_stun off; save_setting SPLIT off; }; uplink2_off; fi
      fi
      save_setting UPLINK2 "$value" ;;
    *) die "unknown knob '$knob' (expected tunnel, ipv6, split-stun or second-uplink)" ;;
  esac
}

cmd_run() {
  parse_switches "$@"
  [ ${#REST[@]} -gt 0 ] || die "run needs a command after '--'"
  [ -n "$ID" ] || ID="$$-$(printf '%04x' $RANDOM)"
  check_id "$ID"
  SELF=$0
  local cmd=("${REST[@]}")
  trap '"$SELF" down --id "$ID"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  local vars
  vars=$("$SELF" up --id "$ID" --owner $$ --tunnel "$TUNNEL" --ipv6 "$IPV6" --split-stun "$SPLIT" --second-uplink "$UPLINK2")
  local line
  while IFS= read -r line; do export "${line?}"; done <<<"$vars"
  local rc=0
  "${cmd[@]}" || rc=$?
  return $rc
}

cmd_exec() {
  parse_switches "${@:1:2}"
  [ -n "$ID" ] || die "exec needs --id ID ROLE CMD..."
  shift 2
  [ $# -ge 2 ] || die "exec needs --id ID ROLE CMD..."
  local role=$1; shift
  [ -f "$LAB_STATE_ROOT/$ID/vars" ] || die "no lab '$ID'; see 'lab.sh list'"
  # A role running wireguard-go has its UAPI sockets in a private directory: mount it where `wg`
  # looks, so `wg show` (and the wg-quick hook) work inside exec as they would on a real host.
  local wgdir="$LAB_STATE_ROOT/$ID/wg-$role"
  if [ -d "$wgdir" ]; then
    exec ip netns exec "$(ns "$role")" sh -c 'mount --bind "$0" /run/wireguard && exec "$@"' "$wgdir" "$@"
  fi
  exec ip netns exec "$(ns "$role")" "$@"
}

cmd_watch() {
  parse_switches "$@"
  check_id "$ID"
  # Polls twice a second: a process cannot be waited for from outside its parent in a shell.
  # Watches the lab that started it: once its state is gone (down), or is another lab's of the
  # same id (down and up again between two polls), there is nothing of its own to take down.
  local mine=${LAB_INSTANCE:-}
  [ -n "$mine" ] || return 0
  ours() { [ "$(cat "$(state_dir)/instance" 2>/dev/null)" = "$mine" ]; }
  while ours && alive "$OWNER"; do sleep 0.5; done
  if ours; then LAB_QUIET=1 teardown; fi
}

cmd_list() {
  local d
  for d in "$LAB_STATE_ROOT"/*/; do
    [ -d "$d" ] || continue
    local id; id=$(basename "$d")
    local owner; owner=$(cat "$d/owner" 2>/dev/null || echo "?")
    local alive=exited; kill -0 "$owner" 2>/dev/null && alive=running
    echo "$id owner=$owner ($alive)"
  done
}

# The lgt-* namespaces nobody owns any more: a lab's (state directory) whose owner process has
# exited, a C++ fixture's (lab::Netns: lgt-<pid>-<random>-<tag>, no state directory) whose
# process is gone, and any other lgt-* namespace (no owner to ask). Namespaces of runs still going
# (another test run, a benchmark) are not orphans.
orphans() {
  local ns d id owner pid mine
  for ns in $(ip netns list | awk '{print $1}' | grep '^lgt-' || true); do
    mine=""
    for d in "$LAB_STATE_ROOT"/*/; do
      [ -d "$d" ] || continue
      id=$(basename "$d")
      if [[ $ns == "lgt-$id-"* ]]; then
        owner=$(cat "$d/owner" 2>/dev/null || echo 0)
        if [ "$owner" -gt 1 ] 2>/dev/null && kill -0 "$owner" 2>/dev/null; then mine=alive; else mine=dead; fi
        break
      fi
    done
    if [ -z "$mine" ] && [[ $ns =~ ^lgt-([0-9]+)-[0-9a-f]+-[a-z0-9]+$ ]]; then
      pid=${BASH_REMATCH[1]}
      if kill -0 "$pid" 2>/dev/null; then mine=alive; else mine=dead; fi
    fi
    [ "$mine" = alive ] || echo "$ns"
  done
}

cmd_orphans() {
  need_root "orphans"
  orphans
}

cmd_gc() {
  need_root "gc"
  local d
  for d in "$LAB_STATE_ROOT"/*/; do
    [ -d "$d" ] || continue
    local owner; owner=$(cat "$d/owner" 2>/dev/null || echo 0)
    if [ "$owner" -gt 1 ] 2>/dev/null && ! kill -0 "$owner" 2>/dev/null; then
      ID=$(basename "$d"); teardown
    fi
  done
  # Namespaces of the C++ fixtures whose process is gone (a test or bench killed by a signal
  # never ran its destructors). Other lgt-* namespaces without an owner are left to the eye
  # ('orphans' lists them).
  local ns
  for ns in $(orphans); do
    [[ $ns =~ ^lgt-[0-9]+-[0-9a-f]+-[a-z0-9]+$ ]] && ip netns delete "$ns" 2>/dev/null || true
  done
}

main() {
  [ $# -gt 0 ] || { usage >&2; exit 2; }
  local cmd=$1; shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    set)
      # KNOB VALUE are the two words that are not --id ID.
      SET_ARGS=(); local a=("$@") i=0 ids=()
      while [ $i -lt ${#a[@]} ]; do
        if [ "${a[$i]}" = --id ]; then ids+=(--id "${a[$((i + 1))]:-}"); i=$((i + 2))
        else SET_ARGS+=("${a[$i]}"); i=$((i + 1)); fi
      done
      cmd_set "${ids[@]}" ;;
    run) cmd_run "$@" ;;
    exec) cmd_exec "$@" ;;
    watch) cmd_watch "$@" ;;
    list) cmd_list ;;
    gc) cmd_gc ;;
    orphans) cmd_orphans ;;
    -h|--help|help) usage ;;
    *) die "unknown command '$cmd' (see 'lab.sh --help')" ;;
  esac
}

main "$@"
