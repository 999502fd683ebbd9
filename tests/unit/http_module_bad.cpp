// A module that exports the entry point but claims another interface version: the loader must
// refuse it (http_module_test.cpp) before calling its create().
#include "etcd/transport.hpp"

extern "C" __attribute__((visibility("default"))) const cnm::etcd::HttpModule* cnm_etcd_http_module()
{
    static const cnm::etcd::HttpModule table = [] {
        auto t = cnm::etcd::http_module_expected();
        t.abi = cnm::etcd::http_module_abi + 1;
        t.create = []() -> cnm::etcd::Transport* { __builtin_trap(); };
        return t;
    }();
    return &table;
}
