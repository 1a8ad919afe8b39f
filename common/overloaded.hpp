#pragma once
// The usual visitor helper: overloaded{[](A){...}, [](B){...}} for std::visit.

namespace leakguard {

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

}  // namespace leakguard
