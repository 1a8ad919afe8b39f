#include "probes/interfaces.hpp"

#include <linux/if_addr.h>

#include "netwatch/watcher.hpp"

namespace leakguard::probes {

namespace {

template <typename ClassOf>
std::vector<Interface> collect(const netwatch::NetModel& m, ClassOf class_of) {
  std::vector<Interface> out;
  for (const auto& [index, link] : m.links()) {
    if (!link.up()) continue;
    Interface itf{link.name, index, class_of(link), {}};
    for (const auto& a : m.addresses_of(index)) {
      if (a.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) continue;
      itf.addresses.push_back(a.prefix.address);
    }
    out.push_back(std::move(itf));
  }
  return out;
}

}  // namespace

std::vector<Interface> interfaces_from(const netwatch::NetModel& m, const netwatch::Classifier& c) {
  return collect(m, [&](const netwatch::Link& l) { return m.classify(l, c); });
}

std::vector<Interface> interfaces_from(const netwatch::NetModel& m, const std::function<bool(const std::string&)>& is_tunnel) {
  return collect(m, [&](const netwatch::Link& l) {
    const auto cls = m.classify(l, netwatch::Classifier{});
    if (cls != InterfaceClass::loopback && is_tunnel && is_tunnel(l.name)) return InterfaceClass::tunnel;
    return cls;
  });
}

Result<std::vector<Interface>> current_interfaces(const netwatch::Classifier& c) {
  auto m = netwatch::dump_model();
  if (!m) return tl::unexpected(m.error());
  return interfaces_from(*m, c);
}

}  // namespace leakguard::probes
