// The `bridge` CNI plugin: a drop-in for the reference bridge over the CNM model.

#include "drivers/bridge.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::drivers::bridge_plugin(), argc, argv);
}
