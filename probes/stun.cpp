#include "probes/stun.hpp"

#include <cstdio>
#include <random>

namespace leakguard::probes::stun {
namespace {

constexpr std::string_view kStep = "parse stun";

std::uint16_t be16(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}
std::uint32_t be32(std::span<const std::uint8_t> b, std::size_t at) {
  return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) | (std::uint32_t{b[at + 2]} << 8) |
         std::uint32_t{b[at + 3]};
}
void put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v));
}
void set16(std::vector<std::uint8_t>& out, std::size_t at, std::size_t v) {
  out[at] = static_cast<std::uint8_t>(v >> 8);
  out[at + 1] = static_cast<std::uint8_t>(v);
}

std::string hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

// RFC 8489 §5: the class bits C1 (bit 8) and C0 (bit 4) are interleaved with the method bits.
std::uint16_t message_type(std::uint16_t method, Class c) {
  const auto cls = static_cast<std::uint16_t>(c);
  return static_cast<std::uint16_t>((method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) |
                                    ((cls & 0x1) << 4) | ((cls & 0x2) << 7));
}

std::vector<std::uint8_t> header(std::uint16_t type, const TransactionId& id) {
  std::vector<std::uint8_t> out;
  out.reserve(64);
  put16(out, type);
  put16(out, 0);  // length, set when the attributes are in
  put32(out, kMagicCookie);
  out.insert(out.end(), id.bytes.begin(), id.bytes.end());
  return out;
}

void put_attribute(std::vector<std::uint8_t>& out, std::uint16_t type, std::span<const std::uint8_t> value) {
  put16(out, type);
  put16(out, static_cast<std::uint16_t>(value.size()));
  out.insert(out.end(), value.begin(), value.end());
  while (out.size() % 4 != 0) out.push_back(0);  // RFC 8489 §14: padded to a multiple of 4
}

// RFC 8489 §14.7: CRC-32 of the message up to the attribute, with the header length already
// counting the 8 bytes of FINGERPRINT, XORed with 0x5354554e.
void finish(std::vector<std::uint8_t>& out, bool fingerprint) {
  set16(out, 2, out.size() - kHeaderSize + (fingerprint ? 8 : 0));
  if (!fingerprint) return;
  const std::uint32_t fp = crc32(out) ^ kFingerprintXor;
  put16(out, attr::kFingerprint);
  put16(out, 4);
  put32(out, fp);
}

// (XOR-)MAPPED-ADDRESS value (RFC 8489 §14.1, §14.2): reserved byte, family, port, address.
Result<TransportAddress> read_address(std::span<const std::uint8_t> v, bool xored, const TransactionId& id,
                                      std::string_view name) {
  if (v.size() < 4) return fail(std::string(kStep), std::string(name) + " shorter than 4 bytes");
  TransportAddress ta;
  const std::uint8_t family = v[1];
  std::size_t len = 0;
  if (family == 0x01) {
    ta.address.family = Family::v4;
    len = 4;
  } else if (family == 0x02) {
    ta.address.family = Family::v6;
    len = 16;
  } else {
    return fail(std::string(kStep), std::string(name) + " has unknown address family " + std::to_string(family));
  }
  if (v.size() != 4 + len)
    return fail(std::string(kStep), std::string(name) + " is " + std::to_string(v.size()) + " bytes, " +
                                        std::to_string(4 + len) + " expected for " + std::string(to_string(ta.address.family)));
  ta.port = be16(v, 2);
  for (std::size_t i = 0; i < len; ++i) ta.address.bytes[i] = v[4 + i];
  if (xored) {
    // X-Port: XOR with the cookie's top 16 bits; X-Address: with the cookie, then (IPv6) the id.
    ta.port = static_cast<std::uint16_t>(ta.port ^ (kMagicCookie >> 16));
    std::array<std::uint8_t, 16> pad{};
    pad[0] = static_cast<std::uint8_t>(kMagicCookie >> 24);
    pad[1] = static_cast<std::uint8_t>(kMagicCookie >> 16);
    pad[2] = static_cast<std::uint8_t>(kMagicCookie >> 8);
    pad[3] = static_cast<std::uint8_t>(kMagicCookie);
    for (std::size_t i = 0; i < 12; ++i) pad[4 + i] = id.bytes[i];
    for (std::size_t i = 0; i < len; ++i) ta.address.bytes[i] ^= pad[i];
  }
  return ta;
}

// Attributes whose meaning we know; everything else in 0x0000-0x7FFF makes the message unusable
// (RFC 8489 §6.3.3/§6.3.4). The RFC 3489 ones are listed because RFC 5389 §12.1 tells clients to
// ignore them in answers from old servers; the RFC 5780 ones appear in answers from servers
// that support NAT behaviour discovery; the ICE ones (RFC 8445) in connectivity checks.
bool understood(std::uint16_t t) {
  switch (t) {
    case attr::kMappedAddress:
    case attr::kResponseAddress:
    case attr::kChangeRequest:
    case attr::kSourceAddress:
    case attr::kChangedAddress:
    case attr::kUsername:
    case attr::kPassword:
    case attr::kMessageIntegrity:
    case attr::kErrorCode:
    case attr::kUnknownAttributes:
    case attr::kReflectedFrom:
    case attr::kRealm:
    case attr::kNonce:
    case attr::kMessageIntegritySha256:
    case attr::kPasswordAlgorithm:
    case attr::kUserhash:
    case attr::kXorMappedAddress:
    case attr::kPadding:
    case attr::kResponsePort:
    case attr::kPriority:
    case attr::kUseCandidate:
      return true;
    default:
      return !attr::comprehension_required(t);
  }
}

// RFC 8489 §14.8 and §14.14: at most 763 bytes (127 characters of up to 6 bytes, as decoded).
constexpr std::size_t kMaxText = 763;

}  // namespace

TransactionId TransactionId::random() {
  // std::random_device reads the kernel's random source (getrandom) on Linux with libstdc++.
  static thread_local std::random_device rd;
  TransactionId id;
  for (std::size_t i = 0; i < id.bytes.size(); i += 4) {
    const std::uint32_t r = rd();
    for (std::size_t k = 0; k < 4; ++k) id.bytes[i + k] = static_cast<std::uint8_t>(r >> (8 * k));
  }
  return id;
}

std::string TransactionId::str() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  for (auto b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 0xf];
  }
  return s;
}

std::string_view to_string(Class c) {
  switch (c) {
    case Class::request: return "request";
    case Class::indication: return "indication";
    case Class::success: return "success response";
    case Class::error: return "error response";
  }
  return "?";
}

std::string TransportAddress::str() const {
  if (address.family == Family::v6) return "[" + address.str() + "]:" + std::to_string(port);
  return address.str() + ":" + std::to_string(port);
}

std::uint32_t crc32(std::span<const std::uint8_t> data) {
  // The reflected polynomial 0xEDB88320, table built once.
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (auto b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::vector<std::uint8_t> encode_binding_request(const TransactionId& id, const RequestOptions& options) {
  auto out = header(message_type(kMethodBinding, Class::request), id);
  if (!options.software.empty()) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(options.software.data());
    put_attribute(out, attr::kSoftware, {p, std::min(options.software.size(), kMaxText)});
  }
  finish(out, options.fingerprint);
  return out;
}

std::vector<std::uint8_t> encode_binding_success(const TransactionId& id, const TransportAddress& mapped,
                                                 bool fingerprint) {
  auto out = header(message_type(kMethodBinding, Class::success), id);
  const bool v6 = mapped.address.family == Family::v6;
  std::vector<std::uint8_t> v{0, static_cast<std::uint8_t>(v6 ? 0x02 : 0x01)};
  put16(v, static_cast<std::uint16_t>(mapped.port ^ (kMagicCookie >> 16)));
  std::array<std::uint8_t, 16> pad{0x21, 0x12, 0xA4, 0x42};
  for (std::size_t i = 0; i < 12; ++i) pad[4 + i] = id.bytes[i];
  for (std::size_t i = 0; i < mapped.address.size(); ++i) v.push_back(mapped.address.bytes[i] ^ pad[i]);
  put_attribute(out, attr::kXorMappedAddress, v);
  finish(out, fingerprint);
  return out;
}

std::vector<std::uint8_t> encode_binding_error(const TransactionId& id, int code, const std::string& reason,
                                               bool fingerprint) {
  auto out = header(message_type(kMethodBinding, Class::error), id);
  std::vector<std::uint8_t> v{0, 0, static_cast<std::uint8_t>(code / 100), static_cast<std::uint8_t>(code % 100)};
  v.insert(v.end(), reason.begin(), reason.end());
  put_attribute(out, attr::kErrorCode, v);
  finish(out, fingerprint);
  return out;
}

Result<std::size_t> frame_size(std::span<const std::uint8_t> h) {
  if (h.size() < kHeaderSize) return fail(std::string(kStep), "header needs 20 bytes, have " + std::to_string(h.size()));
  if ((h[0] & 0xC0) != 0) return fail(std::string(kStep), "not STUN: the top two bits of the type are not zero");
  const std::size_t length = be16(h, 2);
  if (length % 4 != 0) return fail(std::string(kStep), "length " + std::to_string(length) + " is not a multiple of 4");
  if (be32(h, 4) != kMagicCookie) return fail(std::string(kStep), "wrong magic cookie");
  return kHeaderSize + length;
}

void StreamFramer::append(std::span<const std::uint8_t> bytes, const Out& out) {
  if (broken_) return;
  // Compact before growing: what was handed out already is dropped (one move per append).
  if (start_ > 0) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  while (buffer_.size() - start_ >= kHeaderSize) {
    const std::span<const std::uint8_t> rest(buffer_.data() + start_, buffer_.size() - start_);
    auto size = frame_size(rest.first(kHeaderSize));
    if (!size) {
      broken_ = true;
      (void)out(rest);
      buffer_.clear();
      buffer_.shrink_to_fit();
      start_ = 0;
      return;
    }
    if (rest.size() < *size) return;
    start_ += *size;
    if (!out(rest.first(*size))) return;
  }
}

Result<Message> parse(std::span<const std::uint8_t> b) {
  const std::string step(kStep);
  if (b.size() < kHeaderSize) return fail(step, "message of " + std::to_string(b.size()) + " bytes is shorter than the 20-byte header");
  auto size = frame_size(b.first(kHeaderSize));
  if (!size) return tl::unexpected(size.error());
  if (*size != b.size())
    return fail(step, "header length says " + std::to_string(*size - kHeaderSize) + " bytes of attributes, the message has " +
                          std::to_string(b.size() - kHeaderSize));

  Message m;
  const std::uint16_t type = be16(b, 0);
  m.cls = static_cast<Class>(((type >> 7) & 0x2) | ((type >> 4) & 0x1));
  m.method = static_cast<std::uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
  for (std::size_t i = 0; i < 12; ++i) m.id.bytes[i] = b[8 + i];

  // After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count (RFC 8489 §14.5);
  // after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT (§14.6). The rest is walked but not used, so a
  // middlebox cannot append an address behind the integrity check.
  enum class Zone { open, after_mi, after_mi256 } zone = Zone::open;
  std::size_t at = kHeaderSize;
  while (at < b.size()) {
    if (m.has_fingerprint) return fail(step, "attribute after FINGERPRINT (it must be last, RFC 8489 §14.7)");
    if (b.size() - at < 4) return fail(step, "attribute header at offset " + std::to_string(at) + " runs over the end");
    const std::uint16_t t = be16(b, at);
    const std::size_t len = be16(b, at + 2);
    const std::size_t padded = (len + 3) & ~std::size_t{3};
    if (b.size() - at - 4 < padded)
      return fail(step, "attribute " + hex16(t) + " of " + std::to_string(len) + " bytes at offset " + std::to_string(at) +
                            " runs over the end");
    const auto v = b.subspan(at + 4, len);
    ++m.attribute_count;

    if (t == attr::kFingerprint) {
      if (len != 4) return fail(step, "FINGERPRINT is " + std::to_string(len) + " bytes, 4 expected");
      const std::uint32_t want = crc32(b.first(at)) ^ kFingerprintXor;
      if (be32(v, 0) != want) return fail(step, "FINGERPRINT does not match the message (corrupt or not STUN)");
      m.has_fingerprint = true;
    } else if (zone == Zone::after_mi256 || (zone == Zone::after_mi && t != attr::kMessageIntegritySha256)) {
      // ignored, see above
    } else if (t == attr::kMessageIntegrity || t == attr::kMessageIntegritySha256) {
      if (t == attr::kMessageIntegrity && len != 20) return fail(step, "MESSAGE-INTEGRITY is " + std::to_string(len) + " bytes, 20 expected");
      if (t == attr::kMessageIntegritySha256 && (len < 16 || len > 32 || len % 4 != 0))
        return fail(step, "MESSAGE-INTEGRITY-SHA256 is " + std::to_string(len) + " bytes, 16..32 in steps of 4 expected");
      if (t == attr::kMessageIntegrity && !m.has_message_integrity) m.integrity_offset = at;
      m.has_message_integrity = true;
      zone = t == attr::kMessageIntegrity ? Zone::after_mi : Zone::after_mi256;
    } else if (!understood(t)) {
      if (m.unknown_required.size() < 16) m.unknown_required.push_back(t);
    } else if (t == attr::kXorMappedAddress || t == attr::kMappedAddress || t == attr::kXorMappedAddressOld) {
      const bool x = t != attr::kMappedAddress;
      auto a = read_address(v, x, m.id, t == attr::kMappedAddress ? "MAPPED-ADDRESS" : "XOR-MAPPED-ADDRESS");
      if (!a) return tl::unexpected(a.error());
      auto& slot = t == attr::kXorMappedAddress ? m.xor_mapped : t == attr::kXorMappedAddressOld ? m.xor_mapped_old : m.mapped;
      if (!slot) slot = *a;  // RFC 8489 §14: only the first occurrence counts
    } else if (t == attr::kErrorCode) {
      if (len < 4) return fail(step, "ERROR-CODE shorter than 4 bytes");
      const int cls = v[2] & 0x07;
      const int number = v[3];
      if (cls < 3 || cls > 6) return fail(step, "ERROR-CODE class " + std::to_string(cls) + " outside 3..6");
      if (number > 99) return fail(step, "ERROR-CODE number " + std::to_string(number) + " outside 0..99");
      // (A reason longer than RFC 8489's 763 bytes is cut, not fatal: the code is what counts.)
      if (!m.error) m.error = ErrorCode{cls * 100 + number, std::string(v.begin() + 4, v.begin() + 4 + std::min(len - 4, kMaxText))};
    } else if (t == attr::kUnknownAttributes) {
      if (len % 2 != 0) return fail(step, "UNKNOWN-ATTRIBUTES of odd length " + std::to_string(len));
      if (m.unknown_attributes.empty())
        for (std::size_t i = 0; i < len; i += 2) m.unknown_attributes.push_back(be16(v, i));
    } else if (t == attr::kSoftware) {
      if (!m.software) m.software = std::string(v.begin(), v.begin() + std::min(len, kMaxText));  // cut, not fatal
    }
    at += 4 + padded;
  }
  return m;
}

Result<std::variant<BindingSuccess, BindingError>> read_binding_response(const Message& m, bool legacy_allowed) {
  const std::string step = "read binding response";
  if (m.method != kMethodBinding) return fail(step, "method " + hex16(m.method) + " is not Binding");
  if (m.cls == Class::success) {
    if (const auto& x = m.xor_mapped ? m.xor_mapped : m.xor_mapped_old) {
      if (x->address.is_unspecified()) return fail(step, "XOR-MAPPED-ADDRESS is the unspecified address");
      return BindingSuccess{*x, false};
    }
    if (!m.mapped) return fail(step, "success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS");
    if (!legacy_allowed) return fail(step, "MAPPED-ADDRESS only (RFC 3489 answer) where RFC 3489 does not apply");
    if (m.has_fingerprint || m.has_message_integrity)
      return fail(step, "an RFC 5389+ response (FINGERPRINT or MESSAGE-INTEGRITY) without XOR-MAPPED-ADDRESS");
    if (m.mapped->address.is_unspecified()) return fail(step, "MAPPED-ADDRESS is the unspecified address");
    return BindingSuccess{*m.mapped, true};
  }
  if (m.cls == Class::error) {
    if (!m.error) return fail(step, "error response without ERROR-CODE");
    return BindingError{*m.error, m.unknown_attributes};
  }
  return fail(step, "a " + std::string(to_string(m.cls)) + " is not a response");
}

std::vector<std::uint8_t> integrity_input(std::span<const std::uint8_t> bytes, const Message& m) {
  if (m.integrity_offset < kHeaderSize || m.integrity_offset > bytes.size()) return {};
  std::vector<std::uint8_t> out(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(m.integrity_offset));
  // The length counts up to and including MESSAGE-INTEGRITY (4-byte header + 20-byte HMAC).
  set16(out, 2, m.integrity_offset - kHeaderSize + 24);
  return out;
}

}  // namespace leakguard::probes::stun
