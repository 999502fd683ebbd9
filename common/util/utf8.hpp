#pragma once
// Invalid UTF-8 in JSON text, treated the way the reference plugins' decoder (Go's encoding/json)
// treats it: every byte that does not start a well-formed UTF-8 sequence becomes U+FFFD, and so
// does every \u escape of a lone UTF-16 surrogate. nlohmann-json refuses both with a parse error
// that names a column, not a key; after this rewrite it decodes the text to the same strings Go
// would, and a key whose value is then unacceptable (a network name with U+FFFD in it) is refused
// by name, as the reference refuses it.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace cnm {

/// Length of the well-formed UTF-8 sequence at the start of `s` (1–4), or 0 when there is none:
/// Go's rules (no overlong forms, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence_length(std::string_view s);

/// True when all of `s` is well-formed UTF-8.
bool valid_utf8(std::string_view s);

/// `text` with the replacements above, or std::nullopt when none is needed (the common case:
/// nothing is copied).
std::optional<std::string> json_replace_invalid_utf8(std::string_view text);

} // namespace cnm
