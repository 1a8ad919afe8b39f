#include "firewall/table_guard.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "firewall/nft_dump.hpp"

namespace leakguard::firewall {

std::string TamperEvent::str() const {
  std::string s = "table inet leakguard changed by " + by + ": " + what + " -> ";
  if (!restored) return s + "NOT restored: " + error;
  return s + (repaired ? "restored in " + std::to_string(repair_time.count()) + " us" : "nothing to restore");
}

Result<Generation> parse_newgen(const void* nlmsg, std::size_t len) {
  const auto* nlh = static_cast<const nlmsghdr*>(nlmsg);
  if (len < sizeof(nlmsghdr) || nlh->nlmsg_len > len || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg)))
    return fail("parse NEWGEN", "truncated message");
  if (nlh->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) return fail("parse NEWGEN", "not an NFT_MSG_NEWGEN message");
  Generation g;
  bool have_id = false;
  struct Ctx {
    Generation* g;
    bool* have_id;
  } ctx{&g, &have_id};
  const int r = mnl_attr_parse(
      nlh, sizeof(nfgenmsg),
      [](const nlattr* a, void* data) -> int {
        auto* c = static_cast<Ctx*>(data);
        switch (mnl_attr_get_type(a)) {
          case NFTA_GEN_ID:
            if (mnl_attr_validate(a, MNL_TYPE_U32) < 0) return MNL_CB_ERROR;
            c->g->id = ntohl(mnl_attr_get_u32(a));
            *c->have_id = true;
            break;
          case NFTA_GEN_PROC_PID:
            if (mnl_attr_validate(a, MNL_TYPE_U32) < 0) return MNL_CB_ERROR;
            c->g->pid = ntohl(mnl_attr_get_u32(a));
            break;
          case NFTA_GEN_PROC_NAME:
            // The task's comm: at most 15 characters, NUL-terminated.
            c->g->process.assign(static_cast<const char*>(mnl_attr_get_payload(a)),
                                 strnlen(static_cast<const char*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a)));
            break;
          default: break;
        }
        return MNL_CB_OK;
      },
      &ctx);
  if (r < 0) return fail("parse NEWGEN", "malformed attribute");
  if (!have_id) return fail("parse NEWGEN", "no generation id");
  return g;
}

namespace {

/// Table name attribute of an nf_tables object message: NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,
/// SET_TABLE,SET_ELEM_LIST_TABLE,OBJ_TABLE,FLOWTABLE_TABLE} are all attribute 1.
constexpr std::uint16_t kTableAttr = 1;

struct ObjectInfo {
  std::string table;
  std::string name;  ///< chain of a rule, set of elements, name of a chain/set
};

ObjectInfo object_info(const nlmsghdr* nlh, std::uint16_t msg) {
  ObjectInfo info;
  std::uint16_t name_attr = 0;
  switch (msg) {
    case NFT_MSG_NEWRULE: case NFT_MSG_DELRULE: name_attr = NFTA_RULE_CHAIN; break;
    case NFT_MSG_NEWCHAIN: case NFT_MSG_DELCHAIN: name_attr = NFTA_CHAIN_NAME; break;
    case NFT_MSG_NEWSET: case NFT_MSG_DELSET: name_attr = NFTA_SET_NAME; break;
    case NFT_MSG_NEWSETELEM: case NFT_MSG_DELSETELEM: name_attr = NFTA_SET_ELEM_LIST_SET; break;
    default: break;
  }
  struct Ctx {
    ObjectInfo* info;
    std::uint16_t name_attr;
  } ctx{&info, name_attr};
  mnl_attr_parse(
      nlh, sizeof(nfgenmsg),
      [](const nlattr* a, void* data) -> int {
        auto* c = static_cast<Ctx*>(data);
        const auto type = mnl_attr_get_type(a);
        if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0) return MNL_CB_OK;
        if (type == kTableAttr) c->info->table = mnl_attr_get_str(a);
        else if (c->name_attr && type == c->name_attr) c->info->name = mnl_attr_get_str(a);
        return MNL_CB_OK;
      },
      &ctx);
  return info;
}

std::string describe(std::uint16_t msg, const ObjectInfo& o) {
  switch (msg) {
    case NFT_MSG_NEWTABLE: return "table re-created or changed";
    case NFT_MSG_DELTABLE: return "table deleted";
    case NFT_MSG_NEWCHAIN: return "chain " + o.name + " added or changed";
    case NFT_MSG_DELCHAIN: return "chain " + o.name + " deleted";
    case NFT_MSG_NEWRULE: return "rule added to chain " + o.name;
    case NFT_MSG_DELRULE: return "rule deleted from chain " + o.name;
    case NFT_MSG_NEWSET: return "set " + o.name + " added";
    case NFT_MSG_DELSET: return "set " + o.name + " deleted";
    case NFT_MSG_NEWSETELEM: return "elements added to set " + o.name;
    case NFT_MSG_DELSETELEM: return "elements deleted from set " + o.name;
    default: return "object changed (message " + std::to_string(msg) + ")";
  }
}

}  // namespace

struct TableGuard::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::io_context& io, Firewall& f, Callback c) : sd(io), fw(f), cb(std::move(c)), buf(256 * 1024) {}

  boost::asio::posix::stream_descriptor sd;
  mnl_socket* nl = nullptr;
  Firewall& fw;
  Callback cb;
  std::vector<std::uint8_t> buf;
  std::uint32_t own_portid = 0;
  bool stopped = false;
  std::atomic<std::uint64_t> events{0};

  // The foreign transaction being read: what its messages said about our table.
  bool pending = false;
  std::chrono::steady_clock::time_point first_seen;
  std::map<std::string, int> notes;
  std::vector<std::string> order;

  void arm() {
    sd.async_wait(boost::asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->stopped) return;
      self->on_readable();
      if (!self->stopped) self->arm();
    });
  }

  void note(std::string text) {
    if (!pending) {
      pending = true;
      first_seen = std::chrono::steady_clock::now();
    }
    if (notes[text]++ == 0) order.push_back(std::move(text));
  }

  void on_readable() {
    const int fd = mnl_socket_get_fd(nl);
    bool lost = false;
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {  // events were dropped: what happened must be read from the table
          lost = true;
          continue;
        }
        break;  // EAGAIN: all read
      }
      nft::for_each_message(buf.data(), static_cast<std::size_t>(n), [&](const nlmsghdr* nlh) { on_message(nlh); });
    }
    if (lost) {
      if (!pending) first_seen = std::chrono::steady_clock::now();
      pending = true;
      handle("unknown (events were lost)", 0);
    }
  }

  void on_message(const nlmsghdr* nlh) {
    if ((nlh->nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) return;
    const auto msg = static_cast<std::uint16_t>(nlh->nlmsg_type & 0xff);
    if (msg == NFT_MSG_NEWGEN) {
      // A transaction's notifications come together, followed by its NEWGEN (the commit mutex
      // serialises transactions), so the NEWGEN closes the one we were reading.
      if (!pending) return;
      auto g = parse_newgen(nlh, nlh->nlmsg_len);
      std::string by = "unknown";
      std::uint32_t id = 0;
      if (g) {
        by = (g->process.empty() ? "pid" : g->process) + "[" + std::to_string(g->pid) + "]";
        id = g->id;
      }
      handle(by, id);
      return;
    }
    if (nlh->nlmsg_pid == own_portid) return;  // our own batch echoing back
    const auto* gen = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    if (gen->nfgen_family != NFPROTO_INET) return;
    const ObjectInfo info = object_info(nlh, msg);
    if (info.table != kTableName) return;
    note(describe(msg, info));
  }

  void handle(const std::string& by, std::uint32_t generation) {
    TamperEvent ev;
    ev.by = by;
    ev.generation = generation;
    for (const auto& text : order) {
      const int n = notes[text];
      ev.what += (ev.what.empty() ? "" : ", ") + (n > 1 ? std::to_string(n) + "x " : std::string()) + text;
    }
    if (ev.what.empty()) ev.what = "events lost";
    const auto t0 = first_seen;
    pending = false;
    notes.clear();
    order.clear();
    ++events;

    if (!fw.installed()) {
      ev.restored = true;
      ev.what += " (leakguard has no table installed: nothing to restore)";
    } else if (auto diff = fw.verify(); !diff) {
      ev.error = "cannot read the table: " + diff.error().str();
    } else if (diff->empty()) {
      ev.restored = true;
    } else {
      std::string d;
      for (const auto& line : *diff) d += (d.empty() ? "" : ", ") + line;
      ev.what += "; differs: " + d;
      if (auto r = fw.reassert(); r) {
        ev.restored = ev.repaired = true;
      } else {
        ev.error = r.error().str();
      }
    }
    ev.repair_time = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
    if (cb) cb(ev);
  }

  void close() {
    stopped = true;
    boost::system::error_code ignored;
    sd.cancel(ignored);
    if (sd.is_open()) sd.release();
    if (nl) mnl_socket_close(nl);
    nl = nullptr;
  }
};

TableGuard::TableGuard(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

TableGuard::~TableGuard() { stop(); }

void TableGuard::stop() {
  if (impl_ && !impl_->stopped) impl_->close();
}

std::uint64_t TableGuard::events() const { return impl_->events.load(); }

Result<std::unique_ptr<TableGuard>> TableGuard::start(boost::asio::io_context& io, Firewall& fw, Callback on_event,
                                                      const Options& options) {
  auto impl = std::make_shared<Impl>(io, fw, std::move(on_event));
  impl->own_portid = fw.portid();
  impl->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (!impl->nl) return fail("open nftables event socket", std::strerror(errno), errno);
  if (mnl_socket_bind(impl->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int e = errno;
    mnl_socket_close(impl->nl);
    return fail("bind nftables event socket", std::strerror(e), e);
  }
  const int fd = mnl_socket_get_fd(impl->nl);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &options.rcvbuf, sizeof options.rcvbuf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.rcvbuf, sizeof options.rcvbuf);
  int group = NFNLGRP_NFTABLES;
  if (mnl_socket_setsockopt(impl->nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
    const int e = errno;
    mnl_socket_close(impl->nl);
    return fail("subscribe to nftables events", std::strerror(e), e);
  }
  impl->sd.assign(fd);
  impl->arm();
  return std::unique_ptr<TableGuard>(new TableGuard(std::move(impl)));
}

}  // namespace leakguard::firewall
