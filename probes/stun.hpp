#pragma once
// STUN messages (RFC 8489, with the RFC 5389/3489 compatibility a client needs). Pure: bytes in,
// values out. Every length, family and checksum is checked; a malformed or spoofed message is
// rejected with a reason and never misread. No sockets, no clocks, no globals (except the random
// source for transaction ids, which callers may replace by passing their own bytes).
#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/ip.hpp"
#include "common/result.hpp"

namespace leakguard::probes::stun {

// ---- constants, each with the section that defines it ------------------------------------------
inline constexpr std::size_t kHeaderSize = 20;                  ///< RFC 8489 §5
inline constexpr std::uint32_t kMagicCookie = 0x2112A442;       ///< RFC 8489 §5
inline constexpr std::uint32_t kFingerprintXor = 0x5354554e;    ///< RFC 8489 §14.7 ("STUN")
inline constexpr std::uint16_t kMethodBinding = 0x001;          ///< RFC 8489 §18.2
/// Largest message we accept: RFC 8489 §6.1 keeps UDP messages below the path MTU; 64 KiB is
/// what the 16-bit length field can say at all, so over TCP anything up to that is framed.
inline constexpr std::size_t kMaxMessage = kHeaderSize + 0xfffc;

/// Attribute types (RFC 8489 §18.3; 0x0000-0x7FFF comprehension-required, 0x8000-0xFFFF optional).
namespace attr {
inline constexpr std::uint16_t kMappedAddress = 0x0001;       ///< RFC 8489 §14.1
inline constexpr std::uint16_t kResponseAddress = 0x0002;     ///< RFC 3489 §11.2.2 (reserved, RFC 8489 §18.3.1)
inline constexpr std::uint16_t kChangeRequest = 0x0003;       ///< RFC 5780 §7.2
inline constexpr std::uint16_t kSourceAddress = 0x0004;       ///< RFC 3489 §11.2.5 (reserved)
inline constexpr std::uint16_t kChangedAddress = 0x0005;      ///< RFC 3489 §11.2.3 (reserved)
inline constexpr std::uint16_t kUsername = 0x0006;            ///< RFC 8489 §14.3
inline constexpr std::uint16_t kPassword = 0x0007;            ///< RFC 3489 §11.2.7 (reserved)
inline constexpr std::uint16_t kMessageIntegrity = 0x0008;    ///< RFC 8489 §14.5
inline constexpr std::uint16_t kErrorCode = 0x0009;           ///< RFC 8489 §14.8
inline constexpr std::uint16_t kUnknownAttributes = 0x000A;   ///< RFC 8489 §14.13
inline constexpr std::uint16_t kReflectedFrom = 0x000B;       ///< RFC 3489 §11.2.11 (reserved)
inline constexpr std::uint16_t kRealm = 0x0014;               ///< RFC 8489 §14.9
inline constexpr std::uint16_t kNonce = 0x0015;               ///< RFC 8489 §14.10
inline constexpr std::uint16_t kMessageIntegritySha256 = 0x001C;  ///< RFC 8489 §14.6
inline constexpr std::uint16_t kPasswordAlgorithm = 0x001D;   ///< RFC 8489 §14.12
inline constexpr std::uint16_t kUserhash = 0x001E;            ///< RFC 8489 §14.4
inline constexpr std::uint16_t kXorMappedAddress = 0x0020;    ///< RFC 8489 §14.2
/// XOR-MAPPED-ADDRESS as the rfc3489bis drafts numbered it before 0x0020, still sent by old
/// servers and read by Firefox: encoded the same way, used when 0x0020 is absent.
inline constexpr std::uint16_t kXorMappedAddressOld = 0x8020;
inline constexpr std::uint16_t kPriority = 0x0024;            ///< RFC 8445 §16.1 (ICE)
inline constexpr std::uint16_t kUseCandidate = 0x0025;        ///< RFC 8445 §16.1 (ICE)
inline constexpr std::uint16_t kPadding = 0x0026;             ///< RFC 5780 §7.4
inline constexpr std::uint16_t kResponsePort = 0x0027;        ///< RFC 5780 §7.5
inline constexpr std::uint16_t kPasswordAlgorithms = 0x8002;  ///< RFC 8489 §14.11
inline constexpr std::uint16_t kAlternateDomain = 0x8003;     ///< RFC 8489 §14.16
inline constexpr std::uint16_t kSoftware = 0x8022;            ///< RFC 8489 §14.14
inline constexpr std::uint16_t kAlternateServer = 0x8023;     ///< RFC 8489 §14.15
inline constexpr std::uint16_t kFingerprint = 0x8028;         ///< RFC 8489 §14.7
inline constexpr std::uint16_t kIceControlled = 0x8029;       ///< RFC 8445 §16.1 (ICE)
inline constexpr std::uint16_t kIceControlling = 0x802A;      ///< RFC 8445 §16.1 (ICE)
inline constexpr std::uint16_t kResponseOrigin = 0x802B;      ///< RFC 5780 §7.3
inline constexpr std::uint16_t kOtherAddress = 0x802C;        ///< RFC 5780 §7.4
/// True for 0x0000-0x7FFF: an agent that does not understand it must not use the message.
constexpr bool comprehension_required(std::uint16_t type) { return type < 0x8000; }
}  // namespace attr

/// The 96-bit transaction id (RFC 8489 §5). A strong type so that it is never confused with
/// other 12-byte strings.
struct TransactionId {
  std::array<std::uint8_t, 12> bytes{};

  /// 96 bits from the system's random source (RFC 8489 §5: "uniformly and randomly chosen").
  static TransactionId random();
  /// Hex, 24 characters.
  std::string str() const;
  auto operator<=>(const TransactionId&) const = default;
};

/// STUN message class (RFC 8489 §5: the C1 and C0 bits of the message type).
enum class Class : std::uint8_t { request = 0, indication = 1, success = 2, error = 3 };
std::string_view to_string(Class c);

/// An IP address and port as carried by (XOR-)MAPPED-ADDRESS.
struct TransportAddress {
  IpAddress address;
  std::uint16_t port = 0;
  /// "192.0.2.1:32853", "[2001:db8::1]:32853".
  std::string str() const;
  auto operator<=>(const TransportAddress&) const = default;
};

/// ERROR-CODE (RFC 8489 §14.8): class 3..6 and number 0..99 make the code 300..699.
struct ErrorCode {
  int code = 0;
  std::string reason;
  bool operator==(const ErrorCode&) const = default;
};

/// One parsed message. Only what a binding client uses is kept; every attribute was still checked
/// for framing. Comprehension-required attributes this codec does not know are listed, not fatal:
/// RFC 8489 §6.3.3 has a client discard such a response, but a browser that takes the address
/// anyway learns it, and the probe asks what a page can learn (it would miss the answer, never
/// invent one).
struct Message {
  Class cls = Class::request;
  std::uint16_t method = 0;
  TransactionId id;
  std::optional<TransportAddress> xor_mapped;    ///< first XOR-MAPPED-ADDRESS, decoded
  std::optional<TransportAddress> xor_mapped_old;  ///< first 0x8020 (kXorMappedAddressOld), decoded
  std::vector<std::uint16_t> unknown_required;   ///< comprehension-required types not known here
  std::optional<TransportAddress> mapped;        ///< first MAPPED-ADDRESS
  std::optional<ErrorCode> error;                ///< first ERROR-CODE
  std::vector<std::uint16_t> unknown_attributes; ///< UNKNOWN-ATTRIBUTES, in order
  std::optional<std::string> software;           ///< SOFTWARE, as sent (not validated as UTF-8)
  bool has_fingerprint = false;                  ///< FINGERPRINT present (and it was correct)
  bool has_message_integrity = false;            ///< MESSAGE-INTEGRITY(-SHA256) present (not verified)
  std::size_t integrity_offset = 0;              ///< where MESSAGE-INTEGRITY (SHA-1) starts; 0 if absent
  std::size_t attribute_count = 0;               ///< attributes walked (including ignored ones)
};

/// What a binding request carries besides the header.
struct RequestOptions {
  bool fingerprint = true;  ///< add FINGERPRINT (RFC 8489 §7.1 RECOMMENDS it for multiplexing)
  std::string software;     ///< SOFTWARE, if not empty (RFC 8489 §14.14: < 128 characters)
};

/// A Binding request (RFC 8489 §6.1): header, optional SOFTWARE, FINGERPRINT last.
std::vector<std::uint8_t> encode_binding_request(const TransactionId& id, const RequestOptions& options = {});

/// CRC-32 (ISO 3309 / ITU-T V.42, the one zlib and Ethernet use), over `data`.
std::uint32_t crc32(std::span<const std::uint8_t> data);

/// Parses one whole message (one UDP datagram, or one frame cut out of a TCP stream).
/// Rejected, with the reason in the error: shorter than a header; top two bits not zero; length
/// not a multiple of 4 or not matching the size; wrong magic cookie; an attribute running over the
/// end; a bad address family or attribute length; an ERROR-CODE outside 300..699; a FINGERPRINT that
/// is wrong or not last. (An unknown comprehension-required attribute is listed, not fatal; an
/// over-long SOFTWARE or error reason is cut to 763 bytes.)
Result<Message> parse(std::span<const std::uint8_t> bytes);

/// For TCP (RFC 8489 §6.2.2: messages follow each other on the stream, each framed by its own
/// header length): how many bytes the message at the front of `stream` occupies, once at least
/// the header is there. Fails on a header that cannot start a STUN message.
Result<std::size_t> frame_size(std::span<const std::uint8_t> header);

/// Cuts whole messages out of a TCP stream (RFC 8489 §6.2.2): bytes in, frames out, in order.
/// Bounded: it keeps at most one message (kMaxMessage) plus the last append's bytes. A header that
/// cannot start a STUN message breaks the stream for good (a stream cannot be resynchronised):
/// what is buffered from there is handed out once as one last piece, then everything is ignored.
class StreamFramer {
 public:
  /// Called with each whole frame (and once with the unframeable rest); returning false stops the
  /// current append (the rest stays buffered).
  using Out = std::function<bool(std::span<const std::uint8_t> frame)>;
  void append(std::span<const std::uint8_t> bytes, const Out& out);
  bool broken() const { return broken_; }
  /// Bytes held, not yet a whole frame.
  std::size_t buffered() const { return buffer_.size() - start_; }

 private:
  std::vector<std::uint8_t> buffer_;
  std::size_t start_ = 0;  // where the next frame begins in buffer_
  bool broken_ = false;
};

/// A binding transaction's answer, as a client uses it.
struct BindingSuccess {
  TransportAddress mapped;
  bool legacy = false;  ///< taken from MAPPED-ADDRESS (an RFC 3489 server), not XOR-MAPPED-ADDRESS
  bool operator==(const BindingSuccess&) const = default;
};
struct BindingError {
  ErrorCode error;
  std::vector<std::uint16_t> unknown_attributes;  ///< with 420 (Unknown Attribute)
  bool operator==(const BindingError&) const = default;
};

/// Reads a parsed message as the answer to a Binding request.
/// - Not a Binding success or error response: rejected (wrong method or class).
/// - Success: XOR-MAPPED-ADDRESS when present (RFC 8489 §14.2). MAPPED-ADDRESS is used only where
///   RFC 5389 §12.1 lets a client interoperate with an RFC 3489 server: there is no
///   XOR-MAPPED-ADDRESS, `legacy_allowed` is set (UDP: RFC 3489 had no TCP), and the response
///   carries nothing an RFC 3489 server cannot send (no FINGERPRINT, no MESSAGE-INTEGRITY-SHA256).
///   A modern response without XOR-MAPPED-ADDRESS is rejected, not read from its MAPPED-ADDRESS:
///   that is the attribute NATs with "helpful" ALGs rewrite.
/// - Error response: must carry ERROR-CODE (RFC 8489 §6.3.4).
/// - An unspecified mapped address (0.0.0.0, ::) is rejected: no server observes that source.
Result<std::variant<BindingSuccess, BindingError>> read_binding_response(const Message& m, bool legacy_allowed);

/// The bytes MESSAGE-INTEGRITY's HMAC covers (RFC 8489 §14.5): the message up to the attribute,
/// with the header length rewritten to end just after it. Empty if the message has none.
std::vector<std::uint8_t> integrity_input(std::span<const std::uint8_t> bytes, const Message& m);

// ---- helpers for servers in tests and benches (a responder is a few lines with these) ----------

/// A Binding success response with XOR-MAPPED-ADDRESS (and FINGERPRINT).
std::vector<std::uint8_t> encode_binding_success(const TransactionId& id, const TransportAddress& mapped,
                                                 bool fingerprint = true);
/// A Binding error response with ERROR-CODE (and FINGERPRINT).
std::vector<std::uint8_t> encode_binding_error(const TransactionId& id, int code, const std::string& reason,
                                               bool fingerprint = true);

}  // namespace leakguard::probes::stun
