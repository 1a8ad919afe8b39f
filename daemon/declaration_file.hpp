#pragma once
// What a VPN client declared (SetTunnel), kept across restarts of the daemon: a crash, `systemctl
// restart`, a package upgrade. Without it a restarted daemon forgets the tunnel, and the VPN's
// endpoint stays blocked until the client declares again (which it only does on its next connect).
//
// The file lives in the daemon's runtime directory (/run/leakguard: tmpfs, gone at reboot, when
// every VPN client connects and declares anew). It is trusted no more than a D-Bus call: its
// content goes through check_tunnel(), it must carry this boot's id, be a regular file owned by
// the daemon's user (or root) that no one else may write; anything else is ignored with a reason.
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "daemon/control.hpp"
#include "daemon/controller.hpp"

namespace leakguard::daemon {

/// The file's name in the runtime directory.
inline constexpr std::string_view kDeclarationFile = "tunnel.json";

/// The declaration as the file holds it (JSON, one object, version 1). `ahead`: made while its
/// interface did not exist yet (a client declaring its servers before it connects: wg-quick's
/// PreUp, OpenVPN's --pre-start, NetworkManager's uplink); such a declaration is kept across a
/// restart without its interface. Pure.
std::string declaration_text(const TunnelDeclaration& t, std::string_view boot_id, bool ahead = false);
/// Reads what declaration_text() wrote, checked as a D-Bus SetTunnel would be; an error says why
/// the text is not a usable declaration (not JSON, another version, another boot, bad fields).
/// `ahead` (if given) says whether it was made ahead (absent in the file: no). Pure.
Result<TunnelDeclaration> parse_declaration(std::string_view text, std::string_view boot_id, bool* ahead = nullptr);

/// What tells this boot from others, for records kept in `dir`: the kernel's boot id
/// (/proc/sys/kernel/random/boot_id); where that is hidden (the unit's ProcSubset=pid) and `dir`
/// is on a tmpfs or ramfs (/run: nothing there survives a boot), the word "volatile"; else ""
/// (then no record is ever trusted).
std::string current_boot_id(const std::string& dir);

/// The declaration kept in `dir`, if there is one: nullopt if there is no file; an error (the file
/// is then removed, so that it is not met again) if it is unusable or not safe to trust.
Result<std::optional<TunnelDeclaration>> load_declaration(const std::string& dir, std::string_view boot_id,
                                                          bool* ahead = nullptr);
/// Keeps `t` in `dir` (written to a temporary file, then renamed: never half a file), or removes
/// the file for nullopt.
Result<void> save_declaration(const std::string& dir, const std::optional<TunnelDeclaration>& t, std::string_view boot_id,
                              bool ahead = false);

/// What was set at run time (RuntimeSettings: a policy or allow_lan over D-Bus, the families held
/// strict by escalation), kept the same way beside the declaration, under the same checks.
inline constexpr std::string_view kSettingsFile = "settings.json";
/// The settings as the file holds them (JSON, one object, version 1, this boot's id). Pure.
std::string settings_text(const RuntimeSettings& s, std::string_view boot_id);
/// Reads what settings_text() wrote; an error says why the text is not usable. Pure.
Result<RuntimeSettings> parse_settings(std::string_view text, std::string_view boot_id);
/// The settings kept in `dir`: nullopt if there is no file; an error (the file is then removed)
/// if it is unusable or not safe to trust.
Result<std::optional<RuntimeSettings>> load_settings(const std::string& dir, std::string_view boot_id);
/// Keeps `s` in `dir` (temporary file, then renamed); nothing set at run time removes the file.
Result<void> save_settings(const std::string& dir, const RuntimeSettings& s, std::string_view boot_id);

}  // namespace leakguard::daemon
