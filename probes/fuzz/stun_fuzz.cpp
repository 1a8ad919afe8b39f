// Fuzz target for the STUN codec and the transaction's receive path. Built with clang's libFuzzer
// (-DLEAKGUARD_FUZZ=ON, see probes/CMakeLists.txt) or, under any compiler, with replay_main.cpp,
// which runs the committed corpus and deterministic mutations of it as an ordinary test.
//
// Besides "no crash, no sanitizer report", it checks what the codec promises:
// - a parsed message's addresses have the right family and the id is the header's;
// - frame_size() and parse() agree on where a message ends;
// - a reflexive address is only ever taken from a message carrying our transaction id;
// - the TCP stream framer hands out whole frames in order and holds at most one message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "probes/stun.hpp"
#include "probes/transaction.hpp"

namespace {

void require(bool ok) {
  if (!ok) std::abort();  // the fuzzer reports it as a crash with the input
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace leakguard;
  using namespace leakguard::probes;
  const std::span<const std::uint8_t> in(data, size);

  auto m = stun::parse(in);
  if (m) {
    require(size >= stun::kHeaderSize && size % 4 == 0);
    for (std::size_t i = 0; i < 12; ++i) require(m->id.bytes[i] == data[8 + i]);
    if (m->xor_mapped) require(m->xor_mapped->address.family == Family::v4 || m->xor_mapped->address.family == Family::v6);
    if (m->error) require(m->error->code >= 300 && m->error->code <= 699);
    auto framed = stun::frame_size(in.first(stun::kHeaderSize));
    require(framed && *framed == size);
    for (bool legacy : {false, true}) {
      auto r = stun::read_binding_response(*m, legacy);
      if (r && std::holds_alternative<stun::BindingSuccess>(*r)) {
        const auto& ok = std::get<stun::BindingSuccess>(*r);
        require(!ok.mapped.address.is_unspecified());
        // Re-encoding what we read and parsing it again gives the same address.
        auto again = stun::parse(stun::encode_binding_success(m->id, ok.mapped));
        require(again && again->xor_mapped == ok.mapped);
      }
    }
    auto integrity = stun::integrity_input(in, *m);
    require(integrity.empty() || integrity.size() == m->integrity_offset);
  }

  // The transaction: fed the input as if from the server. It may accept only its own id.
  const stun::TransportAddress server{IpAddress::v4(203, 0, 113, 3), 3478};
  stun::TransactionId id;
  if (size >= stun::kHeaderSize)
    for (std::size_t i = 0; i < 12; ++i) id.bytes[i] = data[8 + i];  // give matching ids a chance
  const TimePoint t0{};
  for (bool reliable : {false, true}) {
    Transaction t(id, server, {.total = std::chrono::milliseconds(1000), .reliable = reliable}, t0);
    (void)t.next(t0);
    const Receipt receipt = t.receive(t0 + std::chrono::milliseconds(1), server, in);
    if (receipt == Receipt::accepted) {
      require(m && m->id == id);
      require(t.done());
    } else {
      require(!t.done());
    }
  }

  // The TCP stream framer, fed the input in pieces whose sizes come from the input itself: every
  // frame it hands out is one whole message by its header, the pieces are the input in order
  // (frames, then at most one unframeable rest), and it never holds more than one message plus
  // the last piece.
  stun::StreamFramer framer;
  std::size_t handed = 0, pieces = 0, pos = 0;
  bool after_break = false;
  while (pos < size) {
    const std::size_t chunk = std::min<std::size_t>(size - pos, 1 + data[pos] % 97);
    const bool was_broken = framer.broken();
    framer.append(in.subspan(pos, chunk), [&](std::span<const std::uint8_t> f) {
      require(!after_break);
      require(f.data() != nullptr && f.size() > 0);
      require(std::equal(f.begin(), f.end(), in.begin() + static_cast<std::ptrdiff_t>(handed)));
      if (framer.broken()) {
        after_break = true;
      } else {
        auto fs = stun::frame_size(f.first(stun::kHeaderSize));
        require(fs && *fs == f.size());
      }
      handed += f.size();
      ++pieces;
      return true;
    });
    if (was_broken) require(framer.buffered() == 0);
    require(framer.buffered() <= stun::kMaxMessage + chunk);
    pos += chunk;
  }
  require(handed + framer.buffered() == size || framer.broken());
  return 0;
}
