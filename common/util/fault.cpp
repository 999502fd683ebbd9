#include "util/fault.hpp"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace cnm {

void fault_point(const char* point)
{
    static const char* wanted = std::getenv("CNM_FAULT");
    if (wanted && std::strcmp(wanted, point) == 0)
        ::kill(::getpid(), SIGKILL);
}

} // namespace cnm
