// The tunnel declaration kept across restarts: what is written reads back the same, and nothing
// else is trusted (another boot, bad fields, a file someone else could have written).
#include "daemon/declaration_file.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

using namespace leakguard;
using namespace leakguard::daemon;

namespace {

TunnelDeclaration sample() {
  auto t = check_tunnel("wg0", {"198.51.100.1:51820/udp", "[2001:db8::1]:443/tcp"}, 51820);
  REQUIRE(t);
  return *t;
}

/// A scratch directory, removed at the end.
struct Dir {
  std::string path;
  Dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lgt-decl-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Dir() { std::filesystem::remove_all(path); }
  std::string file() const { return path + "/" + std::string(kDeclarationFile); }
  void write(const std::string& text, mode_t mode = 0600) const {
    std::ofstream(file()) << text;
    REQUIRE(::chmod(file().c_str(), mode) == 0);
  }
};

}  // namespace

TEST_CASE("the text reads back as the same declaration, of this boot only") {
  const auto t = sample();
  const std::string text = declaration_text(t, "boot-1");
  auto back = parse_declaration(text, "boot-1");
  REQUIRE_MESSAGE(back, (back ? "" : back.error().str()));
  CHECK(*back == t);
  auto stale = parse_declaration(text, "boot-2");
  REQUIRE_FALSE(stale);
  CHECK(stale.error().message.find("stale") != std::string::npos);
  CHECK_FALSE(parse_declaration(text, ""));  // without a boot id nothing is trusted
  auto none = check_tunnel("tun0", {"203.0.113.9:1194"}, 0);
  REQUIRE(none);
  auto back_none = parse_declaration(declaration_text(*none, "b"), "b");
  REQUIRE(back_none);
  CHECK_FALSE(back_none->fwmark.has_value());
}

TEST_CASE("a declaration made ahead of its interface says so, and only a boolean is read as that") {
  const auto t = sample();
  bool ahead = false;
  auto back = parse_declaration(declaration_text(t, "b", true), "b", &ahead);
  REQUIRE(back);
  CHECK(*back == t);
  CHECK(ahead);
  auto plain = parse_declaration(declaration_text(t, "b"), "b", &ahead);
  REQUIRE(plain);
  CHECK_FALSE(ahead);  // absent: not ahead
  std::string text = declaration_text(t, "b", true);
  text.replace(text.find("true"), 4, "\"yes\"");
  CHECK_FALSE(parse_declaration(text, "b", &ahead));
}

TEST_CASE("a boot is told from others by the kernel's boot id, else only where nothing survives a boot") {
  Dir d;  // under the temporary directory: a tmpfs or not, the boot id decides here
  const std::string id = current_boot_id(d.path);
  CHECK_FALSE(id.empty());
  CHECK(id == current_boot_id(d.path));  // the same boot, the same answer
  if (std::ifstream("/proc/sys/kernel/random/boot_id").good()) CHECK(id != "volatile");
}

TEST_CASE("a declaration file is checked as a D-Bus call would be") {
  const std::string head = R"({"version": 1, "boot_id": "b", )";
  struct Case {
    std::string text, why;
  };
  const Case cases[] = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {"{\"version\": 1, \"boot_id\": \"b\", \"interface\": \"wg0\", \"endpoints\": [\"198.51.100.1:51820\"], \"fwmark\": 0",
       "not a JSON object"},
      {R"({"version": 2, "boot_id": "b", "interface": "wg0", "endpoints": ["198.51.100.1:51820"], "fwmark": 0})",
       "not version 1"},
      {head + R"("endpoints": ["198.51.100.1:51820"], "fwmark": 0})", "no interface"},
      {head + R"("interface": "wg0", "fwmark": 0})", "no endpoints"},
      {head + R"("interface": "wg0", "endpoints": [51820], "fwmark": 0})", "not a string"},
      {head + R"("interface": "wg0", "endpoints": ["198.51.100.1:51820"]})", "no fwmark"},
      {head + R"("interface": "wg0", "endpoints": ["198.51.100.1:51820"], "fwmark": -1})", "no fwmark"},
      {head + R"("interface": "wg0", "endpoints": ["198.51.100.1:51820"], "fwmark": 4294967296})", "no fwmark"},
      {head + R"("interface": "e*", "endpoints": ["198.51.100.1:51820"], "fwmark": 0})", "named literally"},
      {head + R"("interface": "wg0", "endpoints": [], "fwmark": 0})", "at least one endpoint"},
      {head + R"("interface": "wg0", "endpoints": ["198.51.100.1:0"], "fwmark": 0})", "endpoints"},
      {head + R"("interface": "wg0", "endpoints": ["198.51.100.1:1", "198.51.100.1:1/udp"], "fwmark": 0})", "twice"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.text);
    auto r = parse_declaration(c.text, "b");
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(r.error().message.find(c.why) != std::string::npos, r.error().message);
  }
}

TEST_CASE("kept in a directory: saved, loaded, cleared - and a file not safe to trust is refused and removed") {
  Dir d;
  const auto t = sample();
  auto none = load_declaration(d.path, "b");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());  // no file: nothing declared
  REQUIRE(save_declaration(d.path, t, "b"));
  struct stat st {};
  REQUIRE(::stat(d.file().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(std::filesystem::exists(d.file() + ".new"));
  auto back = load_declaration(d.path, "b");
  REQUIRE(back);
  REQUIRE(back->has_value());
  CHECK(**back == t);
  REQUIRE(save_declaration(d.path, std::nullopt, "b"));
  CHECK_FALSE(std::filesystem::exists(d.file()));
  REQUIRE(save_declaration(d.path, std::nullopt, "b"));  // clearing twice is no error

  // Another boot's file: refused and removed.
  REQUIRE(save_declaration(d.path, t, "old-boot"));
  auto stale = load_declaration(d.path, "b");
  REQUIRE_FALSE(stale);
  CHECK(stale.error().message.find("stale") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.file()));

  // Writable by others: whoever could write it could declare a tunnel.
  d.write(declaration_text(t, "b"), 0666);
  auto open = load_declaration(d.path, "b");
  REQUIRE_FALSE(open);
  CHECK(open.error().message.find("writable by others") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.file()));

  // A symbolic link is not followed.
  const std::string target = d.path + "/elsewhere.json";
  std::ofstream(target) << declaration_text(t, "b");
  std::filesystem::create_symlink(target, d.file());
  auto link = load_declaration(d.path, "b");
  REQUIRE_FALSE(link);
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(d.file())));
  CHECK(std::filesystem::exists(target));  // the link went, not what it pointed to

  // A directory in its place, and garbage.
  std::filesystem::create_directory(d.file());
  CHECK_FALSE(load_declaration(d.path, "b"));
  std::filesystem::remove_all(d.file());
  d.write("{\"version\": 1, garbage");
  auto garbage = load_declaration(d.path, "b");
  REQUIRE_FALSE(garbage);
  CHECK(garbage.error().message.find("not a JSON object") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.file()));

  // A directory that cannot be written: the save says so.
  CHECK_FALSE(save_declaration(d.path + "/missing", t, "b"));
}

TEST_CASE("runtime settings are kept beside the declaration: read back the same, of this boot, checked alike") {
  Dir d;
  const std::string file = d.path + "/" + std::string(kSettingsFile);
  const RuntimeSettings s{Mode::strict, false, {Family::v4, Family::v6}};
  auto text = parse_settings(settings_text(s, "b"), "b");
  REQUIRE(text);
  CHECK(*text == s);
  auto bare = parse_settings(settings_text(RuntimeSettings{std::nullopt, true, {}}, "b"), "b");
  REQUIRE(bare);
  CHECK(*bare == RuntimeSettings{std::nullopt, true, {}});
  CHECK(parse_settings(settings_text(s, "other"), "b").error().message.find("stale") != std::string::npos);
  CHECK_FALSE(parse_settings(R"({"version":1,"boot_id":"b","policy":"loose","escalated":[]})", "b"));
  CHECK_FALSE(parse_settings(R"({"version":1,"boot_id":"b","allow_lan":"yes","escalated":[]})", "b"));
  CHECK_FALSE(parse_settings(R"({"version":1,"boot_id":"b","escalated":["ipv5"]})", "b"));
  CHECK_FALSE(parse_settings(R"({"version":1,"boot_id":"b"})", "b"));

  auto none = load_settings(d.path, "b");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  REQUIRE(save_settings(d.path, s, "b"));
  auto back = load_settings(d.path, "b");
  REQUIRE(back);
  REQUIRE(back->has_value());
  CHECK(**back == s);
  // Nothing set at run time (a reload, an escalation let go): no file.
  REQUIRE(save_settings(d.path, RuntimeSettings{}, "b"));
  CHECK_FALSE(std::filesystem::exists(file));
  // Writable by others: refused and removed, as a declaration would be.
  REQUIRE(save_settings(d.path, s, "b"));
  REQUIRE(::chmod(file.c_str(), 0666) == 0);
  auto open = load_settings(d.path, "b");
  REQUIRE_FALSE(open);
  CHECK(open.error().message.find("writable by others") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK_FALSE(save_settings(d.path + "/missing", s, "b"));
}
