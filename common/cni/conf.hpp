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
    Json raw;                              // the whole document as received, but for a GC list (below)
    /// A top-level GC list ("cni.dev/valid-attachments", its older spelling "cni.dev/attachments")
    /// that is an array is read straight from the text into (containerID, ifname) pairs, never
    /// built as JSON values in raw: a list of 10 000 attachments is 10 000 objects, and building
    /// them was a third of a GC. The first fault of an item is kept for valid_attachments() to
    /// report: only GC reads the list, so only GC refuses a bad one (as when raw held it).
    struct GcList {
        std::vector<std::pair<std::string, std::string>> items;
        std::optional<Error> fault;
    };
    std::optional<GcList> gc_lists[2];     // [0] "cni.dev/valid-attachments", [1] "cni.dev/attachments"
    std::string text;                      // the document as received, kept only when a list is not in raw
};

/// Decodes stdin: not JSON (or not an object) → code 6; a known key of the wrong type or a bad
/// name → code 7 naming it. A cniVersion the plugin does not speak → code 1.
Result<NetConf> parse_conf(std::string_view text);

/// The GC list, from "cni.dev/valid-attachments" or, when that key is absent, its older spelling
/// "cni.dev/attachments": (containerID, ifname) pairs in the conf's order, as Endpoints::gc takes
/// them; nullptr when there is none (absent or null). Not an array, or an item not an object, or a
/// field not a string: code 7 naming it.
Result<const std::vector<std::pair<std::string, std::string>>*> valid_attachments(const NetConf& conf);
/// What GC keeps when the conf has no list: nothing.
inline const std::vector<std::pair<std::string, std::string>> no_attachments;

/// What a delegated plugin gets on stdin: the whole conf, with its GC list.
std::string delegate_input(const NetConf& conf);

} // namespace cnm::cni

namespace cnm::cni {

/// The state root: the conf's top-level "dataDir", else "ipam.dataDir" (where host-local confs put
/// it), else $CNM_STATE_DIR, else /var/lib/cni/cnm.
std::string state_dir(const NetConf& conf);

} // namespace cnm::cni
