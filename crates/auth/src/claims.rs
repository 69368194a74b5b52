//! The verified claims of a token, as socket data.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The claims of a verified token, kept as socket data by the middleware:
/// `socket.data::<Claims>()` in any handler.
///
/// `sub` is the user id and is required; `rooms` is the optional list of room patterns the
/// user may join (see [`Claims::may_join`]); every other claim (`iss`, `aud`, `iat`, `nbf`,
/// custom ones) is in `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: the user id.
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Room patterns the user may join, `*` matching any run of characters (`team-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// Every other claim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Claims {
    /// Whether the `rooms` claim allows `room`; `false` when the claim is absent.
    pub fn may_join(&self, room: &str) -> bool {
        self.rooms
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|pattern| pattern_matches(pattern, room))
    }
}

/// Whether `pattern` matches all of `text`; `*` stands for any run of characters (none
/// included), every other character for itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last star: linear in practice, and at most
    // pattern × text steps.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_whole_names_with_stars() {
        let cases = [
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "teams", false),
            ("team-*", "xteam-a", false),
            ("general", "general", true),
            ("general", "general2", false),
            ("*", "anything", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*-ops", "dev-ops", true),
            ("*-ops", "dev-opsx", false),
            ("", "", true),
            ("", "a", false),
            ("é*", "été", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                pattern_matches(pattern, text),
                expected,
                "{pattern} ~ {text}"
            );
        }
    }

    #[test]
    fn claims_keep_unknown_fields_and_rooms() {
        let claims: Claims = serde_json::from_value(json!({
            "sub": "alice", "exp": 1_900_000_000u64, "rooms": ["team-*", "general"],
            "iss": "issuer", "role": "admin"
        }))
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp, Some(1_900_000_000));
        assert_eq!(
            claims.other,
            json!({ "iss": "issuer", "role": "admin" })
                .as_object()
                .cloned()
                .unwrap_or_default()
        );
        assert!(claims.may_join("team-red"));
        assert!(claims.may_join("general"));
        assert!(!claims.may_join("random"));
        let no_rooms = Claims {
            rooms: None,
            ..claims
        };
        assert!(!no_rooms.may_join("general"));
    }
}
