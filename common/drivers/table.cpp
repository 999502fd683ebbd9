// The one table of drivers: a new kind is one file under common/drivers/ and one line here.
#include "cnm/driver.hpp"

namespace cnm {

namespace drivers {
Driver& bridge_driver();
Driver& macvlan_driver();
Driver& ipvlan_driver();
Driver& vxlan_driver();
} // namespace drivers

namespace {

struct Entry {
    std::string_view kind;
    Driver& (*get)();
};

constexpr Entry table[] = {
    { "bridge", drivers::bridge_driver },
    { "macvlan", drivers::macvlan_driver },
    { "ipvlan", drivers::ipvlan_driver },
    { "vxlan", drivers::vxlan_driver },
};

} // namespace

Driver* find_driver(std::string_view kind)
{
    for (auto& e : table)
        if (e.kind == kind)
            return &e.get();
    return nullptr;
}

std::string driver_kinds()
{
    std::string out;
    for (auto& e : table)
        out += (out.empty() ? "" : ", ") + std::string(e.kind);
    return out;
}

} // namespace cnm
