#include "common/lan.hpp"

namespace leakguard {

const std::vector<Prefix>& private_ranges() {
  static const std::vector<Prefix> ranges{*Prefix::parse("10.0.0.0/8"), *Prefix::parse("172.16.0.0/12"),
                                          *Prefix::parse("192.168.0.0/16"), *Prefix::parse("fc00::/7")};
  return ranges;
}

std::optional<Prefix> intersect(const Prefix& p, const Prefix& range) {
  if (p.address.family != range.address.family) return std::nullopt;
  if (p.length >= range.length && range.contains(p.address)) return p.network();
  if (range.length > p.length && p.contains(range.address)) return range.network();
  return std::nullopt;
}

bool lan_sized(const Prefix& p) {
  return p.length >= (p.address.family == Family::v4 ? kMinLanPrefixV4 : kMinLanPrefixV6);
}

}  // namespace leakguard
