// A no-op linked as the bridge, macvlan and ipvlan plugins are (libc and libmnl dynamically,
// libstdc++ and libgcc statically), for cni-bench bridge|macvlan: the exec floor of those plugins
// ("a no-op program linked like that plugin"), printed beside /bin/true's.
#include <libmnl/libmnl.h>

int main(int argc, char**)
{
    // Never true: keeps a reference to libmnl, so the loader maps it as it does for the plugins.
    if (argc > 99)
        return mnl_socket_open(0) ? 1 : 2;
    return 0;
}
