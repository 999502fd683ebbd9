// The `bridge` CNI plugin: a drop-in for the reference bridge over the CNM model.

#include "cni/frontend.hpp"

int main(int argc, char** argv)
{
    return cnm::cni::plugin_main(cnm::cni::link_plugin("bridge"), argc, argv);
}
