#pragma once
// Result<T>: a value or an Error, and TRY() to return early with the error.
// Every fallible function in common/ returns one; only the CNI dispatcher prints.

#include <string>
#include <utility>
#include <variant>

namespace cnm {

/// CNI's well-known error codes (SPEC §"Error"), plus ours from 100 up.
enum class Code : int {
    Ok = 0,
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    LimitedConnectivity = 51,
    // Plugin-specific codes (100 and up).
    Internal = 100,
    StateCorrupt = 101,
    AddressUnavailable = 102,
    AlreadyAttached = 103,
    CheckFailed = 104,
    Kernel = 105,
};

struct Error {
    Code code = Code::Internal;
    std::string msg;
    std::string details;
    /// The errno behind a failed system or netlink call (EEXIST, ENODEV, …), 0 when there is
    /// none. Callers match on it instead of re-reading a side channel. Last, so that the
    /// aggregate order (code, msg, details) stays valid.
    int sys_errno = 0;

    /// "<msg> (<details>)", or the message alone: for a log line or a reply that carries both.
    std::string text() const { return details.empty() ? msg : msg + " (" + details + ")"; }

    /// Prepends context to the message: "reading network x: <msg>".
    Error context(const std::string& what) &&
    {
        msg = what + ": " + msg;
        return std::move(*this);
    }
};

inline Error make_error(Code code, std::string msg, std::string details = {})
{
    return Error { code, std::move(msg), std::move(details) };
}

/// An error that keeps the errno of the call that failed.
inline Error errno_error(Code code, int sys_errno, std::string msg, std::string details = {})
{
    return Error { code, std::move(msg), std::move(details), sys_errno };
}

template<typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_value(std::in_place_index<0>, std::move(value)) { }
    Result(Error error) : m_value(std::in_place_index<1>, std::move(error)) { }

    bool ok() const { return m_value.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(m_value); }
    const T& value() const { return std::get<0>(m_value); }
    T release_value() { return std::move(std::get<0>(m_value)); }
    Error& error() { return std::get<1>(m_value); }
    const Error& error() const { return std::get<1>(m_value); }
    Error release_error() { return std::move(std::get<1>(m_value)); }
    T* operator->() { return &value(); }
    T& operator*() { return value(); }

private:
    std::variant<T, Error> m_value;
};

template<>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : m_error(std::move(error)), m_failed(true) { }

    bool ok() const { return !m_failed; }
    explicit operator bool() const { return ok(); }
    void release_value() { }
    Error& error() { return m_error; }
    const Error& error() const { return m_error; }
    Error release_error() { return std::move(m_error); }

private:
    Error m_error;
    bool m_failed = false;
};

} // namespace cnm

// GNU statement expression (accepted by GCC and Clang); __extension__ keeps -Wpedantic quiet.
// Never use it inside a braced initialiser or a function-call argument list next to other
// temporaries: an early return from there skips destructors (the fuzzer found such a leak).
#define TRY(expression)                          \
    __extension__({                              \
        auto _try_result = (expression);         \
        if (!_try_result.ok())                   \
            return _try_result.release_error();  \
        _try_result.release_value();             \
    })
