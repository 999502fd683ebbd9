#pragma once
// The plugin conf on stdin: the spec's fields, typed, plus the raw document so that unknown keys
// survive (a delegated IPAM plugin gets the whole conf, unchanged).

#include "cni/types.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cnm::cni {

struct NetConf {
    std::string cni_version;               // the version results are printed in
    std::vector<std::string> cni_versions; // 1.1.0 list, informational
    std::string name;
    std::string type;
    Json ipam;                             // object, or null when absent
    std::optional<Dns> dns;
    Json runtime_config;                   // object or null
    Json args;                             // object or null
    std::optional<CniResult> prev_result;
    std::string data_dir;                  // top-level dataDir (ours)
    Json raw;                              // the whole document as received
};

/// Decodes stdin: not JSON (or not an object) → code 6; a known key of the wrong type or a bad
/// name → code 7 naming it. A cniVersion the plugin does not speak → code 1.
Result<NetConf> parse_conf(std::string_view text);

/// The GC list, from "cni.dev/valid-attachments" or its older spelling "cni.dev/attachments".
struct Attachment {
    std::string container_id;
    std::string ifname;
    bool operator==(const Attachment&) const = default;
};
Result<std::optional<std::vector<Attachment>>> valid_attachments(const NetConf& conf);
/// The list as Endpoints::gc takes it, (containerID, ifname) pairs, its strings moved (it may
/// hold 10 000 attachments); none: empty.
std::vector<std::pair<std::string, std::string>> keep_list(std::optional<std::vector<Attachment>>&& valid);

} // namespace cnm::cni

namespace cnm::cni {

/// The state root: the conf's top-level "dataDir", else "ipam.dataDir" (where host-local confs put
/// it), else $CNM_STATE_DIR, else /var/lib/cni/cnm.
std::string state_dir(const NetConf& conf);

} // namespace cnm::cni
