// The `macvlan` CNI plugin: a drop-in for the reference macvlan over the CNM model.

#include "drivers/macvlan.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::drivers::macvlan_plugin(), argc, argv);
}
