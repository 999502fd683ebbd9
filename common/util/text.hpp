#pragma once
// Fixed-width hex and decimal into a string, for the few numbers a plugin formats on every call
// (MACs, random link names, record stamps): snprintf would bring in vfprintf and its locale
// machinery — code pages faulted in on every exec — for a few characters.

#include <string>

namespace cnm {

/// `digits` lowercase hex digits of `value`, zero-padded.
inline void append_hex(std::string& out, unsigned long long value, int digits)
{
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
        out += "0123456789abcdef"[(value >> shift) & 0xf];
}

/// At least `width` decimal digits of `value`, zero-padded.
inline void append_dec(std::string& out, unsigned long long value, int width)
{
    char buf[20];
    int n = 0;
    do {
        buf[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value > 0 && n < 20);
    for (int i = n; i < width; ++i)
        out += '0';
    while (n > 0)
        out += buf[--n];
}

} // namespace cnm
