#pragma once
// The CNM model: Network and Endpoint records (and the Sandbox they name), shared by the CNI
// plugins and cnm-shim.
//
//   Network  — conf "name" (CNI) or a Docker network bound to it; owns a driver, its options and
//              the subnets of its pools.
//   Endpoint — one attachment: (CNI_CONTAINERID, CNI_IFNAME) for CNI, the EndpointID for Docker;
//              its addresses and the pools they came from. Written in phase "creating" before
//              anything is allocated, "ready" once ADD has finished, so a crash in between is
//              visible to DEL and GC.
//   Sandbox  — a container's network stack (a netns path) and the endpoints it holds: the
//              endpoint records that name it (no record of its own, so an ADD writes one
//              document less and takes no host-wide lock).
//
// Every record names the front-end that created it, so `cnm-shim list` can tell them apart.

#include "net/ip.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cnm {

enum class Frontend { Cni, Docker };
std::string_view frontend_name(Frontend f);
std::optional<Frontend> parse_frontend(std::string_view s);

struct NetworkRecord {
    std::string name;
    std::string driver;               // "bridge", "macvlan", … (the CNI conf's type)
    Frontend frontend = Frontend::Cni;
    std::string address_space = "local";
    std::vector<std::string> subnets; // every subnet of every range set, canonical CIDR
    Json options = Json::object();    // the driver's keys as first given
    std::vector<std::string> docker_ids;
    std::string created;

    Json to_json() const;
    static Result<NetworkRecord> from_json(const Json& doc);
};

struct EndpointAddress {
    IpNet address;                    // e.g. 10.213.0.5/24
    std::optional<IpAddr> gateway;
    std::string pool;                 // pool id "<space>/<subnet key>"
    uint64_t lease_version = 0;       // not stored: the lease's version as this verb created it (0: unknown)
};

struct EndpointRecord {
    enum class Phase { Creating, Ready };
    std::string network;
    std::string container_id;         // CNI_CONTAINERID, or Docker's EndpointID
    std::string ifname;
    std::string sandbox;              // sandbox id (the container id for CNI)
    std::string netns;
    Frontend frontend = Frontend::Cni;
    Phase phase = Phase::Creating;
    std::vector<EndpointAddress> addresses;
    std::string mac;
    std::string created;
    int64_t ready_at_ms = 0;            // when it became ready (ms since the epoch; 0: unknown)
    std::string boot_id;                // the boot it belongs to (empty in records before it)
    uint64_t mount_ns = 0;              // the mount namespace its netns path was seen from (0: unknown)
    Json driver_state = Json::object(); // what the driver needs to undo its work (host veth name, …)

    Json to_json() const;
    static Result<EndpointRecord> from_json(const Json& doc);
};

/// The schema version records are written with; every older one is read (fields added since are
/// optional).
inline constexpr int record_schema = 2;

/// The running boot's id ("" when it cannot be read): per-boot records carry it.
const std::string& current_boot();
/// A per-boot record from another boot: what it describes ended with that boot.
inline bool stale_boot(const std::string& record_boot) { return !record_boot.empty() && !current_boot().empty() && record_boot != current_boot(); }

std::string now_rfc3339();
/// This process's mount namespace (the inode of /proc/self/ns/mnt; 0 when unknown): a netns path
/// is only visible from the mount namespaces it was mounted into.
uint64_t current_mount_ns();
/// Milliseconds since the epoch (CLOCK_REALTIME).
int64_t now_ms();

} // namespace cnm
