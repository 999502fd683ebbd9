#include "util/utf8.hpp"

namespace cnm {

namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD"; // U+FFFD

bool in(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// The code unit of a "\uXXXX" escape at s[0], or -1 when s does not start with one.
int escape_at(std::string_view s)
{
    if (s.size() < 6 || s[0] != '\\' || s[1] != 'u')
        return -1;
    int v = 0;
    for (size_t i = 2; i < 6; ++i) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

// Nothing to do: only ASCII, and no escape that could be a surrogate ("\ud…"/"\uD…").
bool clean(std::string_view text)
{
    for (size_t i = 0; i < text.size(); ++i) {
        auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x80)
            return false;
        if (c == '\\' && i + 2 < text.size() && text[i + 1] == 'u' && (text[i + 2] == 'd' || text[i + 2] == 'D'))
            return false;
    }
    return true;
}

} // namespace

size_t utf8_sequence_length(std::string_view s)
{
    if (s.empty())
        return 0;
    auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
    unsigned char c = b(0);
    if (c < 0x80)
        return 1;
    if (in(c, 0xC2, 0xDF))
        return s.size() >= 2 && in(b(1), 0x80, 0xBF) ? 2 : 0;
    if (in(c, 0xE0, 0xEF)) {
        if (s.size() < 3)
            return 0;
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) ? 3 : 0;
    }
    if (in(c, 0xF0, 0xF4)) {
        if (s.size() < 4)
            return 0;
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return in(b(1), lo, hi) && in(b(2), 0x80, 0xBF) && in(b(3), 0x80, 0xBF) ? 4 : 0;
    }
    return 0;
}

bool valid_utf8(std::string_view s)
{
    while (!s.empty()) {
        size_t n = utf8_sequence_length(s);
        if (n == 0)
            return false;
        s.remove_prefix(n);
    }
    return true;
}

std::optional<std::string> json_replace_invalid_utf8(std::string_view text)
{
    if (clean(text))
        return std::nullopt;
    std::string out;
    out.reserve(text.size() + 16);
    bool changed = false;
    bool in_string = false;
    size_t i = 0;
    while (i < text.size()) {
        char c = text[i];
        if (in_string && c == '\\') {
            int unit = escape_at(text.substr(i));
            if (unit < 0) {
                // Another escape: copy it whole, so an escaped quote does not end the string. A
                // malformed one stays malformed (the parser reports it).
                out += c;
                if (i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) < 0x80)
                    out += text[++i];
                ++i;
                continue;
            }
            if (unit >= 0xD800 && unit <= 0xDBFF) {
                int low = escape_at(text.substr(i + 6));
                if (low >= 0xDC00 && low <= 0xDFFF) { // a pair: one code point, kept
                    out.append(text.substr(i, 12));
                    i += 12;
                    continue;
                }
            }
            if (unit >= 0xD800 && unit <= 0xDFFF) { // lone surrogate
                out += "\\ufffd";
                changed = true;
            } else {
                out.append(text.substr(i, 6));
            }
            i += 6;
            continue;
        }
        if (c == '"')
            in_string = !in_string;
        size_t n = utf8_sequence_length(text.substr(i));
        if (n == 0) {
            out += replacement;
            changed = true;
            ++i;
            continue;
        }
        out.append(text.substr(i, n));
        i += n;
    }
    if (!changed)
        return std::nullopt;
    return out;
}

} // namespace cnm
