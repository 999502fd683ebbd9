// A no-op linked as the vxlan plugin is (libcpp-httplib and what it pulls in: libssl, libcrypto,
// libstdc++, zlib, brotli), for cni-bench vxlan: its exec time against /bin/true's is the start-up
// the vxlan plugin pays for linking the etcd client's HTTP library.
#include <httplib.h>

int main(int argc, char**)
{
    // Never true: keeps a reference to the library, so the link needs it.
    if (argc > 99)
        return httplib::detail::encode_query_param("x").size() > 1 ? 1 : 2;
    return 0;
}
