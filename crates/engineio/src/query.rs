//! The query parameters of an Engine.IO request.

use switchyard_engineio_proto::TransportKind;

/// The parameters the engine reads from a request's query string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EngineQuery<'a> {
    pub(crate) eio: Option<&'a str>,
    pub(crate) transport: Option<&'a str>,
    pub(crate) sid: Option<&'a str>,
}

impl<'a> EngineQuery<'a> {
    /// Reads `EIO`, `transport` and `sid`; other parameters (`t`, app parameters) are ignored.
    /// None of these values need percent-decoding: sids are base64url.
    pub(crate) fn parse(query: Option<&'a str>) -> EngineQuery<'a> {
        let mut parsed = EngineQuery::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => parsed.eio = Some(value),
                "transport" => parsed.transport = Some(value),
                "sid" => parsed.sid = Some(value),
                _ => {}
            }
        }
        parsed
    }

    pub(crate) fn transport(&self) -> Option<TransportKind> {
        self.transport.and_then(TransportKind::from_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_engine_parameters_and_ignores_others() {
        let q = EngineQuery::parse(Some("EIO=4&transport=polling&t=N8hyd6w&sid=abc&x=1"));
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport(), Some(TransportKind::Polling));
        assert_eq!(q.sid, Some("abc"));
    }

    #[test]
    fn missing_query_has_nothing() {
        let q = EngineQuery::parse(None);
        assert_eq!(q, EngineQuery::default());
        assert_eq!(q.transport(), None);
    }
}
