// The `vxlan` CNI plugin: a multi-host overlay over the CNM model, its cluster facts in etcd.

#include "cni/vxlan_frontend.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::cni::vxlan_plugin(), argc, argv);
}
