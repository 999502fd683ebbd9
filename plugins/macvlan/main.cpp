// The `macvlan` CNI plugin: a drop-in for the reference macvlan over the CNM model.

#include "cni/frontend.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::cni::link_plugin("macvlan"), argc, argv);
}
