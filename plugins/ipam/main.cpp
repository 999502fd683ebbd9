// The `ipam` CNI plugin: a drop-in for host-local that keeps its leases in the CNM model's state
// store, so bridge networks, Docker networks (through cnm-shim) and this plugin share one pool.

#include "cni/frontend.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::cni::ipam_plugin(), argc, argv);
}
