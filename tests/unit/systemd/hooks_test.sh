#!/usr/bin/env bash
# The VPN-client hooks build the right leakguardctl calls from what each VPN client gives them.
# Stand-ins for leakguardctl, wg, nmcli and getent record and answer; no root, no network.
set -uo pipefail
hooks=$(dirname "$(readlink -f "$0")")/../../../systemd/hooks
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
cat >"$tmp/leakguardctl" <<'SH'
#!/bin/sh
echo "leakguardctl $*" >>"$LOG"
# LG_BUSY=IF: another VPN's tunnel IF is declared and there; the daemon refuses a claim of another.
# LG_DECLARED=IF: IF is declared, its interface not there (made later, or an OpenVPN restart).
case " $* " in
  *" --exclusive "*) [ -z "${LG_BUSY:-}" ] || case " $* " in *" --interface=$LG_BUSY "*) ;; *)
    echo "leakguardctl: not declared: one VPN at a time: tunnel $LG_BUSY is declared and its interface is there (another VPN is up); take it down first" >&2
    exit 7 ;; esac ;;
  *" --ahead "*) d=${LG_BUSY:-${LG_DECLARED:-}}; [ -z "$d" ] || case " $* " in *" --interface=$d "*) ;; *)
    echo "leakguardctl: not declared: one VPN at a time: tunnel $d is declared (another VPN's); a declaration ahead never replaces it" >&2
    exit 7 ;; esac ;;
esac
case "$*" in "tunnel set "*) echo "tunnel declared (leakguardctl's answer)" ;; esac
exit 0
SH
cat >"$tmp/wg" <<'SH'
#!/bin/sh
# wg show IF endpoints|fwmark, as wireguard-tools prints them
case "$3" in
  endpoints) printf "${WG_ENDPOINTS:-pk1=\t198.51.100.1:51820\npk2=\t[2001:db8::1]:51820\npk3=\t(none)\n}" ;;
  fwmark) echo "${WG_FWMARK:-0xca6c}" ;;
  "") case $2 in wg*) exit 0 ;; *) echo "Unable to access interface: No such device" >&2; exit 1 ;; esac ;;
esac
SH
cat >"$tmp/nmcli" <<'SH'
#!/bin/sh
# nmcli -g FIELDS connection show [UUID]: the profiles (UUID:TYPE), a profile's VPN plugin, its
# vpn.data; values with ':' and '\' escaped by '\', as nmcli -g (terse) prints them.
esc() { sed 's/[\\:]/\\&/g'; }
case "$2" in
  UUID,TYPE) printf "${NM_PROFILES-p1:vpn\\neth:802-3-ethernet\\np2:vpn\\np3:vpn\\nwg:wireguard\\n}" ;;
  vpn.service-type,vpn.data)
    [ "$5" != nosuch ] || { echo "Error: nosuch - no such connection profile." >&2; exit 10; }
    case $5 in p3) echo org.freedesktop.NetworkManager.vpnc ;; *) echo org.freedesktop.NetworkManager.openvpn ;; esac
    case $5 in
      p2) echo "${NM_VPN_DATA2:-remote = 198.51.100.20:443:tcp-client, 198.51.100.7, dev = tun}" ;;
      p3) echo "IPSec gateway = 198.51.100.30, remote = 198.51.100.31" ;;
      *) echo "${NM_VPN_DATA:-connection-type = tls, remote = vpn.example.org:1195, 198.51.100.7, proto-tcp = yes, port = 443}" ;;
    esac | esc ;;
  *) exit 1 ;;
esac
SH
cat >"$tmp/getent" <<'SH'
#!/bin/sh
[ "$2" = unknown.invalid ] && exit 2
[ "$2" = 01.2.3.4 ] && echo "1.2.3.4 STREAM 01.2.3.4" && exit 0  # inet_aton's reading
[ "$2" = 198.51.100.77 ] && exit 3  # never asked: an address is not looked up
[ "$2" = vpn.example.org ] && printf '198.51.100.8 STREAM vpn.example.org\n2001:db8::8 STREAM\n' && exit 0
echo "$2 STREAM"
SH
chmod +x "$tmp"/*
export PATH="$tmp:$PATH" LOG="$tmp/log"
expect() {  # NAME EXPECTED COMMAND...: the hook exits 0 and makes exactly the EXPECTED calls
  local name=$1 want=$2; shift 2
  : >"$LOG"
  local rc=0 out; out=$("$@" 2>&1) || rc=$?
  local got; got=$(cat "$LOG")
  if [ "$got" = "$want" ] && [ "$rc" -eq 0 ]; then echo "  ok   $name"; passed=$((passed + 1))
  else printf '  FAIL %s (exit %s)\n       want: %s\n       got:  %s\n%s\n' "$name" "$rc" "$want" "$got" "$out"; failed=$((failed + 1)); fi
}
echo "VPN-client hooks"
expect "wg-quick up: every peer endpoint and the fwmark" \
  "leakguardctl tunnel set --exclusive --interface=wg0 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --fwmark 51820" \
  "$hooks/wg-quick" up wg0
expect "wg-quick up without fwmark" \
  "leakguardctl tunnel set --exclusive --interface=wg0 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp" \
  env WG_FWMARK=off "$hooks/wg-quick" up wg0
expect "wg-quick down" "leakguardctl tunnel clear --interface=wg0" "$hooks/wg-quick" down wg0
# pre-up reads the configuration wg-quick is about to apply (its syntax: any case, comments, blanks).
cat >"$tmp/wg0.conf" <<'CONF'
[Interface]
PrivateKey = aGVsbG8=
Address = 100.64.0.2/24
FwMark = 0xca6c
PostUp = /usr/lib/leakguard/hooks/wg-quick up %i  # Endpoint = 203.0.113.9:1 is no endpoint here

[Peer]
PublicKey = cGsx
Endpoint = 198.51.100.1:51820
[peer]
publickey=cGsy
endpoint=[2001:db8::1]:51820   # a comment
[Peer]
Endpoint = vpn.example.org:443
[Peer]
PublicKey = bm8gZW5kcG9pbnQ=
CONF
expect "wg-quick pre-up: the configuration's endpoints (names resolved) and mark" \
  "leakguardctl tunnel set --exclusive --interface=wg0 --fwmark 51820 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --endpoint 198.51.100.8:443/udp" \
  "$hooks/wg-quick" pre-up wg0 "$tmp/wg0.conf"
printf '[Interface]\nPrivateKey = aGVsbG8=\nFwMark = off\n[Peer]\nEndpoint = 198.51.100.1:51820\n' >"$tmp/nomark.conf"
expect "wg-quick pre-up: FwMark = off" "leakguardctl tunnel set --exclusive --interface=wg0 --endpoint 198.51.100.1:51820/udp" \
  "$hooks/wg-quick" pre-up wg0 "$tmp/nomark.conf"
printf '[Interface]\nPrivateKey = aGVsbG8=\nListenPort = 51820\n[Peer]\nPublicKey = cGsx\n' >"$tmp/server.conf"
expect "wg-quick pre-up: no peer endpoint (a server): nothing declared" "" "$hooks/wg-quick" pre-up wg0 "$tmp/server.conf"
expect "wg-quick pre-up: an unreadable configuration: nothing declared" "" "$hooks/wg-quick" pre-up wg0 "$tmp/missing.conf"
expect "openvpn up (udp, IPv4)" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 proto_1=udp "$hooks/openvpn"
expect "openvpn up (tcp, IPv6)" "leakguardctl tunnel set --exclusive --interface=tun1 --endpoint [2001:db8::9]:443/tcp" \
  env script_type=up dev=tun1 trusted_ip6=2001:db8::9 trusted_port=443 proto_1=tcp-client "$hooks/openvpn"
expect "openvpn down" "leakguardctl tunnel clear --interface=tun0" env script_type=down dev=tun0 "$hooks/openvpn"
# Several remotes: OpenVPN describes each (proto_N, remote_port_N) and names none as the active one.
expect "openvpn up: the protocol of the remote on the trusted port" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 proto_1=tcp-client remote_port_1=4443 proto_2=udp remote_port_2=1194 "$hooks/openvpn"
expect "openvpn up: one port, both protocols" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:443/tcp --endpoint 198.51.100.9:443/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=443 proto_1=tcp-client remote_port_1=443 proto_2=udp remote_port_2=443 "$hooks/openvpn"
# OpenVPN appends its own arguments (device, MTUs, addresses, init) after the configured ones.
expect "openvpn up with the mark OpenVPN sets (decimal)" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp --fwmark 51820" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark 51820 tun0 1500 1553 10.8.0.2 10.8.0.1 init
# OpenVPN reads its `mark` with atoi(): decimal digits only, "0xca6c" is 0 (its packets carry no
# mark: declaring 51820 would let none of them through), "12abc" 12, "-5" the unsigned 4294967291.
expect "openvpn up: a hex mark is 0 to OpenVPN: no fwmark declared" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark 0xca6c tun0 1500 1553 10.8.0.2 10.8.0.1 init
expect "openvpn up: --mark 0 is no mark" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark 0 tun0
expect "openvpn up: the mark's leading digits, as atoi reads them" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp --fwmark 12" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark 12abc tun0
expect "openvpn up: a negative mark as the kernel takes it" "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp --fwmark 4294967291" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark -5 tun0
expect "openvpn down with --mark" "leakguardctl tunnel clear --interface=tun0" env script_type=down dev=tun0 "$hooks/openvpn" --mark 51820 tun0
expect "openvpn --down from the down-root plugin (no script_type)" "leakguardctl tunnel clear --interface=tun0" \
  env -u script_type dev=tun0 "$hooks/openvpn" --down
expect "openvpn down on SIGTERM clears" "leakguardctl tunnel clear --interface=tun0" \
  env script_type=down signal=sigterm dev=tun0 "$hooks/openvpn"
expect "openvpn down on a restart (SIGUSR1) keeps the declaration" "" env script_type=down signal=sigusr1 dev=tun0 "$hooks/openvpn"
expect "openvpn down on ping-restart keeps the declaration" "" env script_type=down signal=ping-restart dev=tun0 "$hooks/openvpn" --down
# Reasons OpenVPN's manual does not name as a restart: an exit (server-pushed-halt: the server's
# client-kill ... HALT, and OpenVPN exits) clears.
for sig in server-pushed-halt exit-with-notification error unknown; do
  expect "openvpn down on $sig clears" "leakguardctl tunnel clear --interface=tun0" env script_type=down signal=$sig dev=tun0 "$hooks/openvpn"
done
expect "openvpn down on SIGHUP without a configuration to read keeps the declaration" "" \
  env -u config script_type=down signal=sighup dev=tun0 "$hooks/openvpn"
# --pre-start reads the client configuration OpenVPN is about to use.
cat >"$tmp/client.conf" <<'CONF'
client
dev tun0
proto udp
port 1195            # the default port of remotes without one
mark 51820
remote 198.51.100.9          ; port and proto from above
remote 198.51.100.10 443 tcp-client
remote vpn.example.org 1194
remote 2001:db8::9 1196 udp6
# remote 203.0.113.99 1       (a comment)
CONF
expect "openvpn --pre-start: every remote (names resolved), port, proto and mark from the configuration" \
  "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1195/udp --endpoint 198.51.100.10:443/tcp --endpoint 198.51.100.8:1194/udp --endpoint [2001:db8::8]:1194/udp --endpoint [2001:db8::9]:1196/udp --fwmark 51820" \
  "$hooks/openvpn" --pre-start "$tmp/client.conf"
expect "openvpn up keeps the configuration's other servers (failover)" \
  "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.10:443/tcp --endpoint 198.51.100.9:1195/udp --endpoint 198.51.100.8:1194/udp --endpoint [2001:db8::8]:1194/udp --endpoint [2001:db8::9]:1196/udp --fwmark 51820" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.10 trusted_port=443 proto_1=tcp-client config="$tmp/client.conf" "$hooks/openvpn" --mark 51820
# SIGHUP: OpenVPN reads its configuration again (a `remote` edited before the SIGHUP); down
# declares its servers for the device, so that the reconnection gets through.
expect "openvpn down on SIGHUP declares the servers of the configuration read again" \
  "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1195/udp --endpoint 198.51.100.10:443/tcp --endpoint 198.51.100.8:1194/udp --endpoint [2001:db8::8]:1194/udp --endpoint [2001:db8::9]:1196/udp --fwmark 51820" \
  env script_type=down signal=sighup dev=tun0 config="$tmp/client.conf" "$hooks/openvpn"
printf 'dev tun3\nproto tcp-client\nremote 198.51.100.9\nrport 443\n' >"$tmp/tcp.conf"
expect "openvpn --pre-start: proto tcp-client, rport, no mark" \
  "leakguardctl tunnel set --exclusive --interface=tun3 --endpoint 198.51.100.9:443/tcp" "$hooks/openvpn" --pre-start "$tmp/tcp.conf"
for m in 0xca6c tun0; do
  printf 'dev tun0\nmark %s\nremote 198.51.100.9\n' "$m" >"$tmp/mark.conf"
  expect "openvpn --pre-start: mark $m is 0 to OpenVPN: no fwmark declared" \
    "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" "$hooks/openvpn" --pre-start "$tmp/mark.conf"
done
# <connection> blocks: each its own proto and port, the global ones set before it as defaults;
# remotes outside the blocks are not used (OpenVPN 2.6's "Connection profiles", openvpn --verb 4).
cat >"$tmp/blocks.conf" <<'CONF'
dev tun0
proto tcp-client
port 1195
remote 203.0.113.99 1     # ignored: the configuration has <connection> blocks
<connection>
remote 198.51.100.1 1194
proto udp
</connection>
<connection>
  remote 198.51.100.1 443
  proto tcp-client
</connection>
<connection>
remote 198.51.100.3          ; the global proto and port from above
</connection>
<tls-crypt>
remote 203.0.113.98 2        (inside another inline block: no option)
</tls-crypt>
proto udp
CONF
expect "openvpn --pre-start: <connection> blocks, each with its own proto and port" \
  "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.1:1194/udp --endpoint 198.51.100.1:443/tcp --endpoint 198.51.100.3:1195/tcp" \
  "$hooks/openvpn" --pre-start "$tmp/blocks.conf"
printf 'dev tun3\n' >"$tmp/noremote.conf"
expect "openvpn --pre-start: no remote (a server): nothing declared" "" "$hooks/openvpn" --pre-start "$tmp/noremote.conf"
expect "NetworkManager: WireGuard device up" \
  "leakguardctl tunnel set --exclusive --interface=wg1 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --fwmark 51820" \
  env DEVICE_IFACE=wg1 "$hooks/networkmanager" wg1 up
expect "NetworkManager: VPN plugin up (names resolved, tcp, port)" \
  "leakguardctl tunnel set --exclusive --interface=tun5 --endpoint 198.51.100.8:1195/tcp --endpoint [2001:db8::8]:1195/tcp --endpoint 198.51.100.7:443/tcp" \
  env CONNECTION_UUID=u1 VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-up
expect "NetworkManager: an address is not looked up, what is only like one is" \
  "leakguardctl tunnel set --exclusive --interface=tun6 --endpoint 198.51.100.77:1194/udp --endpoint 1.2.3.4:1194/udp" \
  env NM_VPN_DATA="remote = 198.51.100.77 01.2.3.4" CONNECTION_UUID=u2 VPN_IP_IFACE=tun6 "$hooks/networkmanager" tun6 vpn-up
expect "NetworkManager: per-remote port and protocol, default port" \
  "leakguardctl tunnel set --exclusive --interface=tun6 --endpoint 198.51.100.7:1194/udp --endpoint 198.51.100.10:53/tcp" \
  env NM_VPN_DATA="remote = 198.51.100.7, 198.51.100.10:53:tcp-client, dev = tun" CONNECTION_UUID=u2 VPN_IP_IFACE=tun6 "$hooks/networkmanager" tun6 vpn-up
expect "NetworkManager: a device goes down" "leakguardctl tunnel clear --interface=eth0" "$hooks/networkmanager" eth0 down
# Ahead of any VPN (NetworkManager runs vpn-up only after the handshake the block stops): a
# connection that is no VPN coming up declares the servers of every OpenVPN profile under "tun"
# (p1 and p2 here; p3 is a vpnc profile, "eth" and "wg" are no VPN plugin profiles).
ahead="leakguardctl tunnel set --ahead --interface=tun --endpoint 198.51.100.8:1195/tcp --endpoint [2001:db8::8]:1195/tcp --endpoint 198.51.100.7:443/tcp --endpoint 198.51.100.20:443/tcp --endpoint 198.51.100.7:1194/udp"
expect "NetworkManager: up of the uplink declares every OpenVPN profile's servers ahead, under tun" \
  "$ahead" env DEVICE_IFACE=eth0 CONNECTION_UUID=eth "$hooks/networkmanager" eth0 up
expect "NetworkManager: pre-up of the uplink too (NetworkManager waits for it)" \
  "$ahead" env DEVICE_IFACE=eth0 CONNECTION_UUID=eth "$hooks/networkmanager" eth0 pre-up
expect "NetworkManager: vpn-up of a connection nmcli does not know declares nothing" "" \
  env CONNECTION_UUID=nosuch CONNECTION_ID=gone VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-up
expect "NetworkManager: lo coming up declares nothing" "" env DEVICE_IFACE=lo "$hooks/networkmanager" lo up
expect "NetworkManager: a server two profiles share is declared once" \
  "leakguardctl tunnel set --ahead --interface=tun --endpoint 198.51.100.7:1194/udp --endpoint 198.51.100.9:1194/udp" \
  env NM_VPN_DATA="remote = 198.51.100.7, 198.51.100.9" NM_VPN_DATA2="remote = 198.51.100.9 198.51.100.7" "$hooks/networkmanager" eth0 up
# Never over a running VPN's declaration: the daemon refuses the claim (exit 7), which is no error here.
expect "NetworkManager: another VPN is up: the claim ahead is refused, quietly" "$ahead" \
  env LG_BUSY=wg0 "$hooks/networkmanager" eth0 up
# ...and so is one whose interface is away now (an OpenVPN outside NetworkManager, between the
# close and the reopen of its tun device on a restart): never replaced by the placeholder.
expect "NetworkManager: another VPN's declaration whose interface is away: refused too, quietly" "$ahead" \
  env LG_DECLARED=tun0 "$hooks/networkmanager" eth0 up
# What leakguardctl answers goes to NetworkManager's journal (the dispatcher logs a script's
# output); a refusal because another VPN is up says nothing.
out=$(env DEVICE_IFACE=eth0 CONNECTION_UUID=eth "$hooks/networkmanager" eth0 up 2>&1)
busy=$(env LG_BUSY=wg0 "$hooks/networkmanager" eth0 up 2>&1)
if [ "$out" = "tunnel declared (leakguardctl's answer)" ] && [ -z "$busy" ]; then
  echo "  ok   NetworkManager: the declaration ahead is said in the journal, a refusal is not"; passed=$((passed + 1))
else echo "  FAIL NetworkManager: the declaration ahead's output: '$out', refused: '$busy'"; failed=$((failed + 1)); fi
expect "NetworkManager: no OpenVPN profile: nothing declared ahead" "" \
  env NM_PROFILES='eth:802-3-ethernet\n' "$hooks/networkmanager" eth0 up
expect "NetworkManager: vpn-down clears the VPN and declares the servers ahead again" \
  "leakguardctl tunnel clear --interface=tun5
$ahead" env CONNECTION_UUID=p1 VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-down
expect "NetworkManager: vpn-down while another VPN is up leaves it alone" \
  "leakguardctl tunnel clear --interface=tun5
$ahead" env LG_BUSY=wg0 CONNECTION_UUID=p1 VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-down
# No call at all: the stand-in that recorded every call above is the control that calls do arrive.
expect "NetworkManager: ignores other actions" "" "$hooks/networkmanager" eth0 dhcp4-change

echo "adversarial environments"
# A file whose name matches an endpoint read as a glob pattern ("[2001:db8::1]:51820" matches
# "1:51820"), and one matching a tunnel name pattern, in the working directory.
mkdir "$tmp/cwd" && touch "$tmp/cwd/1:51820" "$tmp/cwd/eth0" && cd "$tmp/cwd" || exit 1
expect "wg-quick: an endpoint is never a glob pattern" \
  "leakguardctl tunnel set --exclusive --interface=wg0 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --fwmark 51820" \
  "$hooks/wg-quick" up wg0
expect "wg-quick pre-up: an endpoint is never a glob pattern" \
  "leakguardctl tunnel set --exclusive --interface=wg0 --fwmark 51820 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --endpoint 198.51.100.8:443/udp" \
  "$hooks/wg-quick" pre-up wg0 "$tmp/wg0.conf"
expect "NetworkManager WireGuard: an endpoint is never a glob pattern" \
  "leakguardctl tunnel set --exclusive --interface=wg1 --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --fwmark 51820" \
  env DEVICE_IFACE=wg1 "$hooks/networkmanager" wg1 up
expect "NetworkManager VPN: a bracketed remote is never a glob pattern" \
  "leakguardctl tunnel set --exclusive --interface=tun7 --endpoint [2001:db8::1]:51820/udp" \
  env NM_VPN_DATA="remote = [2001:db8::1]:51820" CONNECTION_UUID=u CONNECTION_ID=c VPN_IP_IFACE=tun7 "$hooks/networkmanager" tun7 vpn-up
expect "an interface name with '*' goes as it is (the daemon refuses it), never globbed" \
  "leakguardctl tunnel set --exclusive --interface=e* --endpoint 198.51.100.1:51820/udp --endpoint [2001:db8::1]:51820/udp --fwmark 51820" \
  "$hooks/wg-quick" up 'e*'
expect "an interface name beginning with '-' is no option" \
  "leakguardctl tunnel set --exclusive --interface=-x --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=-x trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn"
expect "wg-quick down with an odd name" "leakguardctl tunnel clear --interface=--fwmark=1" "$hooks/wg-quick" down --fwmark=1
cd - >/dev/null || exit 1
expect "NetworkManager VPN: a bare IPv6 remote is an address, not host:port" \
  "leakguardctl tunnel set --exclusive --interface=tun8 --endpoint [2001:db8::1]:1194/udp" \
  env NM_VPN_DATA="remote = 2001:db8::1" CONNECTION_UUID=u CONNECTION_ID=c VPN_IP_IFACE=tun8 "$hooks/networkmanager" tun8 vpn-up
expect "NetworkManager VPN: IPv6 remotes with port and protocol, bracketed or not" \
  "leakguardctl tunnel set --exclusive --interface=tun8 --endpoint [2001:db8::2]:443/tcp --endpoint [2001:db8::3]:53/udp --endpoint [2001:db8::4]:1195/udp" \
  env NM_VPN_DATA="remote = [2001:db8::2]:443:tcp-client, 2001:db8::3::udp6, [2001:db8::4]:1195, port = 53" CONNECTION_UUID=u CONNECTION_ID=c VPN_IP_IFACE=tun8 "$hooks/networkmanager" tun8 vpn-up
expect "NetworkManager VPN: several remotes split by commas, spaces and tabs" \
  "leakguardctl tunnel set --exclusive --interface=tun9 --endpoint 198.51.100.7:1195/udp --endpoint 198.51.100.8:1194/udp --endpoint [2001:db8::9]:1194/udp --endpoint 198.51.100.10:1196/tcp" \
  env NM_VPN_DATA="$(printf 'remote = 198.51.100.7:1195:udp 198.51.100.8, 2001:db8::9\t198.51.100.10:1196:tcp')" CONNECTION_UUID=u CONNECTION_ID=c VPN_IP_IFACE=tun9 "$hooks/networkmanager" tun9 vpn-up
expect "NetworkManager VPN: no interface from NetworkManager: the dispatcher's own" \
  "leakguardctl tunnel set --exclusive --interface=tun3 --endpoint 198.51.100.7:1194/udp" \
  env NM_VPN_DATA="remote = 198.51.100.7" CONNECTION_UUID=u VPN_IP_IFACE= "$hooks/networkmanager" tun3 vpn-up
# Empty values: nothing is declared (the block stays as it is), never a malformed call.
expect "NetworkManager VPN: an empty remote declares nothing" "" \
  env NM_VPN_DATA="remote = , port = " CONNECTION_UUID=u CONNECTION_ID=c VPN_IP_IFACE=tun4 "$hooks/networkmanager" tun4 vpn-up
expect "wg-quick: no peer endpoint yet declares nothing" "" env WG_ENDPOINTS='pk1=\t(none)\n' "$hooks/wg-quick" up wg0
expect_fails() {  # NAME COMMAND...: the hook exits non-zero, says why, and calls nothing
  local name=$1; shift
  : >"$LOG"
  local rc=0 out; out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$out" ] && [ ! -s "$LOG" ]; then echo "  ok   $name"; passed=$((passed + 1))
  else printf '  FAIL %s (exit %s, calls: %s)\n%s\n' "$name" "$rc" "$(cat "$LOG")" "$out"; failed=$((failed + 1)); fi
}
expect_fails "openvpn: an empty port" env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port= "$hooks/openvpn"
expect_fails "openvpn: no server address" env script_type=up dev=tun0 trusted_ip= trusted_ip6= trusted_port=1194 "$hooks/openvpn"
expect_fails "openvpn: an empty device" env script_type=up dev= trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn"
expect_fails "wg-quick: no interface" "$hooks/wg-quick" up ""
expect_fails "openvpn: --mark without a number" env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn" --mark tun0
expect_fails "openvpn --pre-start: an unreadable configuration" "$hooks/openvpn" --pre-start "$tmp/missing.conf"
# leakguardd not running: leakguardctl says so and fails; every hook passes that on (so wg-quick
# and OpenVPN stop instead of bringing a VPN up undeclared).
mkdir "$tmp/down" && printf '#!/bin/sh\necho "leakguardctl: leakguardd is not running" >&2\nexit 3\n' >"$tmp/down/leakguardctl"
chmod +x "$tmp/down/leakguardctl"
for call in "$hooks/wg-quick up wg0" "$hooks/wg-quick pre-up wg0 $tmp/wg0.conf" "$hooks/openvpn --pre-start $tmp/client.conf" \
            "env DEVICE_IFACE=eth0 $hooks/networkmanager eth0 up" "env CONNECTION_UUID=p1 VPN_IP_IFACE=tun5 $hooks/networkmanager tun5 vpn-up" \
            "env CONNECTION_UUID=p1 VPN_IP_IFACE=tun5 $hooks/networkmanager tun5 vpn-down"; do
  rc=0 out=$(PATH="$tmp/down:$PATH" $call 2>&1) || rc=$?
  if [ "$rc" -eq 3 ] && [[ $out == *"leakguardd is not running"* ]]; then echo "  ok   daemon down: $call exits 3 and says why"; passed=$((passed + 1))
  else echo "  FAIL daemon down: $call (exit $rc): $out"; failed=$((failed + 1)); fi
done
# Taking a VPN down always works: a failing PreDown aborts `wg-quick down` (the interface stays
# up), and OpenVPN's down has nothing to stop. The hooks say why and exit 0.
for call in "$hooks/wg-quick down wg0" "env script_type=down signal=sigterm dev=tun0 $hooks/openvpn" \
            "env -u script_type dev=tun0 $hooks/openvpn --down" "env script_type=down dev=tun0 $hooks/openvpn --mark tun0" \
            "env script_type=down signal=sighup dev=tun0 config=$tmp/tcp.conf $hooks/openvpn" "env script_type=down dev= $hooks/openvpn"; do
  rc=0 out=$(PATH="$tmp/down:$PATH" $call 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && [[ $out == *"leakguard"* ]]; then echo "  ok   daemon down: $call exits 0 and says why"; passed=$((passed + 1))
  else echo "  FAIL daemon down: $call (exit $rc): $out"; failed=$((failed + 1)); fi
done
# One VPN at a time: every declaration is a claim the daemon refuses while another VPN's tunnel is
# declared and there (decided by the daemon: unit/controller_test); the hook passes the refusal on,
# so wg-quick and OpenVPN stop.
refused() {  # NAME COMMAND...: the hook claims, is refused, fails and says why
  local name=$1; shift
  : >"$LOG"
  local rc=0 out; out=$(LG_BUSY=lo "$@" 2>&1) || rc=$?
  if [ "$rc" -eq 7 ] && [[ $out == *"one VPN at a time: tunnel lo is declared"* ]] &&
     [[ $(cat "$LOG") == "leakguardctl tunnel set --exclusive --interface="* ]]; then echo "  ok   $name"; passed=$((passed + 1))
  else printf '  FAIL %s (exit %s, calls: %s)\n%s\n' "$name" "$rc" "$(cat "$LOG")" "$out"; failed=$((failed + 1)); fi
}
refused "wg-quick pre-up: another VPN is up: refused" "$hooks/wg-quick" pre-up wg1 "$tmp/nomark.conf"
refused "wg-quick up: another VPN is up: refused" "$hooks/wg-quick" up wg1
refused "openvpn --pre-start: another VPN is up: refused" "$hooks/openvpn" --pre-start "$tmp/tcp.conf"
refused "openvpn up: another VPN is up: refused" env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 "$hooks/openvpn"
refused "NetworkManager WireGuard: another VPN is up: refused" env DEVICE_IFACE=wg1 "$hooks/networkmanager" wg1 up
refused "NetworkManager VPN: another VPN is up: refused" env CONNECTION_UUID=p1 VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-up
# A name that cannot be resolved (DNS outside the tunnel is blocked): wg-quick and OpenVPN could
# not resolve it either and would retry (72 s, or for ever). Before the VPN starts, the hooks fail
# at once and say what to do; after it connected, up only says so.
printf '[Interface]\nPrivateKey = aGVsbG8=\n[Peer]\nEndpoint = 198.51.100.1:51820\n[Peer]\nEndpoint = unknown.invalid:51820\n' >"$tmp/name.conf"
printf 'dev tun0\nremote unknown.invalid 1194\nremote 198.51.100.9\n' >"$tmp/name.ovpn"
for call in "$hooks/wg-quick pre-up wg0 $tmp/name.conf" "$hooks/openvpn --pre-start $tmp/name.ovpn"; do
  : >"$LOG"
  rc=0 out=$($call 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] && [[ $out == *"cannot resolve unknown.invalid"*"name the server by address or give it an /etc/hosts entry"* ]] &&
     [[ $out != *"names no peer endpoint"* ]] && [ ! -s "$LOG" ]; then
    echo "  ok   a name it cannot resolve: $call fails at once and says what to do"; passed=$((passed + 1))
  else echo "  FAIL a name it cannot resolve: $call (exit $rc, calls: $(cat "$LOG")): $out"; failed=$((failed + 1)); fi
done
expect "openvpn up: a name it cannot resolve among the other servers is left out" \
  "leakguardctl tunnel set --exclusive --interface=tun0 --endpoint 198.51.100.9:1194/udp" \
  env script_type=up dev=tun0 trusted_ip=198.51.100.9 trusted_port=1194 config="$tmp/name.ovpn" "$hooks/openvpn"
expect_fails "NetworkManager: up with no interface" env DEVICE_IFACE= "$hooks/networkmanager" "" up
expect_fails "NetworkManager: down with no interface" "$hooks/networkmanager" "" down
expect_fails "NetworkManager: vpn-up with no connection" env -u CONNECTION_UUID VPN_IP_IFACE=tun5 "$hooks/networkmanager" tun5 vpn-up
expect_fails "NetworkManager: vpn-up with no interface at all" env CONNECTION_UUID=p1 VPN_IP_IFACE= "$hooks/networkmanager" "" vpn-up
expect_fails "NetworkManager: vpn-down with no interface at all" env CONNECTION_UUID=p1 VPN_IP_IFACE= "$hooks/networkmanager" "" vpn-down
expect_fails "openvpn --pre-start: no configuration named" "$hooks/openvpn" --pre-start
printf 'remote 198.51.100.9\n' >"$tmp/nodev.conf"
expect_fails "openvpn --pre-start: no dev" "$hooks/openvpn" --pre-start "$tmp/nodev.conf"
echo "hooks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
