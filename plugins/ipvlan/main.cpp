// The `ipvlan` CNI plugin: a drop-in for the reference ipvlan over the CNM model.

#include "drivers/ipvlan.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::drivers::ipvlan_plugin(), argc, argv);
}
