#include "ipam/config.hpp"

namespace cnm::ipam {

std::string range_set_str(const RangeSet& set)
{
    std::string out;
    for (auto& r : set) {
        if (!out.empty())
            out += ',';
        out.append(r.start.str()).append("-").append(r.end.str());
    }
    return out;
}

bool Range::usable(const IpAddr& a) const
{
    if (!contains(a) || a == gateway || a == subnet.network())
        return false;
    return !(a.family == 4 && a == subnet.last());
}

} // namespace cnm::ipam
