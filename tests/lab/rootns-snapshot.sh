#!/usr/bin/env bash
# Prints the root network namespace's links, addresses, routes, rules, nftables ruleset and
# forwarding switches in a stable form, so two snapshots can be compared with diff.
# Lifetimes and counters that tick on their own are left out.
set -euo pipefail
strip() { sed -E 's/ (valid_lft|preferred_lft|expires) [^ ]+//g; s/ +$//'; }
echo "## links";  ip -o link show | sed -E 's/^[0-9]+: //' | strip | sort
echo "## addresses"; ip -o addr show | sed -E 's/^[0-9]+: //' | strip | sort
echo "## routes"; { ip -4 route show table all; ip -6 route show table all; } | strip | sort
echo "## rules";  { ip -4 rule show; ip -6 rule show; } | sort
echo "## nftables"; nft list ruleset
echo "## sysctl"; sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding
