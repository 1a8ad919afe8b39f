#pragma once
// The prober's interface list, from the network model: shared by leakguardctl and the daemon so
// both probe exactly the same interfaces and classify them the same way.
#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "netwatch/model.hpp"
#include "probes/report.hpp"

namespace leakguard::probes {

/// Every interface that is administratively up, classified by `c`, with its usable addresses
/// (addresses still in duplicate address detection or that failed it are left out, as the kernel
/// would not let a socket bind them). Loopback and address-less interfaces are included so that
/// the prober can name and classify the interface an answer arrives on.
std::vector<Interface> interfaces_from(const netwatch::NetModel& m, const netwatch::Classifier& c);
/// The same with tunnels named by a predicate (the daemon's: configured patterns + declared tunnel).
std::vector<Interface> interfaces_from(const netwatch::NetModel& m, const std::function<bool(const std::string&)>& is_tunnel);

/// The same for the calling thread's network namespace, dumped over rtnetlink now.
Result<std::vector<Interface>> current_interfaces(const netwatch::Classifier& c);

}  // namespace leakguard::probes
