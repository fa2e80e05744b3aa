//! The router's one token estimate. A prompt's length is a scorer feature, so training and
//! serving must measure it the same way: both call [`estimate`] on the text the router
//! embeds. Real token counts (a benchmark's, an upstream's `usage`) may drive cost, never
//! the feature.

/// Characters per token of the estimate (English prose and code average about four).
pub const CHARS_PER_TOKEN: usize = 4;

/// Tokens a chat message costs beyond its text (role and separators).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 1;

/// Estimated tokens of one text: its characters / [`CHARS_PER_TOKEN`], rounded up.
pub fn estimate(text: &str) -> u64 {
    text.chars().count().div_ceil(CHARS_PER_TOKEN) as u64
}

/// Estimated prompt tokens of a whole chat: every message's text plus its overhead. This
/// sizes the request (cost, context window); the feature is [`estimate`] of the routed text.
pub fn estimate_messages<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts
        .into_iter()
        .map(|t| estimate(t) + MESSAGE_OVERHEAD_TOKENS)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_round_up_and_count_characters_not_bytes() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate("abcd"), 1);
        assert_eq!(estimate("abcde"), 2);
        // Four multi-byte characters are one token, not three.
        assert_eq!(estimate("éééé"), 1);
        assert_eq!(estimate_messages(["abcd", "abcde"]), 1 + 1 + 2 + 1);
        assert_eq!(estimate_messages(std::iter::empty()), 0);
    }
}
