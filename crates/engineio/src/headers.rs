//! The headers a session keeps of the request that opened it, in a compact form.

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Bytes before each header in [`RequestHeaders`]' buffer: its name's length and its value's.
const LENGTHS: usize = 8;

/// The headers of the request that opened a session, as the session keeps them: every name
/// and value in one allocation sized to fit, in the order `HeaderMap` gives them (the values
/// of a header sent several times together, in order).
///
/// A session lives as long as its connection, hours for most of them, idle most of that time.
/// A `HeaderMap` costs about a hundred bytes per header besides the bytes themselves, and
/// keeping hyper's own would keep the 8 KiB buffer the request was read into. Lookups by name
/// ([`get`](Self::get), [`get_all`](Self::get_all)) and [`iter`](Self::iter) read the compact
/// form; [`map`](Self::map) builds a `HeaderMap` the first time it is asked for, and keeps it.
#[derive(Clone, Default)]
pub struct RequestHeaders {
    /// For each header: its name's length and its value's (`u32`, little-endian), then its
    /// name (lower case, as `HeaderName` spells it) and its value.
    raw: Box<[u8]>,
    map: OnceLock<Box<HeaderMap>>,
}

impl RequestHeaders {
    /// A compact copy of `headers`: nothing of it is shared with the original.
    pub fn copied_from(headers: &HeaderMap) -> RequestHeaders {
        let size = headers
            .iter()
            .map(|(name, value)| LENGTHS + name.as_str().len() + value.len())
            .sum();
        let mut raw = Vec::with_capacity(size);
        for (name, value) in headers {
            let (name, value) = (name.as_str().as_bytes(), value.as_bytes());
            // hyper refuses a request head larger than a few hundred KiB, far below 4 GiB.
            let (Ok(name_len), Ok(value_len)) =
                (u32::try_from(name.len()), u32::try_from(value.len()))
            else {
                continue;
            };
            raw.extend_from_slice(&name_len.to_le_bytes());
            raw.extend_from_slice(&value_len.to_le_bytes());
            raw.extend_from_slice(name);
            raw.extend_from_slice(value);
        }
        RequestHeaders {
            raw: raw.into_boxed_slice(),
            map: OnceLock::new(),
        }
    }

    /// Every header as (name in lower case, value), in `HeaderMap`'s order; a header sent
    /// several times comes once per value.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.raw }
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Every value of header `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// How many values the headers hold.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the request had no header.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The headers as a `HeaderMap`, built on the first call and kept from then on (the
    /// session's memory grows by the map's size).
    pub fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::with_capacity(self.len());
            for (name, value) in self.iter() {
                // Both were a valid header a moment ago, so both parse again.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value),
                ) {
                    map.append(name, value);
                }
            }
            Box::new(map)
        })
    }
}

impl fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(value))),
            )
            .finish()
    }
}

impl PartialEq<HeaderMap> for RequestHeaders {
    fn eq(&self, other: &HeaderMap) -> bool {
        self.iter().eq(other
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())))
    }
}

/// The headers of a [`RequestHeaders`], in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let length = |at: usize| {
            let bytes: [u8; 4] = self.rest.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(bytes)).ok()
        };
        let (name_len, value_len) = (length(0)?, length(4)?);
        let name_end = LENGTHS + name_len;
        let name = self.rest.get(LENGTHS..name_end)?;
        let value = self.rest.get(name_end..name_end + value_len)?;
        self.rest = &self.rest[name_end + value_len..];
        // Written from `HeaderName::as_str`, so UTF-8.
        Some((std::str::from_utf8(name).unwrap_or_default(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("example.test"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_bytes(b"agent \xe9").unwrap(),
        );
        headers.insert("x-empty", HeaderValue::from_static(""));
        headers
    }

    #[test]
    fn the_compact_form_keeps_every_value_in_order() {
        let headers = sample();
        let compact = RequestHeaders::copied_from(&headers);
        assert_eq!(compact, headers);
        assert_eq!(compact.len(), 5);
        assert_eq!(compact.get("Host"), Some(&b"example.test"[..]));
        assert_eq!(compact.get_all("X-MANY").collect::<Vec<_>>(), [b"a", b"b"]);
        assert_eq!(compact.get("user-agent"), Some(&b"agent \xe9"[..]));
        assert_eq!(compact.get("x-empty"), Some(&b""[..]));
        assert_eq!(compact.get("missing"), None);
        assert_eq!(*compact.map(), headers);
        // The map is built once and kept.
        assert!(std::ptr::eq(compact.map(), compact.map()));
    }

    #[test]
    fn no_headers_is_empty() {
        let compact = RequestHeaders::copied_from(&HeaderMap::new());
        assert!(compact.is_empty());
        assert_eq!(compact.iter().count(), 0);
        assert!(compact.map().is_empty());
    }

    #[test]
    fn the_compact_form_holds_the_bytes_and_two_lengths_per_header() {
        let headers = sample();
        let compact = RequestHeaders::copied_from(&headers);
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        assert_eq!(compact.raw.len(), bytes + LENGTHS * headers.len());
    }
}
