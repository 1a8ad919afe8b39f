#pragma once
// Strong types for kernel numbers, so an interface index never passes for a fwmark.
#include <compare>
#include <cstdint>
#include <string>

namespace leakguard {

template <typename Tag, typename T>
struct Strong {
  T value{};
  constexpr Strong() = default;
  constexpr explicit Strong(T v) : value(v) {}
  constexpr auto operator<=>(const Strong&) const = default;
  std::string str() const { return std::to_string(value); }
};

/// Kernel interface index (ifindex); 0 means "none".
using IfIndex = Strong<struct IfIndexTag, std::uint32_t>;
/// Packet mark (SO_MARK / nft meta mark); 0 means "unmarked".
using FwMark = Strong<struct FwMarkTag, std::uint32_t>;

}  // namespace leakguard

template <typename Tag, typename T>
struct std::hash<leakguard::Strong<Tag, T>> {
  std::size_t operator()(const leakguard::Strong<Tag, T>& s) const noexcept { return std::hash<T>{}(s.value); }
};
