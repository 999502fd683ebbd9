#pragma once
// ArmedGuard runs its undo action when it goes out of scope, unless disarm() was called first.
// It is how ADD rolls back on "not committed" instead of on "an error variable is set".

#include <utility>

namespace cnm {

template<typename Callback>
class ArmedGuard {
public:
    explicit ArmedGuard(Callback callback) : m_callback(std::move(callback)) { }
    ArmedGuard(const ArmedGuard&) = delete;
    ArmedGuard& operator=(const ArmedGuard&) = delete;
    ~ArmedGuard()
    {
        if (m_armed)
            m_callback();
    }
    void disarm() { m_armed = false; }

private:
    Callback m_callback;
    bool m_armed = true;
};

} // namespace cnm
