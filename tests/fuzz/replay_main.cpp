// Runs a fuzz target without libFuzzer: every file of a corpus directory as it is, then a given
// number of deterministic mutations of them (bit flips, truncations, byte runs, splices), so the
// target is exercised by every `ctest` run and under the sanitizers of a normal build.
// Usage: REPLAY CORPUS_DIR [MUTATIONS]
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {
using Bytes = std::vector<std::uint8_t>;

void run(const Bytes& b) {
  // An exact-size heap copy, so a sanitizer notices any read past the end.
  auto* p = new std::uint8_t[b.size() + (b.empty() ? 1 : 0)];
  std::copy(b.begin(), b.end(), p);
  LLVMFuzzerTestOneInput(p, b.size());
  delete[] p;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS]\n", argv[0]);
    return 2;
  }
  std::vector<Bytes> corpus;
  for (const auto& e : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream f(e.path(), std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no corpus in %s\n", argv[1]);
    return 1;
  }
  for (const auto& b : corpus) run(b);
  const long mutations = argc > 2 ? std::stol(argv[2]) : 10000;
  std::mt19937 rng(20261125);  // fixed seed: a failure reproduces
  auto pick = [&](std::size_t n) { return n ? std::uniform_int_distribution<std::size_t>(0, n - 1)(rng) : 0; };
  for (long i = 0; i < mutations; ++i) {
    Bytes b = corpus[pick(corpus.size())];
    const int edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < edits && !b.empty(); ++e) {
      switch (pick(5)) {
        case 0: b[pick(b.size())] ^= static_cast<std::uint8_t>(1u << pick(8)); break;
        case 1: b.resize(pick(b.size() + 1)); break;
        case 2: b[pick(b.size())] = static_cast<std::uint8_t>(pick(256)); break;
        case 3: {  // a length field's favourite values
          const std::uint8_t v[] = {0x00, 0x01, 0x03, 0x04, 0x7f, 0x80, 0xff};
          b[pick(b.size())] = v[pick(sizeof v)];
          break;
        }
        default: {  // splice with another corpus entry
          const Bytes& o = corpus[pick(corpus.size())];
          const std::size_t at = pick(b.size());
          b.resize(at);
          b.insert(b.end(), o.begin() + static_cast<std::ptrdiff_t>(pick(o.size())), o.end());
        }
      }
    }
    run(b);
  }
  std::printf("replayed %zu corpus files and %ld mutations\n", corpus.size(), mutations);
  return 0;
}
